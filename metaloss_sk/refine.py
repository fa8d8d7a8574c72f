"""Local search: learning a loss program's coefficients by unrolled differentiation.

EvoMAL turns a program into a parameterised loss with one coefficient per edge
(per node but the root) and meta-learns those coefficients: at every meta step
a freshly initialised network takes ``unroll`` differentiable optimiser steps
on training batches with the learned loss, the task's own loss (cross-entropy,
or MSE for regression) is measured on a validation batch with the updated
weights, and its gradient with respect to the coefficients drives an Adam step.

The inner steps are written out of place with :func:`torch.autograd.grad` and
``create_graph=True`` (``torch.optim`` steps are in place and cannot sit inside
the unroll); SGD (momentum, dampening, Nesterov, weight decay) and Adam/AdamW
follow ``torch.optim``'s update rules exactly.
"""

import time
import warnings
from dataclasses import dataclass, field
from numbers import Integral, Real

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils import check_random_state
from torch.func import functional_call

from .loss import SymbolicLoss
from .program import parse

__all__ = ["RefineResult", "initial_coefficients", "learn_coefficients", "meta_objective"]

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
    >>> from metaloss_sk.refine import initial_coefficients
    >>> initial_coefficients("neg(mul(y, log(yhat)))", random_state=0).round(3)
    array([1.002, 1.   , 1.001, 1.002])
    """
    program = program.program_ if isinstance(program, SymbolicLoss) else parse(program)
    rng = check_random_state(random_state)
    return 1.0 + 0.001 * rng.standard_normal(len(program) - 1)


@dataclass
class RefineResult:
    """What one local search found.

    Attributes
    ----------
    coefficients : ndarray of shape (n_edges,)
        The learned coefficients (the last finite values).
    initial_coefficients : ndarray of shape (n_edges,)
        Where the search started.
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
    """

    coefficients: np.ndarray
    initial_coefficients: np.ndarray
    meta_losses: list
    n_nan_steps: int
    time_s: float
    base_loss: SymbolicLoss = field(repr=False)

    @property
    def loss(self):
        """The refined loss: ``base_loss.with_coefficients(coefficients)``."""
        return self.base_loss.with_coefficients(self.coefficients)


def learn_coefficients(loss, module_factory, X_train, y_train, X_valid, y_valid, *,
                       optimizer=torch.optim.SGD, optimizer_params=None, meta_steps=250,
                       meta_lr=1e-3, unroll=1, batch_size=128, coefficients=None,
                       random_state=None, device="cpu"):
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
        once per meta step, right after ``torch.manual_seed`` with a seed drawn
        from ``random_state``, so every meta step starts from a new network.
    X_train, y_train : Tensor
        Rows for the inner (training) steps: float features; int64 class
        indices for multiclass, floats for binary and regression.
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

    Returns
    -------
    RefineResult
        ``result.loss`` is the refined :class:`SymbolicLoss`.

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
    meta_steps = _check_int("meta_steps", meta_steps)
    unroll = _check_int("unroll", unroll)
    batch_size = _check_int("batch_size", batch_size)
    if isinstance(meta_lr, bool) or not isinstance(meta_lr, Real) or not meta_lr > 0:
        raise ValueError(f"meta_lr must be a positive float, got {meta_lr!r}.")
    device = torch.device(device)
    X_train, y_train = _check_data("X_train", "y_train", X_train, y_train, device)
    X_valid, y_valid = _check_data("X_valid", "y_valid", X_valid, y_valid, device)
    inner = _inner_optimizer(optimizer, optimizer_params)

    rng = check_random_state(random_state)
    n_edges = len(loss.program_) - 1
    if coefficients is None:
        start_values = initial_coefficients(loss.program_, rng)
    else:
        start_values = np.asarray(coefficients, dtype=float).reshape(-1)
        if start_values.size != n_edges:
            raise ValueError(
                f"coefficients has {start_values.size} values; the program {loss.program_} has "
                f"{n_edges} edges (one per node but the root)."
            )
        if not np.isfinite(start_values).all():
            raise ValueError("coefficients must be finite.")
    batch_seed, *module_seeds = rng.randint(_SEED_HIGH, size=meta_steps + 1)

    dtype = X_train.dtype if X_train.is_floating_point() else torch.get_default_dtype()
    cs = torch.tensor(start_values, dtype=dtype, device=device, requires_grad=True)
    meta_losses, n_nan = [], 0
    if n_edges:
        generator = torch.Generator().manual_seed(int(batch_seed))
        train_idx = _batches(len(X_train), batch_size, meta_steps * unroll, generator, device)
        valid_idx = _batches(len(X_valid), batch_size, meta_steps, generator, device)
        meta_optimizer = torch.optim.Adam([cs], lr=meta_lr, **_fastest_adam(device))
        task_loss = _task_loss(loss)
        last_finite = cs.detach().clone()
        with torch.random.fork_rng(devices=_rng_devices(device)):
            for k, seed in enumerate(module_seeds):
                _manual_seed(int(seed), device)
                module = module_factory().to(device)
                train_batches = [(X_train[i], y_train[i]) for i in train_idx[k * unroll:(k + 1) * unroll]]
                j = valid_idx[k]
                objective = _unrolled_objective(
                    loss, cs.unbind(), module, dict(module.named_parameters()),
                    train_batches, (X_valid[j], y_valid[j]), inner, task_loss)
                if objective.requires_grad:
                    (grad,) = torch.autograd.grad(objective, cs, allow_unused=True)
                else:  # the coefficients do not reach the objective
                    grad = None
                ok = torch.isfinite(objective) if grad is None else (
                    torch.isfinite(objective) & torch.isfinite(grad).all())
                meta_losses.append(objective.item())
                if not ok.item():
                    n_nan += 1
                    continue
                if grad is None:
                    continue
                cs.grad = grad
                meta_optimizer.step()
                if torch.isfinite(cs).all():
                    last_finite.copy_(cs.detach())
                else:
                    n_nan += 1
                    with torch.no_grad():
                        cs.copy_(last_finite)
                    meta_optimizer.state.clear()
    return RefineResult(
        coefficients=cs.detach().cpu().double().numpy(),
        initial_coefficients=start_values.astype(float),
        meta_losses=meta_losses,
        n_nan_steps=n_nan,
        time_s=time.perf_counter() - start,
        base_loss=loss,
    )


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
    inner = _inner_optimizer(optimizer, optimizer_params)
    params = dict(module.named_parameters()) if params is None else dict(params)
    cs = coefficients.unbind() if torch.is_tensor(coefficients) else coefficients
    return _unrolled_objective(loss, cs, module, params, train_batches, valid_batch, inner,
                               _task_loss(loss))


def _unrolled_objective(loss, cs, module, params, train_batches, valid_batch, inner, task_loss):
    names, values = list(params), list(params.values())
    buffers = dict(module.named_buffers())
    state = [None] * len(values)
    for t, (xb, yb) in enumerate(train_batches, 1):
        out = functional_call(module, (dict(zip(names, values)), buffers), (xb,))
        y, yhat = loss.terminals(out, yb)
        inner_loss = loss.reduce(loss.program_.evaluate(y, yhat, cs), y)
        if inner_loss.requires_grad:
            grads = torch.autograd.grad(inner_loss, values, create_graph=True, allow_unused=True)
        else:  # a program that ignores the prediction moves nothing
            grads = [None] * len(values)
        values, state = inner.step(values, grads, state, t)
    out = functional_call(module, (dict(zip(names, values)), buffers), (valid_batch[0],))
    return task_loss(out, valid_batch[1])


def _task_loss(loss):
    """The meta objective for the loss's task and link: ``(outputs, targets) -> scalar``."""
    if loss.task == "regression":
        def mse(out, target):
            y, yhat = loss.terminals(out, target)
            return F.mse_loss(yhat, y)
        return mse
    if loss.task == "binary":
        def bce(out, target):
            z, t = out.reshape(-1), target.reshape(-1).to(out.dtype)
            if loss.link_ == "sigmoid":
                return F.binary_cross_entropy_with_logits(z, t)
            return F.binary_cross_entropy(z, t)
        return bce

    def cross_entropy(out, target):
        if loss.link_ == "softmax":
            return F.cross_entropy(out, target)
        log_p = torch.log(out.clamp_min(torch.finfo(out.dtype).tiny))
        if target.is_floating_point():
            return -(target * log_p).sum(-1).mean()
        return F.nll_loss(log_p, target)
    return cross_entropy


