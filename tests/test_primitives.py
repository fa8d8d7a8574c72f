"""The function set: names, arities, finite torch ops, sympy forms, resolution."""

import itertools
import math

import pytest
import sympy
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from metaloss_sk.primitives import EVOMAL_FUNCTION_SET, PRIMITIVES, Primitive, resolve_function_set

# The inputs the issue names, plus the edges of the protected ops' guards.
SPECIAL_VALUES = [0.0, 1e-12, -1e-12, 1e6, -1e6, 1.0, -1.0, 1e-3, -1e-3, 1e-7, -1e-7, 30.0, -30.0]
DTYPES = [torch.float32, torch.float64]


def _inputs(primitive, dtype):
    """Every combination of the special values, one tensor per argument."""
    combos = list(itertools.product(SPECIAL_VALUES, repeat=primitive.arity))
    return [torch.tensor(column, dtype=dtype, requires_grad=True) for column in zip(*combos)]


def _assert_finite_value_and_gradient(primitive, args):
    out = primitive.torch_fn(*args)
    assert torch.isfinite(out).all(), f"{primitive.name} is not finite at {[a.tolist() for a in args]}"
    grads = torch.autograd.grad(out.sum(), args, allow_unused=True)
    for arg, grad in zip(args, grads):
        grad = torch.zeros_like(arg) if grad is None else grad
        assert torch.isfinite(grad).all(), f"{primitive.name} gradient is not finite at {arg.tolist()}"


def test_evomal_function_set_is_the_twelve_evomal_primitives():
    assert EVOMAL_FUNCTION_SET == (
        "add", "sub", "mul", "div", "min", "max", "sign", "square", "abs", "log", "sqrt", "tanh",
    )


def test_evomal_primitives_have_their_arities():
    binary = {"add", "sub", "mul", "div", "min", "max"}
    assert {name: PRIMITIVES[name].arity for name in EVOMAL_FUNCTION_SET} == {
        name: 2 if name in binary else 1 for name in EVOMAL_FUNCTION_SET
    }


def test_registry_has_extras_beyond_the_evomal_set():
    assert set(EVOMAL_FUNCTION_SET) < set(PRIMITIVES)
    assert {"neg", "inv", "exp", "sin", "cos", "sigmoid"} <= set(PRIMITIVES)


def test_registry_is_keyed_by_primitive_name():
    assert all(name == p.name for name, p in PRIMITIVES.items())


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", sorted(PRIMITIVES))
def test_torch_op_has_finite_value_and_gradient_at_special_inputs(name, dtype):
    primitive = PRIMITIVES[name]
    _assert_finite_value_and_gradient(primitive, _inputs(primitive, dtype))


@settings(max_examples=200, deadline=None)
@given(
    name=st.sampled_from(sorted(PRIMITIVES)),
    dtype=st.sampled_from(DTYPES),
    values=st.lists(st.floats(-1e6, 1e6, width=32), min_size=2, max_size=2),
)
def test_torch_op_has_finite_value_and_gradient_for_any_input_up_to_1e6(name, dtype, values):
    primitive = PRIMITIVES[name]
    args = [torch.tensor([v], dtype=dtype, requires_grad=True) for v in values[: primitive.arity]]
    _assert_finite_value_and_gradient(primitive, args)


@pytest.mark.parametrize(
    "name, args, expected",
    [
        ("log", [0.0], math.log(1e-7)),
        ("log", [-math.e], 1.0),
        ("sqrt", [-4.0], 2.0),
        ("div", [3.0, 0.0], 3.0),
        ("div", [3.0, 1e6], 3e-6),
        ("inv", [0.0], 0.0),
        ("inv", [-4.0], -0.25),
        ("exp", [1e6], math.exp(30.0)),
    ],
)
def test_protected_op_value(name, args, expected):
    out = PRIMITIVES[name].torch_fn(*[torch.tensor(a, dtype=torch.float64) for a in args])
    assert out.item() == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("name", sorted(PRIMITIVES))
def test_sympy_form_is_an_expression_in_its_arguments(name):
    primitive = PRIMITIVES[name]
    symbols = sympy.symbols(f"a0:{primitive.arity}", real=True)
    expr = primitive.sympy_fn(*symbols)
    assert isinstance(expr, sympy.Expr)
    assert expr.free_symbols == set(symbols)


@pytest.mark.parametrize("name", sorted(PRIMITIVES))
def test_sympy_form_agrees_with_torch_op_away_from_protected_points(name):
    primitive = PRIMITIVES[name]
    points = list(itertools.product([-2.5, -0.7, 0.4, 1.9], repeat=primitive.arity))
    symbols = sympy.symbols(f"a0:{primitive.arity}", real=True)
    expr = primitive.sympy_fn(*symbols)
    for point in points:
        expected = float(expr.subs(dict(zip(symbols, point))))
        got = primitive.torch_fn(*[torch.tensor(v, dtype=torch.float64) for v in point]).item()
        assert got == pytest.approx(expected, rel=1e-12, abs=1e-12), (name, point)


