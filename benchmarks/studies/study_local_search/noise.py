"""Reference CV scores and noise: unrefined program (before), starting coefficients 1+0.001N
(the search's own start), and the spread of the CV score over 5 fitness seeds.
Run: .venv/bin/python noise.py  -> results/noise.json
"""
import json

import numpy as np
import torch
from harness import PROGRAMS, cv_score, load

torch.set_num_threads(1)
out = {}
for dn in PROGRAMS:
    ds = load(dn)
    for p in PROGRAMS[dn]:
        before = cv_score(ds, p)[0]
        n = len(ds["folds"])
        from metaloss_sk.loss import SymbolicLoss
        n_c = len(SymbolicLoss(p, task=ds["task"]).program_) - 1
        starts = [1 + 0.001 * np.random.RandomState(1000 + k).standard_normal(n_c) for k in range(n)]
        start = cv_score(ds, p, starts)[0]
        seeds = [cv_score(ds, p, None, seed_base=2000 + 10 * s)[0] for s in range(5)]
        out[f"{dn}|{p}"] = dict(before=before, start=start, seed_mean=float(np.mean(seeds)),
                                seed_std=float(np.std(seeds, ddof=1)), seeds=seeds)
        print(dn, p, round(before, 4), round(start, 4), round(float(np.std(seeds, ddof=1)), 4), flush=True)
json.dump(out, open("results/noise.json", "w"), indent=1)
