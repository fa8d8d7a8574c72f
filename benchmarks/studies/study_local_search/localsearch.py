"""Local-search variants (EvoMAL coefficient learning), re-implemented for the study.

Variant knobs (dict `cfg`):
  meta_steps, meta_lr, unroll          as in metaloss_sk.unrolled
  carry      : None (fresh net every meta step, the baseline) or the period, in meta
               steps, after which the carried base net is re-initialised
  carry_real : real (non-differentiable) SGD steps the base net takes per meta step
  norm       : None | "norm"  inner loss gradient rescaled by G0/G_c (non-detached,
                              so the meta objective is invariant to the loss's scale;
                              the average factor is folded into the root's children)
                      | "proj"  Adam update projected orthogonal to d log G_c / d cs
  clip       : None or max L2 norm of the meta-gradient
  ckpt       : number of validation checkpoints (0 = return last coefficients)
  ckpt_seeds : number of net seeds each checkpoint's fitness run is averaged over
"""
import time

import numpy as np
import torch
from harness import BATCH, OPT, fit_score, fold_scale, loss_value, make_loss, make_net, scale_direction, task_loss
from torch.func import functional_call

from metaloss_sk.optim import SGD as _SGD

DEFAULT = dict(meta_steps=250, meta_lr=1e-3, unroll=1, carry=None, carry_real=1, norm=None, clip=None,
               ckpt=0, ckpt_seeds=1, ckpt_z=None, valid_fraction=0.2, diag=False)


def _stream(n, b, generator):
    b = min(b, n)
    while True:
        perm = torch.randperm(n, generator=generator)
        for i in range(0, n - b + 1, b):
            yield perm[i:i + b]


def _cos(a, b):
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else float("nan")


