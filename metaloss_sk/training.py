"""Training nets with candidate losses: the one net builder, and the fast lockstep loop.

When the net's configuration allows it, candidates are trained by a tight loop
over in-memory tensors that honours the module (and ``module__*``), optimizer
(``lr``, ``optimizer__*``), ``batch_size``, epochs, ``iterator_train__shuffle``
and ``device``, because skorch initialises all of those itself; skorch's
per-batch machinery (callbacks, history, data loaders) is skipped. The
candidates of a group train together, one copy of the module each: per batch
they share the batch, one output nonlinearity and target encoding, one
backward call, one optimizer step and the Python loop around them, and differ
only in their loss program. A net with callbacks or overridden training hooks
falls back to a real ``net.fit``.

Where the module is made of ``Linear`` layers and elementwise activations
(see :mod:`~metaloss_sk.batched`), the optimizer's update is elementwise and
the input one 2-d array, the copies are one batched network over stacked
parameters (``"batched"``); otherwise each copy runs its own forward pass
(``"lockstep"``). :meth:`Trainer.loop` says which. In the batched network,
copies of one program (a local search's checkpoints differ only in their
coefficients) evaluate their loss once on their stacked outputs.

Every candidate starts from the same seeded initialisation and sees the same
batch order and, for stochastic layers such as dropout, the same random draws
(common random numbers), so results differ by the loss alone. In lockstep each
copy runs exactly the operations a lone candidate would, so a candidate's
result does not depend on which others share its group, and equals that of
``net.fit`` with the same seed where the batch order agrees. The batched
network computes the same functions with batched products, which round
differently: a candidate's weights agree with lone training to float32
rounding (about 1e-7 after 500 steps on the digits MLP), and, for small
layers, with the same candidate trained in another group to the same
tolerance. Results are a deterministic function of the group; the evaluator's
grouping does not depend on ``n_jobs``.
"""

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.base import clone
from skorch import NeuralNet, NeuralNetBinaryClassifier, NeuralNetClassifier, NeuralNetRegressor

from ._rows import call, is_dict, n_rows, take, to_tensors
from .batched import BatchedModule, batch_plan
from .loss import SymbolicLoss

__all__ = ["Budget", "Trainer", "batch_blocker", "build_net", "fast_path_blockers", "score", "shared_terminals",
           "uses_fast_loop"]

#: skorch's own classes: a net whose training hooks all come from one of these
#: is trained the same way by the fast loop.
_SKORCH_CLASSES = (NeuralNetBinaryClassifier, NeuralNetClassifier, NeuralNetRegressor, NeuralNet)
_TRAINING_HOOKS = (
    "fit", "partial_fit", "fit_loop", "run_single_epoch", "train_step", "train_step_single",
    "get_loss", "infer", "get_iterator", "get_dataset", "on_batch_begin", "on_batch_end",
    "on_epoch_begin", "on_epoch_end", "on_train_begin", "on_train_end", "notify",
)
#: torch optimizers whose update of a parameter depends on that parameter alone.
_ELEMENTWISE_OPTIMIZERS = (
    torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW, torch.optim.Adamax, torch.optim.NAdam,
    torch.optim.RAdam, torch.optim.RMSprop, torch.optim.Adagrad, torch.optim.Adadelta, torch.optim.Rprop,
)


@dataclass(frozen=True)
class Budget:
    """How long a net trains: ``max_epochs`` epochs, cut at ``max_steps`` optimizer steps if given."""

    max_epochs: int
    max_steps: int | None = None

    def steps(self, n_train, batch_size):
        """Optimizer steps on ``n_train`` rows with ``batch_size`` (-1: all rows)."""
        if self.max_steps is not None:
            return self.max_steps
        batch = n_train if batch_size == -1 else min(batch_size, n_train)
        return self.max_epochs * math.ceil(n_train / batch)

    def shortened(self, factor, n_train, batch_size):
        """This budget ``factor`` times shorter, in optimizer steps (at least one)."""
        return Budget(self.max_epochs, max(1, int(round(self.steps(n_train, batch_size) / factor))))


