"""Plots and tables of a loss search and of learned losses.

matplotlib and pandas are optional: they are imported when a function needs
them. Every plotting function draws on the ``ax`` it is given (or on a new
figure's axes) and returns the Axes; none calls ``plt.show``.
"""

from numbers import Integral

import numpy as np
import torch

from .loss import CROSS_ENTROPY, SQUARED_ERROR, SymbolicLoss

__all__ = ["plot_progress", "plot_loss_shape", "plot_pareto", "results_frame"]



def _axes(ax):
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            "metaloss_sk.plotting needs matplotlib, which is not installed: pip install matplotlib"
        ) from exc
    if ax is None:
        _, ax = plt.subplots()
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


def _per_sample_classification(loss, p, n_classes):
    """Per-sample loss when the true class gets ``p`` and the others share ``1 - p``."""
    k = 2 if loss.task == "binary" else int(n_classes)
    p = torch.as_tensor(p, dtype=torch.float64)
    yhat = ((1 - p) / (k - 1)).unsqueeze(1).repeat(1, k)
    yhat[:, 0] = p
    y = torch.zeros_like(yhat)
    y[:, 0] = 1.0
    with torch.no_grad():
        values = loss.program_.evaluate(y, yhat, _coefficients(loss))
        return torch.broadcast_to(values, y.shape).sum(-1).numpy()


def _per_sample_regression(loss, residual, target):
    r = torch.as_tensor(residual, dtype=torch.float64)
    y = torch.full_like(r, float(target))
    with torch.no_grad():
        values = loss.program_.evaluate(y, y + r, _coefficients(loss))
        return torch.broadcast_to(values, y.shape).numpy()


def plot_loss_shape(losses, ax=None, n_classes=10, labels=None, target=0.0, normalize=True):
    """The shape of learned losses, with a conventional loss for reference.

    For classification losses the curve is the per-sample loss (the program
    summed over classes) when the true class gets predicted probability ``p``
    and the other ``n_classes - 1`` classes share ``1 - p`` evenly (binary
    losses always have two classes); cross-entropy, ``-log(p)``, is drawn
    dashed for reference. For regression losses the curve is the loss against
    the residual ``yhat - y`` with ``y = target``, and squared error is the
    reference. Losses are evaluated through their programs and coefficients.

    Parameters
    ----------
    losses : SymbolicLoss, sequence of SymbolicLoss, or fitted LossSearchCV
        What to plot; a search contributes its ``best_loss_``. All must be
        classification losses or all regression losses.
    ax : matplotlib Axes, optional
        Where to draw; a new figure by default.
    n_classes : int, default=10
        Number of classes assumed for multiclass losses.
    labels : sequence of str, optional
        Legend labels, one per loss; the infix formulas by default.
    target : float, default=0.0
        The target ``y`` at which regression losses are drawn.
    normalize : bool, default=True
        Scale every curve, the reference too, to [0, 1] over the plotted range
        (min-max): losses of very different magnitudes share one axis and
        their shapes compare (an offset and a positive scale change the step
        size, not the shape). False draws the raw values.

    Returns
    -------
    matplotlib Axes
        One line per loss, then the dashed reference line.
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
    if not isinstance(n_classes, Integral) or isinstance(n_classes, bool) or n_classes < 2:
        raise ValueError(f"n_classes must be an integer >= 2, got {n_classes!r}.")
    ax = _axes(ax)

    def draw(values, *style, label):
        if normalize:
            low, high = np.nanmin(values), np.nanmax(values)
            values = (values - low) / (high - low if high > low else 1.0)
        ax.plot(x, values, *style, label=label)

    if regression.pop():
        x = np.linspace(-3.0, 3.0, 301)
        for loss, label in zip(losses, labels):
            draw(_per_sample_regression(loss, x, target), label=label)
        reference = SymbolicLoss(SQUARED_ERROR, task="regression")
        draw(_per_sample_regression(reference, x, target), "k--", label="squared error")
        ax.set_xlabel(f"residual  yhat \u2212 y   (y = {target:g})")
        ax.set_title("Learned loss shape (regression)")
    else:
        x = np.linspace(1e-3, 1 - 1e-3, 400)
        for loss, label in zip(losses, labels):
            draw(_per_sample_classification(loss, x, n_classes), label=label)
        reference = SymbolicLoss(CROSS_ENTROPY)
        draw(_per_sample_classification(reference, x, n_classes), "k--", label="cross-entropy")
        classes = sorted({2 if loss.task == "binary" else n_classes for loss in losses})
        ax.set_xlabel("predicted probability p of the true class")
        ax.set_title(f"Learned loss shape ({' / '.join(map(str, classes))} classes; "
                     "the others share 1 \u2212 p)", fontsize="medium")
    ax.set_ylabel("per-sample loss, scaled to [0, 1]" if normalize else "per-sample loss")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return ax


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
