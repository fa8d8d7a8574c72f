"""Export a learned loss: standalone PyTorch source, sympy and LaTeX.

:func:`to_torch_source` writes a self-contained Python function that needs only
``torch``, so a loss found by :class:`~metaloss_sk.LossSearchCV` can be pasted
into a training script that does not depend on this library. The function is
generated from the parsed program's nodes (primitive names from the registry,
terminal names and ``repr`` of float constants and coefficients), never from
user text, and reproduces :class:`~metaloss_sk.SymbolicLoss` exactly: the same
torch operations in the same order, with the same protected forms.
"""

import keyword

from .loss import SymbolicLoss
from .primitives import _EXP_CAP, _FLOOR, PRIMITIVES, Primitive

__all__ = ["to_torch_source", "to_sympy", "to_latex"]

# Primitives that are a single torch call.
_INLINE = {
    "add": "torch.add({}, {})",
    "sub": "torch.sub({}, {})",
    "mul": "torch.mul({}, {})",
    "min": "torch.minimum({}, {})",
    "max": "torch.maximum({}, {})",
    "sign": "torch.sign({})",
    "square": "torch.square({})",
    "abs": "torch.abs({})",
    "tanh": "torch.tanh({})",
    "neg": "torch.neg({})",
    "sin": "torch.sin({})",
    "cos": "torch.cos({})",
    "sigmoid": "torch.sigmoid({})",
}

# Protected primitives: a helper function each, emitted only when used.
_HELPERS = {
    "div": ("_aq", '''\
def _aq(a, b):
    """Analytic quotient a / sqrt(1 + b**2) (protected division)."""
    return a / torch.hypot(torch.ones_like(b), b)
'''),
    "log": ("_plog", f'''\
def _plog(x):
    """Protected log: log(max(|x|, {_FLOOR!r}))."""
    return torch.log(torch.clamp(torch.abs(x), min={_FLOOR!r}))
'''),
    "sqrt": ("_psqrt", f'''\
def _psqrt(x):
    """Protected square root: sqrt(max(|x|, {_FLOOR!r}))."""
    return torch.sqrt(torch.clamp(torch.abs(x), min={_FLOOR!r}))
'''),
    "inv": ("_pinv", '''\
def _pinv(x):
    """Protected inverse: 1/x where |x| > 0.001, else 0 (double where: finite gradients)."""
    mask = torch.abs(x) > 1e-3
    safe = torch.where(mask, x, torch.ones_like(x))
    return torch.where(mask, 1.0 / safe, torch.zeros_like(x))
'''),
    "exp": ("_pexp", f'''\
def _pexp(x):
    """Protected exp: exp(min(x, {_EXP_CAP!r}))."""
    return torch.exp(torch.clamp(x, max={_EXP_CAP!r}))
'''),
}

_RESERVED = {"torch", "y_pred", "y_true", "y", "yhat"} | {name for name, _ in _HELPERS.values()}

_TERMINALS = {
    ("multiclass", "softmax"): '''\
    if y_pred.dim() != 2:
        raise ValueError(f"expected predictions of shape (n_samples, n_classes), got {tuple(y_pred.shape)}")
    yhat = torch.softmax(y_pred, dim=-1)
''',
    ("multiclass", "probabilities"): '''\
    if y_pred.dim() != 2:
        raise ValueError(f"expected predictions of shape (n_samples, n_classes), got {tuple(y_pred.shape)}")
    yhat = y_pred
''',
    ("binary", "sigmoid"): '''\
    z = y_pred.reshape(-1)
    t = y_true.reshape(-1).to(y_pred.dtype)
    # [sigmoid(-z), sigmoid(z)] keeps 1 - p accurate near p = 1.
    yhat = torch.sigmoid(torch.stack([-z, z], dim=-1))
    y = torch.stack([1 - t, t], dim=-1)
''',
    ("binary", "probabilities"): '''\
    z = y_pred.reshape(-1)
    t = y_true.reshape(-1).to(y_pred.dtype)
    yhat = torch.stack([1 - z, z], dim=-1)
    y = torch.stack([1 - t, t], dim=-1)
''',
    ("regression", "identity"): '''\
    if y_true.shape != y_pred.shape:
        if y_pred.dim() == 2 and y_pred.shape[1] == 1 and y_true.shape == y_pred.shape[:1]:
            y_true = y_true.unsqueeze(1)
        elif y_true.dim() == 2 and y_true.shape[1] == 1 and y_pred.shape == y_true.shape[:1]:
            y_pred = y_pred.unsqueeze(1)
        else:
            raise ValueError(f"targets {tuple(y_true.shape)} do not match predictions {tuple(y_pred.shape)}")
    y, yhat = y_true.to(y_pred.dtype), y_pred
''',
}

_ONE_HOT = '''\
    if y_true.shape == y_pred.shape and torch.is_floating_point(y_true):
        y = y_true.to(y_pred.dtype)  # class probabilities
    else:
        y = torch.zeros_like(y_pred).scatter_(1, y_true.long().unsqueeze(1), 1.0)  # class indices
'''