class _SGD:
    """``torch.optim.SGD``'s update, out of place and differentiable."""

    def __init__(self, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
                 maximize=False, **_):
        self.lr, self.momentum, self.dampening = lr, momentum, dampening
        self.weight_decay, self.nesterov, self.maximize = weight_decay, nesterov, maximize

    def step(self, params, grads, state, t):
        new_params, new_state = [], []
        for p, g, buf in zip(params, grads, state):
            if g is None:  # torch.optim leaves a parameter without gradient alone
                new_params.append(p)
                new_state.append(buf)
                continue
            if self.maximize:
                g = -g
            if self.weight_decay:
                g = torch.add(g, p, alpha=self.weight_decay)
            if self.momentum:
                buf = g if buf is None else torch.add(buf * self.momentum, g, alpha=1 - self.dampening)
                g = torch.add(g, buf, alpha=self.momentum) if self.nesterov else buf
            new_params.append(torch.add(p, g, alpha=-self.lr))
            new_state.append(buf)
        return new_params, new_state


class _Adam:
    """``torch.optim.Adam``'s (and AdamW's) update, out of place and differentiable."""

    def __init__(self, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False,
                 maximize=False, decoupled_weight_decay=False, **_):
        self.lr, self.eps, self.weight_decay = lr, eps, weight_decay
        self.beta1, self.beta2 = (float(b) for b in betas)
        self.amsgrad, self.maximize, self.decoupled = amsgrad, maximize, decoupled_weight_decay

    def step(self, params, grads, state, t):
        b1, b2 = self.beta1, self.beta2
        step_size = self.lr / (1 - b1**t)
        bias_correction2_sqrt = (1 - b2**t) ** 0.5
        new_params, new_state = [], []
        for p, g, s in zip(params, grads, state):
            if g is None:
                new_params.append(p)
                new_state.append(s)
                continue
            if self.maximize:
                g = -g
            if self.weight_decay:
                if self.decoupled:
                    p = p * (1 - self.lr * self.weight_decay)
                else:
                    g = g + self.weight_decay * p
            if s is None:
                m, v = g * (1 - b1), g * g * (1 - b2)
                v_max = v
            else:
                m, v, v_max = s
                m = torch.add(m * b1, g, alpha=1 - b1)
                v = torch.addcmul(v * b2, g, g, value=1 - b2)
                if self.amsgrad:
                    v_max = torch.maximum(v_max, v)
            denom = _sqrt0(v_max if self.amsgrad else v) / bias_correction2_sqrt + self.eps
            new_params.append(torch.addcdiv(p, m, denom, value=-step_size))
            new_state.append((m, v, v_max))
        return new_params, new_state


