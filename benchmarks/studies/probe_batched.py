"""Probe (issue 33): train a group of G copies of a small net as one batched network.

Compares, side by side in one process with the variants alternated over several
repeats (medians reported), the time per optimiser step of training G=8 copies,
each with its own loss on its own outputs:

1. plain    - one net, ``nn.CrossEntropyLoss``, plain PyTorch loop (the floor, per net);
2. separate - 8 nets stepped one after another (8 forward, 8 backward, 8 optimiser steps);
3. lockstep - 8 copies, 8 forward passes, one summed backward, one foreach SGD over all parameters;
4. vmap     - ``stack_module_state`` + ``vmap(functional_call)``, one backward, foreach SGD
              over the stacked leaves;
5. baddbmm  - the MLP with stacked weights ``[G, in, out]`` and ``torch.baddbmm`` (MLP only).

Then checks that, from the same initial weights and batches, 20 steps of
variants 3-5 give every copy the weights variant 2 gives (max abs difference).

Run from the repository root:  .venv/bin/python benchmarks/studies/probe_batched.py
"""

import copy
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for tasks.py
from tasks import LeNet5  # noqa: E402

from metaloss_sk.nets import MLP  # noqa: E402

torch.set_num_threads(1)
G = 8
BATCH = 128
N_ROWS = 1024
OPT = {"lr": 0.01, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4}
REPEATS = 7
CHECK_STEPS = 20


# ---------------------------------------------------------------- the 8 losses
def _onehot(y, c):
    return nn.functional.one_hot(y, c).to(torch.float32)


def _smooth(t, eps):
    return t * (1 - eps) + eps / t.shape[1]


def cross_entropy(z, y):
    return -(_onehot(y, z.shape[1]) * z.log_softmax(1)).sum(1).mean()


def smoothing_01(z, y):
    return -(_smooth(_onehot(y, z.shape[1]), 0.1) * z.log_softmax(1)).sum(1).mean()


def smoothing_02(z, y):
    return -(_smooth(_onehot(y, z.shape[1]), 0.2) * z.log_softmax(1)).sum(1).mean()


def focal_2(z, y):
    logp = z.log_softmax(1)
    return -(_onehot(y, z.shape[1]) * (1 - logp.exp()) ** 2 * logp).sum(1).mean()


def focal_1(z, y):
    logp = z.log_softmax(1)
    return -(_onehot(y, z.shape[1]) * (1 - logp.exp()) * logp).sum(1).mean()


def squared(z, y):
    return ((z.softmax(1) - _onehot(y, z.shape[1])) ** 2).sum(1).mean()


def absolute(z, y):
    return (z.softmax(1) - _onehot(y, z.shape[1])).abs().sum(1).mean()


def ce_plus_squared(z, y):
    t, logp = _onehot(y, z.shape[1]), z.log_softmax(1)
    return (-(t * logp) + 0.5 * (logp.exp() - t) ** 2).sum(1).mean()


LOSSES = [cross_entropy, smoothing_01, smoothing_02, focal_2, focal_1, squared, absolute, ce_plus_squared]


# ---------------------------------------------------------------- the variants
def make_data(shape, n_classes, seed):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(N_ROWS, *shape, generator=gen)
    y = torch.randint(0, n_classes, (N_ROWS,), generator=gen)
    perms = [torch.randperm(N_ROWS, generator=gen) for _ in range(8)]
    batches = [p[i:i + BATCH] for p in perms for i in range(0, N_ROWS, BATCH)]
    return X, y, batches


def make_copies(make_module, seed):
    torch.manual_seed(seed)
    base = make_module()
    return [copy.deepcopy(base) for _ in range(G)]


class Plain:
    """One net, nn.CrossEntropyLoss, default SGD: the plain single-net loop."""

    def __init__(self, modules):
        self.module = modules[0]
        self.crit = nn.CrossEntropyLoss()
        self.opt = torch.optim.SGD(self.module.parameters(), **OPT)

    def step(self, x, y):
        self.opt.zero_grad()
        self.crit(self.module(x), y).backward()
        self.opt.step()