_INPUTS = {
    "multiclass": "y_pred: (n_samples, n_classes) {what}; y_true: (n_samples,) class indices\n"
                  "    or (n_samples, n_classes) class probabilities.",
    "binary": "y_pred: (n_samples,) or (n_samples, 1) {what}; y_true: (n_samples,) labels in {{0, 1}}.",
    "regression": "y_pred: outputs; y_true: targets of the same shape ((n_samples,) and\n"
                  "    (n_samples, 1) are matched).",
}
_WHAT = {"softmax": "logits", "sigmoid": "logits", "probabilities": "probabilities", "identity": "outputs"}


def _check_loss(loss):
    if not isinstance(loss, SymbolicLoss):
        raise TypeError(f"expected a SymbolicLoss, got {type(loss).__name__}; for a fitted "
                        "LossSearchCV pass search.best_loss_.")
    return loss


def _check_primitive(p):
    if PRIMITIVES.get(p.name) != p:
        raise ValueError(f"the program uses the custom primitive {p.name!r}, which has no torch source to "
                         f"export; only the built-in primitives {sorted(PRIMITIVES)} can be exported.")


def _program_lines(program, coefficients):
    """Straight-line code evaluating the prefix program, one assignment per node.

    Mirrors :func:`metaloss_sk.program._fold`: nodes are evaluated from the
    last to the first, every non-root node's value is multiplied by its
    coefficient, constants are tensors like ``yhat``. Returns the lines, the
    name holding the result and the primitives used.
    """
    nodes = program.nodes
    lines, stack, used = [], [], set()
    for i in range(len(nodes) - 1, -1, -1):
        n = nodes[i]
        if isinstance(n, Primitive):
            _check_primitive(n)
            used.add(n.name)
            args = [stack.pop() for _ in range(n.arity)]
            if n.name in _HELPERS:
                expr = f"{_HELPERS[n.name][0]}({', '.join(args)})"
            else:
                expr = _INLINE[n.name].format(*args)
        elif isinstance(n, int):
            expr = ("y", "yhat")[n]
        else:
            expr = f"yhat.new_tensor({float(n)!r})"
        if coefficients is not None and i > 0:
            expr = f"{expr} * {coefficients[i - 1]!r}"
        if expr in ("y", "yhat"):
            stack.append(expr)
        else:
            lines.append(f"    v{i} = {expr}")
            stack.append(f"v{i}")
    return lines, stack[0], used


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
        A module's source: ``import torch``, helpers for the protected
        primitives the program uses, then the function, whose docstring gives
        the formula.

    Raises
    ------
    ValueError
        If ``name`` is not a usable identifier, or the program uses a custom
        primitive (one not in ``metaloss_sk.PRIMITIVES``).

    Examples
    --------
    >>> from metaloss_sk import SymbolicLoss
    >>> from metaloss_sk.export import to_torch_source
    >>> source = to_torch_source(SymbolicLoss("neg(mul(y, log(yhat)))"))
    >>> print(source.splitlines()[0])
    import torch
    >>> "def learned_loss(y_pred, y_true):" in source
    True

    Save the source as a module and import it where the loss is needed;
    ``tests/test_export.py`` runs such modules against :class:`SymbolicLoss`.
    """
    loss = _check_loss(loss)
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name) or name in _RESERVED:
        raise ValueError(f"name must be a Python identifier other than {sorted(_RESERVED)}, got {name!r}.")
    coefficients = loss.get_params()["coefficients"]
    body, result, used = _program_lines(loss.program_, coefficients)
    task, link = loss.task, loss.link_
    helpers = [_HELPERS[p][1] for p in sorted(used) if p in _HELPERS]

    doc = [
        f"Learned loss: {_docstring_safe(loss.infix(precision=6))}",
        "",
        f"Program: {_docstring_safe(str(loss.program_))}",
        f"Task: {task}, link: {link}. Standalone: needs only torch.",
        "",
        _INPUTS[task].format(what=_WHAT[link]),
    ]
    if coefficients is not None:
        doc.append("Each non-root node's value is scaled by its learned coefficient.")
    parts = ["import torch", "", ""]
    for h in helpers:
        parts += [h, ""]
    parts.append(f"def {name}(y_pred, y_true):")
    doc = "\n".join(doc).split("\n")
    parts.append('    """' + "\n".join(f"    {line}" if line else "" for line in doc)[4:] + '\n    """')
    parts.append("    y_true = torch.as_tensor(y_true, device=y_pred.device)")
    parts.append(_TERMINALS[task, link].rstrip("\n"))
    if task == "multiclass":
        parts.append(_ONE_HOT.rstrip("\n"))
    parts += body
    parts.append(f"    loss = {result}")
    parts.append("    if loss.shape != y.shape:")
    parts.append("        loss = torch.broadcast_to(loss, y.shape)")
    parts.append("    return loss.mean()" if task == "regression" else "    return loss.sum(-1).mean()")
    return "\n".join(parts) + "\n"


def to_sympy(loss):
    """The loss as a sympy expression in ``y`` and ``yhat`` (coefficients included).

    Same as :meth:`SymbolicLoss.sympy`; the protective floors are omitted.
    """
    return _check_loss(loss).sympy()


def to_latex(loss):
    """The loss in LaTeX; same as :meth:`SymbolicLoss.latex`."""
    return _check_loss(loss).latex()
