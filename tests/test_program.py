"""Loss programs: printing, structure, evaluation, and gplearn's variation operators (parsing: test_parsing.py)."""

import functools
import pickle

import numpy as np
import pytest
import sympy
import torch
from gplearn._program import _Program
from hypothesis import given, settings
from hypothesis import strategies as st

from metaloss_sk import SymbolicLoss
from metaloss_sk.primitives import EVOMAL_FUNCTION_SET, PRIMITIVES, Primitive
from metaloss_sk.program import TERMINALS, Program, SearchSpace, parse

CE = "neg(mul(y, log(yhat)))"
P = PRIMITIVES


def _rs(seed):
    return np.random.RandomState(seed)


def _spans(program):
    """(start, end) of every subtree of a program, in prefix order."""
    spans = []
    for start in range(len(program.nodes)):
        need, end = 1, start
        while need:
            node = program.nodes[end]
            need += node.arity - 1 if isinstance(node, Primitive) else -1
            end += 1
        spans.append((start, end))
    return spans


def _subtrees(program):
    return [program.nodes[s:e] for s, e in _spans(program)]


def _grafts(parent, material):
    """Every program made by replacing one subtree of ``parent`` with one of ``material``."""
    return {Program(parent.nodes[:s] + m + parent.nodes[e:]) for s, e in _spans(parent) for m in material}


def _replacements(parent, child):
    """Every program that, put in place of one subtree of ``parent``, gives ``child``."""
    found = []
    for s, e in _spans(parent):
        end = len(child) - (len(parent) - e)
        if child.nodes[:s] == parent.nodes[:s] and child.nodes[end:] == parent.nodes[e:]:
            try:
                found.append(Program(child.nodes[s:end]))
            except ValueError:  # prefix and suffix match by chance; the middle is no tree
                pass
    return found


def _primitives(program):
    return {n.name for n in program.nodes if isinstance(n, Primitive)}


def _leaves(program):
    """Leaves as terminal names ("y", "yhat") or float constants: 1 (yhat) and 1.0 compare equal."""
    return [TERMINALS[n] if isinstance(n, int) else n for n in program.nodes if not isinstance(n, Primitive)]


def _same_nodes(a, b):
    return a.nodes == b.nodes and [type(n) for n in a.nodes] == [type(n) for n in b.nodes]


# ---------------------------------------------------------------- printing


def test_str_prints_gplearn_prefix_syntax():
    assert str(parse("neg( mul(y,log(yhat)))")) == CE


def test_str_prints_constants_so_that_they_parse_back_exactly():
    program = Program([P["add"], 0, 0.1 + 0.2])
    assert str(program) == "add(y, 0.30000000000000004)"
    assert parse(str(program)).nodes[2] == 0.1 + 0.2


def test_str_matches_gplearn_program_str_for_terminals_and_functions():
    space = SearchSpace(EVOMAL_FUNCTION_SET, constants=())
    program = parse("add(mul(y, log(yhat)), sub(yhat, y))")
    gplearn_text = str(space._gp(program))  # gplearn names features X0 (y) and X1 (yhat)
    assert str(program) == gplearn_text.replace("X0", "y").replace("X1", "yhat")


def test_repr_shows_the_program_text():
    assert repr(parse(CE)) == f"Program({CE!r})"


@pytest.mark.parametrize(
    "text, infix",
    [
        (CE, "-(y * log(yhat))"),
        ("square(sub(y, yhat))", "(y - yhat)^2"),
        ("abs(sub(y, yhat))", "|(y - yhat)|"),
        ("div(y, yhat)", "aq(y, yhat)"),
        ("max(y, -1.0)", "max(y, -1)"),
        ("add(y, yhat)", "y + yhat"),
        ("yhat", "yhat"),
    ],
)
def test_infix_is_readable(text, infix):
    assert parse(text).infix() == infix


@pytest.mark.parametrize(
    "text, infix",
    [
        ("square(neg(y))", "(-y)^2"),
        ("square(-2.0)", "(-2)^2"),
        ("square(square(y))", "(y^2)^2"),
    ],
)
def test_infix_parenthesises_the_base_of_a_power(text, infix):
    assert parse(text).infix() == infix


def test_infix_shows_each_coefficient_on_its_edge():
    assert parse(CE).infix([2.0, 0.5, 3.0, 1.25]) == "-2*(0.5*y * 3*log(1.25*yhat))"


