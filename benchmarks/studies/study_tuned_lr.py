"""Study: does a loss searched at the usual loss's tuned learning rate beat the usual loss at that rate?

The full quality benchmark (results/quality_full.md) runs every search at the
net's learning rate (EvoMAL's SGD setting, 0.01) and finds that the usual loss
with its learning rate tuned by CV beats most found losses: part of what a
search finds there is a larger step size. Here the net is given the learning
rate that CV chose for the usual loss in that benchmark (the "usual+lr" row),
the search runs at it, and the found loss and the usual loss train the final
model at that same rate, same seeds, same budget.

    python benchmarks/studies/study_tuned_lr.py digits-mlp mnist1d-mlp

Writes results/tuned_lr.md (appends one section per invocation).
"""

import datetime
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for tasks.py

from tasks import load_task, predict, train  # noqa: E402

from metaloss_sk import Evolution, LocalSearch, LossSearchCV, Schedule  # noqa: E402

#: The usual loss's learning rate chosen by CV in results/quality_full.md (row "usual loss, lr tuned").
TUNED_LR = {"digits-mlp": 0.316, "mnist1d-mlp": 0.316, "mnist5k-lenet": 0.0316, "cancer-mlp": 0.001,
            "diabetes-mlp": 0.001, "boston-mlp": 0.01}
SEEDS = 5
FIT_STEPS, FINAL_STEPS = 500, 2000
RESULTS = Path(__file__).resolve().parents[1] / "results" / "tuned_lr.md"


def test_errors(task, criterion, lr):
    errors = []
    for seed in range(SEEDS):
        module, _, _ = train(task, criterion, task.X_train, task.y_train, FINAL_STEPS, seed, lr=lr)
        errors.append(task.error(predict(module, task.X_test), task.y_test) * (100 if task.classification else 1))
    return np.array(errors)


def main(names):
    lines = [f"\n## {datetime.date.today()}: `python benchmarks/studies/study_tuned_lr.py {' '.join(names)}`\n",
             "| task | method | lr | search s | CV found / usual | test error found | usual loss | Δ | p (paired t) "
             "| better / worse seeds | loss |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in names:
        task = load_task(name)
        lr = TUNED_LR[name]
        n_rows = len(task.X_train) * 2 // 3
        usual = test_errors(task, task.usual_loss(), lr)
        for method in ("gp-lfl", "evomal"):
            net = task.skorch_net(FINAL_STEPS, n_rows, criterion=type(task.usual_loss())).set_params(lr=lr)
            search = LossSearchCV(
                net, evolution=Evolution(population_size=25), generations=50,
                schedule=Schedule(min_resources=FIT_STEPS, max_resources=FINAL_STEPS),
                max_time=200 if method == "gp-lfl" else 240,
                local_search=LocalSearch(meta_steps=100, n_checkpoints=2) if method == "evomal" else None,
                baseline_lrs=None, cv=task.cv(), refit=False, n_jobs=2, random_state=0)
            start = time.perf_counter()
            search.fit(task.X_train, task.y_train)
            elapsed = time.perf_counter() - start
            found = test_errors(task, search.best_loss_, lr)
            d = found - usual
            p = stats.ttest_rel(found, usual).pvalue if d.any() else 1.0
            row = (f"| {name} | {method} | {lr:g} | {elapsed:.0f} | {search.best_score_:.4f} / "
                   f"{search.baseline_['net_lr_score']:.4f} | {found.mean():.3g} ± {found.std():.2g} | "
                   f"{usual.mean():.3g} ± {usual.std():.2g} | {d.mean():+.3g} | {p:.3f} | "
                   f"{(d < 0).sum()} / {(d > 0).sum()} | `{search.best_loss_}` |")
            print(row, flush=True)
            lines.append(row)
    title = "# Searching at the usual loss's tuned learning rate\n\n"
    header = "" if RESULTS.exists() else title + __doc__.split("\n\n")[1] + "\n"
    with open(RESULTS, "a", encoding="utf-8") as f:
        f.write(header + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:] or ["digits-mlp", "mnist1d-mlp"])
