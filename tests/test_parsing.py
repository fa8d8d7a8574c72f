"""Reading a program's text: gplearn's prefix syntax and the infix form, and the errors for anything else."""

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metaloss_sk import SymbolicLoss
from metaloss_sk.parsing import parse_nodes
from metaloss_sk.primitives import PRIMITIVES
from metaloss_sk.program import TERMINALS, Program, parse

CE = "neg(mul(y, log(yhat)))"
P = PRIMITIVES


def _same_nodes(a, b):
    return a.nodes == b.nodes and [type(n) for n in a.nodes] == [type(n) for n in b.nodes]


def test_parse_reads_prefix_syntax_into_prefix_nodes():
    assert _same_nodes(parse(CE), Program((P["neg"], P["mul"], 0, P["log"], 1)))


def test_parse_nodes_gives_the_node_list_that_parse_wraps_in_a_program():
    nodes = parse_nodes("-(y * log(yhat))")
    assert isinstance(nodes, list) and Program(nodes) == parse("-(y * log(yhat))") == parse(CE)


def test_parse_ignores_whitespace():
    assert parse(" neg( mul(y ,log(\tyhat) ) )\n") == parse(CE)


@pytest.mark.parametrize("text, value", [("-1.5", -1.5), ("2", 2.0), ("1e-3", 1e-3), (".5", 0.5), ("+3.", 3.0)])
def test_parse_reads_numeric_constants_as_floats(text, value):
    node = parse(f"add(y, {text})").nodes[2]
    assert isinstance(node, float) and node == value


def test_parse_returns_a_program_unchanged():
    program = parse(CE)
    assert parse(program) is program


def test_parse_names_an_unknown_primitive_and_its_position():
    with pytest.raises(ValueError, match="unknown primitive.*position 0: 'logx'"):
        parse("logx(y)")


def test_parse_rejects_a_non_string():
    with pytest.raises(ValueError, match="must be a string, got int"):
        parse(42)


@pytest.mark.parametrize("text", ["", "   \n"])
def test_parse_rejects_an_empty_program(text):
    with pytest.raises(ValueError, match="empty"):
        parse(text)


@pytest.mark.parametrize(
    "text, position, token, reason",
    [
        ("log(y", 5, "end of input", "unbalanced parentheses"),
        ("add(y, log(yhat)", 16, "end of input", "unbalanced parentheses"),
        ("log(y))", 6, ")", "trailing token"),
        ("y yhat", 2, "yhat", "trailing token"),
        ("foo(y)", 0, "foo", "unknown primitive"),
        ("add(y)", 5, ")", "add takes 2 argument"),
        ("log(y, yhat)", 5, ",", "log takes 1 argument"),
        ("add(y,, yhat)", 6, ",", "expected an expression"),
        ("log()", 4, ")", "expected an expression"),
        ("log", 3, "end of input", "expected '\\(' after 'log'"),
        ("log y", 4, "y", "expected '\\(' after 'log'"),
        ("add(y, 1e999)", 7, "1e999", "not finite"),
        ("__import__(y)", 0, "__import__", "unknown primitive"),
        ("lambda(y)", 0, "lambda", "unknown primitive"),
    ],
)
def test_parse_rejects_malformed_input_naming_position_and_token(text, position, token, reason):
    with pytest.raises(ValueError, match=f"{reason}.* at position {position}: {re.escape(repr(token))}"):
        parse(text)


@pytest.mark.parametrize(
    "text, position, char",
    [
        ("__import__('os')", 11, "'"),
        ("y.__class__", 1, "."),
        ("log(yhat) / y", 10, "/"),  # "+" is infix now
        ("add(y; yhat)", 5, ";"),
        ("[y]", 0, "["),
    ],
)
def test_parse_rejects_code_like_input_naming_position_and_character(text, position, char):
    with pytest.raises(ValueError, match=f"unexpected character at position {position}: {re.escape(repr(char))}"):
        parse(text)


@pytest.mark.parametrize("text", ["-(y*log(yhat))", "-(y * log(yhat))", "-y * log(yhat)"])
def test_the_infix_form_the_package_prints_is_accepted(text):
    assert str(parse(text)) in ("neg(mul(y, log(yhat)))", "mul(neg(y), log(yhat))")
    assert str(SymbolicLoss(text).program_) == str(parse(text))


@pytest.mark.parametrize("text", ["y +* 2", "(y", "y^3", "frob(y)", "aq(y)", "|y"])
def test_malformed_infix_is_refused(text):
    with pytest.raises(ValueError):
        parse(text)


@settings(max_examples=300, deadline=None)
@given(st.text() | st.text(alphabet="adglmnoqrsuxy(),. -+e0123456789_h"))
def test_parse_of_any_text_succeeds_or_raises_value_error(text):
    try:
        program = parse(text)
    except ValueError:
        return
    assert isinstance(program, Program)
    assert set(program.terminals_used) <= set(TERMINALS)
