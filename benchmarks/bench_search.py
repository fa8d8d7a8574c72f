"""End-to-end cost of an EvoMAL search: with the cache, filters and vectorised training, and without.

EvoMAL's reference settings: digits, an MLP 64-128-10, population 25, local
search of 250 meta steps on every candidate, 500-step fitness, one validation
split (25 % of the data), SGD with Nesterov momentum. The optimised search runs
for ``--minutes``; the naive ones (no rejection protocol, one candidate per
task, and no cache at all, as the issue asks, or the reference's exact-string
cache: ``--naive-cache``) then evaluate the same search: by default they
replay the optimised search's populations, generation by generation
(``--naive replay``), so all pay for exactly the same programs; with
``--naive search`` they breed their own, which drift away from the optimised
search as soon as a rejected program would have scored differently, and then
measure the trajectories (how long their programs grow) as much as the
filters. All use ``--n-jobs`` workers. A last run measures ``n_jobs=1``
against ``n_jobs=2`` for the optimised search on ``--scaling`` generations
(the worker pool's start-up, about 5 s once per search on the development
machine, is part of it: half of a 2-generation parallel run).

    python benchmarks/bench_search.py [--minutes 15] [--local-search all] [--naive replay]
        [--naive-cache none exact] [--n-jobs 2] [--scaling 10]
"""

import argparse
import contextlib
import datetime
import itertools
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import ShuffleSplit
from skorch import NeuralNetClassifier

import metaloss_sk.search
from metaloss_sk import Evolution, LocalSearch, LossSearchCV, Schedule
from metaloss_sk.nets import MLP

RESULTS = Path(__file__).parent / "results"


@contextlib.contextmanager
def populations(record=None, replay=None):
    """Record the populations a search evaluates, or make a search evaluate recorded ones."""
    originals = metaloss_sk.search.initial_population, metaloss_sk.search.next_generation
    count = itertools.count()

    def wrap(make):
        def wrapped(*args, **kwargs):
            population = make(*args, **kwargs) if replay is None else replay[next(count)]
            if record is not None:
                record.append(population)
            return population
        return wrapped

    metaloss_sk.search.initial_population, metaloss_sk.search.next_generation = map(wrap, originals)
    try:
        yield
    finally:
        metaloss_sk.search.initial_population, metaloss_sk.search.next_generation = originals


def search(args, generations=50, max_time=None, naive_cache=None, n_jobs=None):
    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32)
    net = NeuralNetClassifier(MLP, lr=0.01, optimizer__momentum=0.9, optimizer__nesterov=True,
                              optimizer__weight_decay=5e-4, batch_size=128, max_epochs=100,
                              train_split=None, verbose=0)
    naive = {} if naive_cache is None else dict(equivalence=naive_cache, rejection_steps=0)
    # The final selection at the fitness budget (one extra weight seed for the finalists) and no
    # learning-rate grid: this benchmark times the genetic search.
    s = LossSearchCV(net, evolution=Evolution(population_size=25, **naive), generations=generations,
                     max_time=max_time, schedule=Schedule(min_resources=500, max_resources=500), baseline_lrs=None,
                     local_search=None if args.local_search == "none" else LocalSearch(meta_steps=250),
                     cv=ShuffleSplit(1, test_size=0.25, random_state=0), refit=False,
                     random_state=0, n_jobs=n_jobs or args.n_jobs,
                     **({} if naive_cache is None else dict(candidates_per_task=1)))
    start = time.perf_counter()
    s.fit(X, y)
    return s, time.perf_counter() - start


