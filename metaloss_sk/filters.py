"""Cheap tests that spare a search from training candidates that cannot change its answer.

- :func:`symbolic_key`: programs that are the same function up to sympy's
  canonical form (commutativity, constant folding, identities such as
  ``x - x = 0``) share one key, so one evaluation.
- :func:`commutative_key`: programs that differ only by swapped arguments of
  commutative primitives share one key. With one learned coefficient per
  edge, such programs are also the same family of parameterised losses, so
  the key serves searches that run the local search on every candidate.
- :class:`Probe`: a fixed set of training rows pushed through the fold's
  freshly initialised network. On it, :meth:`Probe.fingerprints` gives each
  loss's gradient with respect to the network's outputs: a loss whose gradient
  is zero or non-finite everywhere cannot train anything, and losses with the
  same gradient (those that differ by an additive constant, say) give the same
  training signal. :meth:`Probe.reject` is EvoMAL's rejection protocol: treat
  the outputs as free variables, minimise the loss over them directly, and
  reject the loss if the task error does not improve.
- :func:`gradient_violations`: the protected primitives keep a loss's values
  finite, not its gradients (``log`` of a value near zero has a gradient near
  1e7). A loss whose gradient with respect to the net's outputs is not
  finite, or far steeper than the usual loss's, somewhere on a dense grid over
  the outputs it can meet, trains unstably or diverges: it is rejected before
  any training.
"""

import hashlib
import math

import numpy as np
import torch

from .loss import usual_loss

__all__ = ["Probe", "commutative_key", "gradient_violations", "symbolic_key"]

#: A gradient this small everywhere on the probe is round-off, not a signal
#: (``sub(yhat, y)`` on softmax outputs has an exact gradient of zero).
_ZERO_GRADIENT = 1e-7


def _grid(task):
    """Terminal values ``(y, yhat)`` covering a task's output domain, and each point's chain-rule weight.

    The grid is fine enough (spacing 2.5e-4 for probabilities, 5e-4 for
    regression outputs) that a singular point anywhere inside the domain has a
    grid point close enough to show a gradient far above any bound of use.
    Classification: ``yhat`` a probability in [0, 1] (denser near both ends,
    where protected primitives hit their floors), ``y`` 0 or 1; the weight
    ``yhat (1 - yhat)`` is the slope of the softmax or sigmoid, so that
    weight times the gradient bounds the gradient with respect to the logit.
    Regression: ``y`` and ``yhat`` over [-4, 4], the range of standardised
    targets; weight 1.
    """
    if task == "regression":
        y, yhat = torch.meshgrid(torch.linspace(-4, 4, 17), torch.linspace(-4, 4, 16001), indexing="ij")
        return y.reshape(-1), yhat.reshape(-1), torch.ones(y.numel())
    edges = torch.logspace(-7, -1, 43)
    p = torch.cat([torch.tensor([0.0, 1.0]), edges, 1 - edges, torch.linspace(0, 1, 4001)])
    y = torch.cat([torch.zeros_like(p), torch.ones_like(p)])
    p = torch.cat([p, p])
    return y, p, p * (1 - p)


def _steepest(loss, y, yhat, weight):
    """The largest weighted gradient of the loss's element-wise program on the grid (inf if not finite)."""
    yhat = yhat.clone().requires_grad_()
    coefficients = None if loss.coefficients is None else loss.coefficients.detach().cpu()
    try:
        values = torch.broadcast_to(loss.program_.evaluate(y, yhat, coefficients), yhat.shape)
        (grad,) = torch.autograd.grad(values.sum(), yhat, allow_unused=True)
    except Exception:  # noqa: BLE001 - a program that fails here would fail in training
        return math.inf
    if not torch.isfinite(values).all():
        return math.inf
    grad = torch.zeros_like(yhat) if grad is None else grad
    return float((grad.abs() * weight).max()) if torch.isfinite(grad).all() else math.inf


def gradient_violations(losses, bound):
    """Per loss: None if its gradient is finite and at most ``bound`` times the usual loss's on the grid.

    The usual loss is cross-entropy (whose weighted gradient is at most 1) for
    classification and squared error for regression, on the same grid.

    Returns
    -------
    list of str or None
        Why each loss is rejected, or None.
    """
    out, references = [], {}
    for loss in losses:
        grid = _grid(loss.task)
        if loss.task not in references:
            references[loss.task] = _steepest(usual_loss(loss.task), *grid)
        steepest = _steepest(loss, *grid)
        if not math.isfinite(steepest):
            out.append("unstable: the loss or its gradient is not finite somewhere on the output domain")
        elif steepest > bound * references[loss.task]:
            out.append(f"unstable: its gradient reaches {steepest:.3g} on the output domain, more than "
                       f"{bound:g} times the usual loss's largest ({references[loss.task]:.3g})")
        else:
            out.append(None)
    return out


def symbolic_key(loss):
    """A canonical string for the function a loss computes (sympy's automatic canonical form)."""
    try:
        return f"{loss.task}|{loss.link_}|" + str(loss.sympy())
    except Exception:  # sympy can fail on exotic constants; fall back to the exact text
        return f"{loss.task}|{loss.link_}|{loss.program_}|{loss.get_params()['coefficients']}"


