"""Local search: learning a loss program's coefficients by unrolled differentiation.

EvoMAL turns a program into a parameterised loss with one coefficient per edge
(per node but the root) and meta-learns those coefficients: at every meta step
a freshly initialised network takes ``unroll`` differentiable optimiser steps
on training batches with the learned loss, the task's own loss (cross-entropy,
or MSE for regression) is measured on a validation batch with the updated
weights, and its gradient with respect to the coefficients drives an Adam step.

The inner steps are written out of place with :func:`torch.autograd.grad` and
``create_graph=True``, with the update rules of :mod:`metaloss_sk.optim`.
Several losses learned together run their networks as one batched network
where the module allows it (:mod:`metaloss_sk.batched_unroll`), else in
lockstep.

A one-step lookahead from a fresh network favours whatever makes the first
step longest, which is not what trains best over a whole run (short-horizon
bias). So the coefficients are checkpointed (this package's addition: EvoMAL's
reference returns the coefficients of the last meta step): a
``validate`` function (which trains the network for the fitness budget and
scores it on held-out rows) is called on the starting coefficients and every
so many meta steps, and the best-scoring checkpoint is returned, never one
worse than the start.

This module is the maths, on tensors and modules; :mod:`metaloss_sk.local_search`
runs it for a skorch net.
"""

import math
import time
from dataclasses import dataclass, field
from numbers import Integral, Real

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils import check_random_state

from . import _torch
from ._rows import call_functional, float_dtype, is_dict, n_rows, take, to_tensors
from ._validation import Interval, check, check_coefficients
from .batched_unroll import batched_objectives, unroll_plan
from .loss import SymbolicLoss
from .optim import inner_optimizer
from .program import parse

__all__ = ["LearnedCoefficients", "initial_coefficients", "learn_coefficients", "meta_objective"]

_SEED_HIGH = 2**31 - 1


def initial_coefficients(program, random_state=None):
    """EvoMAL's starting coefficients: ``1 + 0.001 * N(0, 1)``, one per edge.

    Parameters
    ----------
    program : Program, str or SymbolicLoss
        The loss program (a :class:`SymbolicLoss` stands for its program).
    random_state : int, RandomState instance or None, default=None
        Seed or generator, through :func:`sklearn.utils.check_random_state`.

    Returns
    -------
    ndarray of shape (len(program) - 1,)
        One coefficient per node but the root, in prefix order.

    Examples
    --------
    >>> from metaloss_sk.unrolled import initial_coefficients
    >>> initial_coefficients("neg(mul(y, log(yhat)))", random_state=0).round(3)
    array([1.002, 1.   , 1.001, 1.002])
    """
    program = program.program_ if isinstance(program, SymbolicLoss) else parse(program)
    rng = check_random_state(random_state)
    return 1.0 + 0.001 * rng.standard_normal(len(program) - 1)


@dataclass
class LearnedCoefficients:
    """What one local search found.

    Attributes
    ----------
    coefficients : ndarray of shape (n_edges,)
        The learned coefficients: the best-scoring checkpoint when the search
        was validated, else the last finite values.
    initial_coefficients : ndarray of shape (n_edges,)
        Where the search started, rounded to the data's precision.
    meta_losses : list of float
        The meta objective (task loss on the validation batch after the inner
        steps) at every meta step, before that step's update; NaN or inf for
        the steps that were skipped.
    n_nan_steps : int
        Meta steps skipped because the meta objective or its gradient was not
        finite, or reverted because the coefficients stopped being finite.
    time_s : float
        Wall time of the search.
    base_loss : SymbolicLoss
        The loss whose coefficients were learned.
    checkpoints : list of (int, float)
        ``(meta steps taken, validation score)`` of every checkpoint, the
        program itself (0 steps, every coefficient 1) first; empty without
        ``validate``.
    confirmed : list of (int, float)
        With ``confirm``: the program itself and the best checkpoint, scored
        by ``confirm``; empty when the program itself scored best (or no
        checkpoint scored).
    """

    coefficients: np.ndarray
    initial_coefficients: np.ndarray
    meta_losses: list
    n_nan_steps: int
    time_s: float
    base_loss: SymbolicLoss = field(repr=False)
    checkpoints: list = field(default_factory=list)
    confirmed: list = field(default_factory=list)

    @property
    def loss(self):
        """The refined loss: ``base_loss.with_coefficients(coefficients)``."""
        return self.base_loss.with_coefficients(self.coefficients)


