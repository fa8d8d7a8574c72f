"""Plots and tables of a loss search and of learned losses.

matplotlib and pandas are optional: they are imported when a function needs
them. Every plotting function draws on the Axes it is given (or on a new
figure's) and returns them; none calls ``plt.show``.
"""

import numpy as np
import torch

from .loss import CROSS_ENTROPY, SQUARED_ERROR, SymbolicLoss

__all__ = ["plot_progress", "plot_loss_shape", "plot_pareto", "results_frame"]


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            "metaloss_sk.plotting needs matplotlib, which is not installed: pip install matplotlib"
        ) from exc
    return plt


def _axes(ax):
    if ax is None:
        _, ax = _pyplot().subplots()
    return ax


def _fitted(search, attribute):
    if not hasattr(search, attribute):
        raise ValueError(f"{type(search).__name__} has no {attribute}; pass a fitted LossSearchCV.")
    return getattr(search, attribute)


def _short(text, n=48):
    return text if len(text) <= n else text[: n - 1] + "\u2026"


def plot_progress(search, ax=None):
    """Best and median cross-validated score of each generation.

    Parameters
    ----------
    search : LossSearchCV
        A fitted search (its ``history_`` is plotted).
    ax : matplotlib Axes, optional
        Where to draw; a new figure by default.

    Returns
    -------
    matplotlib Axes
        With two lines, "best" and "median"; a generation in which every
        candidate failed leaves a gap.
    """
    history = _fitted(search, "history_")
    ax = _axes(ax)

    def column(key):
        values = np.array([entry.get(key, np.nan) for entry in history], dtype=float)
        return np.where(np.isfinite(values), values, np.nan)

    generation = np.array([entry["generation"] for entry in history])
    ax.plot(generation, column("best_score"), marker="o", label="best")
    ax.plot(generation, column("median_score"), marker=".", linestyle="--", label="median")
    ax.set_xlabel("generation")
    ax.set_ylabel("mean CV score")
    ax.set_title("Loss search progress")
    if len(generation):
        ax.set_xticks(np.unique(np.linspace(generation.min(), generation.max(), min(len(generation), 11))
                                .round().astype(int)))
    ax.grid(True, alpha=0.3)
    ax.legend()
    return ax


def _as_losses(losses):
    if hasattr(losses, "best_loss_"):  # a fitted search
        losses = losses.best_loss_
    if isinstance(losses, SymbolicLoss):
        return [losses]
    losses = list(losses)
    for loss in losses:
        if not isinstance(loss, SymbolicLoss):
            raise TypeError(f"expected SymbolicLoss instances, got {type(loss).__name__}.")
    if not losses:
        raise ValueError("no loss to plot.")
    return losses


def _coefficients(loss):
    return None if loss.coefficients is None else loss.coefficients.detach().cpu()


def _class_terms(loss, p, target):
    """The program's value for one class whose target is ``target`` (1 or 0) and whose probability is ``p``."""
    yhat = torch.as_tensor(p, dtype=torch.float64)
    y = torch.full_like(yhat, float(target))
    with torch.no_grad():
        values = loss.program_.evaluate(y, yhat, _coefficients(loss))
        return torch.broadcast_to(values, y.shape).numpy()


def _per_sample_regression(loss, residual, target):
    r = torch.as_tensor(residual, dtype=torch.float64)
    y = torch.full_like(r, float(target))
    with torch.no_grad():
        values = loss.program_.evaluate(y, y + r, _coefficients(loss))
        return torch.broadcast_to(values, y.shape).numpy()


def _as_axes(axes, n):
    if axes is None:
        _, axes = _pyplot().subplots(1, n, figsize=(5.5 * n, 4.2), squeeze=False)
    axes = np.asarray(axes, dtype=object).ravel()
    if len(axes) != n:
        raise ValueError(f"axes must hold {n} Axes for these losses, got {len(axes)}.")
    return axes


def _scaled(panels, normalize):
    """Each panel's curve less its minimum, all divided by the largest span (one scale per loss), if ``normalize``."""
    if not normalize:
        return panels
    shifted = [values - np.nanmin(values) for values in panels]
    span = max(float(np.nanmax(values)) for values in shifted)
    return [values / (span if span > 0 else 1.0) for values in shifted]


