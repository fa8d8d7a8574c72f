"""Train candidate losses on one cross-validation fold and score them.

This is the search's hot path. When the net's configuration allows it,
candidates are trained by a tight loop over in-memory tensors that honours the
module (and ``module__*``), optimizer (``lr``, ``optimizer__*``),
``batch_size``, epochs, ``iterator_train__shuffle`` and ``device``, because
skorch initialises all of those itself; skorch's per-batch machinery
(callbacks, history, data loaders) is skipped. The candidates of a group
step in lockstep, one copy of the module each: per batch they share the
batch, one output nonlinearity and target encoding, one backward call, and
the Python loop around them, and differ only in their loss program. A net
with callbacks or overridden training hooks falls back to a real ``net.fit``.

Every candidate on a fold starts from the same seeded initialisation and sees
the same batch order and, for stochastic layers such as dropout, the same
random draws (common random numbers), so scores differ by the loss alone. Each
copy runs exactly the operations a lone candidate would, so a candidate's
result does not depend on which others share its group, and equals that of
``net.fit`` with the same seed where the batch order agrees.
"""

import copy
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.base import clone
from skorch import NeuralNet, NeuralNetBinaryClassifier, NeuralNetClassifier, NeuralNetRegressor

from .loss import SymbolicLoss
from .refine import learn_coefficients_group

__all__ = ["Budget", "FoldResult", "LocalSearch", "evaluate_candidates", "fast_path_blockers", "refine_loss"]

#: skorch's own classes: a net whose training hooks all come from one of these
#: is trained the same way by the fast loop.
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


@dataclass(frozen=True)
class LocalSearch:
    """EvoMAL's coefficient learning, run on a fold's training part before training.

    ``valid_fraction`` of the training part is held out for the meta
    objective; the fold's scoring part is never seen.
    """

    meta_steps: int = 250
    meta_lr: float = 1e-3
    unroll: int = 1
    valid_fraction: float = 0.2


@dataclass
class FoldResult:
    """What training one candidate on one fold gave."""

    score: float
    fit_time: float
    status: str  # "ok", "nan" (loss went non-finite) or "error"
    message: str = ""
    coefficients: list | None = None  # learned by the local search, if it ran
    meta_nan_steps: int = 0  # local search steps skipped because the meta objective was not finite
    local_search_time: float = 0.0  # the part of fit_time spent in the local search


def fast_path_blockers(net):
    """Reasons the fast loop cannot reproduce ``net.fit``; empty when it can."""
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


def candidate_net(net, loss, budget=None, n_train=None):
    """A clone of ``net`` that trains with ``loss`` (for the search budget, if given)."""
    # skorch refuses set_params(criterion=<module instance>) on an unfitted net,
    # so the clone is built through the constructor instead.
    params = clone(net).get_params(deep=False)
    params.update(criterion=loss, train_split=None, verbose=0)
    if budget is not None:
        epochs = budget.max_epochs
        if budget.max_steps is not None:
            batch = n_train if net.batch_size == -1 else net.batch_size
            epochs = math.ceil(budget.max_steps / math.ceil(n_train / batch))
        params["max_epochs"] = epochs
    return type(net)(**params)


def _batches(net_, n, budget, seed):
    """Index tensors (or slices) of every training batch, in the fold's seeded order."""
    batch = n if net_.batch_size == -1 else net_.batch_size
    shuffle = net_.get_params_for("iterator_train").get("shuffle", False)
    generator = torch.Generator().manual_seed(seed)
    steps = budget.max_steps if budget.max_steps is not None else math.inf
    step = 0
    for _ in range(net_.max_epochs):
        order = torch.randperm(n, generator=generator).to(net_.device) if shuffle else None
        for start in range(0, n, batch):
            if step >= steps:
                return
            yield slice(start, start + batch) if order is None else order[start:start + batch]
            step += 1


#: torch optimizers whose update of a parameter depends on that parameter alone.
_ELEMENTWISE_OPTIMIZERS = (
    torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW, torch.optim.Adamax, torch.optim.NAdam,
    torch.optim.RAdam, torch.optim.RMSprop, torch.optim.Adagrad, torch.optim.Adadelta, torch.optim.Rprop,
)


