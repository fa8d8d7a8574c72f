"""G copies of a module as one batched network with stacked parameters.

A module made only of ``nn.Linear`` layers, parameter-free elementwise
activations, dropout and elementwise arithmetic, with no buffers and a
forward that ``torch.fx`` can trace (no control flow on tensor values), runs
as one network over parameters stacked along a new first dimension: every
``Linear`` of the G copies is one ``baddbmm`` (the first one, whose input the
copies share, one matrix product against the copies' weights side by side),
every activation one call on a ``[G, batch, ...]`` tensor. Anything else
(convolutions, batch norm, buffers, data-dependent control flow, ops that are
not elementwise) is refused with a reason and the caller keeps the lockstep
loop.

Dropout draws one mask of a lone copy's shape and applies it to every copy,
so every copy sees the draws a lone net would (common random numbers), in
the order a lone net would draw them.

The batched products round differently from a lone net's products for some
shapes (within float32 rounding, about 1e-8 per step on the digits MLP), and
how a copy's slice is rounded may depend on how many copies share the stacked
tensors; the results are a deterministic function of the group.
"""

import functools
import operator

import torch
from torch import fx, nn
from torch.nn import functional as F

from ._torch import has_tied_parameters

__all__ = ["BatchedModule", "batch_plan"]

_ELEMENTWISE_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Tanh, nn.Sigmoid,
    nn.Hardtanh, nn.Hardsigmoid, nn.Hardswish, nn.Softplus, nn.Softsign, nn.Tanhshrink, nn.LogSigmoid,
    nn.Identity,
)
_ELEMENTWISE_FUNCTIONS = {
    F.relu, F.relu6, F.leaky_relu, F.elu, F.selu, F.celu, F.gelu, F.silu, F.mish, F.tanh, F.sigmoid, F.hardtanh,
    F.hardsigmoid, F.hardswish, F.softplus, F.softsign, F.tanhshrink, F.logsigmoid,
    torch.relu, torch.tanh, torch.sigmoid, torch.abs, torch.neg, torch.exp, torch.square, torch.add, torch.sub,
    torch.mul, torch.div,
    operator.add, operator.sub, operator.mul, operator.truediv, operator.neg, operator.pos,
}
_ELEMENTWISE_METHODS = {"relu", "tanh", "sigmoid", "abs", "neg", "exp", "square", "add", "sub", "mul", "div"}


class _Refused(Exception):
    pass


def batch_plan(module):
    """``(graph module, None)`` when ``module`` can run batched, else ``(None, reason)``."""
    if any(True for _ in module.buffers()):
        return None, "the module has buffers (batch norm, say)"
    try:
        traced = fx.symbolic_trace(module)
    except Exception as exc:  # noqa: BLE001 - any trace failure means: keep lockstep
        return None, f"its forward cannot be traced ({type(exc).__name__}: {str(exc).splitlines()[0][:80]})"
    try:
        _check(traced, module)
    except _Refused as exc:
        return None, str(exc)
    return traced, None