class Separate:
    """8 nets one after another, each with its own loss and optimiser."""

    def __init__(self, modules):
        self.modules = modules
        self.opts = [torch.optim.SGD(m.parameters(), **OPT) for m in modules]

    def step(self, x, y):
        for m, opt, loss in zip(self.modules, self.opts, LOSSES):
            opt.zero_grad()
            loss(m(x), y).backward()
            opt.step()

    def weights(self):
        return [[p.detach() for p in m.parameters()] for m in self.modules]


class Lockstep:
    """8 forward passes, one summed backward, one foreach SGD over all parameters."""

    def __init__(self, modules):
        self.modules = modules
        self.opt = torch.optim.SGD([p for m in modules for p in m.parameters()], foreach=True, **OPT)

    def step(self, x, y):
        self.opt.zero_grad()
        sum(loss(m(x), y) for m, loss in zip(self.modules, LOSSES)).backward()
        self.opt.step()

    def weights(self):
        return [[p.detach() for p in m.parameters()] for m in self.modules]


class Vmap:
    """stack_module_state + vmap(functional_call), one backward, foreach SGD on the stacked leaves."""

    def __init__(self, modules):
        self.names = [n for n, _ in modules[0].named_parameters()]
        self.params, self.buffers = stack_module_state(modules)
        base = copy.deepcopy(modules[0]).to("meta")

        def call(params, buffers, x):
            return functional_call(base, (params, buffers), (x,))

        self.forward = vmap(call, in_dims=(0, 0, None))
        self.opt = torch.optim.SGD(list(self.params.values()), foreach=True, **OPT)

    def step(self, x, y):
        self.opt.zero_grad()
        out = self.forward(self.params, self.buffers, x)  # [G, B, C]
        sum(loss(out[g], y) for g, loss in enumerate(LOSSES)).backward()
        self.opt.step()

    def weights(self):
        return [[self.params[n][g].detach() for n in self.names] for g in range(G)]


class Baddbmm:
    """MLP(64, 128, 10) with stacked weights [G, in, out]: relu(x W1 + b1) W2 + b2."""

    def __init__(self, modules):
        def stack(get):
            return torch.stack([get(m).detach().clone() for m in modules]).requires_grad_()

        self.W1 = stack(lambda m: m.hidden.weight.t().contiguous())  # [G, 64, 128]
        self.b1 = stack(lambda m: m.hidden.bias.unsqueeze(0))  # [G, 1, 128]
        self.W2 = stack(lambda m: m.output.weight.t().contiguous())  # [G, 128, 10]
        self.b2 = stack(lambda m: m.output.bias.unsqueeze(0))  # [G, 1, 10]
        self.opt = torch.optim.SGD([self.W1, self.b1, self.W2, self.b2], foreach=True, **OPT)

    def step(self, x, y):
        self.opt.zero_grad()
        xg = x.unsqueeze(0).expand(G, -1, -1)
        h = torch.relu(torch.baddbmm(self.b1, xg, self.W1))
        out = torch.baddbmm(self.b2, h, self.W2)  # [G, B, C]
        sum(loss(out[g], y) for g, loss in enumerate(LOSSES)).backward()
        self.opt.step()

    def weights(self):  # in nn.Linear's layout and parameter order
        return [[self.W1[g].t().detach(), self.b1[g, 0].detach(), self.W2[g].t().detach(), self.b2[g, 0].detach()]
                for g in range(G)]


class BaddbmmOneLoss(Baddbmm):
    """Informational, timing only: Baddbmm with ONE batched cross-entropy over [G*B, C] in place of
    8 separate losses, i.e. what the batched net costs when the per-candidate losses cost nothing extra."""

    def step(self, x, y):
        self.opt.zero_grad()
        xg = x.unsqueeze(0).expand(G, -1, -1)
        out = torch.baddbmm(self.b2, torch.relu(torch.baddbmm(self.b1, xg, self.W1)), self.W2)
        (G * nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), y.repeat(G))).backward()
        self.opt.step()


