"""The local search's unrolled inner steps for several losses as one batched network.

:func:`metaloss_sk.unrolled.learn_coefficients_group` unrolls one network per
loss, every one from the same starting parameters. Where
:func:`metaloss_sk.batched.batch_plan` accepts the module (``nn.Linear``
layers and elementwise operations) and the input is one 2-d tensor, those
networks run as one: the parameters are stacked to ``[G, ...]`` (G losses),
every forward pass is one pass of :class:`~metaloss_sk.batched.BatchedModule`
over the stacked values of the moment (functions of the inner steps, hence of
the coefficients), each loss computes its own inner loss on its slice of the
outputs, one ``autograd.grad`` of their sum (``create_graph=True``) gives every
slice its own loss's gradient (no operation mixes the slices), and one
out-of-place step of :mod:`metaloss_sk.optim` (elementwise) steps them all.

What each loss sees is what it sees alone: the same starting parameters, the
same batches, the dropout masks a lone network draws (one lone copy's mask,
shared, see :mod:`metaloss_sk.batched`). A program that raises fails that
loss alone (its slice is left out of the sum); one that turns its weights NaN
keeps the NaN in its slice. A loss whose inner loss does not reach the
network's output (blind to the prediction) leaves its network alone, as alone
(torch.optim skips a parameter without gradient): its slice is kept as it was.
The batched products round differently from a lone network's, so a loss's
meta objectives and coefficients agree with lone learning to float32 rounding,
not bit for bit; they are a deterministic function of the group.
"""

import torch

from ._rows import is_dict
from .batched import BatchedModule, batch_plan

__all__ = ["batched_objectives", "unroll_plan"]


def unroll_plan(module, X):
    """A :class:`BatchedModule` (the plan alone) when the unroll of ``module`` on ``X`` can run batched, else None.

    ``module`` is one network from the factory (every one has its structure);
    ``X`` the training rows.
    """
    if is_dict(X) or not torch.is_tensor(X) or X.ndim != 2:
        return None
    if not any(p.requires_grad for p in module.parameters()):
        return None
    traced, _ = batch_plan(module)
    return None if traced is None else BatchedModule(traced)


def batched_objectives(plan, losses, css, params, train_batches, valid_batch, inner, task_loss):
    """Each loss's meta objective, or the exception its program raised: the batched
    :func:`metaloss_sk.unrolled._unrolled_objectives` (same arguments, ``plan`` for the module)."""
    names, n = list(params), len(losses)
    values = [p.unsqueeze(0).expand(n, *p.shape) for p in params.values()]  # every network starts from params
    states = [None] * len(values)
    trainable = [i for i, p in enumerate(params.values()) if p.requires_grad]
    failures = [None] * n
    # A program that does not read yhat never reaches the network: alone, no parameter gets a gradient and
    # the step leaves them (torch.optim skips them); here its slice is kept as it was.
    blind = [j for j, loss in enumerate(losses) if "yhat" not in loss.program_.terminals_used]
    for t, (xb, yb) in enumerate(train_batches, 1):
        stacked = plan.forward(dict(zip(names, values)), xb).contiguous()
        outputs = stacked.unbind()
        total = None
        for j in range(n):
            if failures[j] is not None:
                continue
            try:
                y, yhat = losses[j].terminals(outputs[j], yb)
                inner_loss = losses[j].reduce(losses[j].program_.evaluate(y, yhat, css[j]), y)
            except Exception as exc:  # noqa: BLE001 - the program's own failure, reported per loss
                failures[j] = exc
                continue
            if j not in blind:
                total = inner_loss if total is None else total + inner_loss
        if total is None:
            continue
        grads = [None] * len(values)
        found = torch.autograd.grad(total, [values[i] for i in trainable], create_graph=True, allow_unused=True)
        for i, g in zip(trainable, found):
            grads[i] = g
        new_values, states = inner.step(values, grads, states, t)
        if blind:
            keep = torch.zeros(n, dtype=torch.bool, device=stacked.device)
            keep[blind] = True
            new_values = [v if new is v else torch.where(keep.view(-1, *[1] * (v.ndim - 1)), v, new)
                          for v, new in zip(values, new_values)]
        values = new_values
    outputs = plan.forward(dict(zip(names, values)), valid_batch[0]).contiguous().unbind()
    return [failures[j] if failures[j] is not None else task_loss(outputs[j], valid_batch[1]) for j in range(n)]