def uses_fast_loop(net, train_loop):
    """Whether ``LossSearchCV(train_loop=train_loop)`` trains ``net`` in the fast loop (not ``net.fit``)."""
    blockers = fast_path_blockers(net)
    if train_loop == "fast" and blockers:
        raise ValueError(f"train_loop='fast' cannot train this net: it {'; '.join(blockers)}. "
                         "Use train_loop='auto' or 'skorch'.")
    return train_loop == "fast" or (train_loop == "auto" and not blockers)


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


def build_net(estimator, criterion, budget=None, n_train=None, **params):
    """A fresh, unfitted clone of ``estimator`` that trains with ``criterion``, silently, on all rows.

    ``budget`` (with the number of training rows ``n_train``) sets its epochs;
    ``params`` override other settings (``lr``, say). skorch refuses
    ``set_params(criterion=<module instance>)`` on an unfitted net, so the clone
    is built through the constructor.
    """
    settings = clone(estimator).get_params(deep=False)
    settings.update({"criterion": criterion, "train_split": None, "verbose": 0, **params})
    if budget is not None:
        epochs = budget.max_epochs
        if budget.max_steps is not None:
            batch = n_train if settings["batch_size"] == -1 else settings["batch_size"]
            epochs = math.ceil(budget.max_steps / math.ceil(n_train / batch))
        settings["max_epochs"] = epochs
    return type(estimator)(**settings)


def _batches(net_, n, budget, seed):
    """Index tensors (or slices) of every training batch, in the seeded order."""
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


def shared_terminals(losses):
    """True when every loss turns outputs into terminals the same way (as in one search)."""
    first = losses[0]
    return all(isinstance(loss, SymbolicLoss) and (loss.task, loss.link_) == (first.task, first.link_)
               for loss in losses)


def _train_together(net_, losses, Xt, yt, budget, seed):
    """Train one copy of ``net_``'s module per loss, in lockstep.

    Returns the trained modules and, per loss, None or the reason it failed.
    """
    modules = [copy.deepcopy(net_.module_) for _ in losses]
    groups = []
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
    shared = shared_terminals(losses)
    failure = [None] * len(losses)
    for idx in _batches(net_, n_rows(Xt), budget, seed):
        alive = [k for k, f in enumerate(failure) if f is None]
        if not alive:
            break
        xb, yb = take(Xt, idx), yt[idx]
        rng = torch.get_rng_state()
        outputs = []
        for optimizer in {id(optimizers[k]): optimizers[k] for k in alive}.values():
            optimizer.zero_grad(set_to_none=True)
        for k in alive:
            torch.set_rng_state(rng)  # the same dropout draws for every candidate
            outputs.append(call(modules[k], xb))
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


def _train_batched(net_, traced, losses, Xt, yt, budget, seed):
    """Train one copy of ``net_``'s module per loss as one batched network (stacked parameters).

    Returns each copy's state dict and, per loss, None or the reason it failed.
    """
    net_.module_.train()
    batched = BatchedModule(traced, [net_.module_] * len(losses))
    (param_groups,), kwargs = net_.get_params_for_optimizer("optimizer", batched.named_parameters())
    # The update is elementwise, so one step over the stacked parameters is every copy's own step.
    optimizer = net_.optimizer(param_groups, **kwargs)
    shared = shared_terminals(losses)
    failure = [None] * len(losses)
    singles = [[k] for k in range(len(losses))]
    families = _Families(losses) if shared else None
    for idx in _batches(net_, n_rows(Xt), budget, seed):
        alive = [k for k, f in enumerate(failure) if f is None]
        if not alive:
            break
        xb, yb = take(Xt, idx), yt[idx]
        optimizer.zero_grad(set_to_none=True)
        out = batched(xb)  # [G, batch, ...]: every copy, failed ones too (their slices are never read)
        if shared and _class_indices(losses[0], out, yb):
            # The softmax over classes in the network's own layout (classes before rows), one
            # target encoding for every copy.
            yhat = torch.softmax(out.transpose(1, 2), dim=1).transpose(1, 2)
            y = [torch.zeros_like(yhat[0]).scatter_(1, yb.unsqueeze(1), 1.0)] * len(losses)
        elif shared:
            # One softmax (or sigmoid) and one target encoding for the whole group.
            y, yhat = losses[0].terminals(out.flatten(0, 1), yb.repeat(len(losses), *([1] * (yb.dim() - 1))))
            y, yhat = y.unflatten(0, out.shape[:2]), yhat.unflatten(0, out.shape[:2])
        values, stepping = [], []
        for members in families if families and _class_indices(losses[0], out, yb) else singles:
            members = [k for k in members if failure[k] is None]
            if not members:
                continue
            try:
                if len(members) == 1:
                    (k,) = members
                    value = losses[k].from_terminals(y[k], yhat[k]) if shared else losses[k](out[k], yb)
                    value = value.reshape(1)
                else:
                    value = families.evaluate(members, y[0], yhat)
            except Exception as exc:
                for k in members:
                    failure[k] = f"{type(exc).__name__}: {exc}"
                continue
            values.append(value)
            stepping.extend(members)
        if not values:
            continue
        values = torch.cat(values)
        finite = torch.isfinite(values.detach())
        if not bool(finite.all()):
            for k, ok in zip(stepping, finite.tolist()):
                if not ok:
                    failure[k] = "the training loss became NaN or infinite"
            if not bool(finite.any()):
                continue
            values = values[finite]
        # The sum: every copy's parameters get the gradient of its own loss alone.
        values.sum().backward()
        optimizer.step()
    return [batched.state_dict(g) for g in range(len(losses))], failure