def test_infix_keeps_a_coefficient_inside_the_power_it_scales():
    assert parse("square(sub(y, yhat))").infix([0.5, 1.0, 1.0]) == "(0.5*(y - yhat))^2"  # 1 is left out
    assert parse("square(sub(y, yhat))").infix([0.5, 1.00004, 1.0]) == "(0.5*(y - yhat))^2"
    assert parse("square(sub(y, yhat))").infix([0.5, 1.00004, 1.0], precision=6) == "(0.5*(1.00004*y - yhat))^2"


def test_infix_rounds_coefficients_to_precision():
    assert parse("neg(y)").infix([1 / 3], precision=2) == "-0.33*y"


@pytest.mark.parametrize("seed", range(40))
def test_the_printed_infix_parses_back_to_the_same_function(seed):
    space = SearchSpace(EVOMAL_FUNCTION_SET + ("neg", "exp"), const_range=(-3.0, 3.0))
    program = space.random_program(_rs(seed), init_depth=(1, 5))
    y = torch.rand(64, 5, dtype=torch.float64)
    yhat = torch.rand(64, 5, dtype=torch.float64) * 2 - 0.5
    again = parse(program.infix(precision=17))
    torch.testing.assert_close(again.evaluate(y, yhat), program.evaluate(y, yhat), equal_nan=True)
    coefficients = _rs(seed).uniform(-2, 2, size=len(program) - 1)
    scaled = parse(program.infix(coefficients, precision=17))
    torch.testing.assert_close(scaled.evaluate(y, yhat), program.evaluate(y, yhat, list(coefficients)),
                               equal_nan=True)


@pytest.mark.parametrize("text, simple", [
    ("tanh(square(1.0))", "0.7616"),
    ("log(max(yhat, yhat))", "log(yhat)"),
    ("mul(sign(-1.0), y)", "-y"),
    ("add(div(log(1.0), yhat), mul(y, 1.0))", "y"),
    ("neg(mul(y, log(yhat)))", "-(y * log(yhat))"),
])
def test_printed_losses_are_simplified(text, simple):
    assert parse(text).infix(simplify=True) == simple
    assert str(SymbolicLoss(text)) == simple