# ---------------------------------------------------------------- timing and checking
def time_variants(variants, make_module, X, y, batches, steps):
    built = {name: cls(make_copies(make_module, 0)) for name, cls in variants.items()}
    for v in built.values():  # warm-up
        for i in range(3):
            v.step(X[batches[i]], y[batches[i]])
    times = {name: [] for name in built}
    for r in range(REPEATS):
        order = list(built) if r % 2 == 0 else list(built)[::-1]
        for name in order:
            v = built[name]
            t0 = time.perf_counter()
            for i in range(steps):
                b = batches[(r * steps + i) % len(batches)]
                v.step(X[b], y[b])
            times[name].append((time.perf_counter() - t0) / steps * 1000)
    return times


def check_variants(variants, make_module, X, y, batches):
    """Steps every variant on the same batches; max abs weight difference to ``separate`` after each step."""
    built = {name: cls(make_copies(make_module, 0)) for name, cls in variants.items()}
    trace = {name: [] for name in built if name != "separate"}
    exact = {}
    for i in range(CHECK_STEPS):
        for v in built.values():
            v.step(X[batches[i]], y[batches[i]])
        ref = built["separate"].weights()
        for name in trace:
            w = built[name].weights()
            trace[name].append(max((a - b).abs().max().item() for g in range(G) for a, b in zip(w[g], ref[g])))
            exact[name] = all(torch.equal(a, b) for g in range(G) for a, b in zip(w[g], ref[g]))
    # sanity: the copies must have diverged from each other (the losses differ)
    spread = max((a - b).abs().max().item() for a, b in zip(ref[0], ref[3]))
    return {name: (trace[name], exact[name]) for name in trace}, spread


def report(title, times, checks, spread):
    plain = statistics.median(times["plain"])
    print(f"\n### {title}\n")
    print("| variant | ms per step (group of 8) | ms per candidate | per candidate / plain | min-max per step (ms) |")
    print("|---|---:|---:|---:|---:|")
    for name, ts in times.items():
        med = statistics.median(ts)
        group, per = (med, med) if name == "plain" else (med, med / G)
        grp = f"{group:.2f} (one net)" if name == "plain" else f"{group:.2f}"
        print(f"| {name} | {grp} | {per:.2f} | {per / plain:.2f} | {min(ts):.2f}-{max(ts):.2f} |")
    print("\nCorrectness after", CHECK_STEPS, "steps, max abs weight difference to `separate`"
          f" (copies 0 and 3 differ from each other by {spread:.2e}, so the losses matter):\n")
    for name, (trace, exact) in checks.items():
        diff = trace[-1]
        print(f"- {name}: {diff:.3e}{' (bit-for-bit)' if exact else ''} -> {'OK' if diff <= 1e-5 else 'OVER 1e-5'};"
              f" after steps 1/5/10/15/20: {' / '.join(f'{trace[k - 1]:.1e}' for k in (1, 5, 10, 15, 20))}")
    sys.stdout.flush()


def main():
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, G={G}, batch {BATCH}, repeats {REPEATS}")
    start = time.perf_counter()
    models = [
        ("MLP(64, 128, 10), digits-shaped random data", lambda: MLP(64, 128, 10), (64,), 40,
         {"plain": Plain, "separate": Separate, "lockstep": Lockstep, "vmap": Vmap, "baddbmm": Baddbmm,
          "baddbmm_one_ce (info)": BaddbmmOneLoss}),
        ("LeNet5, 1x28x28 random data", LeNet5, (1, 28, 28), 6,
         {"plain": Plain, "separate": Separate, "lockstep": Lockstep, "vmap": Vmap}),
    ]
    for title, make_module, shape, steps, variants in models:
        X, y, batches = make_data(shape, 10, seed=1)
        checked = {k: v for k, v in variants.items() if k != "plain" and "info" not in k}
        checks, spread = check_variants(checked, make_module, X, y, batches)
        times = time_variants(variants, make_module, X, y, batches, steps)
        report(title, times, checks, spread)
        # the same check in float64: tells a rounding-triggered flip (a ReLU or max-pool tie going the
        # other way, then amplified by training) from a real difference in the computation
        torch.set_default_dtype(torch.float64)
        X64, y64, batches64 = make_data(shape, 10, seed=1)
        checks64, _ = check_variants(checked, make_module, X64, y64, batches64)
        torch.set_default_dtype(torch.float32)
        print("\nThe same check in float64, max abs difference after 20 steps: "
              + ", ".join(f"{name} {trace[-1]:.1e}" for name, (trace, _) in checks64.items()))
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