def learn_coefficients(loss, module_factory, X_train, y_train, X_valid, y_valid, *,
                       optimizer=torch.optim.SGD, optimizer_params=None, meta_steps=250,
                       meta_lr=1e-3, unroll=1, batch_size=128, coefficients=None,
                       random_state=None, device="cpu", validate=None, checkpoints=10, confirm=None):
    """Meta-learn a loss program's coefficients by unrolled differentiation (EvoMAL).

    Parameters
    ----------
    loss : SymbolicLoss
        The loss to refine; its ``task`` and ``link`` choose the meta objective:
        cross-entropy on the logits (multiclass), binary cross-entropy on the
        single logit (binary), the negative log-likelihood of the outputs
        (``link="probabilities"``) or the mean squared error (regression).
    module_factory : callable
        Returns a freshly initialised :class:`torch.nn.Module`. It is called
        once per meta step, right after seeding torch's random number
        generators (as ``torch.manual_seed`` does) with a seed drawn from
        ``random_state``, so every meta step starts from a new network.
    X_train, y_train : Tensor
        Rows for the inner (training) steps: features (a tensor, or a dict of
        tensors passed to the module as keyword arguments, as skorch does);
        int64 class indices for multiclass, floats for binary and regression.
    X_valid, y_valid : Tensor
        Rows for the meta objective.
    optimizer : torch.optim.Optimizer subclass, default=torch.optim.SGD
        The optimiser the network will be trained with. SGD and Adam (AdamW
        included) are unrolled with their exact update rules; any other class
        falls back, with a warning, to plain SGD at its learning rate.
    optimizer_params : dict, optional
        Its keyword arguments (``lr``, ``momentum``, ``nesterov``,
        ``weight_decay``, ``betas``, ...); torch's defaults for the rest.
    meta_steps : int, default=250
        Number of meta steps.
    meta_lr : float, default=1e-3
        Learning rate of the Adam optimiser on the coefficients.
    unroll : int, default=1
        Differentiable inner steps per meta step.
    batch_size : int, default=128
        Rows per training and validation batch (capped at the rows available).
    coefficients : array-like of shape (len(loss.program_) - 1,), optional
        Starting coefficients; default :func:`initial_coefficients`.
    random_state : int, RandomState instance or None, default=None
        Seeds the starting coefficients, the batches and the network
        initialisations. The global torch RNG is restored afterwards.
    device : str or torch.device, default="cpu"
        Where the network and data live during the search.
    validate : callable or None, default=None
        ``validate(losses) -> scores``: trains with each of a list of losses
        (this loss with candidate coefficients) and returns a score each,
        higher is better (NaN: failed). With it, the coefficients are
        checkpointed: the program itself (every coefficient 1) and
        ``checkpoints`` evenly spaced points of the search are scored, and the
        best is returned (the earliest of equal scores, so never one worse
        than the program; the program itself if no checkpoint scores).
    checkpoints : int, default=10
        Checkpoints after the start, when ``validate`` is given (the last at
        the end of the search).
    confirm : callable or None, default=None
        A second, more faithful ``validate`` (a longer training, say), for when
        ``validate`` is a cheap screen: if the best checkpoint is not the
        program itself, both are scored by ``confirm`` and the checkpoint is
        kept only if it scores strictly higher there.

    Returns
    -------
    LearnedCoefficients
        ``result.loss`` is the refined :class:`SymbolicLoss`. A program of one
        node has no edge, hence no coefficient, and returns at once.

    Notes
    -----
    A meta step whose objective or coefficient gradient is NaN or infinite is
    skipped, and coefficients that stop being finite are reset to their last
    finite values; both are counted in ``n_nan_steps``. A numerically bad loss
    never raises.
    """
    start = time.perf_counter()
    if not isinstance(loss, SymbolicLoss):
        raise ValueError(f"loss must be a SymbolicLoss, got {type(loss).__name__}.")
    if not callable(module_factory):
        raise ValueError("module_factory must be a callable returning a fresh torch.nn.Module.")
    check({"meta_steps": meta_steps, "unroll": unroll, "batch_size": batch_size, "meta_lr": meta_lr,
           "checkpoints": checkpoints}, SETTINGS)
    for name, value in (("validate", validate), ("confirm", confirm)):
        if value is not None and not callable(value):
            raise ValueError(f"{name} must be a callable or None, got {value!r}.")
    device = _torch.torch_device(device)
    _check_data("X_train", "y_train", X_train, y_train)
    _check_data("X_valid", "y_valid", X_valid, y_valid)
    outcome = learn_coefficients_group(
        [loss], module_factory, X_train, y_train, X_valid, y_valid, optimizer=optimizer,
        optimizer_params=optimizer_params, meta_steps=meta_steps,
        meta_lr=meta_lr, unroll=unroll, batch_size=batch_size, coefficients=[coefficients],
        random_state=check_random_state(random_state), device=device, validate=validate, checkpoints=checkpoints,
        confirm=confirm,
    )[0]
    if isinstance(outcome, Exception):
        raise outcome
    outcome.time_s = time.perf_counter() - start
    return outcome


