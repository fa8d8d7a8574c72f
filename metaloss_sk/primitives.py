"""The function set: every primitive a loss program may use.

Each primitive carries its name and arity (as in gplearn), a torch operation
that is finite in value and gradient for every finite input, and a sympy form
for export. The protected forms are EvoMAL's: division is the analytic
quotient, ``log`` and ``sqrt`` act on ``max(|x|, 1e-7)``.
"""

from collections.abc import Callable
from dataclasses import dataclass

import sympy
import torch

__all__ = ["Primitive", "PRIMITIVES", "EVOMAL_FUNCTION_SET", "register_primitive", "resolve_function_set"]

@dataclass(frozen=True)
class Primitive:
    """One function a loss program may call.

    Parameters
    ----------
    name : str
        The name used in program strings, e.g. ``"mul"``.
    arity : int
        Number of arguments.
    torch_fn : callable
        Element-wise tensor operation.
    sympy_fn : callable
        The same operation on sympy expressions (protective floors omitted for
        readability where they only matter at the singular point).
    infix : str or None
        A format string for readable infix printing, or None for ``name(args)``.
    commutative : bool, default=False
        Whether swapping the two arguments never changes the value: programs
        that differ only by such swaps share one evaluation.
    zero_gradient : bool, default=False
        Whether the derivative is zero wherever it exists (``sign``): the
        argument's graph is then not recorded (see ``Program.evaluator``).
    """

    name: str
    arity: int
    torch_fn: Callable = None
    sympy_fn: Callable = None
    infix: str = None
    commutative: bool = False
    zero_gradient: bool = False

    def __repr__(self):
        return f"Primitive({self.name!r}, arity={self.arity})"


# The protected forms are self-contained (torch only, constants written out):
# metaloss_sk.export copies their source into standalone code.


def _abs(x):
    # |x| with torch.abs's value and gradient, written as x * sign(x): torch.abs's
    # second derivative goes through a Python decomposition that makes the local
    # search's double backward over twice as slow (benchmarks/results/refine_speed.md).
    return x * torch.sign(x)


def _protected_log(x):
    """log(max(|x|, 1e-7))."""
    return torch.log(torch.clamp_min(x * torch.sign(x), 1e-7))


def _protected_sqrt(x):
    """sqrt(max(|x|, 1e-7))."""
    return torch.sqrt(torch.clamp_min(x * torch.sign(x), 1e-7))


def _analytic_quotient(a, b):
    """a / sqrt(1 + b^2), with hypot(1, b) so that a large |b| cannot overflow."""
    return a / torch.hypot(torch.ones_like(b), b)


def _protected_inv(x):
    """1 / x where |x| > 1e-3, else 0 (gplearn's), in the double-where form (finite gradients)."""
    mask = torch.abs(x) > 1e-3
    safe = torch.where(mask, x, torch.ones_like(x))
    return torch.where(mask, 1.0 / safe, torch.zeros_like(x))


def _protected_exp(x):
    """exp(min(x, 30))."""
    return torch.exp(torch.clamp(x, max=30.0))


def _sym_log(x):
    return sympy.log(sympy.Abs(x))


def _sym_sqrt(x):
    return sympy.sqrt(sympy.Abs(x))


def _sym_div(a, b):
    return a / sympy.sqrt(1 + b**2)


def _sym_inv(x):
    return 1 / x


_ALL = [
    Primitive("add", 2, torch.add, lambda a, b: a + b, "({} + {})", commutative=True),
    Primitive("sub", 2, torch.sub, lambda a, b: a - b, "({} - {})"),
    Primitive("mul", 2, torch.mul, lambda a, b: a * b, "({} * {})", commutative=True),
    Primitive("div", 2, _analytic_quotient, _sym_div, "aq({}, {})"),
    Primitive("min", 2, torch.minimum, sympy.Min, commutative=True),
    Primitive("max", 2, torch.maximum, sympy.Max, commutative=True),
    Primitive("sign", 1, torch.sign, sympy.sign, zero_gradient=True),
    Primitive("square", 1, torch.square, lambda x: x**2, "{}^2"),
    Primitive("abs", 1, _abs, sympy.Abs, "|{}|"),
    Primitive("log", 1, _protected_log, _sym_log),
    Primitive("sqrt", 1, _protected_sqrt, _sym_sqrt),
    Primitive("tanh", 1, torch.tanh, sympy.tanh),
    Primitive("neg", 1, torch.neg, lambda x: -x, "-{}"),
    Primitive("inv", 1, _protected_inv, _sym_inv),
    Primitive("sin", 1, torch.sin, sympy.sin),
    Primitive("cos", 1, torch.cos, sympy.cos),
    Primitive("exp", 1, _protected_exp, sympy.exp),
    Primitive("sigmoid", 1, torch.sigmoid, lambda x: 1 / (1 + sympy.exp(-x))),
]

