"""EvoMAL's reference setting, generation by generation: seconds per generation and per trained candidate.

The setting of the reference implementation's side-by-side timing (issue 22):
digits, MLP 64-128-10, population 25, 500-step fitness, EvoMAL's local search
(250 meta steps, the default validated checkpoints) on every candidate that
reaches the fitness budget, one 25 % validation split, SGD lr 0.01 with
Nesterov momentum. Each search seed runs ``--generations`` generations with
screening off (every new program gets the local search and the fitness
budget, and every checkpoint of a local search trains for the fitness budget,
as before issue 22) and on, the defaults (each new program first trains for
500 / 3 steps, and the best third and the seeded cross-entropy go on; a local
search's checkpoints train for 500 / 3 steps, and the best one and the start
for 500), alternating which runs first. The winner is chosen at the fitness budget
(``max_resources=500``, two weight seeds for the finalists), so its score
compares the searches' results. The machine's 1-minute load average is
recorded before and after; the reference's figures, measured side by side on
this machine class, are 31-34 s per generation (1.15-1.23 s per local search,
0.90-0.92 s per fitness run).

    python benchmarks/bench_reference.py [--generations 5] [--seeds 0 1] [--n-jobs 2] [--only on]
        [--out results/reference_setting.md]
"""

import argparse
import datetime
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import ShuffleSplit, train_test_split
from skorch import NeuralNetClassifier

from metaloss_sk import LocalSearch, LossSearchCV
from metaloss_sk.datasets import MLP
from metaloss_sk.training import Budget, build_net

RESULTS = Path(__file__).parent / "results"
REFERENCE = "31-34"
TEST_SEEDS = 5


def digits():
    """Digits (X / 16) split 75 / 25, stratified: the search sees the first part only."""
    X, y = load_digits(return_X_y=True)
    return train_test_split((X / 16).astype(np.float32), y, test_size=0.25, stratify=y, random_state=0)


def test_error(net, loss, data):
    """Test error % of ``loss`` trained on the whole training part for 500 steps, one figure per weight seed."""
    X_train, X_test, y_train, y_test = data
    errors = []
    for seed in range(TEST_SEEDS):
        torch.manual_seed(seed)
        fitted = build_net(net, loss, Budget(net.max_epochs, 500), len(X_train)).fit(X_train, y_train)
        errors.append(100 * (1 - fitted.score(X_test, y_test)))
    return errors


