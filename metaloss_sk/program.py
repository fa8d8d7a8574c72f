"""Loss programs in gplearn's flat prefix representation.

A program is a tuple of nodes in prefix order. A node is a
:class:`~metaloss_sk.primitives.Primitive`, a terminal index (``0`` for the
target ``y``, ``1`` for the prediction ``yhat``) or a float constant: the same
shape as gplearn's ``_Program.program`` lists, which is what lets the search
reuse gplearn's variation operators. This is the only module that touches
gplearn's private names.
"""

import contextlib
import math
import re

import numpy as np
import sympy
import torch
from gplearn._program import _Program
from gplearn.functions import _Function

from .parsing import parse_nodes
from .primitives import PRIMITIVES, Primitive, learn_primitives, resolve_function_set, user_primitives
from .terminals import TERMINALS

__all__ = ["Program", "SearchSpace", "TERMINALS", "fold", "parse"]


def fold(nodes, leaf, node, coefficients=None):
    """Evaluate a prefix program bottom-up without recursion.

    ``leaf(n)`` maps a terminal or constant to a value, ``node(p, args)`` applies
    primitive ``p``. With ``coefficients``, every non-root node's value is
    passed through ``scale(value, c)`` where ``coefficients = (cs, scale)``.
    """
    stack = []
    for i in range(len(nodes) - 1, -1, -1):
        n = nodes[i]
        if isinstance(n, Primitive):
            args = [stack.pop() for _ in range(n.arity)]
            value = node(n, args)
        else:
            value = leaf(n)
        if coefficients is not None and i > 0:
            cs, scale = coefficients
            value = scale(value, cs[i - 1])
        stack.append(value)
    return stack[0]


def _format_constant(c):
    return repr(float(c))


