"""Run variants on every program; append one JSON line per (variant, meta_steps, dataset, program) to
results/runs.jsonl (resumable: existing keys are skipped).
Usage: .venv/bin/python run.py VARIANT[,VARIANT...] [META_STEPS,...]
"""
import json
import os
import sys

import numpy as np
import torch
from harness import BUDGET, PROGRAMS, cv_score, load
from localsearch import local_search

torch.set_num_threads(1)


def variants(M):
    real = max(1, round(BUDGET / M))
    return {
        "base": dict(),
        "ckpt": dict(ckpt=10),
        "carry": dict(carry=M, carry_real=real),            # one trajectory over the whole budget
        "carry_ml3": dict(carry=max(1, M // 4), carry_real=1),  # ML3-like: 1 real step, reinit every M/4
        "norm": dict(norm="norm"),
        "proj": dict(norm="proj"),
        "unroll5": dict(unroll=5),
        "unroll10": dict(unroll=10),
        "lr1e-4": dict(meta_lr=1e-4),
        "clip": dict(clip=0.1),
        "lr1e-2": dict(meta_lr=1e-2),
        "carry_lr1e-2": dict(carry=M, carry_real=real, meta_lr=1e-2),
        "carry+ckpt": dict(carry=M, carry_real=real, ckpt=10),
        "norm+ckpt": dict(norm="norm", ckpt=10),
        "carry+norm": dict(carry=M, carry_real=real, norm="norm"),
        "carry+norm+ckpt": dict(carry=M, carry_real=real, norm="norm", ckpt=10),
        "carry+proj": dict(carry=M, carry_real=real, norm="proj"),
        "lr1e-2+ckpt": dict(meta_lr=1e-2, ckpt=10),
        "carry_lr1e-2+ckpt": dict(carry=M, carry_real=real, meta_lr=1e-2, ckpt=10),
        "ckpt_s2": dict(ckpt=10, ckpt_seeds=2),
        "carry_ml3+ckpt": dict(carry=max(1, M // 4), carry_real=1, ckpt=10),
        "ckpt_z1": dict(ckpt=10, ckpt_z=1.0),
        "carry_ml3+ckpt_z1": dict(carry=max(1, M // 4), carry_real=1, ckpt=10, ckpt_z=1.0),
        "carry_lr1e-2+ckpt_s2": dict(carry=M, carry_real=real, meta_lr=1e-2, ckpt=10, ckpt_seeds=2),
    }


def main():
    names = sys.argv[1].split(",")
    Ms = [int(m) for m in sys.argv[2].split(",")] if len(sys.argv) > 2 else [100, 250]
    os.makedirs("results", exist_ok=True)
    path = "results/runs.jsonl"
    done = set()
    if os.path.exists(path):
        for line in open(path):
            r = json.loads(line)
            done.add((r["variant"], r["M"], r["dataset"], r["program"]))
    dss = {n: load(n) for n in PROGRAMS}
    for name in names:
        for M in Ms:
            cfg = dict(meta_steps=M, **variants(M)[name])
            for dn, ds in dss.items():
                for p in PROGRAMS[dn]:
                    if (name, M, dn, p) in done:
                        continue
                    res = [local_search(ds, p, Xf, yf, 100 + k, **cfg)
                           for k, (Xf, yf, _, _) in enumerate(ds["folds"])]
                    after, folds = cv_score(ds, p, [r["cs"] for r in res])
                    rec = dict(variant=name, M=M, dataset=dn, program=p, cfg=cfg, after=after, after_folds=folds,
                               time_s=float(np.mean([r["time_s"] for r in res])),
                               cs=[np.round(r["cs"], 4).tolist() for r in res],
                               ckpts=[r["ckpts"] for r in res], ratio=[r["ratio"] for r in res],
                               n_nan=[r["n_nan"] for r in res])
                    with open(path, "a") as f:
                        f.write(json.dumps(rec) + "\n")
                    print(name, M, dn, p, f"{after:.4f}", f"{rec['time_s']:.2f}s", flush=True)


if __name__ == "__main__":
    main()
