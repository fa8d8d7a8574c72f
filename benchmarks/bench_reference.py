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
compares the searches' results. Every search runs in a fresh process. The machine's 1-minute load average is
recorded before and after; the reference's figures, measured side by side on
this machine class, are 31-34 s per generation (1.15-1.23 s per local search,
0.90-0.92 s per fitness run).

    python benchmarks/bench_reference.py [--generations 5] [--seeds 0 1] [--n-jobs 2] [--only on]
        [--against /tmp/oldmain] [--out results/reference_setting.md]

``--against`` also runs the package of another checkout (``git worktree add
/tmp/oldmain <commit>``) with that commit's defaults, in its own process,
alternating with the others: the side-by-side the issue asks for.
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import ShuffleSplit, train_test_split
from skorch import NeuralNetClassifier

import metaloss_sk
from metaloss_sk import LocalSearch, LossSearchCV
from metaloss_sk.training import Budget, build_net

try:
    from metaloss_sk.nets import MLP
except ImportError:  # --against a checkout before issue 32
    from metaloss_sk.datasets import MLP

RESULTS = Path(__file__).parent / "results"
HERE = Path(__file__).resolve().parents[1]  # this checkout
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


def run(generations, seed, setting, n_jobs):
    """One search; ``setting`` "off", "on", or "plain" (the constructor's defaults: another tree's search)."""
    data = digits()
    X, y = data[0], data[2]
    net = NeuralNetClassifier(MLP, lr=0.01, optimizer__momentum=0.9, optimizer__nesterov=True,
                              optimizer__weight_decay=5e-4, batch_size=128, max_epochs=100,
                              train_split=None, verbose=0)
    if setting == "plain":
        local_search, screening = LocalSearch(meta_steps=250), {}
    else:
        local_search = LocalSearch(meta_steps=250, screen_factor=3 if setting == "on" else None)
        screening = {"screening": "auto" if setting == "on" else None}
    budgets = {"min_resources": 500, "max_resources": 500, **screening}
    if hasattr(metaloss_sk, "Evolution"):  # the GP settings and the budgets nested (issue 32)
        nested = {"evolution": metaloss_sk.Evolution(population_size=25), "schedule": metaloss_sk.Schedule(**budgets)}
    else:  # --against a checkout before issue 32
        nested = {"population_size": 25, **budgets}
    search = LossSearchCV(net, generations=generations, **nested, baseline_lrs=None, local_search=local_search,
                          cv=ShuffleSplit(1, test_size=0.25, random_state=0), refit=False, random_state=seed,
                          n_jobs=n_jobs)
    start = time.perf_counter()
    search.fit(X, y)
    wall = time.perf_counter() - start
    stats = search.search_stats_
    evolve = wall - stats["ladder_time"]
    promoted = stats.get("promoted", stats["evaluations"])
    return {
        "wall_s": wall, "s_per_generation": evolve / stats["generations"],
        "trained": stats["evaluations"], "promoted": promoted,
        "s_per_trained": stats["train_time"] / max(stats["evaluations"], 1),
        "s_per_promoted": stats["train_time"] / max(promoted, 1),
        "worker_s_per_generation": stats["fit_time"] / stats["generations"],  # local search included
        "filter_share": stats["filter_time"] / evolve,
        "best_score": float(search.best_score_), "best_loss": search.best_loss_.program_.infix(simplify=True),
        "test_errors": test_error(net, search.best_loss_, data),
    }


