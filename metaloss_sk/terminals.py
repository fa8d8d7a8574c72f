"""How a net's raw outputs and targets become a program's terminals, and its values a loss.

One function per task. Each is self-contained (it uses only ``torch``), so
:mod:`metaloss_sk.export` copies its source into standalone code and an
exported loss runs exactly what :class:`~metaloss_sk.SymbolicLoss` runs.
"""

import torch

__all__ = ["TERMINALS", "binary_terminals", "multiclass_terminals", "reduce_loss", "regression_terminals"]

#: Terminal names, by index: the order in which every function here returns them.
TERMINALS = ("y", "yhat")


def multiclass_terminals(y_pred, y_true, softmax):
    """``(y, yhat)``: the one-hot targets (or given class probabilities) and the softmax (or the outputs)."""
    if y_pred.dim() != 2:
        raise ValueError(
            f"task='multiclass' expects predictions of shape (n_samples, n_classes), "
            f"got {tuple(y_pred.shape)}; for one output use task='binary'."
        )
    yhat = torch.softmax(y_pred, dim=-1) if softmax else y_pred
    if y_true.shape == y_pred.shape and torch.is_floating_point(y_true):
        return y_true.to(y_pred.dtype), yhat
    if y_true.dim() != 1 or len(y_true) != len(y_pred):
        raise ValueError(
            f"task='multiclass' expects targets of shape ({len(y_pred)},) with class "
            f"indices, or {tuple(y_pred.shape)} with probabilities; got {tuple(y_true.shape)}."
        )
    if torch.is_floating_point(y_true) or y_true.dtype == torch.bool:
        raise TypeError(f"task='multiclass' expects integer class indices, got {y_true.dtype}.")
    y = torch.zeros_like(y_pred).scatter_(1, y_true.long().unsqueeze(1), 1.0)
    return y, yhat


def binary_terminals(y_pred, y_true, sigmoid):
    """``(y, yhat)`` over the two classes: ``[1 - t, t]`` and ``[1 - p, p]``."""
    if not (y_pred.dim() == 1 or (y_pred.dim() == 2 and y_pred.shape[1] == 1)):
        raise ValueError(
            f"task='binary' expects one output per sample, (n_samples,) or (n_samples, 1); "
            f"got {tuple(y_pred.shape)}; for several classes use task='multiclass'."
        )
    z = y_pred.reshape(-1)
    if y_true.numel() != z.numel():
        raise ValueError(f"task='binary' expects {z.numel()} targets, got shape {tuple(y_true.shape)}.")
    t = y_true.reshape(-1).to(y_pred.dtype)
    # [sigmoid(-z), sigmoid(z)] keeps 1 - p accurate near p = 1.
    yhat = torch.sigmoid(torch.stack([-z, z], dim=-1)) if sigmoid else torch.stack([1 - z, z], dim=-1)
    return torch.stack([1 - t, t], dim=-1), yhat


def regression_terminals(y_pred, y_true):
    """``(y, yhat)``: the targets, shaped like the outputs, and the outputs."""
    if y_true.shape != y_pred.shape:
        if y_pred.dim() == 2 and y_pred.shape[1] == 1 and y_true.shape == y_pred.shape[:1]:
            y_true = y_true.unsqueeze(1)
        elif y_true.dim() == 2 and y_true.shape[1] == 1 and y_pred.shape == y_true.shape[:1]:
            y_pred = y_pred.unsqueeze(1)
        else:
            raise ValueError(
                f"task='regression' expects targets shaped like the predictions "
                f"{tuple(y_pred.shape)} (or (n_samples,) for one output), got {tuple(y_true.shape)}."
            )
    return y_true.to(y_pred.dtype), y_pred


def reduce_loss(values, y, regression, sample_weight=None):
    """The program's element-wise values as one loss: sum over classes and mean over the batch.

    For regression the mean over all elements. ``sample_weight`` (one weight
    per row) scales each row's loss before the mean over the batch, as
    ``(sample_weight * per_row_loss).mean()``: weights of one leave the loss
    unchanged.
    """
    if values.shape != y.shape:
        values = torch.broadcast_to(values, y.shape)
    if sample_weight is None:
        return values.mean() if regression else values.sum(-1).mean()
    rows = values.reshape(len(values), -1)
    rows = rows.mean(-1) if regression else rows.sum(-1)
    weight = torch.as_tensor(sample_weight, dtype=rows.dtype, device=rows.device)
    if weight.numel() != len(rows):
        raise ValueError(f"sample_weight must hold one weight per row of the batch ({len(rows)}), "
                         f"got shape {tuple(weight.shape)}.")
    return (rows * weight.reshape(-1)).mean()