#: The local search's settings and the values each accepts.
SETTINGS = {
    "meta_steps": [Interval(Integral, 1)],
    "unroll": [Interval(Integral, 1)],
    "batch_size": [Interval(Integral, 1)],
    "meta_lr": [Interval(Real, 0, None, closed="neither")],
    "checkpoints": [Interval(Integral, 0)],
}


def learn_coefficients_group(losses, module_factory, X_train, y_train, X_valid, y_valid, *, optimizer,
                             optimizer_params, meta_steps, meta_lr, unroll, batch_size, random_state, device,
                             coefficients=None, validate=None, checkpoints=10, confirm=None):
    """:func:`learn_coefficients` for several losses of one task and link at once.

    The arguments are :func:`learn_coefficients`'s, already checked
    (``random_state`` a RandomState, the data tensors); the losses share
    their task and link. Every loss sees the same batches and, at every meta
    step, the same freshly initialised network, as it would alone: the seeds
    are drawn before each loss's starting coefficients, and each loss draws
    those from a copy of the same generator state. Where the module is made
    of ``nn.Linear`` layers and elementwise operations and the input is one
    2-d tensor, the losses' networks run as one batched network with stacked
    parameters (:mod:`metaloss_sk.batched_unroll`): a loss's result then
    agrees with its lone result to float32 rounding (the batched products
    round otherwise), and is a deterministic function of the group. Other
    modules (convolutions, buffers, dict inputs, tied parameters ...) step
    in lockstep (see :func:`_unrolled_objectives`), each network running the
    operations it would run alone, so a loss's result is bit for bit its
    lone result. Either way the others never change a loss's result beyond
    that rounding (``validate`` and ``confirm`` must score each loss as they
    would alone, too).

    Returns one :class:`LearnedCoefficients` per loss, or the exception its program
    raised (the others go on without it).
    """
    start = time.perf_counter()
    device = _torch.torch_device(device)
    X_train, X_valid = to_tensors(X_train, device), to_tensors(X_valid, device)
    y_train, y_valid = y_train.to(device), y_valid.to(device)
    inner = inner_optimizer(optimizer, optimizer_params)
    rng = random_state
    batch_seed, *module_seeds = rng.randint(_SEED_HIGH, size=meta_steps + 1)
    state = rng.get_state()
    coefficients = coefficients or [None] * len(losses)
    starts = []
    for loss, given in zip(losses, coefficients):
        own = np.random.RandomState()
        own.set_state(state)
        starts.append(initial_coefficients(loss.program_, own) if given is None
                      else check_coefficients(given, loss.program_))

    dtype = float_dtype(X_train)
    css = [torch.tensor(s, dtype=dtype, device=device, requires_grad=True) for s in starts]
    initial = [cs.detach().cpu().double().numpy() for cs in css]  # as rounded to the working precision
    meta_losses = [[] for _ in losses]
    n_nan = [0] * len(losses)
    errors = [None] * len(losses)
    alive = [k for k, s in enumerate(starts) if len(s)]  # a one-node program has no coefficient
    validated = _Checkpoints(losses, validate, confirm)
    if alive:
        every = max(1, meta_steps // checkpoints) if validate is not None and checkpoints else 0
        generator = torch.Generator().manual_seed(int(batch_seed))
        train_idx = _batches(n_rows(X_train), batch_size, meta_steps * unroll, generator, device).unbind()
        valid_idx = _batches(n_rows(X_valid), batch_size, meta_steps, generator, device).unbind()
        meta_optimizers = {k: torch.optim.Adam([css[k]], lr=meta_lr, **_torch.fastest_adam(device)) for k in alive}
        last_finite = {k: css[k].detach().clone() for k in alive}
        task_loss = _task_loss(losses[alive[0]])
        with torch.random.fork_rng(devices=_torch.rng_devices(device)):
            # Every module from the factory has the same structure: look at one.
            first = _torch.fresh_module(module_factory, device)[0]
            tied = _torch.has_tied_parameters(first)
            plan = unroll_plan(first, X_train) if len(alive) > 1 else None  # None: the lockstep loop
            # The first checkpoint is the program itself (every coefficient 1), which is
            # what a refined loss must beat, rather than the perturbed start.
            validated.take(0, {k: np.ones_like(initial[k]) for k in alive})
            for step, seed in enumerate(module_seeds):
                train_batches = [(take(X_train, i), y_train.index_select(0, i))
                                 for i in train_idx[step * unroll:(step + 1) * unroll]]
                valid_batch = (take(X_valid, valid_idx[step]), y_valid.index_select(0, valid_idx[step]))
                _torch.manual_seed(int(seed), device)
                module, params = _torch.fresh_module(module_factory, device)
                objectives = _unrolled_objectives([losses[k] for k in alive], [css[k].unbind() for k in alive],
                                                  module, params, train_batches, valid_batch, inner, task_loss, tied,
                                                  plan)
                for k, objective in zip(alive, objectives):
                    if isinstance(objective, Exception):
                        errors[k] = objective
                _meta_updates([(meta_optimizers[k], css[k], objective, meta_losses[k], last_finite[k], k)
                               for k, objective in zip(alive, objectives)
                               if not isinstance(objective, Exception)], n_nan)
                alive = [k for k in alive if errors[k] is None]
                if not alive:
                    break
                if every and ((step + 1) % every == 0 or step + 1 == meta_steps):
                    validated.take(step + 1, {k: last_finite[k].cpu().double().numpy() for k in alive})
            validated.settle([k for k in range(len(losses)) if errors[k] is None])
    elapsed = time.perf_counter() - start
    results = []
    for k, loss in enumerate(losses):
        if errors[k] is not None:
            results.append(errors[k])
            continue
        best = validated.best(k)
        if best is None:  # not validated: the last coefficients; validated but no checkpoint scored: the program
            best = css[k].detach().cpu().double().numpy() if validate is None else np.ones_like(initial[k])
        results.append(LearnedCoefficients(
            coefficients=best,
            initial_coefficients=initial[k], meta_losses=meta_losses[k], n_nan_steps=n_nan[k], time_s=elapsed,
            base_loss=loss, checkpoints=validated.history[k], confirmed=validated.confirmed[k]))
    return results


class _Checkpoints:
    """Each loss's checkpoints: taken during the search, validated after it, the best confirmed where asked.

    Validating them together after the search trains up to ``checkpoints + 1``
    nets in lockstep instead of one batch of nets per checkpoint; each net is
    trained and scored as it would be alone, so the scores do not change.
    """

    def __init__(self, losses, validate, confirm=None):
        self.losses, self.validate, self.confirm_with = losses, validate, confirm
        self.taken = []  # (step, loss index, coefficients), in the order taken
        self.history = {k: [] for k in range(len(losses))}
        self.confirmed = {k: [] for k in range(len(losses))}
        self._best = {}

    def take(self, step, coefficients):
        if self.validate is not None:
            self.taken.extend((step, k, c) for k, c in coefficients.items())

    def settle(self, keys):
        """Validate the checkpoints of the losses ``keys`` (those that did not fail), then confirm their best."""
        todo = [(step, k, c) for step, k, c in self.taken if k in keys]
        if not todo:
            return
        width = len({step for step, _, _ in todo})  # one loss's checkpoints
        scores = []
        for i in range(0, len(todo), width):
            scores.extend(self.validate([self.losses[k].with_coefficients(c) for _, k, c in todo[i:i + width]]))
        for (step, k, c), score in zip(todo, scores):  # each loss's in the order taken
            score = float(score)
            self.history[k].append((step, score))
            # Strictly better only: of equal scores the earliest (the start first) stays.
            if math.isfinite(score) and (k not in self._best or score > self._best[k][0]):
                self._best[k] = (score, c, step)
        self.confirm(keys)

    def confirm(self, keys):
        """Score the start and the best checkpoint of ``keys`` by ``confirm``; keep it if strictly better."""
        keys = [k for k in keys if k in self._best and self._best[k][2] != 0]
        if self.confirm_with is None or not keys:
            return
        candidates = [self.losses[k].with_coefficients(c)
                      for k in keys for c in (np.ones_like(self._best[k][1]), self._best[k][1])]
        scores = [float(s) for s in self.confirm_with(candidates)]
        for k, start, best in zip(keys, scores[::2], scores[1::2]):
            step = self._best[k][2]
            self.confirmed[k] = [(0, start), (step, best)]
            if not (math.isfinite(best) and (best > start or not math.isfinite(start))):
                self._best[k] = (start, np.ones_like(self._best[k][1]), 0)

    def best(self, k):
        return self._best[k][1] if k in self._best else None


def _meta_updates(items, n_nan):
    """One Adam step on each loss's coefficients, from one backward pass over all their objectives.

    ``items`` holds ``(meta_optimizer, cs, objective, meta_losses, last_finite, k)``;
    ``n_nan[k]`` counts the steps that were not finite (and were skipped or undone).
    """
    differentiable = []
    for meta_optimizer, cs, objective, meta_losses, last_finite, k in items:
        meta_losses.append(objective.item())
        if not math.isfinite(meta_losses[-1]):
            n_nan[k] += 1
        elif objective.requires_grad:  # else the coefficients do not reach the objective
            differentiable.append((meta_optimizer, cs, objective, last_finite, k))
    if not differentiable:
        return
    total = sum(item[2] for item in differentiable)
    grads = torch.autograd.grad(total, [item[1] for item in differentiable], allow_unused=True)
    for (meta_optimizer, cs, _, last_finite, k), grad in zip(differentiable, grads):
        if grad is None:
            continue
        if not torch.isfinite(grad).all():
            n_nan[k] += 1
            continue
        cs.grad = grad
        meta_optimizer.step()
        if torch.isfinite(cs).all():
            last_finite.copy_(cs.detach())
            continue
        with torch.no_grad():
            cs.copy_(last_finite)
        meta_optimizer.state.clear()
        n_nan[k] += 1


def meta_objective(loss, coefficients, module, train_batches, valid_batch, *,
                   optimizer=torch.optim.SGD, optimizer_params=None, params=None):
    """The task loss on a validation batch after unrolled inner steps with the learned loss.

    This is what :func:`learn_coefficients` differentiates at every meta
    step; it is differentiable with respect to ``coefficients`` (and
    ``params``).

    Parameters
    ----------
    loss : SymbolicLoss
        Supplies the program, the task and the link.
    coefficients : Tensor of shape (len(loss.program_) - 1,)
        The coefficients to evaluate the program with.
    module : torch.nn.Module
        The network; called through :func:`torch.func.functional_call`, so its
        own parameters are left untouched.
    train_batches : sequence of (X, y) pairs
        One training batch per inner step.
    valid_batch : (X, y) pair
        The batch the task loss is measured on.
    optimizer, optimizer_params
        As in :func:`learn_coefficients`.
    params : dict of str to Tensor, optional
        Starting parameters (requiring grad); default the module's own.

    Returns
    -------
    Tensor
        A scalar.
    """
    inner = inner_optimizer(optimizer, optimizer_params)
    params = dict(module.named_parameters()) if params is None else dict(params)
    cs = coefficients.unbind() if torch.is_tensor(coefficients) else coefficients
    (objective,) = _unrolled_objectives([loss], [cs], module, params, train_batches, valid_batch, inner,
                                        _task_loss(loss), _torch.has_tied_parameters(module))
    if isinstance(objective, Exception):
        raise objective
    return objective


def _unrolled_objectives(losses, css, module, params, train_batches, valid_batch, inner, task_loss, tied,
                         plan=None):
    """Each loss's meta objective, or the exception its program raised.

    Every loss's network starts from ``params`` and steps with its own loss.
    With a ``plan`` (:func:`metaloss_sk.batched_unroll.unroll_plan`) and
    several losses, the networks run as one batched network
    (:func:`metaloss_sk.batched_unroll.batched_objectives`: each loss's
    result agrees with its lone result to float32 rounding). Otherwise they
    step in lockstep, each running the operations it would run alone
    (bit for bit): networks that still hold the same parameters (all of
    them, before the first inner step) share one forward pass and its
    terminals, and every forward pass starts from the random state a lone
    network would see there (the same dropout draws).
    """
    if plan is not None and len(losses) > 1 and params:
        return batched_objectives(plan, losses, css, params, train_batches, valid_batch, inner, task_loss)

    def call(values, x):
        # Buffers stay the module's own. Untying weights costs a fifth of a small
        # network's forward pass, so it is done only for modules that tie any.
        return call_functional(module, dict(zip(names, values)), x, tie_weights=tied)

    def forward(x, alive, target=None):
        """Per alive loss, its output and, given ``target``, its terminals: one pass per distinct parameter list."""
        rng = _torch.rng_state(device)
        done = {}
        for j in alive:
            if id(values[j]) not in done:
                _torch.set_rng_state(rng, device)
                out = call(values[j], x)
                done[id(values[j])] = out, None if target is None else losses[j].terminals(out, target)
        return {j: done[id(values[j])] for j in alive}

    names, n = list(params), len(losses)
    device = next(iter(params.values())).device if params else torch.device("cpu")
    # One list shared by every loss until its first inner step replaces it
    # (steps are out of place): forward() runs each distinct list once.
    values = [list(params.values())] * n
    states = [[None] * len(params)] * n
    trainable = [i for i, v in enumerate(values[0]) if v.requires_grad]
    failures = [None] * n
    for t, (xb, yb) in enumerate(train_batches, 1):
        alive = [j for j in range(n) if failures[j] is None]
        for j, (_, (y, yhat)) in forward(xb, alive, yb).items():
            try:
                inner_loss = losses[j].reduce(losses[j].program_.evaluate(y, yhat, css[j]), y)
            except Exception as exc:  # noqa: BLE001 - the program's own failure, reported per loss
                failures[j] = exc
                continue
            grads = [None] * len(values[j])  # what torch.optim sees for frozen or unused parameters
            if inner_loss.requires_grad and trainable:
                found = torch.autograd.grad(inner_loss, [values[j][i] for i in trainable], create_graph=True,
                                            allow_unused=True)
                for i, g in zip(trainable, found):
                    grads[i] = g
            values[j], states[j] = inner.step(values[j], grads, states[j], t)
    alive = [j for j in range(n) if failures[j] is None]
    outputs = forward(valid_batch[0], alive)
    return [failures[j] if failures[j] is not None else task_loss(outputs[j][0], valid_batch[1]) for j in range(n)]


def _task_loss(loss):
    """The meta objective for the loss's task and link: ``(outputs, targets) -> scalar``.

    Written so that NaN outputs give a NaN objective rather than an error
    (``F.binary_cross_entropy`` raises on them).
    """
    if loss.task == "regression":
        def mse(out, target):
            y, yhat = loss.terminals(out, target)
            return F.mse_loss(yhat, y)
        return mse
    if loss.link_ == "sigmoid":
        def bce_with_logits(out, target):
            return F.binary_cross_entropy_with_logits(out.reshape(-1), target.reshape(-1).to(out.dtype))
        return bce_with_logits
    if loss.link_ == "softmax":
        def cross_entropy(out, target):
            return F.cross_entropy(out, target if target.is_floating_point() else target.long())
        return cross_entropy

    def nll(out, target):  # the module outputs probabilities
        y, p = loss.terminals(out, target)
        return -(y * torch.log(p.clamp_min(torch.finfo(p.dtype).tiny))).sum(-1).mean()
    return nll


def _check_data(x_name, y_name, X, y):
    arrays = list(X.values()) if is_dict(X) else [X]
    if not arrays or not all(torch.is_tensor(a) for a in arrays) or not torch.is_tensor(y):
        raise ValueError(
            f"{x_name} (a tensor or a dict of tensors) and {y_name} must be torch tensors, got "
            f"{type(X).__name__} and {type(y).__name__}."
        )
    lengths = {len(a) for a in arrays}
    if len(lengths) != 1 or 0 in lengths or lengths != {len(y)}:
        raise ValueError(
            f"{x_name} and {y_name} must have the same, non-zero number of rows; "
            f"got {sorted(lengths)} and {len(y)}."
        )


def _batches(n_rows, batch_size, n_batches, generator, device):
    """Row indices of ``n_batches`` batches, epoch by epoch over seeded shuffles."""
    size = min(batch_size, n_rows)
    n_epochs = -(-n_batches * size // n_rows)
    stream = torch.cat([torch.randperm(n_rows, generator=generator) for _ in range(n_epochs)])
    return stream[:n_batches * size].view(n_batches, size).to(device)
