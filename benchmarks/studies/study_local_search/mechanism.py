"""Mechanism: (1) meta-gradient direction vs pure-scale direction for the baseline search;
(2) one-step lookahead meta-objective vs loss scale k, from fresh and partly trained nets,
    against the 500-step CV score vs k.
Run: .venv/bin/python mechanism.py > results/mechanism.txt
"""
import numpy as np
import torch
from harness import BATCH, OPT, PROGRAMS, cv_score, fold_scale, load, loss_value, make_loss, make_net, task_loss
from localsearch import local_search
from torch.func import functional_call

from metaloss_sk.optim import SGD as _SGD

torch.set_num_threads(1)

print("== (1) baseline meta-gradient direction (fold 0, 250 meta steps); cosines of the descent direction -g")
print("program | mean cos(-g, 1) | mean cos(-g, scale dir) | frac steps cos(-g,scale)>0 | mean cos(-g, dlogG/dc) | "
      "final coefficients")
for name in ["digits", "diabetes"]:
    ds = load(name)
    Xf, yf, _, _ = ds["folds"][0]
    for p in PROGRAMS[name]:
        r = local_search(ds, p, Xf, yf, 0, meta_steps=250, diag=True)
        d = r["diag"]
        co = np.mean([x["cos_ones"] for x in d])
        cl = np.nanmean([x["cos_logG"] for x in d])
        if d[0]["cos_scale"] is None:
            cs_, fr = "n/a", "n/a"
        else:
            sc = np.array([x["cos_scale"] for x in d])
            cs_, fr = f"{sc.mean():+.2f}", f"{(sc > 0).mean():.2f}"
        print(f"{name} {p} | {co:+.2f} | {cs_} | {fr} | {cl:+.2f} | {np.round(r['cs'], 3).tolist()}")

print()
print("== (2) one-step lookahead task loss on a validation batch vs loss scale k (mean of 64 draws),")
print("   from a fresh net and from nets trained 100 / 400 steps with the unscaled loss; and 500-step CV score vs k")
KS = [0.25, 0.5, 1.0, 1.5, 2.0, 4.0, 8.0]


def lookahead(ds, program, k, Xt, yt, Xv, yv, pretrain, n_draws=64, unroll=1):
    loss = make_loss(program, ds)
    vals_out = []
    g = torch.Generator().manual_seed(123)
    for d in range(n_draws):
        net = make_net(ds, 10_000 + d)
        opt = torch.optim.SGD(net.parameters(), **OPT)
        for _ in range(pretrain):
            idx = torch.randint(len(Xt), (BATCH,), generator=g)
            lv = loss_value(loss, None, net(Xt[idx]), yt[idx])
            opt.zero_grad()
            lv.backward()
            opt.step()
        names = [n for n, _ in net.named_parameters()]
        vals = [p.detach().clone().requires_grad_(True) for p in net.parameters()]
        state = [None if opt.state.get(p, {}).get("momentum_buffer") is None else
                 opt.state[p]["momentum_buffer"].clone() for p in net.parameters()]
        inner = _SGD(**OPT)
        for t in range(unroll):
            idx = torch.randint(len(Xt), (BATCH,), generator=g)
            out = functional_call(net, dict(zip(names, vals)), (Xt[idx],))
            lv = k * loss_value(loss, None, out, yt[idx])
            grads = torch.autograd.grad(lv, vals)
            vals, state = inner.step(vals, grads, state, t + 1)
        vidx = torch.randint(len(Xv), (min(BATCH, len(Xv)),), generator=g)
        with torch.no_grad():
            vals_out.append(float(task_loss(functional_call(net, dict(zip(names, vals)), (Xv[vidx],)), yv[vidx],
                                            ds["task"])))
    return np.mean(vals_out)


for name, p in [("digits", "neg(mul(y, log(yhat)))"), ("digits", "square(sub(y, yhat))"),
                ("diabetes", "square(sub(y, yhat))"), ("diabetes", "abs(sub(y, yhat))")]:
    ds = load(name)
    Xf, yf, _, _ = ds["folds"][0]
    n_valid = int(round(0.2 * len(Xf)))
    perm = np.random.RandomState(0).permutation(len(Xf))
    Xv, yv, Xt, yt = Xf[perm[:n_valid]], yf[perm[:n_valid]], Xf[perm[n_valid:]], yf[perm[n_valid:]]
    prog = make_loss(p, ds).program_
    print(f"-- {name} {p}")
    print("k | lookahead fresh | lookahead @100 | lookahead @400 | 5-step lookahead fresh | CV score (500 steps)")
    for k in KS:
        a = lookahead(ds, p, k, Xt, yt, Xv, yv, 0)
        b = lookahead(ds, p, k, Xt, yt, Xv, yv, 100, n_draws=16)
        c = lookahead(ds, p, k, Xt, yt, Xv, yv, 400, n_draws=16)
        e = lookahead(ds, p, k, Xt, yt, Xv, yv, 0, n_draws=32, unroll=5)
        cs = fold_scale(prog, np.ones(len(prog) - 1), k)
        cv = cv_score(ds, p, [cs] * 3)[0]
        print(f"{k} | {a:.4f} | {b:.4f} | {c:.4f} | {e:.4f} | {cv:.4f}")
