"""Parameter checks from one table of constraints (scikit-learn's ``_parameter_constraints``, in small).

A class or function lists, per parameter, the values it accepts; :func:`check`
raises a ``ValueError`` naming the parameter, what it accepts and what it got.
:func:`check_coefficients` is the one check of a loss's per-edge coefficients.
"""

import math
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
import torch

__all__ = ["HasMethods", "InstanceOf", "Interval", "Numbers", "Options", "Pair", "Range", "check",
           "check_coefficients"]


@dataclass(frozen=True)
class Interval:
    """Numbers of ``type`` (``Integral`` or ``Real``) between ``low`` and ``high`` (None: unbounded).

    NaN lies in no bounded interval; an interval unbounded on both sides takes any number.
    """

    type: type
    low: float | None = None
    high: float | None = None
    closed: str = "both"  # which ends belong to the interval: "both", "left", "right" or "neither"

    def accepts(self, value):
        if isinstance(value, bool) or not isinstance(value, self.type):
            return False
        low_ok = self.low is None or (value >= self.low if self.closed in ("both", "left") else value > self.low)
        high_ok = self.high is None or (value <= self.high if self.closed in ("both", "right") else value < self.high)
        return low_ok and high_ok

    def __str__(self):
        what = "an integer" if self.type is Integral else "a number"
        left = ">=" if self.closed in ("both", "left") else ">"
        right = "<=" if self.closed in ("both", "right") else "<"
        if self.high is None:
            return what if self.low is None else f"{what} {left} {self.low:g}"
        if self.low is None:
            return f"{what} {right} {self.high:g}"
        brackets = ("[" if left == ">=" else "(", "]" if right == "<=" else ")")
        return f"{what} in {brackets[0]}{self.low:g}, {self.high:g}{brackets[1]}"


@dataclass(frozen=True)
class Options:
    """One of the given values (compared with ``==``; strings only match strings)."""

    values: tuple

    def accepts(self, value):
        return any(type(value) is type(v) and value == v for v in self.values)

    def __str__(self):
        return "one of " + ", ".join(repr(v) for v in self.values)


@dataclass(frozen=True)
class Pair:
    """A pair ``(low, high)`` of integers with ``minimum <= low <= high``."""

    minimum: int

    def accepts(self, value):
        return (isinstance(value, (tuple, list)) and len(value) == 2
                and all(isinstance(v, Integral) and not isinstance(v, bool) for v in value)
                and self.minimum <= value[0] <= value[1])

    def __str__(self):
        return f"a pair (low, high) of integers with {self.minimum} <= low <= high"


@dataclass(frozen=True)
class Range:
    """A pair ``(low, high)`` of finite numbers with ``low <= high``."""

    def accepts(self, value):
        return (isinstance(value, (tuple, list)) and len(value) == 2 and all(_finite(v) for v in value)
                and value[0] <= value[1])

    def __str__(self):
        return "a pair (low, high) of finite numbers with low <= high"


@dataclass(frozen=True)
class Numbers:
    """A non-empty sequence (not a string) of finite numbers, each above ``low`` if given."""

    low: float | None = None

    def accepts(self, value):
        if isinstance(value, (str, bytes, dict)) or not isinstance(value, (tuple, list, np.ndarray)):
            return False
        values = list(np.ravel(value)) if isinstance(value, np.ndarray) else list(value)
        return bool(values) and all(_finite(v) and (self.low is None or v > self.low) for v in values)

    def __str__(self):
        return "a non-empty sequence of finite numbers" + ("" if self.low is None else f" > {self.low:g}")


@dataclass(frozen=True)
class InstanceOf:
    """An instance of ``type`` (a class or a tuple of classes)."""

    type: type | tuple

    def accepts(self, value):
        return isinstance(value, self.type)

    def __str__(self):
        types = self.type if isinstance(self.type, tuple) else (self.type,)
        return " or ".join(f"a {t.__name__}" for t in types)


@dataclass(frozen=True)
class HasMethods:
    """An object with all the given methods (a cross-validation splitter has ``split``)."""

    methods: tuple

    def accepts(self, value):
        return not isinstance(value, type) and all(callable(getattr(value, m, None)) for m in self.methods)

    def __str__(self):
        return "an object with " + ", ".join(f"{m}()" for m in self.methods)


def _finite(value):
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def check(values, constraints):
    """Check ``values[name]`` against ``constraints[name]`` (a list; ``None`` in it allows None).

    Raises
    ------
    ValueError
        ``"<name> must be <what it accepts>, got <value>."``
    """
    for name, allowed in constraints.items():
        value = values[name]
        if any(c is None and value is None or c is not None and c.accepts(value) for c in allowed):
            continue
        what = " or ".join(str(c) if c is not None else "None" for c in allowed)
        raise ValueError(f"{name} must be {what}, got {value!r}.")


def check_coefficients(values, program, where="coefficients"):
    """A loss's coefficients as a float array: one finite float32 value per edge of ``program``.

    Raises
    ------
    ValueError
        Naming ``where``, if the values are not numbers, not one per edge
        (node but the root), or not finite within float32's range.
    """
    if torch.is_tensor(values):
        values = values.detach().cpu().numpy()
    try:
        array = np.asarray(values, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"{where} must be a sequence of numbers, got {values!r}.") from None
    n_edges = len(program) - 1
    if array.size != n_edges:
        raise ValueError(f"{where} has {array.size} values; the program {program} has {n_edges} edges "
                         f"(one per node but the root).")
    if not (np.isfinite(array).all() and (np.abs(array) <= np.finfo(np.float32).max).all()):
        raise ValueError(f"{where} must be finite and within float32 range.")
    return array