@pytest.mark.parametrize("seed", range(40))
def test_simplified_is_the_same_function(seed):
    space = SearchSpace(EVOMAL_FUNCTION_SET, constants=(0.0, 1.0, -1.0, 2.0))
    program = space.random_program(_rs(seed), init_depth=(2, 6))
    y, yhat = torch.rand(64, 5, dtype=torch.float64), torch.rand(64, 5, dtype=torch.float64) * 2 - 0.5
    simple = program.simplified()
    assert simple.length <= program.length
    expected = program.evaluate(y, yhat)  # a constant program evaluates to a scalar
    torch.testing.assert_close(torch.broadcast_to(simple.evaluate(y, yhat), expected.shape), expected,
                               rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------- structure


@pytest.mark.parametrize(
    "text, depth, length",
    [("y", 0, 1), ("log(yhat)", 1, 2), ("add(y, yhat)", 1, 3), (CE, 3, 5)],
)
def test_depth_counts_function_levels_and_length_counts_nodes(text, depth, length):
    program = parse(text)
    assert (program.depth, program.length, len(program)) == (depth, length, length)


@pytest.mark.parametrize("seed", range(5))
def test_depth_and_length_agree_with_gplearn(seed):
    space = SearchSpace(EVOMAL_FUNCTION_SET)
    program = space.random_program(_rs(seed))
    gp = space._gp(program)
    assert (program.depth, program.length) == (gp.depth_, gp.length_)


@pytest.mark.parametrize(
    "a, b",
    [("add(yhat, y)", "add(y, yhat)"),
     ("mul(log(yhat), min(yhat, y))", "mul(min(y, yhat), log(yhat))"),
     ("max(sub(yhat, y), tanh(add(1.0, y)))", "max(tanh(add(y, 1.0)), sub(yhat, y))")],
)
def test_programs_differing_by_commuted_arguments_share_a_canonical_form(a, b):
    assert parse(a).canonical() == parse(b).canonical()


@pytest.mark.parametrize("a, b", [("sub(yhat, y)", "sub(y, yhat)"), ("div(yhat, y)", "div(y, yhat)"),
                                  ("add(y, mul(y, yhat))", "add(yhat, mul(y, y))")])
def test_non_commutative_arguments_keep_their_order_in_the_canonical_form(a, b):
    assert parse(a).canonical() != parse(b).canonical()


def test_a_user_primitive_is_not_commutative_unless_declared():
    twice = Primitive("twice", 2, lambda a, b: a + 2 * b, lambda a, b: a + 2 * b)
    program = Program([twice, 1, 0])
    assert program.canonical() == program


@pytest.mark.parametrize(
    "text, used, valid",
    [
        (CE, {"y", "yhat"}, True),
        ("log(yhat)", {"yhat"}, False),
        ("square(sub(y, 1.0))", {"y"}, False),
        ("add(1.0, -1.0)", set(), False),
    ],
)
def test_is_valid_loss_when_both_y_and_yhat_are_used(text, used, valid):
    program = parse(text)
    assert (program.terminals_used, program.is_valid_loss) == (used, valid)


def test_programs_are_equal_and_hash_alike_when_their_text_is():
    assert parse(CE) == parse(" neg(mul(y, log(yhat)))") and hash(parse(CE)) == hash(parse(CE))
    assert parse(CE) != parse("neg(mul(yhat, log(y)))")
    assert parse(CE) != CE


def test_program_is_immutable():
    with pytest.raises(AttributeError, match="immutable"):
        parse(CE).nodes = ()


def test_program_pickles():
    assert pickle.loads(pickle.dumps(parse(CE))) == parse(CE)


@pytest.mark.parametrize(
    "nodes, message",
    [
        ([], "at least one node"),
        ([P["add"], 0], "incomplete"),
        ([0, 1], "trailing nodes from position 1"),
        ([P["log"], 2], "terminal index 2"),
        ([P["log"], True], "node 1 is True"),
        ([P["log"], np.int64(0)], "node 1 is np.int64"),
        ([P["log"], "y"], "node 1 is 'y'"),
        ([P["log"], float("nan")], "non-finite constant"),
    ],
)
def test_program_rejects_malformed_nodes(nodes, message):
    with pytest.raises(ValueError, match=message):
        Program(nodes)


# ---------------------------------------------------------------- sympy and evaluation


def test_sympy_builds_the_expression_in_y_and_yhat():
    y, yhat = sympy.Symbol("y", real=True), sympy.Symbol("yhat", real=True)
    assert parse(CE).sympy() == -y * sympy.log(sympy.Abs(yhat))


def test_sympy_with_positive_yhat_drops_redundant_absolute_values():
    y, yhat = sympy.Symbol("y", real=True), sympy.Symbol("yhat", positive=True)
    assert parse(CE).sympy(positive_yhat=True) == -y * sympy.log(yhat)


def test_sympy_scales_each_edge_by_its_coefficient():
    y, yhat = sympy.Symbol("y", real=True), sympy.Symbol("yhat", real=True)
    expr = parse("sub(y, yhat)").sympy(coefficients=[2.0, 0.5])
    assert sympy.simplify(expr - (2 * y - yhat / 2)) == 0


def test_sympy_keeps_integer_constants_exact():
    y = sympy.Symbol("y", real=True)
    assert parse("add(y, -1.0)").sympy() == y - 1


def test_evaluate_applies_the_program_elementwise():
    y = torch.tensor([0.0, 1.0, 1.0])
    yhat = torch.tensor([0.2, 0.5, 0.9])
    torch.testing.assert_close(parse(CE).evaluate(y, yhat), -y * torch.log(yhat))


def test_evaluate_scales_each_edge_by_its_coefficient():
    y, yhat = torch.tensor([1.0, 2.0]), torch.tensor([3.0, 5.0])
    out = parse("sub(y, yhat)").evaluate(y, yhat, coefficients=torch.tensor([2.0, 0.5]))
    torch.testing.assert_close(out, 2 * y - 0.5 * yhat)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("add(y, mul(yhat, log(-2.0)))", lambda y, yhat: y + yhat * np.log(2.0)),
        ("min(y, 1.0)", lambda y, yhat: np.minimum(y, 1.0)),
        ("mul(yhat, div(1.0, -1.0))", lambda y, yhat: yhat * (1.0 / np.sqrt(2.0))),
        ("mul(yhat, sign(sqrt(-1.0)))", lambda y, yhat: yhat),
    ],
)
def test_evaluate_handles_subtrees_made_of_constants_only(text, expected):
    y = torch.tensor([0.0, 1.0, 3.0], dtype=torch.float64)
    yhat = torch.tensor([0.2, 0.5, -2.0], dtype=torch.float64)
    out = parse(text).evaluate(y, yhat)
    torch.testing.assert_close(out, torch.as_tensor(expected(y.numpy(), yhat.numpy())))
    assert out.dtype == torch.float64


