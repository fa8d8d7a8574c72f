"""The local search of a group of losses: batched unroll against the lockstep loop, side by side (issue 33).

    python benchmarks/studies/unroll_batched.py [--steps 100] [--repeats 5] [--losses 2 8] [--out FILE]

Times :func:`metaloss_sk.unrolled.learn_coefficients_group` on digits (the
64-128-10 MLP, batch 128, the reference's SGD with Nesterov momentum and
weight decay, unroll 1 and 3) for groups of 2 and 8 different losses (the
reference setting's local searches run in groups of 2), with the inner steps run as
one batched network (stacked parameters, the default where the module allows
it) and in lockstep (the batched plan switched off), alternating, one torch
thread, after a warm-up of each; medians. It also reports how far the two
paths' learned coefficients and meta objectives drift apart (float32 rounding,
amplified by the meta Adam's normalised steps).
"""

import argparse
import datetime
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_refine import MLP, OPTIMIZER_PARAMS, digits  # noqa: E402

from metaloss_sk import SymbolicLoss, unrolled  # noqa: E402

PROGRAMS = ["neg(mul(y, log(yhat)))", "square(sub(y, yhat))", "neg(mul(y, tanh(yhat)))", "mul(yhat, sub(yhat, y))",
            "neg(mul(y, log(add(yhat, yhat))))", "abs(sub(y, yhat))", "neg(mul(y, sqrt(yhat)))",
            "square(sub(yhat, mul(y, y)))"]


def run(batched, steps, data, unroll, n_losses):
    plan = unrolled.unroll_plan
    if not batched:
        unrolled.unroll_plan = lambda *args: None
    try:
        start = time.perf_counter()
        results = unrolled.learn_coefficients_group(
            [SymbolicLoss(p) for p in PROGRAMS[:n_losses]], MLP, *data, optimizer=torch.optim.SGD,
            optimizer_params=OPTIMIZER_PARAMS, meta_steps=steps, meta_lr=1e-3, unroll=unroll, batch_size=128,
            random_state=np.random.RandomState(0), device="cpu")
        return time.perf_counter() - start, results
    finally:
        unrolled.unroll_plan = plan


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--losses", type=int, nargs="+", default=[2, 8], help="group sizes (at most 8)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    data = digits()
    load = os.getloadavg()
    rows = []
    for n_losses, unroll in [(n, u) for n in args.losses for u in (1, 3)]:
        run(True, 3, data, unroll, n_losses), run(False, 3, data, unroll, n_losses)
        times = {False: [], True: []}
        for _ in range(args.repeats):
            for batched in (False, True):
                times[batched].append(run(batched, args.steps, data, unroll, n_losses)[0])
        _, lockstep = run(False, args.steps, data, unroll, n_losses)
        _, batched = run(True, args.steps, data, unroll, n_losses)
        coef = max(np.abs(a.coefficients - b.coefficients).max() for a, b in zip(lockstep, batched))
        meta = max(np.abs(np.subtract(a.meta_losses, b.meta_losses)).max() for a, b in zip(lockstep, batched))
        lock_s, batch_s = statistics.median(times[False]), statistics.median(times[True])
        rows.append(f"| {n_losses} | {unroll} | {lock_s:.3f} | {batch_s:.3f} | **{lock_s / batch_s:.2f}x** "
                    f"| {1e3 * lock_s / args.steps:.2f} | {1e3 * batch_s / args.steps:.2f} | {coef:.1e} | {meta:.1e} |")
        print(rows[-1], flush=True)
    command = "python benchmarks/studies/unroll_batched.py" + "".join(f" {a}" for a in (argv or sys.argv[1:]))
    text = "\n".join([
        f"# Local search of a group of losses: batched unroll against lockstep ({args.steps} meta steps)",
        "",
        f"- Command: `PYTHONPATH=. {command}`",
        f"- Date: {datetime.datetime.now().isoformat(timespec='seconds')}",
        f"- Machine: {os.cpu_count()} CPUs, torch {torch.__version__}, one torch thread. Load average "
        f"(1, 5, 15 min) {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f} before, "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())} after (a shared machine).",
        "- Task: digits, 64-128-10 MLP, batch 128, SGD lr 0.01 momentum 0.9 Nesterov weight decay 5e-4, "
        f"meta Adam lr 1e-3; a group of n takes the first n of: {', '.join(f'`{p}`' for p in PROGRAMS)}.",
        f"- Medians of {args.repeats} alternating runs of each after a warm-up.",
        "",
        "| losses | unroll | lockstep (s) | batched (s) | speed-up | lockstep ms / meta step "
        "| batched ms / meta step | max coefficient difference | max meta-objective difference |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
    ])
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
