"""Differentiable optimiser steps: ``torch.optim``'s update rules, out of place.

The local search differentiates through the net's own training steps.
``torch.optim`` steps are in place and cannot sit inside that unroll, so the
update rules of SGD (momentum, dampening, Nesterov, weight decay) and
Adam/AdamW are written here out of place, following ``torch.optim`` exactly:
``step(params, grads, state, t)`` returns new parameter and state lists.
"""

import warnings

import torch

__all__ = ["SGD", "Adam", "inner_optimizer"]


class SGD:
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
            lr = self.lr
            if self.momentum and buf is None:  # the buffer starts as g: fold it into the step size
                buf = g
                lr = lr * (1 + self.momentum) if self.nesterov else lr
            elif self.momentum:
                buf = torch.add(buf * self.momentum, g, alpha=1 - self.dampening)
                g = torch.add(g, buf, alpha=self.momentum) if self.nesterov else buf
            new_params.append(torch.add(p, g, alpha=-lr))
            new_state.append(buf)
        return new_params, new_state


class Adam:
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


def inner_optimizer(optimizer, optimizer_params):
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
        return SGD(**settings)
    if issubclass(optimizer, torch.optim.Adam):
        return Adam(**settings)
    if "lr" not in settings:
        raise ValueError(f"optimizer {optimizer.__name__} has no learning rate to fall back to SGD with.")
    warnings.warn(
        f"No differentiable {optimizer.__name__} step is available; the local search unrolls "
        f"plain SGD with lr={settings['lr']} instead. Use torch.optim.SGD or torch.optim.Adam "
        f"for an exact unroll.",
        stacklevel=3,
    )
    return SGD(lr=settings["lr"])
