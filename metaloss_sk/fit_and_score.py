"""Score candidate losses on one cross-validation fold: the search's hot path.

:func:`fit_and_score` is what every parallel task runs: for a group of
losses and one fold it learns their coefficients first if a local search is
set (:mod:`metaloss_sk.local_search`), trains a net with each (in lockstep,
:mod:`metaloss_sk.training`), and scores it on the fold's held-out rows. A
candidate fails, with its reason recorded and ``error_score`` as its score,
when its loss or score turns non-finite or when it raises; it also fails, its
score kept, when it scores no better than chance (a constant prediction from
the fold's training targets, scored the same way): a loss that trains nothing
must never be selected.

Regression targets are standardised on each fold's training rows (as
``TransformedTargetRegressor`` with a ``StandardScaler`` would), and
predictions mapped back before scoring, so scores are in the user's units.
"""

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.metrics import r2_score

from ._rows import placeholder, take
from .local_search import local_search_losses
from .records import OK, Outcome, Reported
from .training import score

__all__ = ["FitAndScore", "FoldResult", "fit_and_score", "single_thread", "standardize", "local_search_on_all_rows"]


@dataclass(frozen=True)
class FitAndScore:
    """What scoring a candidate on a fold means; sent to every parallel task.

    Attributes
    ----------
    trainer : Trainer
        The net and its training loop.
    task : str
        "multiclass", "binary" or "regression".
    scorer : callable
        ``scorer(net, X, y)``, higher is better: the score that selects.
    other_scorers : tuple of (str, callable)
        Every metric of a multi-metric ``scoring``, by name, recorded beside
        the score (the selecting one among them is not scored twice).
    error_score : float or "raise"
        The score of a failed candidate; "raise" re-raises errors (a loss that
        merely turns non-finite is still recorded, never raised).
    standardize : bool
        Standardise regression targets on each fold's training rows.
    local_search : LocalSearch or None
        Learn each loss's coefficients on the fold's training rows first.
    local_search_budget : Budget or None
        How long the local search's checkpoints train (the fitness budget).
    gradient_bound : float or None
        The local search keeps no checkpoint whose loss is steeper than this
        (see :func:`~metaloss_sk.filters.gradient_violations`).
    """

    trainer: object
    task: str
    scorer: object
    other_scorers: tuple = ()
    error_score: object = np.nan
    standardize: bool = False
    local_search: object = None
    local_search_budget: object = None
    gradient_bound: float | None = None


@dataclass
class FoldResult(Reported):
    """What training one candidate on one fold gave."""

    score: float
    fit_time: float = 0.0
    outcome: Outcome = OK  # else "nan" (loss or score not finite), "chance" (no better than chance) or "error"
    other_scores: dict = field(default_factory=dict)  # the other metrics, by name, where scored
    coefficients: list | None = None  # learned by the local search, if it ran
    meta_nan_steps: int = 0  # local search steps skipped because the meta objective was not finite
    local_search_time: float = 0.0  # the part of fit_time spent in the local search


class _Rescaled(RegressorMixin, BaseEstimator):
    """A net trained on standardised targets, predicting in the targets' own units (for scorers)."""

    def __init__(self, net, mean, scale):
        self.net, self.mean, self.scale = net, mean, scale

    def predict(self, X):
        return self.net.predict(X) * self.scale + self.mean

    def score(self, X, y):
        return r2_score(y, self.predict(X))


def standardize(y):
    """``(mean, scale)`` per target column of ``y`` (scale 1 where a column is constant)."""
    mean, scale = y.mean(axis=0), y.std(axis=0)
    return mean.astype(y.dtype), np.where(scale > 0, scale, 1.0).astype(y.dtype)


def fit_and_score(evaluation, losses, X, y, train, test, budget, seed, params=None):
    """Train each loss on fold ``train`` and score it on ``test``.

    Parameters
    ----------
    evaluation : FitAndScore
    losses : list of SymbolicLoss
        Trained together, in lockstep; a loss's result does not depend on the others.
    X, y : arrays
        All the search's rows; ``train`` and ``test`` index the fold.
    budget : Budget
    seed : int
        The initialisation and batch order of every net.
    params : dict, optional
        Settings of the net to override (``{"lr": 0.1}``, say).

    Returns
    -------
    list of FoldResult
    """
    with single_thread():
        return _evaluate(evaluation, losses, X, y, train, test, budget, seed, params or {})