def _plain_evaluate(program, y, yhat, cs):
    # The interpreter evaluate() replaced: every node, every call, graph and all.
    stack = []
    for i in range(len(program.nodes) - 1, -1, -1):
        n = program.nodes[i]
        if isinstance(n, Primitive):
            value = n.torch_fn(*[stack.pop() for _ in range(n.arity)])
        else:
            value = (y, yhat)[n] if isinstance(n, int) else yhat.new_tensor(n)
        stack.append(value if cs is None or i == 0 else value * cs[i - 1])
    return stack[0]


@pytest.mark.parametrize("coefficients", ["none", "fixed", "fixed, some exactly 1", "learned"])
def test_evaluator_gives_the_values_and_gradients_of_evaluating_every_node(coefficients):
    space, rng = SearchSpace(EVOMAL_FUNCTION_SET), np.random.RandomState(0)
    z0 = torch.randn(16, 5, generator=torch.Generator().manual_seed(0))
    y = torch.nn.functional.one_hot(torch.arange(16) % 5, 5).float()
    for _ in range(60):
        program = space.repair(space.random_program(rng, init_depth=(2, 6)), rng)
        cs = None if coefficients == "none" else torch.tensor(
            1 + 0.1 * rng.standard_normal(len(program) - 1), dtype=torch.float32,
            requires_grad=coefficients == "learned")
        if coefficients == "fixed, some exactly 1":  # skipped by the evaluator, multiplied by the plain one
            cs[torch.rand(len(cs), generator=torch.Generator().manual_seed(len(cs))) < 0.5] = 1.0
        evaluate = program.evaluator(cs)
        for _ in range(2):  # the second call reuses what the first computed once
            got = []
            for f in (evaluate, functools.partial(_plain_evaluate, program, cs=cs)):
                z = z0.clone().requires_grad_()
                value = torch.broadcast_to(f(y, torch.softmax(z, -1)), y.shape)
                wrt = [z] + ([cs] if coefficients == "learned" else [])
                grads = (torch.autograd.grad(value.sum(), wrt, materialize_grads=True, allow_unused=True)
                         if value.requires_grad else None)
                got.append((value.detach(), grads))
            (value, grads), (expected, expected_grads) = got
            assert torch.equal(value.nan_to_num(), expected.nan_to_num()), program
            assert (grads is None) == (expected_grads is None), program
            for g, e in zip(grads or (), expected_grads or ()):
                assert torch.equal(g.nan_to_num(), e.nan_to_num()), program


