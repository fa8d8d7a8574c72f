"""Export: the generated torch source reproduces SymbolicLoss in value and gradient."""

import ast
from functools import partial

import numpy as np
import pytest
import sympy
import torch

from metaloss_sk import SymbolicLoss
from metaloss_sk.export import to_torch_source
from metaloss_sk.primitives import PRIMITIVES, Primitive
from metaloss_sk.program import SearchSpace

ALL = sorted(PRIMITIVES)
SPACE = SearchSpace(ALL, constants=(1.0, -1.0), const_range=(-2.0, 2.0))
N = 7


def compile_source(source, name="learned_loss"):
    """Run the source in a fresh namespace holding only torch; return the function."""
    assert "metaloss_sk" not in source
    namespace = {"torch": torch}
    exec(compile(source, "<exported loss>", "exec"), namespace)
    return namespace[name]


def random_loss(seed, task, link="auto", with_coefficients=False):
    rng = np.random.RandomState(seed)
    program = SPACE.repair(SPACE.random_program(rng, init_depth=(1, 5)), rng)
    coefficients = rng.normal(0, 1.5, len(program) - 1) if with_coefficients else None
    return SymbolicLoss(str(program), task=task, link=link, coefficients=coefficients)


def batches(task, link, dtype, seed):
    """(y_pred, y_true) pairs covering the target forms the task accepts."""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return 2 * torch.randn(*shape, generator=g, dtype=dtype)

    if task == "multiclass":
        logits = randn(N, 4)
        y_pred = torch.softmax(logits, -1) if link == "probabilities" else logits
        soft = torch.softmax(randn(N, 4), -1)
        return [(y_pred, torch.randint(0, 4, (N,), generator=g)), (y_pred, soft)]
    if task == "binary":
        z = randn(N)
        y_pred = torch.sigmoid(z) if link == "probabilities" else z
        t = torch.randint(0, 2, (N,), generator=g).to(dtype)
        return [(y_pred, t), (y_pred.reshape(N, 1), t)]
    return [(randn(N), randn(N)), (randn(N, 1), randn(N)), (randn(N), randn(N, 1)), (randn(N, 3), randn(N, 3))]


def value_and_grad(fn, y_pred, y_true):
    y_pred = y_pred.detach().clone().requires_grad_()
    value = fn(y_pred, y_true)
    (grad,) = torch.autograd.grad(value, y_pred, allow_unused=True)
    return value.detach(), torch.zeros_like(y_pred) if grad is None else grad


def assert_same(loss, exported, task, link, dtype=torch.float32, seed=0):
    for y_pred, y_true in batches(task, link, dtype, seed):
        v1, g1 = value_and_grad(loss, y_pred, y_true)
        v2, g2 = value_and_grad(exported, y_pred, y_true)
        assert v2.dtype == v1.dtype and g2.shape == g1.shape
        torch.testing.assert_close(v2, v1, rtol=1e-6, atol=1e-6, equal_nan=True, msg=lambda m: f"{loss}: {m}")
        torch.testing.assert_close(g2, g1, rtol=1e-6, atol=1e-6, equal_nan=True, msg=lambda m: f"{loss}: {m}")


TASK_LINKS = [("multiclass", "softmax"), ("multiclass", "probabilities"), ("binary", "sigmoid"),
              ("binary", "probabilities"), ("regression", "identity")]


@pytest.mark.parametrize("with_coefficients", [False, True], ids=["plain", "coefficients"])
@pytest.mark.parametrize("task,link", TASK_LINKS)
def test_random_programs_match_symbolic_loss(task, link, with_coefficients):
    for seed in range(40):
        loss = random_loss(seed, task, link, with_coefficients)
        exported = compile_source(to_torch_source(loss))
        assert_same(loss, exported, task, link, seed=seed)


@pytest.mark.parametrize("task,link", TASK_LINKS)
def test_weighted_rows_match_symbolic_loss(task, link):
    weight = torch.rand(N, generator=torch.Generator().manual_seed(1)) * 3
    for seed in range(10):
        loss = random_loss(seed, task, link, with_coefficients=seed % 2 == 1)
        exported = compile_source(to_torch_source(loss))
        assert_same(partial(loss, sample_weight=weight), partial(exported, sample_weight=weight), task, link,
                    seed=seed)


@pytest.mark.parametrize("task", ["multiclass", "binary", "regression"])
def test_float64_matches(task):
    for seed in range(10):
        loss = random_loss(seed, task, with_coefficients=seed % 2 == 1)
        assert_same(loss, compile_source(to_torch_source(loss)), task, loss.link_, torch.float64, seed)