class Program:
    """An immutable loss program.

    Build one with :func:`parse` or from a node sequence. ``str(program)`` gives
    gplearn's prefix syntax, which :func:`parse` reads back.
    """

    __slots__ = ("nodes", "_text", "_compiled")

    def __init__(self, nodes):
        nodes = tuple(nodes)
        _check_nodes(nodes)
        object.__setattr__(self, "nodes", nodes)
        object.__setattr__(self, "_text", None)
        object.__setattr__(self, "_compiled", None)

    def __setattr__(self, name, value):
        raise AttributeError("Program is immutable")

    def __reduce__(self):
        custom = user_primitives(self.nodes)
        return (_unpickle, (str(self), custom)) if custom else (parse, (str(self),))

    def __str__(self):
        if self._text is None:
            text = fold(
                self.nodes,
                lambda n: TERMINALS[n] if isinstance(n, int) else _format_constant(n),
                lambda p, args: f"{p.name}({', '.join(args)})",
            )
            object.__setattr__(self, "_text", text)
        return self._text

    def __repr__(self):
        return f"Program({str(self)!r})"

    def __eq__(self, other):
        return isinstance(other, Program) and str(self) == str(other)

    def __hash__(self):
        return hash(str(self))

    def __len__(self):
        return len(self.nodes)

    @property
    def length(self):
        """Number of nodes (gplearn's ``length_``)."""
        return len(self.nodes)

    @property
    def depth(self):
        """Height of the tree: 0 for a single terminal (gplearn's ``depth_``)."""
        return fold(self.nodes, lambda n: 0, lambda p, args: 1 + max(args))

    @property
    def terminals_used(self):
        """Set of terminal names the program reads."""
        return {TERMINALS[n] for n in self.nodes if isinstance(n, int) and not isinstance(n, bool)}

    @property
    def is_valid_loss(self):
        """True when the program uses both ``y`` and ``yhat`` (EvoMAL's rule)."""
        return self.terminals_used == set(TERMINALS)

    def infix(self, coefficients=None, precision=4, simplify=False, probabilities=False, terminals=TERMINALS):
        """Readable infix form, e.g. ``-(y * log(yhat))``.

        With ``coefficients`` (one per edge, i.e. per non-root node) each
        coefficient is shown where it scales its node, to ``precision``
        significant digits (constants to at least 6; coefficients that round
        to 1 are left out); :func:`parse` reads the
        text back. ``simplify=True`` (without coefficients) prints
        :meth:`simplified`'s form (with ``probabilities``, under a
        classifier's guarantees), its constants to ``precision`` digits.
        ``terminals`` names ``y`` and ``yhat`` in the text.
        """
        if simplify and coefficients is None:
            return self.simplified(probabilities)._infix(None, precision, terminals, precision)
        return self._infix(coefficients, precision, terminals, max(precision, 6))

    def _infix(self, coefficients, precision, terminals, constant_digits):
        def scale(text, c):
            shown = f"{c:.{precision}g}"
            return text if shown == "1" else f"{shown}*{text}"  # a coefficient of 1 (at this precision) is noise

        text = fold(
            self.nodes,
            lambda n: terminals[n] if isinstance(n, int) else f"{n:.{constant_digits}g}",
            lambda p, args: _format_infix(p, args),
            None if coefficients is None else (list(coefficients), scale),
        )
        if text.startswith("(") and text.endswith(")") and _balanced(text[1:-1]):
            text = text[1:-1]
        return text

    def sympy(self, coefficients=None, positive_yhat=False):
        """The program as a sympy expression in symbols ``y`` and ``yhat``.

        ``positive_yhat=True`` declares ``yhat`` positive (softmax and sigmoid
        outputs), which lets sympy drop redundant absolute values.
        """
        symbols = (sympy.Symbol("y", real=True),
                   sympy.Symbol("yhat", positive=True) if positive_yhat
                   else sympy.Symbol("yhat", real=True))
        return fold(
            self.nodes,
            lambda n: symbols[n] if isinstance(n, int) else sympy.Float(n) if n % 1 else sympy.Integer(int(n)),
            lambda p, args: p.sympy_fn(*args),
            None if coefficients is None else
            ([sympy.Float(c, 6) for c in coefficients], lambda v, c: c * v),
        )

    def simplified(self, probabilities=False):
        """The same function, written more simply: for printing.

        Constant subtrees become their value (``tanh(1^2)``, ``log(1)``,
        ``sign(-1)``), ``min(a, a)`` and ``max(a, a)`` become ``a``,
        multiplying by 1 or adding 0 is dropped, by -1 is a negation and by 0
        (or the analytic quotient of 0) is 0: every primitive is finite. Values agree with the
        original to rounding (a constant is computed once, in float64).

        With ``probabilities=True``, also what a classifier guarantees: ``y``
        is 0 or 1 (``y^2``, ``y * y``, ``|y|`` and ``sign(y)`` are ``y``) and
        ``yhat`` a probability in (0, 1) (``|yhat|`` is ``yhat``,
        ``sign(yhat)`` is 1, ``max(yhat, c)`` is ``yhat`` for ``c <= 0`` and
        ``c`` for ``c >= 1``, and likewise ``min``): the same values on every
        input a classifier's loss meets.

        >>> str(parse("add(log(max(yhat, yhat)), mul(sign(-1.0), y))").simplified())
        'add(log(yhat), neg(y))'
        >>> parse("mul(square(y), log(max(yhat, -1.0)))").simplified(probabilities=True).infix()
        'y * log(yhat)'
        """
        def constant(arg):
            return arg[0] if len(arg) == 1 and isinstance(arg[0], float) else None

        def terminal(arg):
            return arg[0] if len(arg) == 1 and isinstance(arg[0], int) and not isinstance(arg[0], bool) else None

        def on_probabilities(p, args):
            """The rules a classifier's terminals allow, or None."""
            kinds = [terminal(arg) for arg in args]
            if p.arity == 1 and kinds[0] == 0 and p.name in ("square", "abs", "sign"):  # y is 0 or 1
                return args[0]
            if p.arity == 1 and kinds[0] == 1 and p.name in ("abs", "sign"):  # yhat is in (0, 1)
                return args[0] if p.name == "abs" else (1.0,)
            if p.name == "mul" and kinds == [0, 0]:
                return args[0]
            if p.name in ("min", "max") and (None in kinds) and any(k is not None for k in kinds):
                var, c = (args[0], constant(args[1])) if kinds[0] is not None else (args[1], constant(args[0]))
                if c is None:
                    return None
                low, high = (0.0, 1.0)  # the range of y (its ends included) and of yhat (ends excluded)
                if (p.name == "max" and c <= low) or (p.name == "min" and c >= high):
                    return var
                if (p.name == "max" and c >= high) or (p.name == "min" and c <= low):
                    return (c,)
            return None

        def node(p, args):
            if probabilities:
                rewritten = on_probabilities(p, args)
                if rewritten is not None:
                    return rewritten
            if all(constant(arg) is not None for arg in args):
                with torch.no_grad():
                    value = float(p.torch_fn(*(torch.tensor(constant(a), dtype=torch.float64) for a in args)))
                if math.isfinite(value):
                    return (value + 0.0,)  # -0.0 prints as "-0"
            if p.name in ("min", "max") and Program(args[0]) == Program(args[1]):  # not ==: y is 0, not 0.0
                return args[0]
            if p.name == "mul" and (constant(args[0]) in (0.0, 1.0, -1.0) or constant(args[1]) in (0.0, 1.0, -1.0)):
                c, other = (constant(args[0]), args[1]) if constant(args[0]) in (0.0, 1.0, -1.0) \
                    else (constant(args[1]), args[0])
                return (0.0,) if c == 0.0 else other if c == 1.0 else (PRIMITIVES["neg"], *other)
            if p.name == "div" and constant(args[0]) == 0.0:  # the analytic quotient of 0 is 0
                return (0.0,)
            if p.name == "add" and 0.0 in (constant(args[0]), constant(args[1])):
                return args[1] if constant(args[0]) == 0.0 else args[0]
            return (p, *(n for arg in args for n in arg))

        return Program(fold(self.nodes, lambda n: (n,), node))

    def per_class(self):
        """A classifier's loss per class: the program at ``y = 1`` and at ``y = 0``, simplified.

        With one-hot targets the loss of a row is the first at the true
        class's probability plus the second at every other class's. Each is a
        program in ``yhat`` alone (see :meth:`simplified`).

        >>> true, other = parse("neg(mul(add(mul(0.9, y), 0.01), log(yhat)))").per_class()
        >>> true.infix(simplify=True), other.infix(simplify=True)
        ('-(0.91 * log(yhat))', '-(0.01 * log(yhat))')
        """
        def at(value):
            return Program(value if isinstance(n, int) and not isinstance(n, bool) and n == 0 else n
                           for n in self.nodes).simplified(probabilities=True)

        return at(1.0), at(0.0)

    def canonical(self):
        """The program with the arguments of every commutative primitive in sorted order.

        Two programs with the same canonical form differ only by swapped
        arguments of ``add``, ``mul``, ``min`` or ``max``: they are the same
        function, and with one coefficient per edge the same family of
        parameterised functions.

        >>> str(parse("mul(log(yhat), add(yhat, y))").canonical())
        'mul(add(y, yhat), log(yhat))'
        """
        def node(p, args):
            args = sorted(args, key=lambda arg: str(Program(arg))) if p.commutative else args
            return (p, *(n for arg in args for n in arg))

        return Program(fold(self.nodes, lambda n: (n,), node))

    def evaluate(self, y, yhat, coefficients=None):
        """Evaluate element-wise on tensors; constants become tensors like ``yhat``."""
        return self.evaluator(coefficients)(y, yhat)

    def evaluator(self, coefficients=None):
        """:meth:`evaluate` for fixed ``coefficients``, as a function ``(y, yhat) -> values``.

        It runs the operations :meth:`evaluate` runs and gives the same values
        and gradients, with less work:

        - a subtree without terminals (constants and their coefficients) is
          computed at the first call, once per dtype and device, when the
          coefficients do not require grad (at every call when they do);
        - a coefficient of exactly 1 is not multiplied by, when the
          coefficients do not require grad;
        - a subtree whose gradient cannot reach the root, the argument of a
          primitive with ``zero_gradient`` (``sign``), is computed without
          recording its graph, as long as the root depends on ``yhat``
          through another path (then the gradient it would have added is
          zero; otherwise nothing changes, so that the gradient stays a
          tensor of zeros rather than none).

        The function holds ``coefficients``: it is valid while they are not
        changed in place.
        """
        if self._compiled is None:
            object.__setattr__(self, "_compiled", self._plan())
        steps, runs, constants = self._compiled
        cs = coefficients
        cacheable = cs is None or not (torch.is_tensor(cs) and cs.requires_grad)
        if cacheable and torch.is_tensor(cs):
            # Once, not one indexing per node and call; a coefficient of exactly 1 is
            # skipped (x * 1 is x, bit for bit, and so is its gradient).
            cs = [None if one else c for c, one in zip(cs.unbind(), (cs == 1).tolist())]
        cache = {}

        def scaled(value, i):
            return value if cs is None or i == 0 or cs[i - 1] is None else value * cs[i - 1]

        def folded(like):
            key = (like.dtype, like.device)
            if key not in cache or not cacheable:
                values = {}
                for i in constants:
                    n = self.nodes[i]
                    value = (n.torch_fn(*(values[k] for k in steps[i][1])) if isinstance(n, Primitive)
                             else like.new_tensor(n))
                    values[i] = scaled(value, i)
                cache[key] = values
            return cache[key]

        def run(y, yhat):
            values = dict(folded(yhat))
            for start, stop, no_grad in runs:
                with torch.no_grad() if no_grad else contextlib.nullcontext():
                    for i in range(stop - 1, start - 1, -1):
                        if i in values:
                            continue
                        n, children = steps[i]
                        if children is None:
                            value = (y, yhat)[n].detach() if no_grad else (y, yhat)[n]
                        else:
                            value = n.torch_fn(*(values[k] for k in children))
                        values[i] = scaled(value, i)
            return values[0]

        return run

    def _plan(self):
        """How :meth:`evaluator` runs the program.

        Returns ``steps`` (per node: the node, and its children's positions or
        None for a leaf), ``runs``: the prefix positions cut into contiguous
        ``(start, stop, no_grad)`` ranges, from the last to the first, so that
        running each range backwards visits every node after its children
        (``no_grad`` marks the arguments of zero-gradient primitives), and
        ``constants``: the positions of the subtrees without terminals, in
        that order.
        """
        nodes = self.nodes
        steps, stack = [None] * len(nodes), []
        for i in range(len(nodes) - 1, -1, -1):
            n = nodes[i]
            steps[i] = (n, [stack.pop() for _ in range(n.arity)]) if isinstance(n, Primitive) else (n, None)
            stack.append(i)
        # live[i]: node i's value depends on yhat through primitives that pass a gradient.
        live, constant = [False] * len(nodes), [False] * len(nodes)
        for i in range(len(nodes) - 1, -1, -1):
            n, children = steps[i]
            if children is None:
                live[i], constant[i] = isinstance(n, int) and n == 1, not isinstance(n, int)
            else:
                live[i] = not n.zero_gradient and any(live[k] for k in children)
                constant[i] = all(constant[k] for k in children)
        no_grad = [False] * len(nodes)
        if live[0]:
            for i, (n, children) in enumerate(steps):  # prefix order: parents first
                if children is not None and (no_grad[i] or n.zero_gradient):
                    for k in children:
                        no_grad[k] = True
        runs, start = [], len(nodes)
        for i in range(len(nodes) - 1, -1, -1):
            if i == 0 or no_grad[i - 1] != no_grad[i]:
                runs.append((i, start, no_grad[i]))
                start = i
        return steps, runs, [i for i in range(len(nodes) - 1, -1, -1) if constant[i]]