class _Families:
    """The group's losses by program: one program's copies (coefficients apart) evaluated as one.

    Iterating gives lists of loss indices, one per program, in order of first
    appearance; it is true when some program has several copies. :meth:`evaluate`
    evaluates one program's copies once on their stacked softmax outputs, each
    copy's coefficients broadcast over its slice (primitives are element-wise),
    and reduces as :meth:`SymbolicLoss.reduce` does for multiclass losses (sum
    over classes, mean over rows): one value per copy. The local search's
    checkpoints are one program with ten sets of coefficients.
    """

    def __init__(self, losses):
        by_program = {}
        for k, loss in enumerate(losses):
            by_program.setdefault((str(loss.program_), loss.coefficients is None), []).append(k)
        self.losses, self.groups, self._evaluators = losses, list(by_program.values()), {}

    def __bool__(self):
        return len(self.groups) < len(self.losses)

    def __iter__(self):
        return iter(self.groups)

    def evaluate(self, members, y, yhat):
        """The losses ``members`` (one program's copies) against one-hot ``y`` on their slices of ``yhat``."""
        key = (tuple(members), yhat.dtype)
        if key not in self._evaluators:
            first = self.losses[members[0]]
            cs = None
            if first.coefficients is not None:
                # [n_coefficients, g] -> one [g, 1, 1] tensor per coefficient, in the outputs' dtype (a lone
                # loss's 0-d coefficient multiplies in it too).
                stacked = torch.stack([self.losses[k].coefficients for k in members], 1).to(yhat.dtype)
                cs = list(stacked.unsqueeze(-1).unsqueeze(-1).unbind())
            self._evaluators[key] = first.program_.evaluator(cs)
        if members == list(range(members[0], members[-1] + 1)):
            part = yhat[members[0]:members[-1] + 1]  # a view: the checkpoints come in order
        else:
            part = yhat[torch.tensor(members, device=yhat.device)]
        values = torch.broadcast_to(self._evaluators[key](y, part), part.shape)
        return values.sum(-1).mean(-1)


def _class_indices(loss, out, yb):
    """Whether ``loss`` sees softmax outputs against integer class indices (the common case)."""
    return (loss.task == "multiclass" and loss.link_ == "softmax" and out.dim() == 3 and yb.dim() == 1
            and not torch.is_floating_point(yb) and yb.dtype != torch.bool and len(yb) == out.shape[1])


def batch_blocker(net_, X):
    """Why the group cannot train as one batched network (None when it can).

    ``net_`` is initialised; ``X`` the training rows.
    """
    return _batch_plan(net_, X)[1]


def _batch_plan(net_, X):
    """``(traced module, None)`` when the group can train batched, else ``(None, reason)``."""
    if net_.optimizer not in _ELEMENTWISE_OPTIMIZERS:  # a subclass may step otherwise
        return None, "its optimizer's update is not elementwise"
    if is_dict(X) or getattr(X, "ndim", 0) != 2:
        return None, "its input is not one 2-d array"
    return batch_plan(net_.module_)