@pytest.mark.parametrize("name", ALL)
def test_every_primitive_is_exported(name):
    arity = PRIMITIVES[name].arity
    # Arguments around the singular points of the protected forms, and far out.
    arg = "sub(y, yhat)" if arity == 1 else "sub(y, yhat), mul(yhat, -1.0)"
    program = f"add({name}({arg}), mul(y, yhat))"
    for coefficients in (None, np.linspace(-2, 2, len(SymbolicLoss(program).program_) - 1)):
        loss = SymbolicLoss(program, task="regression", coefficients=coefficients)
        exported = compile_source(to_torch_source(loss))
        y_pred = torch.tensor([-40.0, -1.0, -1e-4, 0.0, 1e-8, 0.5, 2.0, 35.0])
        y_true = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 1e-3, 2.0, -1.0])
        v1, g1 = value_and_grad(loss, y_pred, y_true)
        v2, g2 = value_and_grad(exported, y_pred, y_true)
        assert torch.isfinite(v2) and torch.isfinite(g2).all()
        torch.testing.assert_close(v2, v1, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(g2, g1, rtol=1e-6, atol=1e-6)


def test_source_is_a_clean_standalone_module():
    loss = SymbolicLoss("div(log(yhat), add(-1.0, mul(y, exp(yhat))))", task="binary",
                        coefficients=[0.5, 1.0, 2.0, -1.0, 0.25, 3.0, 1.5, 0.1])
    source = to_torch_source(loss, name="my_loss")
    tree = ast.parse(source)
    imports = [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert [alias.name for node in imports for alias in node.names] == ["torch"]
    functions = [node.name for node in tree.body if isinstance(node, ast.FunctionDef)]
    # The task's terminal function and the reduction, helpers only for the protected
    # primitives used, then the loss.
    assert functions == ["binary_terminals", "reduce_loss", "_protected_exp", "_protected_log",
                         "_analytic_quotient", "my_loss"]
    doc = ast.get_docstring(tree.body[-1])
    assert loss.infix(precision=6) in doc and str(loss.program_) in doc
    for c in loss.get_params()["coefficients"]:
        assert repr(c) in source
    assert "metaloss_sk" not in source and "eval(" not in source and "exec(" not in source
    compile_source(source, "my_loss")


def test_no_helpers_for_plain_programs():
    source = to_torch_source(SymbolicLoss("square(sub(y, yhat))", task="regression"))
    assert "def _" not in source


def test_cross_entropy_export_equals_torch_cross_entropy():
    fn = compile_source(to_torch_source(SymbolicLoss()))
    logits, target = torch.randn(16, 5, generator=torch.Generator().manual_seed(1)), torch.arange(16) % 5
    torch.testing.assert_close(fn(logits, target), torch.nn.functional.cross_entropy(logits, target))


def test_degenerate_programs():
    for program in ("y", "yhat", "1.5", "log(-1.0)", "mul(2.0, yhat)"):
        for task in ("multiclass", "regression"):
            loss = SymbolicLoss(program, task=task, coefficients=[0.5] if program == "log(-1.0)" else None)
            fn = compile_source(to_torch_source(loss))
            y_pred = torch.randn(5, 3)
            y_true = torch.tensor([0, 1, 2, 0, 1]) if task == "multiclass" else torch.randn(5, 3)
            torch.testing.assert_close(fn(y_pred, y_true), loss(y_pred, y_true))


def test_long_programs_do_not_recurse():
    program = "yhat"
    for i in range(400):
        program = f"add({program}, {'y' if i % 2 else '0.5'})"
    loss = SymbolicLoss(program, task="regression")
    fn = compile_source(to_torch_source(loss))
    y_pred, y_true = torch.randn(6), torch.randn(6)
    torch.testing.assert_close(fn(y_pred, y_true), loss(y_pred, y_true))


def test_bad_arguments():
    with pytest.raises(TypeError, match="SymbolicLoss"):
        to_torch_source("neg(mul(y, log(yhat)))")
    for name in ("1abc", "class", "my loss", "torch", "reduce_loss", "v0", "len", ""):
        with pytest.raises(ValueError, match="identifier"):
            to_torch_source(SymbolicLoss(), name=name)


def test_custom_primitive_is_refused():
    from metaloss_sk.program import Program

    custom = Primitive("add", 2, lambda a, b: a + 2 * b, lambda a, b: a + 2 * b)
    loss = SymbolicLoss()
    loss.program_ = Program([custom, 0, 1])
    with pytest.raises(ValueError, match="cannot be exported"):
        to_torch_source(loss)


def test_sympy_and_latex():
    loss = SymbolicLoss("neg(mul(y, log(yhat)))")
    y, yhat = sympy.Symbol("y", real=True), sympy.Symbol("yhat", positive=True)
    assert sympy.simplify(loss.sympy() + y * sympy.log(yhat)) == 0
    assert "log" in loss.latex()
