"""EvoMAL's local search for a skorch net: its settings, and running it on a fold's rows.

:class:`LocalSearch` is what ``LossSearchCV(local_search=...)`` takes; its
parameters route through scikit-learn's ``get_params``/``set_params``, so a
grid can tune ``local_search__meta_steps``. :func:`local_search_losses` learns the
coefficients of several losses on the training rows of one fold: it holds out
``valid_fraction`` of them for the meta objective and the checkpoints, builds
fresh modules the way the net does, and validates each checkpoint by training
the net (through :class:`~metaloss_sk.training.Trainer`) and scoring it on the
held-out rows: every checkpoint for a fraction of the fitness budget, the
best of them against the start for the whole of it. The maths is in
:mod:`metaloss_sk.unrolled`.
"""

from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator

from ._rows import n_rows, take, to_tensors
from ._validation import Interval, Options, check
from .filters import gradient_violations
from .training import build_net, score, shared_terminals
from .unrolled import SETTINGS, learn_coefficients_group

__all__ = ["LocalSearch", "local_search_losses"]


class LocalSearch(BaseEstimator):
    """Settings of EvoMAL's local search, which learns one coefficient per edge of a loss program.

    Each learned coefficient scales one node's value on its way to its parent.
    They are meta-learned by unrolled differentiation: a differentiable step
    of the net's own optimizer with the loss, the task loss (cross-entropy or
    squared error) on held-out rows after it, and Adam on the coefficients.
    The search is validated: the starting coefficients and ``n_checkpoints``
    later ones train the net and are scored on the held-out rows, and the
    best is kept only if it beats the start at the fitness budget, so a local
    search never returns a loss that does worse there than the one it
    started from.

    Parameters
    ----------
    candidates : {"all", "winners"}, default="all"
        Which programs of a :class:`~metaloss_sk.LossSearchCV` search are
        refined inside ``fit``: every candidate before its fitness is measured
        ("all", EvoMAL proper), or the ``top_k`` best after the genetic search
        ("winners", as :meth:`~metaloss_sk.LossSearchCV.fit_refine` does).
    meta_steps : int, default=250
        Meta steps of each local search.
    meta_lr : float, default=1e-3
        Adam's learning rate on the coefficients.
    unroll : int, default=1
        Differentiable training steps per meta step.
    top_k : int, default=3
        Programs refined with ``candidates="winners"`` and by ``fit_refine``.
    valid_fraction : float, default=0.2
        Share of a fold's training rows held out for the meta objective and
        the checkpoints; the fold's scoring rows are never seen.
    n_checkpoints : int, default=10
        Validated checkpoints after the start (EvoMAL's reference: one every
        tenth of the meta steps). 0 returns the last coefficients unvalidated.
    screen_factor : int or None, default=3
        Checkpoints are screened: each trains for the fitness budget divided
        by ``screen_factor``, and only when the best of them is not the start
        do it and the start train for the whole budget, the checkpoint kept if
        it scores strictly higher there. None trains every checkpoint for the
        whole budget (the reference's way; 1.6 times the cost on digits).

    Examples
    --------
    >>> from metaloss_sk import LocalSearch
    >>> LocalSearch(meta_steps=100).get_params()["meta_steps"]
    100
    """

    _parameter_constraints = {
        "candidates": [Options(("all", "winners"))],
        "top_k": [Interval(Integral, 1)],
        "valid_fraction": [Interval(Real, 0, 1, closed="neither")],
        "screen_factor": [Interval(Integral, 2), None],
        **{k: v for k, v in SETTINGS.items() if k not in ("batch_size", "checkpoints")},
        "n_checkpoints": SETTINGS["checkpoints"],
    }

    def __init__(self, candidates="all", meta_steps=250, meta_lr=1e-3, unroll=1, top_k=3, valid_fraction=0.2,
                 n_checkpoints=10, screen_factor=3):
        self.candidates = candidates
        self.meta_steps = meta_steps
        self.meta_lr = meta_lr
        self.unroll = unroll
        self.top_k = top_k
        self.valid_fraction = valid_fraction
        self.n_checkpoints = n_checkpoints
        self.screen_factor = screen_factor

    def check(self):
        """Raise ``ValueError`` naming the first setting that is out of range."""
        check(self.get_params(), self._parameter_constraints)
        return self