def plot_loss_shape(losses, axes=None, labels=None, target=0.0, normalize=True):
    """The shape of learned losses, with the usual loss for reference.

    A program is applied element-wise and summed over the classes, so a
    classification loss is one function of the target ``y`` (1 for the true
    class, 0 for the others) and the predicted probability ``yhat`` of a
    class. Two panels draw it: the term of the true class against its
    probability ``p`` (left) and the term of a false class against its
    probability ``q`` (right). A sample's loss is the left curve at its true
    class's ``p`` plus the right curve summed over the other classes (for a
    binary net, one other class with ``q = 1 - p``). Cross-entropy, ``-log p``
    for the true class and 0 for a false one, is drawn dashed. For
    regression losses one panel draws the loss against the residual
    ``yhat - y`` with ``y = target``, and squared error is the reference.
    Losses are evaluated through their programs and coefficients.

    Parameters
    ----------
    losses : SymbolicLoss, sequence of SymbolicLoss, or fitted LossSearchCV
        What to plot; a search contributes its ``best_loss_``. All must be
        classification losses or all regression losses.
    axes : matplotlib Axes or sequence of Axes, optional
        Where to draw: two Axes for classification losses (true class, false
        class), one for regression losses. A new figure by default.
    labels : sequence of str, optional
        Legend labels, one per loss; the infix formulas by default.
    target : float, default=0.0
        The target ``y`` at which regression losses are drawn.
    normalize : bool, default=True
        Shift each curve to a minimum of 0 and divide a loss's curves (both
        panels, the reference's too) by their largest span: losses of very
        different magnitudes share one axis and their shapes compare (an
        offset and a positive scale change the step size, not the shape),
        while the true and false class terms of one loss keep their relative
        size. False draws the raw values.

    Returns
    -------
    ndarray of matplotlib Axes
        The Axes drawn on, two for classification and one for regression,
        each with one line per loss, then the dashed reference line.
    """
    losses = _as_losses(losses)
    if labels is None:
        labels = [_short(loss.infix(precision=3)) for loss in losses]
    labels = list(labels)
    if len(labels) != len(losses):
        raise ValueError(f"labels has {len(labels)} entries for {len(losses)} losses.")
    regression = {loss.task == "regression" for loss in losses}
    if len(regression) > 1:
        raise ValueError("cannot plot regression and classification losses on the same axes.")
    regression = regression.pop()
    axes = _as_axes(axes, 1 if regression else 2)

    if regression:
        x = np.linspace(-3.0, 3.0, 301)
        reference, reference_label = SymbolicLoss(SQUARED_ERROR, task="regression"), "squared error"
        axes[0].set_xlabel(f"residual  yhat \u2212 y   (y = {target:g})")
        axes[0].set_title("Loss shape (regression)")
    else:
        x = np.linspace(1e-3, 1 - 1e-3, 400)
        reference, reference_label = SymbolicLoss(CROSS_ENTROPY), "cross-entropy"
        axes[0].set_xlabel("predicted probability p of the true class")
        axes[0].set_title("The true class's term (y = 1)")
        axes[1].set_xlabel("predicted probability q of a false class")
        axes[1].set_title("A false class's term (y = 0)")
    for loss, label, style in [*zip(losses, labels, [()] * len(losses)), (reference, reference_label, ("k--",))]:
        if regression:
            panels = [_per_sample_regression(loss, x, target)]
        else:
            panels = [_class_terms(loss, x, 1), _class_terms(loss, x, 0)]
        for ax, values in zip(axes, _scaled(panels, normalize)):
            ax.plot(x, values, *style, label=label)
    for ax in axes:
        if normalize:  # a flat term (cross-entropy's for a false class) shows as zero on the common scale
            ax.set_ylim(-0.05, 1.05)
        ax.set_ylabel("loss \u2212 its minimum, scaled" if normalize else "loss")
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize="small")
    return axes


def _pareto_front(lengths, scores):
    """Indices of the points no shorter-or-equal program beats, by increasing length."""
    order = np.lexsort((-scores, lengths))
    front, best = [], -np.inf
    for i in order:
        if scores[i] > best:
            front.append(i)
            best = scores[i]
    return np.array(front, dtype=int)


def _common_rung(results):
    """The highest rung of budget that every program with a finite score reached."""
    reached = np.asarray(results["iter"])[np.isfinite(np.asarray(results["mean_test_score"], dtype=float))]
    return int(reached.min()) if len(reached) else 0