def test_evaluator_does_not_record_the_graph_under_a_zero_gradient_primitive():
    yhat = torch.tensor([0.2, 0.7], requires_grad=True)
    y = torch.tensor([0.0, 1.0])
    out = parse("add(mul(yhat, y), sign(log(yhat)))").evaluate(y, yhat)
    names = set()
    stack = [out.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is not None:
            names.add(type(fn).__name__)
            stack.extend(f for f, _ in fn.next_functions)
    assert "LogBackward0" not in names and "SignBackward0" not in names
    (grad,) = torch.autograd.grad(out.sum(), yhat)
    torch.testing.assert_close(grad, y)


def test_a_program_whose_only_path_to_yhat_has_zero_gradient_keeps_a_zero_gradient():
    yhat = torch.tensor([0.2, 0.7], requires_grad=True)
    out = parse("add(y, sign(yhat))").evaluate(torch.tensor([0.0, 1.0]), yhat)
    (grad,) = torch.autograd.grad(out.sum(), yhat)  # a tensor of zeros, as torch gives, not None
    assert torch.equal(grad, torch.zeros(2))


def test_evaluator_computes_constant_subtrees_once_per_dtype():
    calls = []

    def counted_tanh(x):
        calls.append(x.dtype)
        return torch.tanh(x)

    program = parse("add(mul(y, yhat), tanh(add(1.0, 1.0)))")
    nodes = [Primitive("tanh", 1, counted_tanh) if getattr(n, "name", None) == "tanh" else n for n in program.nodes]
    evaluate = Program(nodes).evaluator(torch.tensor([2.0, 1.0, 1.0, 3.0, 1.0, 1.0, 1.0]))
    y, yhat = torch.tensor([1.0, 0.0]), torch.tensor([0.5, 0.25])
    for _ in range(3):
        torch.testing.assert_close(evaluate(y, yhat), 2 * y * yhat + 3 * np.tanh(2.0))
    assert evaluate(y.double(), yhat.double()).dtype == torch.float64
    assert calls == [torch.float32, torch.float64]
    learned = torch.ones(7, requires_grad=True)  # then the subtree depends on them: every call
    evaluate = Program(nodes).evaluator(learned)
    evaluate(y, yhat), evaluate(y, yhat)
    assert len(calls) == 4


# ---------------------------------------------------------------- search space and gplearn operators


def test_search_space_needs_a_binary_primitive():
    with pytest.raises(ValueError, match="binary primitive"):
        SearchSpace(["log", "square"])


@pytest.mark.parametrize("seed", range(10))
def test_random_program_is_built_from_the_function_set_and_terminals(seed):
    program = SearchSpace(["add", "mul", "log"], constants=(1.0, -1.0)).random_program(_rs(seed))
    assert _primitives(program) <= {"add", "mul", "log"}
    assert set(_leaves(program)) <= {"y", "yhat", 1.0, -1.0}
    assert 1 <= program.depth <= 4


def test_random_program_respects_init_depth():
    space = SearchSpace(EVOMAL_FUNCTION_SET)
    depths = {space.random_program(_rs(s), init_depth=(2, 3), init_method="full").depth for s in range(20)}
    assert depths == {2, 3}


def test_random_program_draws_constants_from_const_range():
    space = SearchSpace(["add", "mul"], constants=(), const_range=(-5.0, 5.0))
    constants = [
        n for s in range(20) for n in _leaves(space.random_program(_rs(s))) if isinstance(n, float)
    ]
    assert constants and all(-5.0 <= c <= 5.0 for c in constants)


def test_random_program_is_deterministic_for_a_seed():
    space = SearchSpace(EVOMAL_FUNCTION_SET)
    assert space.random_program(_rs(3)) == space.random_program(_rs(3))
    assert len({space.random_program(_rs(s)) for s in range(10)}) > 1


PARENT = parse("add(sub(y, yhat), sub(yhat, y))")
DONOR = parse("mul(log(yhat), sqrt(-1.0))")


@pytest.mark.parametrize("seed", range(10))
def test_crossover_replaces_a_parent_subtree_with_a_donor_subtree(seed):
    child = SearchSpace(EVOMAL_FUNCTION_SET).crossover(PARENT, DONOR, _rs(seed))
    assert isinstance(child, Program)
    assert child in _grafts(PARENT, _subtrees(DONOR))


def test_crossover_is_deterministic_for_a_seed():
    space = SearchSpace(EVOMAL_FUNCTION_SET)
    assert space.crossover(PARENT, DONOR, _rs(1)) == space.crossover(PARENT, DONOR, _rs(1))
    assert len({space.crossover(PARENT, DONOR, _rs(s)) for s in range(10)}) > 1


@pytest.mark.parametrize("seed", range(10))
def test_subtree_mutation_grafts_a_new_shallow_subtree_from_the_function_set(seed):
    space = SearchSpace(["mul", "log"], constants=())
    child = space.subtree_mutation(PARENT, _rs(seed), depth=(0, 2))
    assert any(g.depth <= 2 and _primitives(g) <= {"mul", "log"} for g in _replacements(PARENT, child))


def test_subtree_mutation_is_deterministic_for_a_seed():
    space = SearchSpace(EVOMAL_FUNCTION_SET)
    assert space.subtree_mutation(PARENT, _rs(2)) == space.subtree_mutation(PARENT, _rs(2))
    assert len({space.subtree_mutation(PARENT, _rs(s)) for s in range(10)}) > 1


@pytest.mark.parametrize("seed", range(10))
def test_hoist_mutation_replaces_a_subtree_with_one_of_its_own_subtrees(seed):
    parent = parse("add(mul(y, log(yhat)), square(sub(yhat, y)))")
    child = SearchSpace(EVOMAL_FUNCTION_SET).hoist_mutation(parent, _rs(seed))
    hoists = {
        Program(parent.nodes[:s] + inner + parent.nodes[e:])
        for s, e in _spans(parent)
        for inner in _subtrees(Program(parent.nodes[s:e]))
    }
    assert child in hoists and child.length <= parent.length


def test_hoist_mutation_is_deterministic_for_a_seed():
    space = SearchSpace(EVOMAL_FUNCTION_SET)
    parent = parse("add(mul(y, log(yhat)), square(sub(yhat, y)))")
    assert space.hoist_mutation(parent, _rs(4)) == space.hoist_mutation(parent, _rs(4))
    assert len({space.hoist_mutation(parent, _rs(s)) for s in range(10)}) > 1


@pytest.mark.parametrize("seed", range(5))
def test_point_mutation_replaces_nodes_by_nodes_of_the_same_arity(seed):
    space = SearchSpace(["add", "sub", "mul", "log", "sqrt"], constants=(1.0, -1.0))
    parent = parse("add(mul(y, log(yhat)), sqrt(sub(yhat, y)))")
    child = space.point_mutation(parent, _rs(seed), p_point_replace=1.0)
    assert child != parent
    assert len(child) == len(parent)
    for old, new in zip(parent.nodes, child.nodes):
        if isinstance(old, Primitive):
            assert new.arity == old.arity and new.name in {"add", "sub", "mul", "log", "sqrt"}
    assert _leaves(child) and set(_leaves(child)) <= {"y", "yhat", 1.0, -1.0}


def test_point_mutation_with_zero_rate_changes_nothing():
    space = SearchSpace(EVOMAL_FUNCTION_SET)
    assert space.point_mutation(parse(CE), _rs(0), p_point_replace=0.0) == parse(CE)


def test_point_mutation_keeps_a_seed_primitive_whose_arity_the_function_set_lacks():
    # Seeds may use any registered primitive; cross-entropy's neg and log are
    # unary while this function set is binary only.
    space = SearchSpace(["add", "sub", "mul", "div"])
    child = space.point_mutation(parse(CE), _rs(0), p_point_replace=1.0)
    assert [n.name for n in child.nodes if isinstance(n, Primitive) and n.arity == 1] == ["neg", "log"]
    assert child.nodes[1] in {P["add"], P["sub"], P["mul"], P["div"]}


def test_point_mutation_is_deterministic_for_a_seed():
    space = SearchSpace(EVOMAL_FUNCTION_SET)
    assert space.point_mutation(PARENT, _rs(5), 0.5) == space.point_mutation(PARENT, _rs(5), 0.5)
    assert len({space.point_mutation(PARENT, _rs(s), 0.5) for s in range(10)}) > 1


def test_variation_does_not_change_the_parents():
    space = SearchSpace(EVOMAL_FUNCTION_SET)
    parent, donor = parse(str(PARENT)), parse(str(DONOR))
    space.crossover(parent, donor, _rs(0))
    space.subtree_mutation(parent, _rs(0))
    space.hoist_mutation(parent, _rs(0))
    space.point_mutation(parent, _rs(0), 1.0)
    assert (parent.nodes, donor.nodes) == (PARENT.nodes, DONOR.nodes)


# ---------------------------------------------------------------- repair


def test_repair_returns_a_valid_program_unchanged():
    program = parse(CE)
    assert SearchSpace(EVOMAL_FUNCTION_SET).repair(program, _rs(0)) is program


@pytest.mark.parametrize("text", ["log(y)", "yhat", "add(1.0, sqrt(-1.0))", "square(sub(y, 1.0))"])
def test_repair_replaces_one_leaf_by_an_arithmetic_op_of_y_and_yhat(text):
    program = parse(text)
    repaired = SearchSpace(EVOMAL_FUNCTION_SET).repair(program, _rs(0))
    assert repaired.is_valid_loss
    patches = [(P[op], 0, 1) for op in ("add", "sub", "mul", "div")]
    leaves = [(i, i + 1) for i, n in enumerate(program.nodes) if not isinstance(n, Primitive)]
    assert repaired in {Program(program.nodes[:s] + p + program.nodes[e:]) for s, e in leaves for p in patches}


def test_repair_uses_any_binary_primitive_when_no_arithmetic_one_is_available():
    repaired = SearchSpace(["max", "log"]).repair(parse("log(yhat)"), _rs(0))
    assert repaired == parse("log(max(y, yhat))")


def test_repair_is_deterministic_for_a_seed():
    space = SearchSpace(EVOMAL_FUNCTION_SET)
    program = parse("add(mul(y, 1.0), log(sqrt(y)))")
    assert space.repair(program, _rs(7)) == space.repair(program, _rs(7))
    assert len({space.repair(program, _rs(s)) for s in range(10)}) > 1


# ---------------------------------------------------------------- properties


def _call(children):
    def build(primitive):
        return st.tuples(*[children] * primitive.arity).map(lambda args: (primitive, *sum(args, ())))

    return st.sampled_from(list(PRIMITIVES.values())).flatmap(build)


_LEAVES = st.sampled_from([(0,), (1,)]) | st.floats(allow_nan=False, allow_infinity=False).map(lambda c: (c,))
PROGRAMS = st.recursive(_LEAVES, _call, max_leaves=20).map(Program)


@settings(max_examples=100, deadline=None)
@given(PROGRAMS)
def test_parse_of_str_gives_the_program_back(program):
    again = parse(str(program))
    assert again == program and _same_nodes(again, program)


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([EVOMAL_FUNCTION_SET, tuple(PRIMITIVES)]))
def test_parse_of_str_gives_a_random_program_back(seed, function_set):
    program = SearchSpace(function_set, const_range=(-2.0, 2.0)).random_program(_rs(seed))
    assert _same_nodes(parse(str(program)), program)