def local_search_losses(trainer, scorer, losses, X, y, seed, settings, budget, gradient_bound=None):
    """Learn each loss's coefficients on ``(X, y)``, in lockstep where they share their terminals.

    Parameters
    ----------
    trainer : Trainer
        The net and how it trains; its module, optimizer and batch size are
        those of the unrolled steps, and it trains the checkpoints.
    scorer : callable
        Scores a checkpoint's net on the held-out rows (higher is better).
    losses : list of SymbolicLoss
    X, y : arrays
        A fold's training rows; ``settings.valid_fraction`` of them are held out.
    seed : int
        Seeds the split, the batches, the networks and the starting coefficients.
    settings : LocalSearch
    budget : Budget
        How long the best checkpoint and the start train (the fitness
        budget); the others train ``settings.screen_factor`` times shorter.
    gradient_bound : float or None
        A checkpoint whose loss fails :func:`~metaloss_sk.filters.gradient_violations`
        at this bound is never kept.

    Returns
    -------
    list
        Per loss, a :class:`~metaloss_sk.unrolled.LearnedCoefficients` or the exception
        its program raised. Each loss gets the split, batches and networks it
        would get alone.
    """
    rng = np.random.RandomState(seed)
    order = rng.permutation(n_rows(X))
    n_valid = max(1, int(round(settings.valid_fraction * n_rows(X))))
    valid, train = order[:n_valid], order[n_valid:]
    net = trainer.estimator
    probe = build_net(net, losses[0])
    probe.initialize()
    module_params = probe.get_params_for("module")

    def module_factory():
        return probe.initialized_instance(net.module, module_params)

    def validator(budget):
        def validate(candidates):
            # Coefficients can move a singular point of the program into the outputs' range: such a
            # checkpoint is never kept, whatever it scores.
            unstable = ([None] * len(candidates) if gradient_bound is None
                        else gradient_violations(candidates, gradient_bound))
            stable = [loss for loss, reason in zip(candidates, unstable) if reason is None]
            scores = iter([np.nan if failure is not None else score(scorer, net_, X_valid, y[valid])
                           for net_, failure in trainer.fit(stable, X_train, y[train], budget, seed)]
                          if stable else [])
            return [np.nan if reason is not None else next(scores) for reason in unstable]
        return validate

    X_train, X_valid = take(X, train), take(X, valid)
    validate, confirm = _validators(validator, settings, budget, len(train), net.batch_size)
    data = [to_tensors(X_train), torch.as_tensor(y[train]), to_tensors(X_valid), torch.as_tensor(y[valid])]
    options = dict(optimizer=net.optimizer, optimizer_params={"lr": net.lr, **probe.get_params_for("optimizer")},
                   meta_steps=settings.meta_steps, meta_lr=settings.meta_lr, unroll=settings.unroll,
                   batch_size=len(train) if net.batch_size == -1 else net.batch_size, device=probe.device,
                   validate=validate, checkpoints=settings.n_checkpoints, confirm=confirm)
    state = rng.get_state()
    groups = [list(range(len(losses)))] if shared_terminals(losses) else [[k] for k in range(len(losses))]
    results = [None] * len(losses)
    for group in groups:
        own = np.random.RandomState()
        own.set_state(state)  # every loss continues the same stream, as it would alone
        try:
            found = learn_coefficients_group([losses[k] for k in group], module_factory, *data, random_state=own,
                                             **options)
        except Exception as exc:  # noqa: BLE001 - reported per loss
            found = [exc] * len(group)
        for k, result in zip(group, found):
            if (gradient_bound is not None and not isinstance(result, Exception)
                    and gradient_violations([result.loss], gradient_bound) != [None]):
                result.coefficients = np.ones_like(result.coefficients)  # unvalidated and unstable: the program
            results[k] = result
    return results


def _validators(validator, settings, budget, n_train, batch_size):
    """``(validate, confirm)`` for the checkpoints: screened at ``budget / screen_factor`` and confirmed at it.

    No checkpoints: neither; no screening (or a budget too short to cut): every checkpoint at ``budget``.
    """
    if not settings.n_checkpoints:
        return None, None
    if settings.screen_factor is None:
        return validator(budget), None
    short = budget.shortened(settings.screen_factor, n_train, batch_size)
    if short.max_steps >= budget.steps(n_train, batch_size):
        return validator(budget), None
    return validator(short), validator(budget)