#: Every primitive known, by name: the library's, and the user's (:func:`register_primitive`).
PRIMITIVES = {p.name: p for p in _ALL}
_BUILT_IN = frozenset(PRIMITIVES)


def register_primitive(primitive):
    """Make a user primitive known by name, as gplearn's ``make_function`` does.

    Programs that use it can then be parsed, trained (search workers learn it
    with the programs sent to them), saved and loaded as JSON (register it
    again before loading, in a new session) and exported (if its torch
    function is a named function that uses nothing but torch). Giving the
    primitive in a search's ``function_set`` registers it.

    Parameters
    ----------
    primitive : Primitive
        Its ``torch_fn`` must be element-wise and finite in value and gradient
        for finite inputs, as the protected built-in primitives are.

    Returns
    -------
    Primitive

    Raises
    ------
    ValueError
        If the name is not an identifier, is a terminal's (``y``, ``yhat``) or
        a built-in primitive's, or another primitive of that name is registered.
    """
    if not isinstance(primitive, Primitive):
        raise TypeError(f"register_primitive takes a Primitive, got {type(primitive).__name__}.")
    name = primitive.name
    if not isinstance(name, str) or not name.isidentifier() or name in ("y", "yhat", "aq"):
        raise ValueError(f"a primitive's name must be an identifier other than y, yhat and aq, got {name!r}.")
    if isinstance(primitive.arity, bool) or primitive.arity not in (1, 2):
        raise ValueError(f"primitive {name!r}: arity must be 1 or 2, got {primitive.arity!r}.")
    if not callable(primitive.torch_fn):
        raise ValueError(f"primitive {name!r}: torch_fn must be callable, got {primitive.torch_fn!r}.")
    known = PRIMITIVES.get(name)
    if known is not None and known is not primitive and (name in _BUILT_IN or known != primitive):
        raise ValueError(f"a different primitive named {name!r} is already registered; choose another name.")
    PRIMITIVES[name] = primitive
    return primitive


def user_primitives(nodes):
    """The registered user primitives among ``nodes``: what a pickled program takes along."""
    return tuple({n.name: n for n in nodes if isinstance(n, Primitive) and n.name not in _BUILT_IN}.values())


def learn_primitives(primitives):
    """Register primitives that arrived with a pickled program (a worker's first sight of them)."""
    for primitive in primitives:
        PRIMITIVES.setdefault(primitive.name, primitive)

#: The twelve primitives of EvoMAL's search space (the default function set).
EVOMAL_FUNCTION_SET = (
    "add", "sub", "mul", "div", "min", "max",
    "sign", "square", "abs", "log", "sqrt", "tanh",
)


def resolve_function_set(function_set):
    """Return a tuple of :class:`Primitive` for names (or primitives).

    Raises
    ------
    ValueError
        If a name is unknown or the set is empty, naming the offender.
    """
    if isinstance(function_set, str):
        raise ValueError(
            f"function_set must be a sequence of primitive names, got the string "
            f"{function_set!r}; wrap it in a list."
        )
    resolved = []
    for item in function_set:
        if isinstance(item, Primitive):
            resolved.append(register_primitive(item))
        elif isinstance(item, str) and item in PRIMITIVES:
            resolved.append(PRIMITIVES[item])
        else:
            raise ValueError(
                f"function_set contains the unknown primitive {item!r}; "
                f"choose from {sorted(PRIMITIVES)}."
            )
    if not resolved:
        raise ValueError("function_set is empty; give at least one primitive name.")
    if len({p.name for p in resolved}) != len(resolved):
        raise ValueError(f"function_set names a primitive twice: {[p.name for p in resolved]}.")
    return tuple(resolved)