def _check(traced, module):
    placeholders = [n for n in traced.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise _Refused("its forward takes more than one input")
    (output,) = [n for n in traced.graph.nodes if n.op == "output"]
    if not isinstance(output.args[0], fx.Node):
        raise _Refused("its forward returns more than one tensor")
    if has_tied_parameters(module):
        raise _Refused("it ties parameters")
    linears = set()
    for node in traced.graph.nodes:  # the layers first: they are the likelier reason
        if node.op == "call_module":
            sub = traced.get_submodule(node.target)
            if isinstance(sub, nn.Linear):
                linears.add(node.target)
            elif not isinstance(sub, (nn.Dropout, *_ELEMENTWISE_MODULES)):
                raise _Refused(f"it uses {type(sub).__name__}, which the batched network does not stack")
    for node in traced.graph.nodes:
        if node.op == "call_function":
            if node.target is F.dropout:
                continue
            if node.target not in _ELEMENTWISE_FUNCTIONS:
                raise _Refused(f"its forward calls {getattr(node.target, '__name__', node.target)}")
        elif node.op == "call_method":
            if node.target not in _ELEMENTWISE_METHODS:
                raise _Refused(f"its forward calls .{node.target}()")
        elif node.op == "get_attr":
            raise _Refused(f"its forward reads {node.target} directly")
    owned = {f"{name}.{p}" for name in linears for p, _ in traced.get_submodule(name).named_parameters()}
    names = {name for name, _ in module.named_parameters()}
    if names - owned:
        raise _Refused(f"parameters outside its Linear layers: {', '.join(sorted(names - owned))}")


def _linear(name, batched, params, h):
    """A Linear layer of the copies with the stacked ``params``: ``[G, out, batch]``."""
    weight, bias = params[f"{name}.weight"], params.get(f"{name}.bias")
    if batched:  # [G, in, batch] -> [G, out, batch]
        if bias is None:
            return torch.bmm(weight, h)
        return torch.baddbmm(bias.unsqueeze(2), weight, h)
    # A shared input [in, batch]: one product against every copy's weights stacked.
    G, n_out = weight.shape[:2]
    flat = weight.flatten(0, 1)
    out = flat @ h if bias is None else torch.addmm(bias.reshape(G * n_out, 1), flat, h)
    return out.unflatten(0, (G, n_out))


def _call_method(name, value, *args, **kwargs):
    return getattr(value, name)(*args, **kwargs)


class BatchedModule:
    """``copies`` modules of one structure, trained as one network with stacked parameters.

    ``params`` maps each parameter name of the module to a leaf tensor of
    shape ``[G, *shape]`` (the copies' parameters side by side); train them
    with any elementwise ``torch.optim`` optimizer. ``state_dict(g)`` is copy
    ``g``'s parameters, for ``load_state_dict`` on a lone module.

    Without ``copies`` it holds no parameters: only the compiled plan, for
    :meth:`forward` on stacked values given at each call (the unrolled local
    search's, which are functions of the inner steps, not leaves).
    """

    def __init__(self, traced, copies=()):
        self.traced = traced
        self.size = len(copies)
        names = [name for name, _ in copies[0].named_parameters()] if copies else []
        with torch.no_grad():
            self.params = {name: torch.stack([dict(m.named_parameters())[name] for m in copies])
                           .requires_grad_(dict(copies[0].named_parameters())[name].requires_grad)
                           for name in names}
        self._steps, self._output = self._compile()

    def named_parameters(self):
        return list(self.params.items())

    def state_dict(self, g):
        return {name: p[g].detach() for name, p in self.params.items()}

    def _compile(self):
        """The graph as a list of ``(op, argument specs, keyword specs, whether op takes the parameters)``,
        each writing the next value."""
        slot, batched, steps = {}, {}, []

        def spec(a):
            return (True, slot[a]) if isinstance(a, fx.Node) else (False, a)

        output = None
        for node in self.traced.graph.nodes:
            if node.op == "placeholder":
                slot[node], batched[node] = 0, False
                continue
            if node.op == "output":
                output = (slot[node.args[0]], batched[node.args[0]])
                break
            args = [spec(a) for a in node.args]
            kwargs = {k: spec(v) for k, v in node.kwargs.items()}
            inputs = [a for a in (*node.args, *node.kwargs.values()) if isinstance(a, fx.Node)]
            is_batched, linear = any(batched[a] for a in inputs), False
            if node.op == "call_module":
                sub = self.traced.get_submodule(node.target)
                if isinstance(sub, nn.Linear):
                    op, is_batched, linear = functools.partial(_linear, node.target, batched[node.args[0]]), True, True
                elif isinstance(sub, nn.Dropout):
                    op = functools.partial(self._dropout, p=sub.p, training=sub.training,
                                           batched=batched[node.args[0]])
                else:
                    op = sub
            elif node.op == "call_function" and node.target is F.dropout:
                values = dict(zip(("input", "p", "training", "inplace"), node.args)) | dict(node.kwargs)
                op = functools.partial(self._dropout, p=values.get("p", 0.5), training=values.get("training", True),
                                       batched=batched[node.args[0]])
                args, kwargs = args[:1], {}
            elif node.op == "call_function":
                op = node.target
            else:  # call_method
                op = functools.partial(_call_method, node.target)
            slot[node], batched[node] = len(steps) + 1, is_batched
            steps.append((op, args, kwargs, linear))
        return steps, output

    def __call__(self, x):
        """The G copies' outputs on ``x``: :meth:`forward` with the held parameters."""
        return self.forward(self.params, x)

    def forward(self, params, x):
        """The G copies' outputs ``[G, batch, features]`` on the shared batch ``x`` (2-d).

        Inside, every value is held transposed, features before rows (``[G,
        features, batch]``, and ``[features, batch]`` for values of the
        shared input alone): the products then take the forms CPU kernels
        run fastest for narrow layers, forward and backward. The output is a
        transposed view; ``out.transpose(1, 2)`` is contiguous.
        """
        env = [x.t()]
        for op, args, kwargs, linear in self._steps:
            inputs = [env[v] if node else v for node, v in args]
            env.append(op(params, *inputs) if linear else
                       op(*inputs, **{k: env[v] if node else v for k, (node, v) in kwargs.items()}))
        index, batched = self._output
        out = env[index]
        if not batched:  # the output does not depend on the parameters
            out = out.expand(len(next(iter(params.values()))) if params else self.size, *out.shape)
        return out.transpose(1, 2)

    def _dropout(self, h, p, training, batched):
        if not training or p == 0:
            return h
        # One lone copy's mask (rows first, as a lone net draws it) for every copy.
        shape = h.shape[1:] if batched else h.shape
        mask = F.dropout(torch.ones(shape[::-1], dtype=h.dtype, device=h.device), p, True)
        return h * mask.t()
