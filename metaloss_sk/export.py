"""Export a learned loss as standalone PyTorch source.

:func:`to_torch_source` writes a self-contained Python module that needs only
``torch``, so a loss found by :class:`~metaloss_sk.LossSearchCV` can be pasted
into a training script that does not depend on this library. Nothing in it is
written twice: the module copies the source of the very functions
:class:`~metaloss_sk.SymbolicLoss` runs (the task's terminal function from
:mod:`metaloss_sk.terminals`, the protected primitives from
:mod:`metaloss_sk.primitives`), calls torch's own operation for the other
primitives, and evaluates the program node by node in the order
:meth:`Program.evaluate <metaloss_sk.Program.evaluate>` does. The code is
generated from the parsed program's nodes (primitive names, terminal names and
``repr`` of float constants and coefficients), never from user text.
"""

import builtins
import inspect
import keyword
import textwrap

import torch

from . import terminals
from .loss import SymbolicLoss
from .program import fold

__all__ = ["to_torch_source"]

_TERMINAL_CALL = {
    ("multiclass", "softmax"): (terminals.multiclass_terminals, "y_pred, y_true, True"),
    ("multiclass", "probabilities"): (terminals.multiclass_terminals, "y_pred, y_true, False"),
    ("binary", "sigmoid"): (terminals.binary_terminals, "y_pred, y_true, True"),
    ("binary", "probabilities"): (terminals.binary_terminals, "y_pred, y_true, False"),
    ("regression", "identity"): (terminals.regression_terminals, "y_pred, y_true"),
}

_INPUTS = {
    "multiclass": "y_pred: (n_samples, n_classes) {what}; y_true: (n_samples,) class indices\n"
                  "    or (n_samples, n_classes) class probabilities.",
    "binary": "y_pred: (n_samples,) or (n_samples, 1) {what}; y_true: (n_samples,) labels in {{0, 1}}.",
    "regression": "y_pred: outputs; y_true: targets of the same shape ((n_samples,) and\n"
                  "    (n_samples, 1) are matched).",
}
_WHAT = {"softmax": "logits", "sigmoid": "logits", "probabilities": "probabilities", "identity": "outputs"}


def _source(function):
    """A function's own source, dedented, if it is self-contained (it uses no global but ``torch``)."""
    if not inspect.isfunction(function) or function.__name__ == "<lambda>":
        return None
    if {name for name in function.__code__.co_names if name in function.__globals__} - {"torch"}:
        return None
    try:
        return textwrap.dedent(inspect.getsource(function))
    except (OSError, TypeError):
        return None


def _call(primitive):
    """``(name to call, helper source or None)`` for a primitive; ValueError if it cannot be exported."""
    fn = primitive.torch_fn
    name = getattr(fn, "__name__", "")
    if getattr(torch, name, None) is fn:  # one of torch's own operations
        return f"torch.{name}", None
    source = _source(fn) if callable(fn) else None
    if source is None:
        raise ValueError(
            f"the primitive {primitive.name!r} cannot be exported: its torch function must be a named "
            "function that uses nothing but torch (no lambda, no other globals)."
        )
    return name, source


def _docstring_safe(text):
    return text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')


def to_torch_source(loss, name="learned_loss"):
    """Source of a standalone PyTorch function computing ``loss``.

    The function, ``def <name>(y_pred, y_true)``, needs only ``torch``: it
    turns raw outputs and targets into the terminals ``y`` and ``yhat`` as the
    loss's task and link do, evaluates the program with its coefficients baked
    in as float literals, and reduces as :class:`~metaloss_sk.SymbolicLoss`
    does (sum over classes and mean over the batch; mean over all elements for
    regression). Values and gradients equal the loss's own.

    Parameters
    ----------
    loss : SymbolicLoss
        The loss to export (for a search, ``search.best_loss_``).
    name : str, default="learned_loss"
        Name of the generated function; a Python identifier.

    Returns
    -------
    str
        A module's source: ``import torch``, the helpers the loss needs, then
        the function, whose docstring gives the formula.

    Raises
    ------
    ValueError
        If ``name`` is not a usable identifier, or the program uses a custom
        primitive whose torch function is not a self-contained named function.

    Examples
    --------
    >>> from metaloss_sk import SymbolicLoss
    >>> from metaloss_sk.export import to_torch_source
    >>> source = to_torch_source(SymbolicLoss("neg(mul(y, log(yhat)))"))
    >>> print(source.splitlines()[0])
    import torch
    >>> "def learned_loss(y_pred, y_true, sample_weight=None):" in source
    True

    Save the source as a module and import it where the loss is needed;
    ``tests/test_export.py`` runs such modules against :class:`SymbolicLoss`.
    """
    if not isinstance(loss, SymbolicLoss):
        raise TypeError(f"expected a SymbolicLoss, got {type(loss).__name__}; for a fitted "
                        "LossSearchCV pass search.best_loss_.")
    terminal_fn, terminal_args = _TERMINAL_CALL[loss.task, loss.link_]
    helpers = {fn.__name__: _source(fn) for fn in (terminal_fn, terminals.reduce_loss)}
    lines = []

    def emit(expr):
        lines.append(f"    v{len(lines)} = {expr}")
        return f"v{len(lines) - 1}"

    def node(primitive, args):
        call, source = _call(primitive)
        if source is not None:
            helpers[call] = source
        return emit(f"{call}({', '.join(args)})")

    coefficients = loss.get_params()["coefficients"]
    result = fold(
        loss.program_.nodes,
        lambda n: ("y", "yhat")[n] if isinstance(n, int) else emit(f"yhat.new_tensor({float(n)!r})"),
        node,
        None if coefficients is None else (coefficients, lambda value, c: emit(f"{value} * {c!r}")),
    )
    reserved = {"torch", "y_pred", "y_true", "sample_weight", "y", "yhat", *helpers, *dir(builtins)}
    if (not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name) or name in reserved
            or (name[0] == "v" and name[1:].isdigit())):
        raise ValueError(f"name must be a Python identifier other than the generated code's own names "
                         f"{sorted(set(reserved) - set(dir(builtins)))} and v0, v1, ..., got {name!r}.")
    doc = [
        f"Learned loss: {_docstring_safe(loss.infix(precision=6))}",
        "",
        f"Program: {_docstring_safe(str(loss.program_))}",
        f"Task: {loss.task}, link: {loss.link_}. Standalone: needs only torch.",
        "",
        _INPUTS[loss.task].format(what=_WHAT[loss.link_]),
        "sample_weight (optional): (n_samples,) weights, each row's loss scaled before the batch mean.",
    ]
    if coefficients is not None:
        doc.append("Each non-root node's value is scaled by its learned coefficient.")
    parts = ["import torch", "", ""]
    for source in helpers.values():
        parts += [source.rstrip("\n"), "", ""]
    parts.append(f"def {name}(y_pred, y_true, sample_weight=None):")
    parts.append('    """' + "\n".join(f"    {line}" if line else "" for line in doc)[4:] + '\n    """')
    parts.append("    y_true = torch.as_tensor(y_true, device=y_pred.device)")
    parts.append(f"    y, yhat = {terminal_fn.__name__}({terminal_args})")
    parts += lines
    parts.append(f"    return reduce_loss({result}, y, {loss.task == 'regression'}, sample_weight)")
    return "\n".join(parts) + "\n"
