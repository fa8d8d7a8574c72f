"""Candidate-fold speed of this checkout against another's, side by side (issue 33).

Runs ``bench_speed.py --group-only --json`` with this checkout's package and
with ``--against``'s (``git worktree add /tmp/base <commit>``), in fresh
processes, alternating which goes first, ``--rounds`` times per task. Each
process measures the plain single-net PyTorch loop (the floor) and a group of
8 candidates (8 different loss programs) through
``fit_and_score``, so every ratio is taken inside one process.

    python benchmarks/bench_speed_vs.py --against /work/wt-base [--tasks digits lenet] [--rounds 3]
        [--repeats 5] [--steps 500] [--lenet-steps 100] [--out results/speed_batched.md]
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
FLOOR = "plain PyTorch loop, CrossEntropyLoss (floor)"
GROUP = "metaloss_sk, 8 candidates trained together, per candidate"


def run(checkout, task, steps, repeats):
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "speed.json"
        env = {**os.environ, "PYTHONPATH": str(checkout)}
        subprocess.run([sys.executable, str(Path(__file__).parent / "bench_speed.py"), "--task", task, "--steps",
                        str(steps), "--repeats", str(repeats), "--group-only", "--json", str(out)],
                       env=env, check=True)
        return json.loads(out.read_text())["medians"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", type=Path, required=True)
    parser.add_argument("--tasks", nargs="+", default=["digits", "lenet"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--lenet-steps", type=int, default=100)
    parser.add_argument("--out", type=Path, default=RESULTS / "speed_batched.md")
    args = parser.parse_args()
    load_before = os.getloadavg()
    started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    checkouts = {"this branch": HERE, f"{args.against}": args.against}
    found = {(task, name): [] for task in args.tasks for name in checkouts}
    for task in args.tasks:
        steps = args.lenet_steps if task == "lenet" else args.steps
        for r in range(args.rounds):
            order = list(checkouts.items())
            if r % 2:
                order.reverse()
            for name, checkout in order:
                medians = run(checkout, task, steps, args.repeats)
                found[task, name].append((medians[FLOOR], medians[GROUP]))
                print(task, name, medians, flush=True)
    load_after = os.getloadavg()
    command = " ".join(["python", "benchmarks/bench_speed_vs.py", *sys.argv[1:]])
    lines = [
        "# Candidate-fold speed: a group of 8 against the plain single-net loop, this branch and another checkout",
        "",
        f"`{command}`, started {started}; {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"1 thread per process; load average (1, 5, 15 min) {', '.join(f'{v:.2f}' for v in load_before)} before, "
        f"{', '.join(f'{v:.2f}' for v in load_after)} after.",
        "",
        "Each row: one fresh process running `bench_speed.py --group-only` (medians over its repeats) with that "
        "checkout's package. *floor*: a plain PyTorch loop, one net, `CrossEntropyLoss`; *group of 8 per candidate*: "
        "8 candidates (8 different programs) through `fit_and_score`, cloning, initialising and scoring "
        "included, divided by 8; *ratio*: the two, measured in the same process. digits: MLP 64-128-10, "
        f"{args.steps} steps; lenet: LeNet-5 on 5,000 MNIST images, {args.lenet_steps} steps; batch 128, SGD Nesterov.",
        "",
        "| task | checkout | round | floor s | group of 8, s per candidate | ratio |",
        "|---|---|---:|---:|---:|---:|",
    ]
    summary = []
    for (task, name), values in found.items():
        for r, (floor, group) in enumerate(values):
            lines.append(f"| {task} | {name} | {r} | {floor:.3f} | {group:.3f} | {group / floor:.2f} |")
        ratios = [g / f for f, g in values]
        summary.append(f"- {task}, {name}: median ratio {statistics.median(ratios):.2f} "
                       f"(range {min(ratios):.2f}-{max(ratios):.2f})")
    lines += ["", *summary, ""]
    text = "\n".join(lines)
    print(text)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