def _fit_fast(estimator, losses, X, y, budget, seed, **params):
    """Train ``estimator``'s module with each of ``losses`` by the fast loop, batched or in lockstep.

    Returns ``[(net, trained module or state dict or None, failure message or None)]``,
    one per loss. The net is the group's one initialised skorch net: scoring a
    candidate loads its module into it.
    """
    net_ = build_net(estimator, losses[0], budget, n_rows(X), **params)
    torch.manual_seed(seed)
    net_.initialize()
    net_.check_data(X, y)  # as net.fit does: a classifier infers classes_ here, which scorers read
    device = net_.device
    Xt, yt = to_tensors(X, device), torch.as_tensor(y, device=device)
    losses = [loss.to(device) for loss in losses]
    net_.module_.train()  # traced in training mode: a forward reading self.training keeps its dropout
    traced, _ = _batch_plan(net_, X)
    try:
        if traced is not None:
            modules, failures = _train_batched(net_, traced, losses, Xt, yt, budget, seed)
        else:
            modules, failures = _train_together(net_, losses, Xt, yt, budget, seed)
    except Exception as exc:  # the module itself failed: every candidate fails alike
        return [(net_, None, f"{type(exc).__name__}: {exc}")] * len(losses)
    return [(net_, module, failure) for module, failure in zip(modules, failures)]


def _fit_skorch(estimator, loss, X, y, budget, seed, **params):
    """Train with ``net.fit``; returns ``(net, failure message or None)``."""
    net_ = build_net(estimator, loss, budget, n_rows(X), **params)
    torch.manual_seed(seed)
    net_.fit(X, y)
    losses = net_.history[:, "batches", :, "train_loss"]
    finite = all(math.isfinite(v) for epoch in losses for v in epoch)
    return net_, None if finite else "the training loss became NaN or infinite"


@dataclass(frozen=True)
class Trainer:
    """How candidates train: ``estimator``'s configuration, by the fast loop or by ``net.fit``."""

    estimator: object
    fast: bool = True

    def loop(self, X):
        """How groups train on rows like ``X``: ``"batched"``, ``"lockstep"`` or ``"skorch"`` (``net.fit``).

        ``"batched"``: as one network with stacked parameters (a module of
        ``Linear`` layers and elementwise activations, an elementwise
        optimizer, one 2-d input); ``"lockstep"``: one copy of the module
        per candidate, stepped together.
        """
        return _batched_or_lockstep(self, X) if self.fast else "skorch"

    def fit(self, losses, X, y, budget, seed, **params):
        """Train a net per loss; yields ``(net, failure)`` in order.

        ``failure`` is None, a message (the loss went non-finite, or the
        program raised) or the exception ``net.fit`` raised (then ``net`` is
        None).

        Every net starts from the initialisation ``seed`` gives and sees its
        batch order. The fast loop trains the group as one batched network or
        in lockstep (see :meth:`loop`) and yields one shared net with each
        trained module loaded in turn: use each before taking the next.
        ``params`` override the net's settings (``lr``, say).
        """
        if not self.fast:
            for loss in losses:
                try:
                    yield _fit_skorch(self.estimator, loss, X, y, budget, seed, **params)
                except Exception as exc:  # noqa: BLE001 - handed to the caller, who may raise it
                    yield None, exc
            return
        for net_, module, failure in _fit_fast(self.estimator, losses, X, y, budget, seed, **params):
            if module is not None:
                net_.module_.load_state_dict(module if isinstance(module, dict) else module.state_dict())
            yield net_, failure


def _batched_or_lockstep(trainer, X):
    """``"batched"`` or ``"lockstep"``: how the fast loop trains ``trainer``'s groups on rows like ``X``."""
    net_ = build_net(trainer.estimator, SymbolicLoss())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net_.initialize()
    return "lockstep" if batch_blocker(net_, X) else "batched"


def score(scorer, net_, X, y):
    """``scorer(net_, X, y)`` as a float; a diverged net's overflow is not warned about (its score is)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return float(scorer(net_, X, y))