def run_in(tree, generations, seed, setting, n_jobs):
    """:func:`run` in a fresh process (each run pays the same start-up) with the package of the checkout ``tree``."""
    job = json.dumps({"generations": generations, "seed": seed, "setting": setting, "n_jobs": n_jobs})
    done = subprocess.run([sys.executable, __file__, "--worker", job], env={**os.environ, "PYTHONPATH": str(tree)},
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare(rows, base, most, label):
    """Lines comparing the ``base`` setting's searches with the default ("on") ones at ``most`` jobs."""
    pick = {k: [r for r in rows if r["setting"] == k and r["n_jobs"] == most] for k in (base, "on")}
    if not all(pick.values()):
        return []
    wall = {k: np.mean([r["wall_s"] for r in v]) for k, v in pick.items()}
    per_gen = {k: np.mean([r["s_per_generation"] for r in v]) for k, v in pick.items()}
    errors = {k: np.concatenate([r["test_errors"] for r in v]) for k, v in pick.items()}
    return [f"{label} against the defaults, at {most} jobs: whole searches {wall[base]:.1f} s against "
            f"{wall['on']:.1f} s (**{wall[base] / wall['on']:.2f}x**), {per_gen[base]:.2f} against "
            f"{per_gen['on']:.2f} s per generation ({per_gen[base] / per_gen['on']:.2f}x); winners' test error "
            f"{errors[base].mean():.2f} ± {errors[base].std():.2f} % against {errors['on'].mean():.2f} ± "
            f"{errors['on'].std():.2f} % (every search seed's winner, {TEST_SEEDS} weight seeds each)."]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--n-jobs", type=int, nargs="+", default=[2])
    parser.add_argument("--only", choices=["off", "on"], help="run one setting only (default: both, alternating)")
    parser.add_argument("--against", type=Path, help="also run this checkout's package with its defaults")
    parser.add_argument("--out", type=Path, default=RESULTS / "reference_setting.md")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.worker:
        job = json.loads(args.worker)
        print(json.dumps(run(job["generations"], job["seed"], job["setting"], job["n_jobs"])))
        return
    against = None
    if args.against:
        sha = subprocess.run(["git", "-C", str(args.against), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True).stdout.strip()
        against = f"main@{sha}"
    started, load_before = datetime.datetime.now(), os.getloadavg()
    rows = []
    for i, seed in enumerate(args.seeds):
        order = [args.only] if args.only else ["off", "on"]
        order = ([against] if against else []) + order
        for setting in (order if i % 2 == 0 else order[::-1]):
            for n_jobs in args.n_jobs:
                result = (run_in(args.against, args.generations, seed, "plain", n_jobs) if setting == against
                          else run_in(HERE, args.generations, seed, setting, n_jobs))
                rows.append({"seed": seed, "setting": setting, "n_jobs": n_jobs, **result})
                print(rows[-1], flush=True)
    load_after = os.getloadavg()
    flags = (f" --only {args.only}" if args.only else "") + (f" --against {args.against}" if against else "")
    lines = [
        "# EvoMAL's reference setting: seconds per generation, screening off and on",
        "",
        f"`python benchmarks/bench_reference.py --generations {args.generations} --seeds "
        f"{' '.join(map(str, args.seeds))} --n-jobs {' '.join(map(str, args.n_jobs))}{flags}` on "
        f"{started:%Y-%m-%d %H:%M} ({platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}); "
        f"load average (1, 5, 15 min) {', '.join(f'{v:.2f}' for v in load_before)} before, "
        f"{', '.join(f'{v:.2f}' for v in load_after)} after.",
        "",
        "Digits, MLP 64-128-10, population 25, 500-step fitness, local search of 250 meta steps with 10 "
        "validated checkpoints on every candidate at the fitness budget, one 25 % validation split. *off*: "
        "`screening=None` and every checkpoint trained for 500 steps; *on*: the defaults, `screening=\"auto\"` "
        "and checkpoints screened at 167 steps, the best confirmed at 500"
        + (f"; *{against}*: that commit's package with its own defaults, in its own process" if against else "")
        + ". The search sees 75 % of digits; *test error*: the winner "
        f"trained on all of it for 500 steps, {TEST_SEEDS} weight seeds, on the other 25 %. *wall s*: the whole "
        "search. *s / generation*: the genetic search's wall time (without the final selection) "
        "per generation; *s / trained*, *s / promoted*: its training time per program trained (screened) "
        "and per program given the local search and the fitness budget; *best*: the winner's validation "
        "accuracy at the fitness budget (two weight seeds); *worker s*: the workers' training and local search "
        "time per generation, summed over workers. The reference implementation: "
        f"{REFERENCE} s per generation on this machine class (issue 22).",
        "",
        "| seed | setting | n_jobs | wall s | s / generation | worker s | trained | promoted | s / trained "
        "| s / promoted | filter share | best | test error % | winner |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['seed']} | {r['setting']} | {r['n_jobs']} | {r['wall_s']:.1f} "
                     f"| {r['s_per_generation']:.2f} "
                     f"| {r['worker_s_per_generation']:.2f} | {r['trained']} "
                     f"| {r['promoted']} | {r['s_per_trained']:.3f} | {r['s_per_promoted']:.3f} "
                     f"| {r['filter_share']:.3f} | {r['best_score']:.4f} "
                     f"| {np.mean(r['test_errors']):.2f} ± {np.std(r['test_errors']):.2f} | `{r['best_loss']}` |")
    most = max(args.n_jobs)
    lines.append("")
    if len(args.n_jobs) > 1:
        for setting in ("off", "on"):
            per_jobs = {j: [r["s_per_generation"] for r in rows if r["setting"] == setting and r["n_jobs"] == j]
                        for j in args.n_jobs}
            if all(per_jobs.values()):
                per_jobs = {j: np.mean(v) for j, v in per_jobs.items()}
                fewest = min(args.n_jobs)
                lines.append(f"Setting {setting}: {most} jobs are {per_jobs[fewest] / per_jobs[most]:.2f}x {fewest} "
                             f"job(s) ({per_jobs[fewest]:.2f} s against {per_jobs[most]:.2f} s per generation).")
    if against:
        lines += compare(rows, against, most, against)
    lines += compare(rows, "off", most, "Screening off")
    on = [r["s_per_generation"] for r in rows if r["setting"] == "on" and r["n_jobs"] == most]
    if on:
        lines.append(f"The reference's {REFERENCE} s per generation are {31 / np.mean(on):.1f}x to "
                     f"{34 / np.mean(on):.1f}x the default search's.")
    text = "\n".join(lines + [""])
    print(text)
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