def test_gplearn_program_class_takes_the_arguments_we_pass():
    # program.py builds gplearn's private _Program by keyword; fail loudly if
    # a gplearn release renames them.
    gp = _Program(
        function_set=[], arities={}, init_depth=(2, 4), init_method="grow", n_features=2,
        const_range=None, metric=None, p_point_replace=0.05, parsimony_coefficient=0.0,
        random_state=None, program=[0],
    )
    assert gp.program == [0] and gp.validate_program()


@pytest.mark.parametrize("seed", range(40))
def test_simplified_under_a_classifiers_guarantees_is_the_same_function_there(seed):
    space = SearchSpace(EVOMAL_FUNCTION_SET, constants=(0.0, 1.0, -1.0, 2.0))
    program = space.random_program(_rs(seed), init_depth=(2, 6))
    # One-hot targets and softmax outputs: what a classifier's loss meets.
    y = torch.nn.functional.one_hot(torch.randint(0, 5, (64,)), 5).double()
    yhat = torch.softmax(torch.randn(64, 5, dtype=torch.float64) * 3, -1)
    simple = program.simplified(probabilities=True)
    assert simple.length <= program.simplified().length
    expected = torch.broadcast_to(program.evaluate(y, yhat), y.shape)  # a constant program gives a scalar
    torch.testing.assert_close(torch.broadcast_to(simple.evaluate(y, yhat), y.shape), expected,
                               rtol=1e-6, atol=1e-6)
    # What prints (constants to 4 digits) reads back as the same function, to the printed digits.
    printed = parse(program.infix(simplify=True, probabilities=True))
    torch.testing.assert_close(torch.broadcast_to(printed.evaluate(y, yhat), y.shape), expected,
                               rtol=1e-2, atol=1e-2)
    # The per-class forms: the program at y = 1 on the true class, at y = 0 elsewhere.
    true, other = program.per_class()
    per_class = torch.where(y == 1, true.evaluate(y, yhat), other.evaluate(y, yhat))
    torch.testing.assert_close(torch.broadcast_to(per_class, y.shape), expected, rtol=1e-6, atol=1e-6)


def test_a_classifiers_loss_prints_without_what_its_terminals_make_redundant():
    loss = SymbolicLoss("mul(square(y), add(mul(sign(yhat), log(max(yhat, -1.0))), abs(yhat)))")
    assert str(loss) == "y * (log(yhat) + yhat)"
    regression = SymbolicLoss("mul(square(y), abs(yhat))", task="regression")
    assert str(regression) == "y^2 * |yhat|"  # no such guarantee for regression
    assert SymbolicLoss("neg(mul(y, log(yhat)))").per_class() == "true class: -log(p);  each other class: 0"
    with pytest.raises(ValueError, match="regression"):
        regression.per_class()
