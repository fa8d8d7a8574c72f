"""Train one candidate loss on one cross-validation fold and score it.

This is the search's hot path. When the net's configuration allows it, the
candidate is trained by a tight loop over in-memory tensors that honours the
module (and ``module__*``), optimizer (``lr``, ``optimizer__*``),
``batch_size``, epochs, ``iterator_train__shuffle`` and ``device``, because
skorch initialises all of those itself; the per-batch machinery (callbacks,
history, data loaders) is skipped. Anything else falls back to a real
``net.fit``. Either way every candidate on a fold starts from the same seeded
initialisation and sees the same batch order (common random numbers), so
scores differ by the loss alone.
"""

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.base import clone
from skorch import NeuralNet, NeuralNetBinaryClassifier, NeuralNetClassifier, NeuralNetRegressor

__all__ = ["FoldResult", "Budget", "fit_candidate", "evaluate_candidate", "fast_path_blockers"]

#: skorch's own classes: a net whose training hooks all come from one of these
#: is trained the same way by the fast path.
_SKORCH_CLASSES = (NeuralNetBinaryClassifier, NeuralNetClassifier, NeuralNetRegressor, NeuralNet)
_TRAINING_HOOKS = (
    "fit", "partial_fit", "fit_loop", "run_single_epoch", "train_step", "train_step_single",
    "get_loss", "infer", "get_iterator", "get_dataset", "on_batch_begin", "on_batch_end",
    "on_epoch_begin", "on_epoch_end", "on_train_begin", "on_train_end", "notify",
)


@dataclass(frozen=True)
class Budget:
    """How long a candidate trains: ``max_epochs`` epochs, or ``max_steps`` optimizer steps."""

    max_epochs: int
    max_steps: int | None = None


@dataclass
class FoldResult:
    """What training one candidate on one fold gave."""

    score: float
    fit_time: float
    status: str  # "ok", "nan" (loss went non-finite) or "error"
    message: str = ""


def fast_path_blockers(net):
    """Reasons the fast path cannot reproduce ``net.fit``; empty when it can."""
    reasons = []
    base = next((c for c in _SKORCH_CLASSES if isinstance(net, c)), None)
    if base is None:
        return [f"{type(net).__name__} is not a skorch net"]
    for hook in _TRAINING_HOOKS:
        if getattr(type(net), hook, None) is not getattr(base, hook, None):
            reasons.append(f"overrides {hook}")
    if net.callbacks:
        reasons.append("has callbacks")
    params = net.get_params(deep=False)
    extra_iter = [k for k in params if k.startswith("iterator_train__") and k != "iterator_train__shuffle"]
    if extra_iter:
        reasons.append(f"sets {', '.join(sorted(extra_iter))}")
    if net.iterator_train is not torch.utils.data.DataLoader:
        reasons.append("uses a custom iterator_train")
    if getattr(net, "compile", False):
        reasons.append("compiles the module")
    if isinstance(net.optimizer, type) and issubclass(net.optimizer, torch.optim.LBFGS):
        reasons.append("uses LBFGS, which needs a closure")
    return reasons


def _candidate_net(net, loss, budget, n_train):
    """A clone of ``net`` set up to train with ``loss`` for the search budget."""
    epochs = budget.max_epochs
    if budget.max_steps is not None:
        batch = n_train if net.batch_size == -1 else net.batch_size
        epochs = math.ceil(budget.max_steps / math.ceil(n_train / batch))
    # skorch refuses set_params(criterion=<module instance>) on an unfitted net,
    # so the clone is built through the constructor instead.
    params = clone(net).get_params(deep=False)
    params.update(criterion=loss, train_split=None, max_epochs=epochs, verbose=0)
    return type(net)(**params)


def fit_candidate(net, loss, X, y, budget, seed, fast=True):
    """Train a clone of ``net`` with ``loss`` on ``(X, y)`` from a seeded start.

    Returns ``(net_, finite)``: the trained skorch net and whether every
    training loss was finite. With ``fast=True`` the tight loop is used; the
    caller decides whether the net allows it (:func:`fast_path_blockers`).
    """
    net_ = _candidate_net(net, loss, budget, len(X))
    torch.manual_seed(seed)
    if not fast:
        net_.fit(X, y)
        losses = net_.history[:, "batches", :, "train_loss"]
        return net_, all(math.isfinite(v) for epoch in losses for v in epoch)
    net_.initialize()
    return net_, _train_loop(net_, X, y, budget, seed)


def _train_loop(net_, X, y, budget, seed):
    device = net_.device
    Xt = torch.as_tensor(X, device=device)
    yt = torch.as_tensor(y, device=device)
    n = len(Xt)
    batch = n if net_.batch_size == -1 else net_.batch_size
    shuffle = net_.get_params_for("iterator_train").get("shuffle", False)
    generator = torch.Generator().manual_seed(seed)
    module, optimizer, criterion = net_.module_, net_.optimizer_, net_.criterion_
    max_steps = budget.max_steps if budget.max_steps is not None else math.inf
    module.train()
    criterion.train()
    step = 0
    for _ in range(net_.max_epochs):
        order = torch.randperm(n, generator=generator).to(device) if shuffle else None
        for start in range(0, n, batch):
            if step >= max_steps:
                return True
            if order is None:
                xb, yb = Xt[start:start + batch], yt[start:start + batch]
            else:
                idx = order[start:start + batch]
                xb, yb = Xt[idx], yt[idx]
            optimizer.zero_grad(set_to_none=True)
            loss = criterion(net_.infer(xb), yb)
            if not torch.isfinite(loss):
                return False
            loss.backward()
            optimizer.step()
            step += 1
    return True


def evaluate_candidate(net, loss, X, y, train, test, budget, seed, scorer, fast=True, error_score=np.nan):
    """Train ``loss`` on fold ``train`` and score it on ``test``.

    A loss that turns non-finite, or whose training or scoring fails, gets
    status ``"nan"`` or ``"error"`` and ``error_score`` instead of a score;
    ``error_score="raise"`` re-raises failures (not non-finite losses).
    """
    start = time.perf_counter()
    threads = torch.get_num_threads()
    # One thread per candidate: results then do not depend on n_jobs, and
    # candidates run in parallel instead of their small matrix products.
    torch.set_num_threads(1)
    try:
        net_, finite = fit_candidate(net, loss, X[train], y[train], budget, seed, fast)
        if not finite:
            return FoldResult(_fail_score(error_score), time.perf_counter() - start, "nan",
                              "the training loss became NaN or infinite")
        score = float(scorer(net_, X[test], y[test]))
        if not math.isfinite(score):
            return FoldResult(_fail_score(error_score), time.perf_counter() - start, "nan",
                              "the score is not finite")
        return FoldResult(score, time.perf_counter() - start, "ok")
    except Exception as exc:
        if error_score == "raise":
            raise
        return FoldResult(_fail_score(error_score), time.perf_counter() - start, "error",
                          f"{type(exc).__name__}: {exc}")
    finally:
        torch.set_num_threads(threads)


def _fail_score(error_score):
    return np.nan if error_score == "raise" else float(error_score)