def local_search(ds, program, Xf, yf, seed, **cfg):
    cfg = {**DEFAULT, **cfg}
    t0 = time.perf_counter()
    rng = np.random.RandomState(seed)
    order = rng.permutation(len(Xf))
    n_valid = max(1, int(round(cfg["valid_fraction"] * len(Xf))))
    va, tr = order[:n_valid], order[n_valid:]
    Xt, yt, Xv, yv = Xf[tr], yf[tr], Xf[va], yf[va]
    loss = make_loss(program, ds)
    n_c = len(loss.program_) - 1
    cs0 = 1.0 + 0.001 * rng.standard_normal(n_c)
    cs = torch.tensor(cs0, dtype=torch.float32, requires_grad=True)
    cs_start = cs.detach().clone()
    meta_opt = torch.optim.Adam([cs], lr=cfg["meta_lr"])
    inner = _SGD(**OPT)
    gen = torch.Generator().manual_seed(int(rng.randint(2**31 - 1)))
    tstream, vstream = _stream(len(Xt), BATCH, gen), _stream(len(Xv), BATCH, gen)
    net_seeds = rng.randint(2**31 - 1, size=cfg["meta_steps"] + 1)
    ckpt_seed = int(rng.randint(2**31 - 1))
    M = cfg["meta_steps"]
    ckpt_at = set() if not cfg["ckpt"] else {round(M * i / cfg["ckpt"]) for i in range(0, cfg["ckpt"] + 1)}
    task = ds["task"]

    ratios = []
    diag = []
    ckpts = []
    n_nan = 0
    last_finite = cs.detach().clone()

    def representable(c_now):
        """The coefficients a SymbolicLoss would carry (fold the normaliser for 'norm')."""
        c_now = c_now.detach().double().numpy()
        if cfg["norm"] != "norm" or not ratios:
            return c_now
        window = ratios[-max(10, M // 10):]
        r = float(np.exp(np.mean(np.log(window))))
        folded = fold_scale(loss.program_, c_now, r)
        return c_now if folded is None else folded

    def per_row(net):
        with torch.no_grad():
            out = net(Xv)
        if task == "regression":
            return -((out.reshape(-1) - yv.reshape(-1)) ** 2).double().numpy()  # higher is better
        return (out.argmax(1) == yv).double().numpy()

    rows0 = []

    def checkpoint(step):
        c = representable(cs)
        runs = [fit_score(ds, program, c, Xt, yt, Xv, yv, ckpt_seed + j, return_net=True)
                for j in range(cfg["ckpt_seeds"])]
        s = float(np.mean([r[0] for r in runs]))
        if cfg["ckpt_z"] is not None:
            rows = np.mean([per_row(r[1]) for r in runs], axis=0)
            if not rows0:
                rows0.append(rows)
            else:
                d = rows - rows0[0]
                se = d.std(ddof=1) / np.sqrt(len(d)) if d.std() > 0 else np.inf
                z = d.mean() / se if np.isfinite(se) else (np.inf if d.mean() > 0 else -np.inf)
                if not (np.isfinite(s) and z > cfg["ckpt_z"]):
                    s = -np.inf  # not a significant paired improvement over the start: ineligible
        ckpts.append((step, float(s), c))

    # carried base network
    base, base_opt, base_age = None, None, 0

    def new_base(step):
        nonlocal base, base_opt, base_age
        base = make_net(ds, int(net_seeds[step]))
        base_opt = torch.optim.SGD(base.parameters(), **OPT)
        base_age = 0

    for step in range(M):
        if step in ckpt_at:
            checkpoint(step)
        if cfg["carry"] is not None:
            if base is None or base_age >= cfg["carry"]:
                new_base(step)
            module = base
            names = [n for n, _ in module.named_parameters()]
            vals = [p.detach().clone().requires_grad_(True) for p in module.parameters()]
            state = [None if base_opt.state.get(p, {}).get("momentum_buffer") is None
                     else base_opt.state[p]["momentum_buffer"].detach().clone() for p in module.parameters()]
        else:
            module = make_net(ds, int(net_seeds[step]))
            names = [n for n, _ in module.named_parameters()]
            vals = [p.detach().clone().requires_grad_(True) for p in module.parameters()]
            state = [None] * len(vals)

        def call(v, x, module=module, names=names):
            return functional_call(module, dict(zip(names, v)), (x,))

        c_list = cs.unbind()
        batches = [next(tstream) for _ in range(cfg["unroll"])]
        u = None
        for t, idx in enumerate(batches, 1):
            out = call(vals, Xt[idx])
            L = loss_value(loss, c_list, out, yt[idx])
            grads = torch.autograd.grad(L, vals, create_graph=True)
            if cfg["norm"] is not None or cfg["diag"]:
                G = torch.sqrt(sum((g ** 2).sum() for g in grads))
                L0 = loss_value(loss, cs_start.unbind(), out, yt[idx])
                g0 = torch.autograd.grad(L0, vals, retain_graph=True)
                G0 = torch.sqrt(sum((g ** 2).sum() for g in g0)).detach()
                if t == 1 and (cfg["norm"] == "proj" or cfg["diag"]):
                    u = torch.autograd.grad(torch.log(G), cs, retain_graph=True)[0].detach().double().numpy()
                if cfg["norm"] == "norm":
                    ratios.append(float(G0 / G))
                    grads = [g * (G0 / G) for g in grads]
            vals, state = inner.step(vals, grads, state, t)
        vidx = next(vstream)
        obj = task_loss(call(vals, Xv[vidx]), yv[vidx], task)
        if not torch.isfinite(obj):
            n_nan += 1
        else:
            g = torch.autograd.grad(obj, cs)[0]
            if not torch.isfinite(g).all():
                n_nan += 1
            else:
                gn = g.detach().double().numpy()
                if cfg["diag"]:
                    v = scale_direction(loss.program_, cs.detach().double().numpy())
                    diag.append(dict(step=step, obj=float(obj), cos_ones=_cos(-gn, np.ones_like(gn)),
                                     cos_scale=None if v is None else _cos(-gn, v),
                                     cos_logG=_cos(-gn, u), gnorm=float(np.linalg.norm(gn))))
                if cfg["clip"] is not None:
                    norm = g.norm()
                    if norm > cfg["clip"]:
                        g = g * (cfg["clip"] / norm)
                before = cs.detach().clone()
                cs.grad = g
                meta_opt.step()
                if cfg["norm"] == "proj" and u is not None and np.dot(u, u) > 0:
                    with torch.no_grad():
                        d = (cs - before).double().numpy()
                        d = d - (d @ u) / (u @ u) * u
                        cs.copy_(before + torch.as_tensor(d, dtype=cs.dtype))
                if torch.isfinite(cs).all():
                    last_finite = cs.detach().clone()
                else:
                    with torch.no_grad():
                        cs.copy_(last_finite)
                    meta_opt.state.clear()
                    n_nan += 1
        if cfg["carry"] is not None:
            c_now = [torch.tensor(float(c)) for c in cs.detach()]
            for _ in range(cfg["carry_real"]):
                idx = next(tstream)
                lv = loss_value(loss, c_now, base(Xt[idx]), yt[idx])
                base_opt.zero_grad()
                lv.backward()
                base_opt.step()
            base_age += 1
    if M in ckpt_at:
        checkpoint(M)
    final = representable(cs)
    chosen = final
    if ckpts:
        best = max(ckpts, key=lambda c: c[1])  # max returns the first of equal scores: the earliest
        chosen = best[2]
    return dict(cs=chosen, cs_last=final, cs_start=cs_start.double().numpy(), ckpts=[(s, v) for s, v, _ in ckpts],
                n_nan=n_nan, time_s=time.perf_counter() - t0, diag=diag,
                ratio=None if not ratios else float(np.exp(np.mean(np.log(ratios[-max(10, M // 10):])))))