def test_resolve_function_set_returns_primitives_in_order():
    assert resolve_function_set(["mul", "add", "log"]) == (
        PRIMITIVES["mul"], PRIMITIVES["add"], PRIMITIVES["log"],
    )


def test_resolve_function_set_accepts_primitive_objects():
    custom = Primitive("cube", 1, lambda x: x**3, lambda x: x**3)
    assert resolve_function_set(["add", custom]) == (PRIMITIVES["add"], custom)


def test_resolve_function_set_rejects_an_unknown_name_naming_it():
    with pytest.raises(ValueError, match="unknown primitive 'pow'"):
        resolve_function_set(["add", "pow"])


def test_resolve_function_set_rejects_a_non_name_naming_it():
    with pytest.raises(ValueError, match="unknown primitive 3"):
        resolve_function_set(["add", 3])


def test_resolve_function_set_rejects_an_empty_set():
    with pytest.raises(ValueError, match="empty"):
        resolve_function_set([])


def test_resolve_function_set_rejects_a_string_naming_it():
    with pytest.raises(ValueError, match="the string 'add'"):
        resolve_function_set("add")


def test_resolve_function_set_rejects_a_duplicate():
    with pytest.raises(ValueError, match="twice"):
        resolve_function_set(["add", "mul", "add"])


# ---------------------------------------------------------------- user primitives


def softplus(x):
    return torch.log1p(torch.exp(-torch.abs(x))) + torch.clamp_min(x, 0.0)


def sym_softplus(x):
    return sympy.log(1 + sympy.exp(x))


SOFTPLUS = Primitive("softplus", 1, softplus, sym_softplus)


@pytest.fixture
def registered(monkeypatch):
    """SOFTPLUS registered for one test only."""
    monkeypatch.setitem(PRIMITIVES, "softplus", SOFTPLUS)
    return SOFTPLUS


def test_a_user_primitive_works_in_a_search_with_workers(monkeypatch):
    from conftest import classifier, iris

    from metaloss_sk import Evolution, LossSearchCV

    monkeypatch.setitem(PRIMITIVES, "softplus", SOFTPLUS)  # so the test leaves the registry as it found it
    monkeypatch.delitem(PRIMITIVES, "softplus")
    X, y = iris()
    search = LossSearchCV(classifier(), n_jobs=2,
                          evolution=Evolution(function_set=("add", "mul", "log", "neg", SOFTPLUS), population_size=4),
                          seed_programs=["neg(mul(y, log(yhat)))", "softplus(sub(yhat, y))"],
                          generations=1, cv=2, random_state=0, baseline_lrs=None)
    search.fit(X, y)  # workers learn the primitive from the programs sent to them
    row = list(search.cv_results_["program"]).index("softplus(sub(yhat, y))")
    assert search.cv_results_["status"][row] in ("ok", "chance")
    assert PRIMITIVES["softplus"] is SOFTPLUS


def test_a_user_primitive_round_trips_through_pickle_json_and_export(registered, monkeypatch):
    import pickle

    from metaloss_sk import SymbolicLoss
    from metaloss_sk.export import to_torch_source
    from metaloss_sk.io import dumps_loss, loads_loss

    loss = SymbolicLoss("softplus(sub(yhat, y))")
    data, text = pickle.dumps(loss), dumps_loss(loss)
    monkeypatch.delitem(PRIMITIVES, "softplus")  # a fresh worker, or a new session
    with pytest.raises(ValueError, match="unknown primitive.*register_primitive"):
        loads_loss(text)
    assert str(pickle.loads(data).program_) == "softplus(sub(yhat, y))"  # the pickle carries it
    assert str(loads_loss(text).program_) == "softplus(sub(yhat, y))"  # registered by the unpickling
    source = to_torch_source(loss)
    assert "def softplus(x):" in source


@pytest.mark.parametrize("primitive, message", [
    (Primitive("log", 1, torch.log1p, sympy.log), "already registered"),
    (Primitive("yhat", 1, softplus, sym_softplus), "identifier other than"),
    (Primitive("triple", 3, softplus, sym_softplus), "arity must be 1 or 2"),
    (Primitive("nothing", 1, None, sym_softplus), "torch_fn must be callable"),
])
def test_register_primitive_refuses_bad_primitives(primitive, message):
    from metaloss_sk import register_primitive

    with pytest.raises(ValueError, match=message):
        register_primitive(primitive)
