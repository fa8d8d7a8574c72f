"""Tables from results/runs.jsonl and results/noise.json.
Usage: .venv/bin/python table.py [variant,...]  (default: all variants present)
"""
import json
import sys
from collections import OrderedDict

import numpy as np
from harness import PROGRAMS

noise = json.load(open("results/noise.json"))
runs = OrderedDict()
for line in open("results/runs.jsonl"):
    r = json.loads(line)
    runs[(r["variant"], r["M"], r["dataset"], r["program"])] = r
variants = sys.argv[1].split(",") if len(sys.argv) > 1 else list(OrderedDict.fromkeys(k[0] for k in runs))
SHORT = {"neg(mul(y, log(yhat)))": "CE", "square(sub(y, yhat))": "SE",
         "neg(mul(y, log(add(yhat, 1.0))))": "-y*log(yhat+1)",
         "mul(square(sub(y, yhat)), tanh(square(sub(y, yhat))))": "SE*tanh(SE)",
         "square(square(sqrt(sub(sub(y, yhat), yhat))))": "(y-2yhat)^2 via sqrt",
         "abs(sub(y, yhat))": "AE", "square(div(sub(y, yhat), y))": "aq(y-yhat,y)^2",
         "tanh(square(sub(y, yhat)))": "tanh(SE)"}
progs = [(d, p) for d in PROGRAMS for p in PROGRAMS[d]]
cols = [(v, M) for v in variants for M in (100, 250) if any(k[:2] == (v, M) for k in runs)]
print("| task | program | before | seed sd | " + " | ".join(f"{v} {M}" for v, M in cols) + " |")
print("|" + "---|" * (4 + len(cols)))
deltas = {c: [] for c in cols}
for d, p in progs:
    n = noise[f"{d}|{p}"]
    cells = []
    for c in cols:
        r = runs.get((c[0], c[1], d, p))
        if r is None:
            cells.append("")
            continue
        delta = r["after"] - n["before"]
        deltas[c].append((delta, n["seed_std"], r["time_s"], d))
        mark = "**" if delta < -n["seed_std"] else ""
        cells.append(f"{mark}{r['after']:.3f}{mark}")
    print(f"| {d} | {SHORT[p]} | {n['before']:.3f} | {n['seed_std']:.3f} | " + " | ".join(cells) + " |")


def row(label, f):
    print(f"| | {label} | | | " + " | ".join(f(deltas[c]) if deltas[c] else "" for c in cols) + " |")


row("better (d>0)", lambda x: f"{sum(a > 1e-9 for a, *_ in x)}/{len(x)}")
row("worse beyond 1 sd", lambda x: f"{sum(a < -s for a, s, *_ in x)}/{len(x)}")
row("mean delta", lambda x: f"{np.mean([a for a, *_ in x]):+.3f}")
row("LS time digits (s)", lambda x: f"{np.mean([t for a, s, t, d in x if d == 'digits']):.2f}")
row("LS time diabetes (s)", lambda x: f"{np.mean([t for a, s, t, d in x if d == 'diabetes']):.2f}")
