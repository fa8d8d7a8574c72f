"""What the tests share: small data and a tiny net that learns within a few steps."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_iris
from sklearn.preprocessing import StandardScaler
from skorch import NeuralNetClassifier

from metaloss_sk.nets import MLP


def iris():
    """Iris, standardised, as float32 features and integer labels."""
    X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X).astype(np.float32), y


def classifier(**kw):
    """An MLP 4-8-3 for iris that beats chance within its few steps; ``kw`` overrides its settings."""
    params = dict(module=MLP, module__n_in=4, module__n_hidden=8, module__n_out=3, max_epochs=4, lr=0.2,
                  batch_size=32, train_split=None, verbose=0)
    return NeuralNetClassifier(**{**params, **kw})


def plan(fitness=None, screening=None, factor=3, n_train=75, batch_size=32):
    """An evaluator's :class:`~metaloss_sk.schedule.Plan`: a fitness budget (4 epochs) over ``n_train`` rows."""
    from metaloss_sk.schedule import Plan
    from metaloss_sk.training import Budget

    fitness = Budget(4) if fitness is None else fitness
    return Plan(n_train=n_train, batch_size=batch_size, fitness=fitness, rungs=(fitness,), screening=screening,
                factor=factor)


def bad_values(constraints):
    """``(name, value)`` for every parameter of a ``_parameter_constraints`` table: per constraint type a value it
    refuses (a wrong type, a bound just outside the range, an unknown option, an empty sequence ...), kept
    where no other constraint of that parameter accepts it. Every parameter gets at least one."""
    import math
    from numbers import Integral

    from metaloss_sk._validation import HasMethods, InstanceOf, Interval, Numbers, Options, Pair, Range

    def refused_by(constraint):
        if isinstance(constraint, Interval):
            values = ["not a number", 2.5] if constraint.type is Integral else ["not a number", math.nan]
            step = 1 if constraint.type is Integral else 0.5
            if constraint.low is not None:
                values.append(constraint.low if constraint.closed in ("right", "neither") else constraint.low - step)
            if constraint.high is not None:
                values.append(constraint.high if constraint.closed in ("left", "neither")
                              else constraint.high + step)
            return values
        if isinstance(constraint, Options):
            return ["no such option", 12345]
        if isinstance(constraint, Pair):
            return [(constraint.minimum + 1, constraint.minimum), (constraint.minimum - 1, constraint.minimum), 3]
        if isinstance(constraint, Range):
            return [(1.0, -1.0), (0.0, math.inf), 3.0]
        if isinstance(constraint, Numbers):
            return [[], [math.nan], "1.0"] + ([] if constraint.low is None else [[constraint.low]])
        if isinstance(constraint, (InstanceOf, HasMethods)):
            return [object()]
        raise AssertionError(f"no bad value for the constraint {constraint!r}")

    cases = []
    for name, allowed in constraints.items():
        found = []
        for constraint in allowed:
            for value in ([] if constraint is None else refused_by(constraint)):
                accepted = any(c.accepts(value) if c is not None else value is None for c in allowed)
                if not accepted and case_id((name, value)) not in {case_id(case) for case in found}:
                    found.append((name, value))
        assert found, f"no bad value found for {name}"
        cases += found
    return cases


def case_id(case):
    """A readable test id for a ``(name, value)`` of :func:`bad_values`."""
    name, value = case
    return f"{name}={type(value).__name__}" if type(value) is object else f"{name}={value!r}"


@pytest.fixture
def one_thread():
    """torch on one thread for the test, restored after it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