# Texts that bind tighter than a postfix operator: a name or unsigned number, a
# call or parenthesised group, an absolute value.
_ATOM = re.compile(r"[\w.]+|\w*\(.*\)|\|.*\|")


def _format_infix(p, args):
    if not p.infix:
        return f"{p.name}({', '.join(args)})"
    if p.infix.startswith("{}"):
        # A postfix operator such as ``^2`` binds tighter than a sign or a
        # coefficient: square(neg(y)) is (-y)^2, not -y^2.
        args = [a if _ATOM.fullmatch(a) else f"({a})" for a in args]
    return p.infix.format(*args)


def _balanced(text):
    depth = 0
    for ch in text:
        depth += ch == "("
        depth -= ch == ")"
        if depth < 0:
            return False
    return depth == 0


def _check_nodes(nodes):
    if not nodes:
        raise ValueError("a program needs at least one node")
    need = 1
    for i, n in enumerate(nodes):
        if need == 0:
            raise ValueError(f"program has trailing nodes from position {i}")
        if isinstance(n, Primitive):
            need += n.arity - 1
        elif isinstance(n, bool) or not isinstance(n, (int, float)):
            raise ValueError(f"node {i} is {n!r}; expected a Primitive, 0 (y), 1 (yhat) or a float")
        elif isinstance(n, int) and n not in (0, 1):
            raise ValueError(f"node {i} is the terminal index {n}; only 0 (y) and 1 (yhat) exist")
        elif isinstance(n, float) and not np.isfinite(n):
            raise ValueError(f"node {i} is the non-finite constant {n!r}")
        else:
            need -= 1
    if need != 0:
        raise ValueError(f"program is incomplete: {need} argument(s) missing at the end")