def _sqrt0(x):
    # sqrt with derivative 0 at 0: a parameter whose gradient is exactly 0 (a
    # dead unit) has second moment 0, and sqrt's infinite slope there times
    # the zero slope of g**2 would make the meta-gradient NaN.
    positive = x > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, x, torch.ones_like(x))), 0.0)


def _inner_optimizer(optimizer, optimizer_params):
    if not (isinstance(optimizer, type) and issubclass(optimizer, torch.optim.Optimizer)):
        raise ValueError(f"optimizer must be a torch.optim.Optimizer subclass, got {optimizer!r}.")
    if optimizer_params is not None and not isinstance(optimizer_params, dict):
        raise ValueError(f"optimizer_params must be a dict or None, got {type(optimizer_params).__name__}.")
    try:
        # torch's own constructor checks the values and fills in the defaults.
        probe = optimizer([torch.zeros(1, requires_grad=True)], **(optimizer_params or {}))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"optimizer_params {optimizer_params!r} do not fit {optimizer.__name__}: {exc}") from exc
    settings = {k: float(v) if torch.is_tensor(v) else v for k, v in probe.defaults.items()}
    if issubclass(optimizer, torch.optim.SGD):
        return _SGD(**settings)
    if issubclass(optimizer, torch.optim.Adam):
        return _Adam(**settings)
    if "lr" not in settings:
        raise ValueError(f"optimizer {optimizer.__name__} has no learning rate to fall back to SGD with.")
    warnings.warn(
        f"No differentiable {optimizer.__name__} step is available; the local search unrolls "
        f"plain SGD with lr={settings['lr']} instead. Use torch.optim.SGD or torch.optim.Adam "
        f"for an exact unroll.",
        stacklevel=3,
    )
    return _SGD(lr=settings["lr"])


def _manual_seed(seed, device):
    # torch.manual_seed for the generators the module can draw from: the CPU
    # one and the target accelerator's. torch.manual_seed itself also seeds
    # every other backend, which costs more than a small network's training step.
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.manual_seed(seed)


def _fastest_adam(device):
    return {"fused": True} if device.type in ("cpu", "cuda") else {"foreach": False}


def _rng_devices(device):
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]


def _check_int(name, value):
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}.")
    return int(value)


def _check_data(x_name, y_name, X, y, device):
    if not torch.is_tensor(X) or not torch.is_tensor(y):
        raise ValueError(
            f"{x_name} and {y_name} must be torch tensors, got {type(X).__name__} and {type(y).__name__}."
        )
    if len(X) == 0 or len(X) != len(y):
        raise ValueError(
            f"{x_name} and {y_name} must have the same, non-zero number of rows; "
            f"got {len(X)} and {len(y)}."
        )
    return X.to(device), y.to(device)


def _batches(n_rows, batch_size, n_batches, generator, device):
    """Row indices of ``n_batches`` batches, epoch by epoch over seeded shuffles."""
    size = min(batch_size, n_rows)
    n_epochs = -(-n_batches * size // n_rows)
    stream = torch.cat([torch.randperm(n_rows, generator=generator) for _ in range(n_epochs)])
    return stream[:n_batches * size].view(n_batches, size).to(device)