def plot_pareto(search, ax=None, annotate=True):
    """Mean CV score against program length, with the Pareto front, every program at one budget.

    Every program the search trained with a finite score is a grey point,
    at the highest rung of budget every such program reached (rung 0, the
    genetic search's budget, unless all went further), so the finalists'
    longer trainings are not set beside the others' shorter ones
    (``cv_results_["mean_test_score"]`` holds each program's score at its own
    highest rung; ``iterI_mean_test_score`` at rung I). A program that failed
    at that rung (at chance level after a short screening, say) is left out.
    The front (the best score reached by programs of each length or less) is
    drawn as a step line through highlighted points. The legend and the y
    label name the budget.

    Parameters
    ----------
    search : LossSearchCV
        A fitted search (its ``cv_results_`` is plotted).
    ax : matplotlib Axes, optional
        Where to draw; a new figure by default.
    annotate : bool, default=True
        Label the front's points with their infix formulas.

    Returns
    -------
    matplotlib Axes
        ``ax.collections[0]`` holds every point, ``ax.collections[1]`` the
        front's points, ``ax.lines[0]`` the front's step line.
    """
    results = _fitted(search, "cv_results_")
    rung = _common_rung(results)
    budgets = getattr(search, "n_resources_", [])
    budget = f"{budgets[rung]} training steps" if rung < len(budgets) else f"rung {rung}"
    lengths = np.asarray(results["length"], dtype=float)
    scores = np.asarray(results[f"iter{rung}_mean_test_score"], dtype=float)
    finite = np.isfinite(scores)
    lengths, scores = lengths[finite], scores[finite]
    infix = np.asarray(results["infix"])[finite]
    ax = _axes(ax)
    ax.scatter(lengths, scores, s=18, color="0.6", alpha=0.7, label=f"programs at {budget} ({finite.sum()})")
    front = _pareto_front(lengths, scores)
    fx, fy = lengths[front], scores[front]
    if len(front):
        # Extend the step to the longest program: the front holds to the right.
        ax.step(np.append(fx, lengths.max()), np.append(fy, fy[-1]), where="post", color="C3", alpha=0.8)
    ax.scatter(fx, fy, s=40, color="C3", zorder=3, label="Pareto front")
    if annotate:
        # Alternate below and above the points so that neighbours do not overlap; labels of
        # points in the right half run leftwards, so none leaves the axes.
        middle = (lengths.min() + lengths.max()) / 2
        for k, (x, y, text) in enumerate(zip(fx, fy, infix[front])):
            right = x > middle
            ax.annotate(_short(str(text), 32), (x, y), textcoords="offset points",
                        xytext=(-5 if right else 5, -11 if k % 2 == 0 else 5), ha="right" if right else "left",
                        fontsize="x-small", color="C3")
    ax.set_xlabel("program length (nodes)")
    ax.set_ylabel(f"mean CV score at {budget}")
    ax.set_title("Score against complexity")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", loc="lower right")
    return ax


def results_frame(search):
    """The hall of fame as a pandas DataFrame, best first.

    Columns: ``program`` (prefix), ``infix``, ``sympy`` (the formula as sympy
    prints it; ``yhat`` is positive for classification), ``length`` (the
    complexity, in nodes), ``depth``, ``mean_test_score``, ``std_test_score``
    and ``generation`` (when the program was first trained). The index is the
    rank, from 1.
    """
    try:
        import pandas as pd
    except ImportError as exc:
        raise ImportError("results_frame needs pandas, which is not installed: pip install pandas") from exc
    hall = _fitted(search, "hall_of_fame_")
    task = search.best_loss_.task if hasattr(search, "best_loss_") else "multiclass"
    rows = []
    for entry in hall:
        program = str(entry["program"])
        rows.append({
            "program": program,
            "infix": str(entry["infix"]),
            "sympy": str(SymbolicLoss(program, task=task).sympy()),
            "length": int(entry["length"]),
            "depth": int(entry["depth"]),
            "mean_test_score": float(entry["mean_test_score"]),
            "std_test_score": float(entry["std_test_score"]),
            "generation": int(entry["generation"]),
        })
    columns = ["program", "infix", "sympy", "length", "depth", "mean_test_score", "std_test_score", "generation"]
    frame = pd.DataFrame(rows, columns=columns)
    frame.index = pd.RangeIndex(1, len(frame) + 1, name="rank")
    return frame
