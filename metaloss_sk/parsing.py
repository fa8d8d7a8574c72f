"""Reading a program's text: gplearn's prefix syntax, or the infix form a program prints.

:func:`parse_nodes` turns text into the flat prefix node list that
:class:`~metaloss_sk.program.Program` holds (primitives from the registry,
terminal indices, float constants); :func:`metaloss_sk.parse` builds the
program from it. The parser knows the node kinds but not the
:class:`~metaloss_sk.program.Program` class, so that module imports this one
and never the other way round. Nothing is ever evaluated as Python.
"""

import re

import numpy as np

from .primitives import PRIMITIVES
from .terminals import TERMINALS

__all__ = ["parse_nodes"]

_TOKEN = re.compile(
    r"\s*(?:(?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<punct>[(),]))",
    re.ASCII,
)
_MAX_NODES = 10_000


def parse_nodes(text):
    """The nodes of the program ``text``, as a list in prefix order: what :func:`metaloss_sk.parse` reads.

    Text that is not prefix syntax is read as the infix form. Raises
    ValueError for malformed input, with the prefix parser's message (the
    position and the offending token) when neither form reads it.
    """
    if not isinstance(text, str):
        raise ValueError(f"a program must be a string, got {type(text).__name__}")
    try:
        return _parse_prefix(text)
    except ValueError as prefix_error:
        try:
            return _parse_infix(text)
        except ValueError:
            raise prefix_error from None


def _parse_prefix(text):
    allowed = PRIMITIVES
    tokens = _tokenize(text)
    if not tokens:
        raise ValueError("cannot parse an empty program")
    if len(tokens) > 4 * _MAX_NODES:
        raise ValueError(f"program is too long ({len(tokens)} tokens; at most {4 * _MAX_NODES})")

    nodes, pending = [], []  # pending: [primitive, arguments still to come] per open call
    i = 0

    def token_error(msg):
        pos, tok = tokens[i] if i < len(tokens) else (len(text), "end of input")
        return ValueError(f"{msg} at position {pos}: {tok!r} in {_shorten(text)!r}")

    while True:
        if i >= len(tokens):
            raise token_error("expected an expression")
        pos, tok = tokens[i]
        if tok in TERMINALS:
            nodes.append(TERMINALS.index(tok))
            i += 1
        elif _is_number(tok):
            value = float(tok)
            if not np.isfinite(value):
                raise token_error("constant is not finite")
            nodes.append(value)
            i += 1
        elif tok[0].isalpha() or tok[0] == "_":
            if tok not in allowed:
                raise token_error(f"unknown primitive (known: {', '.join(sorted(allowed))}; register your own "
                                  "with metaloss_sk.register_primitive)")
            i += 1
            if i >= len(tokens) or tokens[i][1] != "(":
                raise token_error(f"expected '(' after {tok!r}")
            i += 1
            nodes.append(allowed[tok])
            pending.append([allowed[tok], allowed[tok].arity])
            continue
        else:
            raise token_error("expected an expression")
        # An expression just ended: close every call it completes.
        while True:
            if not pending:
                if i != len(tokens):
                    raise token_error("unexpected trailing token")
                return nodes
            call = pending[-1]
            call[1] -= 1
            if i >= len(tokens):
                raise token_error("unbalanced parentheses: expected ',' or ')'")
            tok = tokens[i][1]
            if call[1] == 0:
                if tok != ")":
                    raise token_error(f"{call[0].name} takes {call[0].arity} argument(s); expected ')'")
                pending.pop()
                i += 1
                continue
            if tok != ",":
                raise token_error(f"{call[0].name} takes {call[0].arity} argument(s); expected ','")
            i += 1
            break


_INFIX_TOKEN = re.compile(r"\s*(?:(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
                          r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<punct>[(),+\-*^|]))", re.ASCII)
#: Infix names that differ from the primitive's (the analytic quotient prints as ``aq``).
_INFIX_NAMES = {"aq": "div"}


def _parse_infix(text):
    """Read the infix form :meth:`Program.infix` prints (recursive descent, standard precedence)."""
    tokens, pos = [], 0
    while pos < len(text):
        m = _INFIX_TOKEN.match(text, pos)
        if m is None or m.lastgroup is None:
            if text[pos:].strip() == "":
                break
            raise ValueError(f"unexpected character at position {pos}: {text[pos]!r}")
        tokens.append(m.group(m.lastgroup))
        pos = m.end()
        if len(tokens) > 4 * _MAX_NODES:
            raise ValueError(f"program is too long (over {4 * _MAX_NODES} tokens)")
    i = 0

    def peek():
        return tokens[i] if i < len(tokens) else None

    def take(expected=None):
        nonlocal i
        tok = peek()
        if tok is None or (expected is not None and tok != expected):
            raise ValueError(f"expected {expected or 'an expression'}, got {tok or 'end of input'!r}")
        i += 1
        return tok

    def call(name, *args):
        primitive = PRIMITIVES[name]
        if len(args) != primitive.arity:
            raise ValueError(f"{name} takes {primitive.arity} argument(s), got {len(args)}")
        return [primitive] + [node for arg in args for node in arg]

    def expression():  # term (("+" | "-") term)*
        nodes = term()
        while peek() in ("+", "-"):
            nodes = call("add" if take() == "+" else "sub", nodes, term())
        return nodes

    def term():  # unary ("*" unary)*
        nodes = unary()
        while peek() == "*":
            take()
            nodes = call("mul", nodes, unary())
        return nodes

    def unary():  # "-" unary | power; a minus before a number is a negative constant
        if peek() != "-":
            return power()
        take()
        nodes = unary()
        return [-nodes[0]] if len(nodes) == 1 and isinstance(nodes[0], float) else call("neg", nodes)

    def power():  # atom ("^" "2")*
        nodes = atom()
        while peek() == "^":
            take()
            if take() not in ("2", "2.0"):
                raise ValueError("only ^2 (square) is a primitive")
            nodes = call("square", nodes)
        return nodes

    def atom():
        tok = take()
        if tok == "(":
            nodes = expression()
            take(")")
            return nodes
        if tok == "|":
            nodes = expression()
            take("|")
            return call("abs", nodes)
        if tok in TERMINALS:
            return [TERMINALS.index(tok)]
        if tok[0].isdigit() or tok[0] == ".":
            value = float(tok)
            if not np.isfinite(value):
                raise ValueError(f"constant {tok} is not finite")
            return [value]
        name = _INFIX_NAMES.get(tok, tok)
        if name not in PRIMITIVES:
            raise ValueError(f"unknown name {tok!r}")
        take("(")
        args = [expression()]
        while peek() == ",":
            take()
            args.append(expression())
        take(")")
        return call(name, *args)

    try:
        nodes = expression()
    except RecursionError:
        raise ValueError("program is nested too deeply") from None
    if i != len(tokens):
        raise ValueError(f"unexpected trailing token {tokens[i]!r}")
    return nodes


def _is_number(tok):
    return tok[0].isdigit() or tok[0] in "+-."


def _tokenize(text):
    tokens, pos = [], 0
    while pos < len(text):
        if text[pos].isspace():
            pos += 1
            continue
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise ValueError(f"unexpected character at position {pos}: {text[pos]!r} in {_shorten(text)!r}")
        start = m.start(m.lastgroup)
        tokens.append((start, m.group(m.lastgroup)))
        if len(tokens) > 4 * _MAX_NODES:
            raise ValueError(f"program is too long (over {4 * _MAX_NODES} tokens)")
        pos = m.end()
    return tokens


def _shorten(text, n=80):
    return text if len(text) <= n else text[: n - 3] + "..."