@contextmanager
def single_thread():
    """Run the enclosed torch work on one intra-op thread, then restore the caller's setting.

    Every piece of the search's torch work runs under it (training, local
    search, the filters): tasks run in parallel instead of their small matrix
    products, no task competes with the others for cores, and results do not
    depend on ``n_jobs``.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _evaluate(evaluation, losses, X, y, train, test, budget, seed, params):
    start = time.perf_counter()
    failed_score = np.nan if evaluation.error_score == "raise" else float(evaluation.error_score)
    results = [None] * len(losses)
    nan_steps = [0] * len(losses)
    y_train, wrap = y[train], None
    if evaluation.standardize:
        mean, scale = standardize(y_train)
        y_train = (y_train - mean) / scale

        def wrap(net_):
            return _Rescaled(net_, mean, scale)
    local_search_time = 0.0
    if evaluation.local_search is not None:
        refined = []
        found = local_search_losses(evaluation.trainer, evaluation.scorer, losses, take(X, train), y_train, seed,
                              evaluation.local_search, evaluation.local_search_budget, evaluation.gradient_bound)
        for k, result in enumerate(found):
            if isinstance(result, Exception):
                if evaluation.error_score == "raise":
                    raise result
                results[k] = FoldResult(failed_score, outcome=Outcome(
                    "error", f"local search: {type(result).__name__}: {result}"))
                refined.append(losses[k])
            else:
                refined.append(result.loss)
                nan_steps[k] = result.n_nan_steps
        losses = refined
        local_search_time = (time.perf_counter() - start) / len(losses)
    todo = [k for k in range(len(losses)) if results[k] is None]
    X_train, X_test = take(X, train), take(X, test)
    chance = _chance(evaluation, X_train, y[train], X_test, y[test])
    fitted = evaluation.trainer.fit([losses[k] for k in todo], X_train, y_train, budget, seed, **params)
    for k, (net_, failure) in zip(todo, fitted):
        results[k] = _score(evaluation, net_ if wrap is None or net_ is None else wrap(net_), failure,
                            X_test, y[test], chance, failed_score)
    elapsed = (time.perf_counter() - start) / len(losses)
    for k, result in enumerate(results):
        result.fit_time = elapsed
        result.local_search_time = local_search_time
        result.meta_nan_steps = nan_steps[k]
        if evaluation.local_search is not None and losses[k].coefficients is not None:
            result.coefficients = [float(c) for c in losses[k].coefficients]
    return results


def _score(evaluation, net_, failure, X, y, chance, failed_score):
    if isinstance(failure, Exception):
        if evaluation.error_score == "raise":
            raise failure
        return FoldResult(failed_score, outcome=Outcome("error", f"{type(failure).__name__}: {failure}"))
    if failure is not None:
        return FoldResult(failed_score, outcome=Outcome("nan" if "NaN" in failure else "error", failure))
    try:
        value = score(evaluation.scorer, net_, X, y)
    except Exception as exc:
        if evaluation.error_score == "raise":
            raise
        return FoldResult(failed_score, outcome=Outcome("error", f"{type(exc).__name__}: {exc}"))
    if not math.isfinite(value):
        return FoldResult(failed_score, outcome=Outcome("nan", "the score is not finite"))
    others = {name: value if scorer is evaluation.scorer else _other_score(scorer, net_, X, y)
              for name, scorer in evaluation.other_scorers}
    if value <= chance:  # a failure, but its score is kept: it tells how far from learning the net was
        return FoldResult(value, other_scores=others,
                          outcome=Outcome("chance", f"score {value:.4g} is no better than chance ({chance:.4g})"))
    return FoldResult(value, other_scores=others)


def _other_score(scorer, net_, X, y):
    """A metric that only informs: NaN where it cannot be computed."""
    try:
        return score(scorer, net_, X, y)
    except Exception:  # noqa: BLE001 - recorded as missing; the selecting score decides failures
        return math.nan


class _AnyRows:
    """A constant predictor that takes any rows (an array or skorch's dict): it looks at their number only."""

    def fit(self, X, y):
        return super().fit(placeholder(X), y)

    def predict(self, X):
        return super().predict(placeholder(X))


class _ConstantClassifier(_AnyRows, DummyClassifier):
    def predict_proba(self, X):
        return super().predict_proba(placeholder(X))


class _ConstantRegressor(_AnyRows, DummyRegressor):
    pass


def _chance(evaluation, X_train, y_train, X_test, y_test):
    """The score of a constant prediction fitted to the training targets (-inf if the scorer cannot score it)."""
    dummy = _ConstantRegressor() if evaluation.task == "regression" else _ConstantClassifier(strategy="prior")
    try:
        with np.errstate(all="ignore"):
            value = float(evaluation.scorer(dummy.fit(X_train, y_train), X_test, y_test))
    except Exception:  # noqa: BLE001 - a scorer made for nets only: no chance level to compare with
        return -math.inf
    return value if math.isfinite(value) else -math.inf


def local_search_on_all_rows(evaluation, loss, X, y, seed):
    """``loss`` with coefficients learned on all of ``(X, y)`` (targets standardised as on a fold)."""
    if evaluation.standardize:
        mean, scale = standardize(y)
        y = (y - mean) / scale
    (result,) = local_search_losses(evaluation.trainer, evaluation.scorer, [loss], X, y, seed, evaluation.local_search,
                              evaluation.local_search_budget, evaluation.gradient_bound)
    if isinstance(result, Exception):
        raise result
    return result.loss