def _train_together(net_, losses, Xt, yt, budget, seed):
    """Train one copy of ``net_``'s module per loss, in lockstep.

    Returns the trained modules and, per loss, None or the reason it failed.
    """
    modules = [copy.deepcopy(net_.module_) for _ in losses]
    groups, optimizers = [], []
    for module in modules:
        module.train()
        (param_groups,), kwargs = net_.get_params_for_optimizer("optimizer", module.named_parameters())
        groups.append(param_groups)
    if net_.optimizer in _ELEMENTWISE_OPTIMIZERS:
        # One optimizer for every copy: its update is the same element by element,
        # and the per-call overhead is paid once instead of once per candidate.
        optimizers = [net_.optimizer([g for gs in groups for g in gs], **kwargs)] * len(losses)
    else:
        optimizers = [net_.optimizer(gs, **kwargs) for gs in groups]
    shared = _shared_terminals(losses)
    failure = [None] * len(losses)
    for idx in _batches(net_, len(Xt), budget, seed):
        alive = [k for k, f in enumerate(failure) if f is None]
        if not alive:
            break
        xb, yb = Xt[idx], yt[idx]
        rng = torch.get_rng_state()
        outputs = []
        for optimizer in {id(optimizers[k]): optimizers[k] for k in alive}.values():
            optimizer.zero_grad(set_to_none=True)
        for k in alive:
            torch.set_rng_state(rng)  # the same dropout draws for every candidate
            outputs.append(modules[k](xb))
        if shared:
            # One softmax (or sigmoid) and one target encoding for the whole group.
            out = torch.stack(outputs)
            y, yhat = losses[0].terminals(out.flatten(0, 1), yb.repeat(len(alive), *([1] * (yb.dim() - 1))))
            y, yhat = y.unflatten(0, out.shape[:2]), yhat.unflatten(0, out.shape[:2])
        total, stepping = 0.0, []
        for j, k in enumerate(alive):
            try:
                value = losses[k].from_terminals(y[j], yhat[j]) if shared else losses[k](outputs[j], yb)
            except Exception as exc:
                failure[k] = f"{type(exc).__name__}: {exc}"
                continue
            if not torch.isfinite(value):
                failure[k] = "the training loss became NaN or infinite"
                continue
            total = total + value
            stepping.append(k)
        if stepping:
            total.backward()  # a candidate left out of it has no gradient: its optimizer skips it
            for optimizer in {id(optimizers[k]): optimizers[k] for k in stepping}.values():
                optimizer.step()
    return modules, failure


def _shared_terminals(losses):
    """True when every loss turns outputs into terminals the same way (as in one search)."""
    first = losses[0]
    return all(isinstance(loss, SymbolicLoss) and (loss.task, loss.link_) == (first.task, first.link_)
               for loss in losses)


def refine_loss(net, loss, X, y, seed, local_search):
    """EvoMAL's local search for ``loss`` on a seeded split of ``(X, y)``: a :class:`RefineResult`."""
    (result,) = refine_losses(net, [loss], X, y, seed, local_search)
    if isinstance(result, Exception):
        raise result
    return result


def refine_losses(net, losses, X, y, seed, local_search):
    """:func:`refine_loss` for each of ``losses``, in lockstep where they share their terminals.

    Each loss gets the split, batches and networks it would get alone. Returns
    a :class:`RefineResult` or the exception raised, per loss.
    """
    rng = np.random.RandomState(seed)
    order = rng.permutation(len(X))
    n_valid = max(1, int(round(local_search.valid_fraction * len(X))))
    valid, train = order[:n_valid], order[n_valid:]
    probe = candidate_net(net, losses[0])
    probe.initialize()
    device = probe.device
    module_params = probe.get_params_for("module")

    def module_factory():
        return probe.initialized_instance(net.module, module_params)

    optimizer_params = {"lr": net.lr, **probe.get_params_for("optimizer")}
    batch = len(train) if net.batch_size == -1 else net.batch_size
    data = [torch.as_tensor(a) for a in (X[train], y[train], X[valid], y[valid])]
    settings = dict(optimizer=net.optimizer, optimizer_params=optimizer_params, meta_steps=local_search.meta_steps,
                    meta_lr=local_search.meta_lr, unroll=local_search.unroll, batch_size=batch, device=device)
    state = rng.get_state()
    groups = [list(range(len(losses)))] if _shared_terminals(losses) else [[k] for k in range(len(losses))]
    results = [None] * len(losses)
    for group in groups:
        own = np.random.RandomState()
        own.set_state(state)  # every loss continues the same stream, as it would alone
        try:
            found = learn_coefficients_group([losses[k] for k in group], module_factory, *data, random_state=own,
                                             **settings)
        except Exception as exc:  # noqa: BLE001 - reported per loss
            found = [exc] * len(group)
        for k, result in zip(group, found):
            results[k] = result
    return results