def commutative_key(loss):
    """A string shared by losses whose programs differ only in the order of commutative arguments."""
    if loss.coefficients is not None:  # coefficients belong to positions: keep the exact text
        return f"{loss.task}|{loss.link_}|{loss.program_}|{loss.get_params()['coefficients']}"
    return f"{loss.task}|{loss.link_}|{loss.program_.canonical()}"


class Probe:
    """Outputs of a fresh network on a few training rows, to test candidate losses on.

    Parameters
    ----------
    outputs : Tensor
        The network's raw outputs on the probe rows.
    targets : Tensor
        Their targets, as the loss receives them.
    task : str
        The losses' task ("multiclass", "binary" or "regression").
    """

    def __init__(self, outputs, targets, task):
        self.outputs = outputs.detach()
        self.targets = targets
        self.task = task

    def _values(self, losses, outputs):
        """Per-loss values on a stacked (K, ...) output tensor; non-finite where a loss fails."""
        first = losses[0]
        shared = all((loss.task, loss.link_) == (first.task, first.link_) for loss in losses)
        if shared:
            # One softmax (or sigmoid) and one target encoding for all the losses.
            targets = self.targets.repeat(len(losses), *([1] * (self.targets.dim() - 1)))
            y, yhat = first.terminals(outputs.flatten(0, 1), targets)
            y, yhat = y.unflatten(0, outputs.shape[:2]), yhat.unflatten(0, outputs.shape[:2])
        values = []
        for k, loss in enumerate(losses):
            try:
                values.append(loss.from_terminals(y[k], yhat[k]) if shared else loss(outputs[k], self.targets))
            except Exception:
                values.append(outputs[k].sum() * float("nan"))
        return torch.stack(values)

    def fingerprints(self, losses, decimals=5):
        """Per loss: None if its gradient on the probe is zero or not finite, else a hash of it.

        Gradients are rounded to ``decimals`` significant digits (relative to
        their largest entry) before hashing, so round-off does not split
        losses that give the same training signal.
        """
        outputs = self.outputs.unsqueeze(0).repeat(len(losses), *([1] * self.outputs.dim())).requires_grad_()
        values = self._values(losses, outputs)
        finite = torch.isfinite(values)
        (grad,) = torch.autograd.grad(values[finite].sum(), outputs, allow_unused=True) if finite.any() \
            else (None,)
        keys = []
        for k in range(len(losses)):
            g = None if grad is None or not finite[k] else grad[k]
            if g is None or not torch.isfinite(g).all() or not g.abs().max() > _ZERO_GRADIENT:
                keys.append(None)
                continue
            g = g.double().cpu().numpy()
            scale = np.abs(g).max()
            exponent = np.floor(np.log10(scale))
            rounded = np.round(g / 10.0**exponent, decimals) + 0.0  # + 0.0 turns -0.0 into 0.0
            keys.append(hashlib.sha1(rounded.tobytes() + str(exponent).encode()).hexdigest())
        return keys

    def task_error(self, outputs):
        """Error rate (classification) or mean squared error (regression) per stacked output."""
        if self.task == "multiclass":
            return (outputs.argmax(-1) != self.targets).double().mean(-1)
        if self.task == "binary":
            predicted = (outputs.reshape(len(outputs), -1) > 0).double()
            return (predicted != self.targets.reshape(1, -1)).double().mean(-1)
        target = self.targets.reshape(self.outputs.shape)
        return ((outputs - target) ** 2).reshape(len(outputs), -1).double().mean(-1)

    def reject(self, losses, steps=1000, lr=0.01, check_every=25):
        """EvoMAL's rejection protocol: True for each loss that fails to lower the task error.

        The outputs are optimised directly (Adam, ``lr``, up to ``steps``
        steps), one copy per loss, all at once. Every ``check_every`` steps a
        loss whose task error has fallen below the initial error is accepted
        and leaves the optimisation, so good losses cost a few dozen steps and
        only the degenerate ones run the full course. A loss that turns
        non-finite stops where it is and is judged there.
        """
        # float64: Adam's squared gradients of a steep loss would overflow float32.
        start = self.outputs.double()
        outputs = start.unsqueeze(0).repeat(len(losses), *([1] * start.dim())).requires_grad_()
        optimizer = torch.optim.Adam([outputs], lr=lr)
        before = self.task_error(start.unsqueeze(0))[0]
        active = torch.ones(len(losses), dtype=torch.bool)
        accepted = torch.zeros(len(losses), dtype=torch.bool)
        for step in range(steps):
            if step % check_every == 0:
                with torch.no_grad():
                    accepted |= active & (self.task_error(outputs) < before)
                active &= ~accepted
            if not active.any():
                break
            optimizer.zero_grad(set_to_none=True)
            index = active.nonzero().flatten().tolist()
            values = self._values([losses[k] for k in index], outputs[index])
            finite = torch.isfinite(values)
            active[[k for k, ok in zip(index, finite.tolist()) if not ok]] = False
            if not finite.any():
                break
            values[finite].sum().backward()
            outputs.grad[~active] = 0.0
            # Adam's momentum would keep moving a loss that just stopped; freeze it.
            frozen = outputs.detach()[~active].clone()
            optimizer.step()
            with torch.no_grad():
                outputs[~active] = frozen
        with torch.no_grad():
            after = self.task_error(outputs.detach())
            accepted |= torch.isfinite(after) & (after < before)
        return [not bool(a) for a in accepted]