def summary(s, wall):
    st = s.search_stats_
    trained = (s.cv_results_["status"] != "rejected") & (s.cv_results_["equivalent_to"] == "")
    return {
        "wall_s": round(wall, 1), "generations": st["generations"], "proposed": st["proposed"],
        "trained": st["evaluations"], "cache_hits": st["cache_hits"], "equivalent": st["equivalent"],
        "rejected": st["rejected"], "failures": st["failures"],
        "not_trained_share": round(1 - st["evaluations"] / st["proposed"], 3),
        "filter_time_share": round(st["filter_time"] / st["time"], 3),
        "train_time_share": round(st["train_time"] / st["time"], 3),
        "other_time_share": round(1 - (st["filter_time"] + st["train_time"]) / st["time"], 3),
        # Worker time, summed over the parallel tasks: the local search's part of the training.
        "local_search_share_of_training": round(st["local_search_time"] / max(st["fit_time"], 1e-9), 3),
        "mean_length_trained": round(float(np.mean(s.cv_results_["length"][trained])), 1),
        "train_s_per_trained": round(st["train_time"] / max(st["evaluations"], 1), 3),
        "s_per_generation": round(wall / st["generations"], 2),
        "best_score": round(s.best_score_, 4), "best_loss": str(s.best_loss_.program_),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--local-search", choices=["all", "none"], default="all")
    parser.add_argument("--naive", choices=["replay", "search"], default="replay",
                        help="the naive run replays the optimised search's populations, or breeds its own")
    parser.add_argument("--naive-cache", nargs="+", choices=["none", "exact"], default=["none", "exact"],
                        help="the naive runs: without a cache (the issue's baseline), with the reference's")
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--scaling", type=int, default=10, help="generations for the n_jobs comparison")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started, load = datetime.datetime.now(), os.getloadavg()[0]

    recorded = []
    with populations(record=recorded):
        fast, fast_wall = search(args, max_time=args.minutes * 60)
    rows = {"optimised": summary(fast, fast_wall)}
    print(json.dumps(rows, indent=1), flush=True)
    walls = {}
    for cache in args.naive_cache:
        name = f"naive, {'no' if cache == 'none' else 'exact-text'} cache"
        with populations(replay=recorded) if args.naive == "replay" else contextlib.nullcontext():
            naive, walls[name] = search(args, generations=fast.search_stats_["generations"], naive_cache=cache)
        rows[name] = summary(naive, walls[name])
        print(json.dumps(rows[name], indent=1), flush=True)
    scaling = {}
    for n_jobs in (1, 2) if args.scaling else ():
        s, wall = search(args, generations=args.scaling, n_jobs=n_jobs)
        scaling[n_jobs] = wall
    lines = [
        "# End-to-end search cost",
        "",
        f"`python benchmarks/bench_search.py --minutes {args.minutes} --local-search {args.local_search} "
        f"--naive {args.naive} --naive-cache {' '.join(args.naive_cache)} --n-jobs {args.n_jobs} "
        f"--scaling {args.scaling}` on {started:%Y-%m-%d %H:%M}, "
        f"{os.cpu_count()}-core CPU, torch {torch.__version__}; 1-minute load average {load:.2f} before the run.",
        "Digits, MLP 64-128-10, population 25, 500-step fitness, one 25 % validation split, "
        f"local search: {args.local_search} (250 meta steps), seed 0. The naive runs have no rejection "
        "protocol and one candidate per task, and either no cache at all (every proposed program is "
        "trained: the search with cache, filters and batching off) or only the exact-text cache (the "
        "reference's); they "
        + ("evaluate the optimised search's own populations, generation by generation (a replay: all "
           "pay for the same programs)" if args.naive == "replay" else
           "breed their own populations for as many generations (their programs drift from the optimised "
           "search's)")
        + ". Time shares are of the search's wall time; the local search's share is of the "
        "workers' training time.",
        "",
        "| | " + " | ".join(rows) + " |",
        "|---|" + "---:|" * len(rows),
    ]
    for key in rows["optimised"]:
        lines.append(f"| {key} | " + " | ".join(str(r[key]) for r in rows.values()) + " |")
    lines.append("")
    for name, wall in walls.items():
        lines.append(f"Speed-up end to end against the {name}: **{wall / fast_wall:.2f}x** "
                     f"({wall:.0f} s against {fast_wall:.0f} s for {fast.search_stats_['generations']} "
                     "generations).")
    if scaling:
        lines += ["", f"n_jobs=2 against n_jobs=1 on {args.scaling} generations of the optimised search: "
                  f"{scaling[1]:.1f} s / {scaling[2]:.1f} s = **{scaling[1] / scaling[2]:.2f}x**."]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    suffix = "" if args.naive == "replay" else "_naive_search"
    (RESULTS / f"search_{args.local_search}{suffix}.md").write_text(text)


if __name__ == "__main__":
    main()