def evaluate_candidates(net, losses, X, y, train, test, budget, seed, scorer, train_loop="fast",
                        error_score=np.nan, local_search=None):
    """Train each loss on fold ``train`` and score it on ``test``.

    Parameters
    ----------
    train_loop : {"fast", "skorch"}
        The fast loop (the group's candidates in lockstep) or ``net.fit``.
    local_search : LocalSearch or None
        Learn each loss's coefficients on the training part first (EvoMAL).

    Returns
    -------
    list of FoldResult
        A loss that turns non-finite, or whose training or scoring fails, gets
        status ``"nan"`` or ``"error"`` and ``error_score`` instead of a score;
        ``error_score="raise"`` re-raises failures (not non-finite losses).
    """
    threads = torch.get_num_threads()
    # One thread per task: results then do not depend on n_jobs, and tasks run
    # in parallel instead of their small matrix products.
    torch.set_num_threads(1)
    try:
        return _evaluate(net, losses, X, y, train, test, budget, seed, scorer, train_loop,
                         error_score, local_search)
    finally:
        torch.set_num_threads(threads)


def _evaluate(net, losses, X, y, train, test, budget, seed, scorer, train_loop, error_score, local_search):
    start = time.perf_counter()
    failed = _failure(error_score, start)
    results = [None] * len(losses)
    nan_steps = [0] * len(losses)
    local_search_time = 0.0
    if local_search is not None:
        refined = []
        for k, result in enumerate(refine_losses(net, losses, X[train], y[train], seed, local_search)):
            if isinstance(result, Exception):
                if error_score == "raise":
                    raise result
                results[k] = failed("error", f"local search: {type(result).__name__}: {result}")
                refined.append(losses[k])
            else:
                refined.append(result.loss)
                nan_steps[k] = result.n_nan_steps
        losses = refined
        local_search_time = (time.perf_counter() - start) / len(losses)
    todo = [k for k in range(len(losses)) if results[k] is None]

    if train_loop == "skorch" or not todo:
        trained = {}
    else:
        trained = _fit_fast(net, [losses[k] for k in todo], X[train], y[train], budget, seed)
        trained = dict(zip(todo, trained))
    for k in todo:
        try:
            if k in trained:
                net_, module, message = trained[k]
                if module is not None:
                    # Every candidate of the group is scored through the one initialised net.
                    net_.module_.load_state_dict(module.state_dict())
            else:
                net_, message = _fit_skorch(net, losses[k], X[train], y[train], budget, seed)
            if message is not None:
                results[k] = failed("nan" if "NaN" in message else "error", message)
                continue
            with np.errstate(over="ignore", invalid="ignore"):  # a diverged net: recorded below, not warned
                score = float(scorer(net_, X[test], y[test]))
            results[k] = (FoldResult(score, 0.0, "ok") if math.isfinite(score)
                          else failed("nan", "the score is not finite"))
        except Exception as exc:
            if error_score == "raise":
                raise
            results[k] = failed("error", f"{type(exc).__name__}: {exc}")
    elapsed = (time.perf_counter() - start) / len(losses)
    for k, result in enumerate(results):
        result.fit_time = elapsed
        result.local_search_time = local_search_time
        result.meta_nan_steps = nan_steps[k]
        if local_search is not None and losses[k].coefficients is not None:
            result.coefficients = [float(c) for c in losses[k].coefficients]
    return results


def _failure(error_score, start):
    score = np.nan if error_score == "raise" else float(error_score)

    def failed(status, message):
        return FoldResult(score, 0.0, status, message)
    return failed


def _fit_skorch(net, loss, X, y, budget, seed):
    net_ = candidate_net(net, loss, budget, len(X))
    torch.manual_seed(seed)
    net_.fit(X, y)
    losses = net_.history[:, "batches", :, "train_loss"]
    finite = all(math.isfinite(v) for epoch in losses for v in epoch)
    return net_, None if finite else "the training loss became NaN or infinite"


def _fit_fast(net, losses, X, y, budget, seed):
    """[(net, trained module, failure message or None)] per loss, by the fast loop.

    The net is the group's one initialised skorch net; scoring a candidate
    loads its module into it.
    """
    net_ = candidate_net(net, losses[0], budget, len(X))
    torch.manual_seed(seed)
    net_.initialize()
    device = net_.device
    Xt, yt = torch.as_tensor(X, device=device), torch.as_tensor(y, device=device)
    try:
        modules, failures = _train_together(net_, [loss.to(device) for loss in losses], Xt, yt, budget, seed)
    except Exception as exc:  # the module itself failed: every candidate fails alike
        return [(net_, None, f"{type(exc).__name__}: {exc}")] * len(losses)
    return [(net_, module, failure) for module, failure in zip(modules, failures)]