def run(generations, seed, screening, n_jobs):
    on = screening == "auto"
    data = digits()
    X, y = data[0], data[2]
    net = NeuralNetClassifier(MLP, lr=0.01, optimizer__momentum=0.9, optimizer__nesterov=True,
                              optimizer__weight_decay=5e-4, batch_size=128, max_epochs=100,
                              train_split=None, verbose=0)
    local_search = LocalSearch(meta_steps=250, screen_factor=3 if on else None)
    search = LossSearchCV(net, population_size=25, generations=generations, min_resources=500, max_resources=500,
                          baseline_lrs=None, local_search=local_search, screening=screening,
                          cv=ShuffleSplit(1, test_size=0.25, random_state=0), refit=False, random_state=seed,
                          n_jobs=n_jobs)
    start = time.perf_counter()
    search.fit(X, y)
    wall = time.perf_counter() - start
    stats = search.search_stats_
    evolve = wall - stats["ladder_time"]
    return {
        "wall_s": wall, "s_per_generation": evolve / stats["generations"],
        "trained": stats["evaluations"], "promoted": stats["promoted"],
        "s_per_trained": stats["train_time"] / max(stats["evaluations"], 1),
        "s_per_promoted": stats["train_time"] / max(stats["promoted"], 1),
        "worker_s_per_generation": stats["fit_time"] / stats["generations"],  # local search included
        "filter_share": stats["filter_time"] / evolve,
        "best_score": search.best_score_, "best_loss": search.best_loss_.program_.infix(simplify=True),
        "test_errors": test_error(net, search.best_loss_, data),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--n-jobs", type=int, nargs="+", default=[2])
    parser.add_argument("--only", choices=["off", "on"], help="run one setting only (default: both, alternating)")
    parser.add_argument("--out", type=Path, default=RESULTS / "reference_setting.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started, load_before = datetime.datetime.now(), os.getloadavg()
    rows = []
    for i, seed in enumerate(args.seeds):
        order = [None, "auto"] if i % 2 == 0 else ["auto", None]
        if args.only:
            order = [{"off": None, "on": "auto"}[args.only]]
        for screening in order:
            for n_jobs in args.n_jobs:
                result = run(args.generations, seed, screening, n_jobs)
                rows.append({"seed": seed, "screening": screening, "n_jobs": n_jobs, **result})
                print(rows[-1], flush=True)
    load_after = os.getloadavg()
    only = f" --only {args.only}" if args.only else ""
    jobs = " ".join(map(str, args.n_jobs))
    lines = [
        "# EvoMAL's reference setting: seconds per generation, screening off and on",
        "",
        f"`python benchmarks/bench_reference.py --generations {args.generations} --seeds "
        f"{' '.join(map(str, args.seeds))} --n-jobs {jobs}{only}` on {started:%Y-%m-%d %H:%M} "
        f"({platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}); load average "
        f"(1, 5, 15 min) {', '.join(f'{v:.2f}' for v in load_before)} before, "
        f"{', '.join(f'{v:.2f}' for v in load_after)} after.",
        "",
        "Digits, MLP 64-128-10, population 25, 500-step fitness, local search of 250 meta steps with 10 "
        "validated checkpoints on every candidate at the fitness budget, one 25 % validation split, "
        "screening `None` (and every checkpoint trained for 500 steps) or `auto` (and checkpoints screened at "
        "167 steps, the best confirmed at 500). The search sees 75 % of digits; *test error*: the winner "
        f"trained on all of it for 500 steps, {TEST_SEEDS} weight seeds, on the other 25 %. *wall s*: the whole "
        "search. *s / generation*: the genetic search's wall time (without the final selection) "
        "per generation; *s / trained*, *s / promoted*: its training time per program trained (screened) "
        "and per program given the local search and the fitness budget; *best*: the winner's validation "
        "accuracy at the fitness budget (two weight seeds); *worker s*: the workers' training and local search "
        "time per generation, summed over workers. The reference implementation: "
        f"{REFERENCE} s per generation on this machine class (issue 22).",
        "",
        "| seed | screening | n_jobs | wall s | s / generation | worker s | trained | promoted | s / trained "
        "| s / promoted | filter share | best | test error % | winner |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['seed']} | {r['screening']} | {r['n_jobs']} | {r['wall_s']:.1f} "
                     f"| {r['s_per_generation']:.2f} "
                     f"| {r['worker_s_per_generation']:.2f} | {r['trained']} "
                     f"| {r['promoted']} | {r['s_per_trained']:.3f} | {r['s_per_promoted']:.3f} "
                     f"| {r['filter_share']:.3f} | {r['best_score']:.4f} "
                     f"| {np.mean(r['test_errors']):.2f} ± {np.std(r['test_errors']):.2f} | `{r['best_loss']}` |")
    most = max(args.n_jobs)
    off = [r["s_per_generation"] for r in rows if r["screening"] is None and r["n_jobs"] == most]
    on = [r["s_per_generation"] for r in rows if r["screening"] == "auto" and r["n_jobs"] == most]
    lines.append("")
    if len(args.n_jobs) > 1:
        for setting in (None, "auto"):
            per_jobs = {j: [r["s_per_generation"] for r in rows if r["screening"] == setting and r["n_jobs"] == j]
                        for j in args.n_jobs}
            if all(per_jobs.values()):
                per_jobs = {j: np.mean(v) for j, v in per_jobs.items()}
                lines.append(f"Screening {setting}: {most} jobs are {per_jobs[min(args.n_jobs)] / per_jobs[most]:.2f}x "
                             f"{min(args.n_jobs)} job(s) ({per_jobs[min(args.n_jobs)]:.2f} s against "
                             f"{per_jobs[most]:.2f} s per generation).")
    if off and on:
        walls = {k: np.mean([r["wall_s"] for r in rows if r["screening"] == k and r["n_jobs"] == most])
                 for k in (None, "auto")}
        errors = {k: np.concatenate([r["test_errors"] for r in rows if r["screening"] == k and r["n_jobs"] == most])
                  for k in (None, "auto")}
        lines.append(f"Whole searches at {most} jobs: {walls[None]:.1f} s without screening, {walls['auto']:.1f} s "
                     f"with: **{walls[None] / walls['auto']:.2f}x**; winners' test error {errors[None].mean():.2f} ± "
                     f"{errors[None].std():.2f} % without, {errors['auto'].mean():.2f} ± {errors['auto'].std():.2f} % "
                     f"with (every search seed's winner, {TEST_SEEDS} weight seeds each).")
        lines.append(f"Mean seconds per generation at {most} jobs: {np.mean(off):.2f} without screening, "
                     f"{np.mean(on):.2f} with: **{np.mean(off) / np.mean(on):.2f}x**.")
    if on:
        lines.append(f"The reference's {REFERENCE} s are {31 / np.mean(on):.1f}x to {34 / np.mean(on):.1f}x the "
                     "screened search's.")
    text = "\n".join(lines + [""])
    print(text)
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
