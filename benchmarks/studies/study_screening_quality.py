"""Does screening change what GP-LFL finds? Screening on (167 of 500 steps) and off, several search seeds.

Each search runs with the quality benchmark's full-mode GP-LFL settings (population 25, up to 50
generations or 200 s, 500-step fitness, winners chosen at the 2000-step final budget, 3-fold CV on
the task's training part); its winner then trains on the whole training part for the final budget
with 5 training seeds and is scored on the test split, as in ``bench_quality.py``. Prints one row
per search and the mean test error per setting.

    python benchmarks/studies/study_screening_quality.py --task digits-mlp --seeds 0 1 2
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for tasks.py

from tasks import load_task, train  # noqa: E402

from metaloss_sk import Evolution, LossSearchCV, Schedule  # noqa: E402


def search(task, screening, seed, steps=500, final_steps=2000, population=25, generations=50, max_time=200):
    n_folds = task.cv().get_n_splits()
    n_rows = len(task.X_train) * (n_folds - 1) // n_folds
    net = task.skorch_net(final_steps, n_rows, criterion=type(task.usual_loss()))
    s = LossSearchCV(net, evolution=Evolution(population_size=population), generations=generations,
                     schedule=Schedule(min_resources=steps, max_resources=final_steps, screening=screening),
                     max_time=max_time, local_search=None, baseline_lrs=None,
                     cv=task.cv(), refit=False, n_jobs=2, random_state=seed)
    start = time.perf_counter()
    s.fit(task.X_train, task.y_train)
    return s, time.perf_counter() - start


def test_errors(task, loss, steps=2000, seeds=range(5)):
    """Test error % (classification) or MSE of ``loss``'s nets, one per training seed."""
    torch.set_num_threads(2)
    scale = 100 if task.classification else 1
    curves = [train(task, loss, task.X_train, task.y_train, steps, seed, task.X_test, task.y_test, n_evals=1)[2]
              for seed in seeds]
    return [scale * curve[-1][1] for curve in curves]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="digits-mlp")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    task = load_task(args.task)
    errors = {}
    print("| seed | screening | search s | generations | nets trained | CV score | test error % or MSE (5 seeds) "
          "| winner |")
    print("|---|---|---:|---:|---:|---:|---|---|")
    for seed in args.seeds:
        for screening in (None, round(500 / 3)):  # the fitness budget over factor, as "auto" screens EvoMAL
            s, elapsed = search(task, screening, seed)
            errs = test_errors(task, s.best_loss_)
            errors.setdefault(str(screening), []).append(np.mean(errs))
            print(f"| {seed} | {screening} | {elapsed:.0f} | {len(s.history_)} | {s.search_stats_['fold_fits']} | "
                  f"{s.best_score_:.4f} | {np.mean(errs):.3f} ± {np.std(errs):.3f} | `{s.best_loss_}` |", flush=True)
    for setting, values in errors.items():
        print(f"screening={setting}: mean test error {np.mean(values):.3f} over search seeds "
              f"({', '.join(f'{v:.3f}' for v in values)})")


if __name__ == "__main__":
    main()
