"""A net's input rows: one array, or skorch's dict of arrays (a module with several inputs).

skorch passes a dict ``X`` to the module as keyword arguments, one per key,
each array holding one entry per row. Everything in the search that takes
rows, moves them to torch or feeds them to a module goes through these few
functions, so both kinds of input follow the same path.
"""

from collections.abc import Mapping

import numpy as np
import scipy.sparse as sp
import torch
from torch.func import functional_call

__all__ = ["call", "call_functional", "float_dtype", "is_dict", "n_rows", "placeholder", "take", "to_tensors"]


def is_dict(X):
    """Whether ``X`` is skorch's dict input (a sparse DOK matrix, a dict subclass, is not)."""
    return isinstance(X, Mapping) and not sp.issparse(X)


def take(X, rows):
    """The rows ``rows`` (indices, a mask, a slice, or a 1-d tensor of indices) of ``X``."""
    if is_dict(X):
        return {key: _take(value, rows) for key, value in X.items()}
    return _take(X, rows)


def _take(array, rows):
    if torch.is_tensor(array) and torch.is_tensor(rows) and rows.dtype == torch.long:
        return array.index_select(0, rows)
    return array[rows]


def n_rows(X):
    """Number of rows of ``X``."""
    if is_dict(X):
        return len(next(iter(X.values())))
    return len(X)


def to_tensors(X, device=None):
    """``X`` as torch tensors on ``device`` (each array of a dict)."""
    if is_dict(X):
        return {key: torch.as_tensor(value, device=device) for key, value in X.items()}
    return torch.as_tensor(X, device=device)


def call(module, x):
    """``module``'s output on the batch ``x``, as skorch calls it (a dict's keys as keyword arguments)."""
    return module(**x) if is_dict(x) else module(x)


def call_functional(module, params, x, tie_weights=True):
    """:func:`torch.func.functional_call` of ``module`` on the batch ``x``, as :func:`call` would call it."""
    if is_dict(x):
        return functional_call(module, params, (), dict(x), tie_weights=tie_weights)
    return functional_call(module, params, (x,), tie_weights=tie_weights)


def float_dtype(X):
    """The floating dtype of ``X``'s (first floating) tensor; torch's default if there is none."""
    for value in (X.values() if is_dict(X) else [X]):
        if torch.is_tensor(value) and value.is_floating_point():
            return value.dtype
    return torch.get_default_dtype()


def placeholder(X):
    """A feature-less array with ``X``'s rows, for what needs only the number of rows (splitters, dummies)."""
    return np.zeros((n_rows(X), 1), dtype=np.float32)
