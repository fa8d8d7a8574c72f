"""Scale component of the meta-gradient with a carried base net (ML3-style, reinit every 62 meta steps)
vs the baseline fresh net, fold 0, 250 meta steps.  Run: python mech_carry.py > results/mech_carry.txt"""
import numpy as np
import torch
from harness import PROGRAMS, load
from localsearch import local_search

torch.set_num_threads(1)
print("program | fresh: mean cos(-g,dlogG/dc), frac>0 | carried: mean cos(-g,dlogG/dc), frac>0 "
      "| carried, first/last half of each net's life")
for name in PROGRAMS:
    ds = load(name)
    Xf, yf, _, _ = ds["folds"][0]
    for p in PROGRAMS[name]:
        out = []
        for cfg in [dict(), dict(carry=62, carry_real=1)]:
            d = local_search(ds, p, Xf, yf, 0, meta_steps=250, diag=True, **cfg)["diag"]
            c = np.array([x["cos_logG"] for x in d])
            st = np.array([x["step"] for x in d])
            young, old = c[(st % 62) < 31], c[(st % 62) >= 31]
            out.append((np.nanmean(c), np.nanmean(c > 0), np.nanmean(young), np.nanmean(old)))
        print(f"{name} {p} | {out[0][0]:+.2f}, {out[0][1]:.2f} | {out[1][0]:+.2f}, {out[1][1]:.2f} "
              f"| {out[1][2]:+.2f} / {out[1][3]:+.2f}")