def parse(text):
    """Parse a program from gplearn's prefix syntax, e.g. ``neg(mul(y, log(yhat)))``, or the infix form printed.

    The prefix grammar is ``expr := number | y | yhat | name "(" expr ("," expr)* ")"``.
    Text that is not prefix syntax is read as the infix form that
    :meth:`Program.infix` and ``str(SymbolicLoss)`` print, e.g.
    ``-(y * log(yhat))``: ``+ - *``, ``x^2`` for ``square``, ``|x|`` for
    ``abs``, ``aq(a, b)`` for ``div`` and ``name(args)`` for the other
    primitives (a printed coefficient ``0.5*x`` reads as a multiplication).
    Nothing is ever evaluated as Python.

    Parameters
    ----------
    text : str
        The program; any primitive of the registry (``metaloss_sk.PRIMITIVES``) may appear.

    Raises
    ------
    ValueError
        For malformed input, naming the position and the offending token.
    """
    if isinstance(text, Program):
        return text
    return Program(parse_nodes(text))


def _unpickle(text, primitives):
    learn_primitives(primitives)
    return parse(text)


class SearchSpace:
    """The programs a search may build, and gplearn's variation operators over them.

    Parameters
    ----------
    function_set : sequence of str
        Primitive names.
    constants : sequence of float
        Fixed constants offered as terminals (EvoMAL: ``+1`` and ``-1``).
    const_range : tuple of two floats or None
        gplearn's random constants; None for none.
    """

    def __init__(self, function_set, constants=(1.0, -1.0), const_range=None):
        self.primitives = resolve_function_set(function_set)
        self.constants = tuple(float(c) for c in constants)
        self.const_range = const_range
        # Programs given by the user (seeds) may use any registered primitive;
        # new genetic material is drawn from the function set only.
        self._to_gp = {p.name: _Function(function=None, name=p.name, arity=p.arity)
                       for p in PRIMITIVES.values()}
        self._from_gp = dict(PRIMITIVES)
        self._function_set = [self._to_gp[p.name] for p in self.primitives]
        self._arities = {}
        for f in self._function_set:
            self._arities.setdefault(f.arity, []).append(f)
        self._binary = [p for p in self.primitives if p.arity == 2]
        if not self._binary:
            raise ValueError(
                "function_set needs at least one binary primitive (e.g. 'add'), "
                "or no program could use both y and yhat."
            )

    def _gp(self, program=None, init_depth=(2, 4), init_method="half and half",
            p_point_replace=0.05):
        nodes = None
        if program is not None:
            nodes = []
            for n in program.nodes:
                if isinstance(n, Primitive):
                    nodes.append(self._to_gp[n.name])
                else:
                    nodes.append(n)
        return _Program(
            function_set=self._function_set, arities=self._arities,
            init_depth=init_depth, init_method=init_method,
            n_features=len(TERMINALS) + len(self.constants),
            const_range=self.const_range, metric=None,
            p_point_replace=p_point_replace, parsimony_coefficient=0.0,
            random_state=None if nodes is not None else np.random.RandomState(0),
            program=nodes,
        )

    def _from_gplearn(self, nodes):
        out = []
        for n in nodes:
            if isinstance(n, _Function):
                out.append(self._from_gp[n.name])
            elif isinstance(n, (int, np.integer)) and not isinstance(n, bool):
                n = int(n)
                out.append(n if n < len(TERMINALS) else self.constants[n - len(TERMINALS)])
            else:
                out.append(float(n))
        return Program(out)

    def random_program(self, random_state, init_depth=(2, 4), init_method="half and half"):
        """A random program by gplearn's ``build_program`` (ramped half-and-half)."""
        gp = self._gp(Program([0]), init_depth=init_depth, init_method=init_method)
        return self._from_gplearn(gp.build_program(random_state))

    def crossover(self, parent, donor, random_state):
        """gplearn's one-point subtree crossover."""
        nodes, _, _ = self._gp(parent).crossover(self._gp(donor).program, random_state)
        return self._from_gplearn(nodes)

    def subtree_mutation(self, parent, random_state, depth=(0, 2)):
        """gplearn's headless-chicken subtree mutation with a new subtree of ``depth``."""
        nodes, _, _ = self._gp(parent, init_depth=depth).subtree_mutation(random_state)
        return self._from_gplearn(nodes)

    def hoist_mutation(self, parent, random_state):
        """gplearn's hoist mutation."""
        nodes, _ = self._gp(parent).hoist_mutation(random_state)
        return self._from_gplearn(nodes)

    def point_mutation(self, parent, random_state, p_point_replace=0.05):
        """gplearn's point mutation.

        A seed's primitive whose arity the function set lacks has no
        replacement and stays as it is.
        """
        gp = self._gp(parent, p_point_replace=p_point_replace)
        missing = {n.arity for n in gp.program if isinstance(n, _Function)} - set(self._arities)
        gp.arities = {**self._arities, **dict.fromkeys(missing, [None])}
        nodes, _ = gp.point_mutation(random_state)
        return self._from_gplearn([old if new is None else new for old, new in zip(gp.program, nodes)])

    def repair(self, program, random_state):
        """Make ``program`` use both ``y`` and ``yhat`` (EvoMAL's repair).

        A random leaf is replaced by ``op(y, yhat)`` with ``op`` drawn from
        add, sub, mul and div (those of them in the function set; any binary
        primitive otherwise). A valid program is returned unchanged.
        """
        if program.is_valid_loss:
            return program
        ops = [p for p in self._binary if p.name in ("add", "sub", "mul", "div")] or self._binary
        op = ops[random_state.randint(len(ops))]
        leaves = [i for i, n in enumerate(program.nodes) if not isinstance(n, Primitive)]
        i = leaves[random_state.randint(len(leaves))]
        nodes = list(program.nodes)
        nodes[i:i + 1] = [op, 0, 1]
        return Program(nodes)
