"""Quality benchmark: do learned losses train better models? EvoMAL's comparison table at CPU scale.

For every task (benchmarks/tasks.py) and method (benchmarks/methods.py): the
method's search or tuning runs once on the task's training part (its own
3-fold CV inside, same folds for every method), the loss it found trains the
final model on the whole training part for the full budget with N training
seeds, and the test error (classification error rate, or test MSE of the
standardised target) is compared, seed by seed, with the task's usual loss
trained from the same initialisation and batch order. A transfer run trains
another task's model with the losses found on digits-mlp.

    python benchmarks/bench_quality.py --mode quick|full [--tasks ...] [--methods ...] [--seeds N]

Every search and every (task, method, seed) training is cached as JSON under
benchmarks/.cache/, keyed by a hash of its configuration, so an interrupted
run resumes and a finished one reruns from the cache in seconds. Writes
benchmarks/results/quality_<mode>.md and benchmarks/results/*_<mode>.png.
"""

import argparse
import datetime
import hashlib
import json
import math
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))

from methods import (  # noqa: E402
    describe,
    make_criterion,
    run_grid,
    run_lr_tuning,
    run_ml3,
    run_practitioner,
    run_search,
    run_taylorglo,
)
from tasks import LOADERS, load_task, train  # noqa: E402

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
RESULTS = HERE / "results"
CACHE_VERSION = 6  # bumped when a method's code changes what it finds
LOSS_SEARCH_VERSION = 7  # bumped when the library changes what LossSearchCV finds (the GP-LFL and EvoMAL searches)
N_JOBS = 2
COUNTS = {"computed": 0, "cached": 0}  # searches and final trainings, this invocation

METHODS = ["usual", "usual+lr", "practitioner", "label-smoothing", "focal", "taylorglo", "ml3", "gp-lfl",
           "gp-lfl-nomargin", "evomal", "gp-lfl+refine"]
CLASSIFICATION_ONLY = {"label-smoothing", "focal"}
#: Which search produces each method's loss (GP-LFL, its winner without the margin and its fit_refine share one).
SEARCH_OF = {"label-smoothing": "label-smoothing", "focal": "focal", "taylorglo": "taylorglo", "ml3": "ml3",
             "gp-lfl": "gp", "gp-lfl-nomargin": "gp", "gp-lfl+refine": "gp", "evomal": "evomal",
             "usual+lr": "usual+lr", "practitioner": "practitioner"}
#: Rows whose loss is another row's with the learning rate of the final training tuned by CV.
LR_TUNED = {"usual+lr": "usual"}
LABELS = {"usual": "usual loss", "usual+lr": "usual loss, lr tuned", "practitioner": "practitioner's pick",
          "label-smoothing": "label smoothing", "focal": "focal loss", "taylorglo": "TaylorGLO", "ml3": "ML3",
          "gp-lfl": "GP-LFL (the default search)", "gp-lfl-nomargin": "GP-LFL, margin 0", "evomal": "EvoMAL",
          "gp-lfl+refine": "GP-LFL + fit_refine"}

MODES = {
    "quick": {
        "tasks": ["digits-mlp", "cancer-mlp", "diabetes-mlp"],
        "seeds": 3,
        "fit_steps": 300,       # steps per network inside every search / tuning
        "final_steps": 1000,    # steps of the final training
        "n_evals": 20,          # test-error points per final training (the curves)
        "label-smoothing": {"values": [0.0, 0.05, 0.1, 0.2]},
        "focal": {"values": [0.0, 1.0, 2.0, 3.0]},
        "taylorglo": {"popsize": 8, "generations": 8, "max_time": 40},
        "ml3": {"meta_steps": 1500},
        "gp": {"population": 12, "generations": 12, "max_time": 45, "refine_top_k": 2, "refine_meta_steps": 100},
        "evomal": {"population": 12, "generations": 12, "max_time": 60, "meta_steps": 50, "checkpoints": 2},
        "transfer": {"source": "digits-mlp", "target": "mnist5k-lenet", "methods": ["gp-lfl", "evomal"],
                     "steps": 400},
        "overrides": {},
    },
    "full": {
        "tasks": list(LOADERS),
        "seeds": 5,
        "fit_steps": 500,
        "final_steps": 2000,
        "n_evals": 40,
        "label-smoothing": {"values": [0.0, 0.05, 0.1, 0.2, 0.3]},
        "focal": {"values": [0.0, 0.5, 1.0, 2.0, 3.0]},
        "taylorglo": {"popsize": 10, "generations": 20, "max_time": 150},
        "ml3": {"meta_steps": 3000},
        "gp": {"population": 25, "generations": 50, "max_time": 200, "refine_top_k": 3, "refine_meta_steps": 250},
        "evomal": {"population": 25, "generations": 50, "max_time": 240, "meta_steps": 100, "checkpoints": 2},
        "transfer": {"source": "digits-mlp", "target": "mnist5k-lenet", "methods": ["gp-lfl", "evomal"],
                     "steps": 1000},
        # A LeNet step costs ~20x an MLP step on one CPU thread: smaller budgets there.
        "overrides": {"mnist5k-lenet": {
            "fit_steps": 200, "final_steps": 1000,
            "taylorglo": {"popsize": 6, "generations": 4, "max_time": 150},
            "ml3": {"meta_steps": 500},
            "gp": {"population": 12, "generations": 50, "max_time": 200, "refine_top_k": 2,
                   "refine_meta_steps": 50, "refine_checkpoints": 3},
            "evomal": {"population": 8, "generations": 50, "max_time": 240, "meta_steps": 20, "checkpoints": 2},
        }},
    },
}


# --------------------------------------------------------------------------- cache
def _key(obj):
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _save(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.replace(tmp, path)


def task_config(mode, task_name):
    config = {k: v for k, v in MODES[mode].items() if k not in ("overrides", "tasks", "seeds", "transfer")}
    for k, v in MODES[mode]["overrides"].get(task_name, {}).items():
        config[k] = {**config[k], **v} if isinstance(v, dict) else v
    return config


def search_path(task_name, search, config):
    version = LOSS_SEARCH_VERSION if search in ("gp", "evomal") else CACHE_VERSION
    body = {"version": version, "task": task_name, "search": search, "fit_steps": config["fit_steps"],
            "final_steps": config["final_steps"], "settings": config.get(search, config.get(LR_TUNED.get(search)))}
    return CACHE / task_name / f"search-{search}-{_key(body)}.json"


def final_path(task_name, spec, steps, seed, n_evals):
    """Keyed by the loss itself: methods that found the same loss share one training."""
    body = {"version": CACHE_VERSION, "task": task_name, "spec": spec, "steps": steps, "seed": seed,
            "n_evals": n_evals}
    return CACHE / task_name / f"final-seed{seed}-{_key(body)}.json"


# --------------------------------------------------------------------------- searches
def run_one_search(task, search, config, verbose, log):
    steps, final = config["fit_steps"], config["final_steps"]
    if search in ("label-smoothing", "focal"):
        kind = search.replace("-", "_")
        return {search: run_grid(task, kind, config[search]["values"], steps, n_jobs=N_JOBS)}
    if search == "taylorglo":
        return {search: run_taylorglo(task, steps, n_jobs=N_JOBS, **config[search])}
    if search == "ml3":
        return {search: run_ml3(task, reset_every=steps, **config[search])}
    if search == "gp":
        s = config["gp"]
        return run_search(task, steps, final, s["population"], s["generations"], s["max_time"], local_search=None,
                          refine=True, refine_top_k=s["refine_top_k"], refine_meta_steps=s["refine_meta_steps"],
                          refine_checkpoints=s.get("refine_checkpoints", 10), n_jobs=N_JOBS, verbose=verbose)
    if search == "evomal":
        s = config["evomal"]
        return run_search(task, steps, final, s["population"], s["generations"], s["max_time"], local_search="all",
                          meta_steps=s["meta_steps"], checkpoints=s["checkpoints"], n_jobs=N_JOBS, verbose=verbose)
    if search == "practitioner":
        usual = get_search(task.name, "usual+lr", config, verbose, log)["usual+lr"]
        return {search: run_practitioner(task, final, usual, n_jobs=N_JOBS)}
    if search in LR_TUNED.values() or search in LR_TUNED:
        base = LR_TUNED[search]
        spec = {"kind": "usual"} if base == "usual" else \
            get_search(task.name, SEARCH_OF[base], config, verbose, log)[base]["spec"]
        return {search: run_lr_tuning(task, spec, final, n_jobs=N_JOBS)}
    raise ValueError(search)


def get_search(task_name, search, config, verbose, log):
    path = search_path(task_name, search, config)
    record = _load(path)
    COUNTS["cached" if record is not None else "computed"] += 1
    if record is None:
        log(f"{task_name}: searching with {search} ...")
        task = load_task(task_name)
        record = run_one_search(task, search, config, verbose, log)
        _save(path, record)
        times = ", ".join(f"{m} {r['time_s']:.0f} s" for m, r in record.items())
        log(f"{task_name}: {search} done ({times})")
    return record


# --------------------------------------------------------------------------- final training
def _final_job(task_name, spec, steps, seed, n_evals, path):
    torch.set_num_threads(1)
    task = load_task(task_name)
    start = time.perf_counter()
    module, status, curve = train(task, make_criterion(task, spec), task.X_train, task.y_train, steps, seed,
                                  task.X_test, task.y_test, n_evals=n_evals, lr=spec.get("lr"))
    error = curve[-1][1] if status == "ok" else float("nan")
    record = {"task": task_name, "spec_kind": spec["kind"], "seed": seed, "steps": steps, "status": status,
              "test_error": error, "curve": curve, "time_s": time.perf_counter() - start}
    _save(Path(path), record)
    return record


def run_finals(jobs, log):
    """jobs: list of (task_name, method, spec, steps, seed, n_evals); returns {(task, method, seed): record}."""
    from joblib import Parallel, delayed

    records, todo, where = {}, {}, {}
    for task_name, method, spec, steps, seed, n_evals in jobs:
        path = str(final_path(task_name, spec, steps, seed, n_evals))
        where[task_name, method, seed] = path
        if path not in records and path not in todo:
            record = _load(path)
            if record is None:
                todo[path] = (task_name, spec, steps, seed, n_evals, path)
            else:
                records[path] = record
    COUNTS["computed"] += len(todo)
    COUNTS["cached"] += len(records)
    if todo:
        log(f"training {len(todo)} final models ({len(records)} cached) ...")
        results = Parallel(n_jobs=N_JOBS)(delayed(_final_job)(*job) for job in todo.values())
        records.update(zip(todo, results))
    return {key: records[path] for key, path in where.items()}


# --------------------------------------------------------------------------- statistics and table
def paired(errors, baseline):
    d = np.asarray(errors) - np.asarray(baseline)
    if len(d) < 2 or not np.all(np.isfinite(d)):
        return float(np.mean(d)) if len(d) else math.nan, math.nan, math.nan
    t_p = float(stats.ttest_rel(errors, baseline).pvalue) if np.std(d) > 0 else (1.0 if np.all(d == 0) else 0.0)
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            w_p = float(stats.wilcoxon(d).pvalue)
    except ValueError:
        w_p = math.nan
    if np.all(d == 0):
        w_p = 1.0
    return float(d.mean()), t_p, w_p


def _fmt_p(p):
    return "—" if not math.isfinite(p) else (f"{p:.3f}" if p >= 0.001 else "<0.001")


def task_table(task_name, kind, methods, searches, finals, seeds):
    regression = kind == "regression"
    scale = 1.0 if regression else 100.0
    base = [finals[task_name, "usual", s]["test_error"] for s in seeds]
    rows = [f"| method | test {'MSE' if regression else 'error %'} (mean ± std) | Δ vs usual | p (paired t) "
            f"| p (Wilcoxon) | better / worse seeds | CV score | search s | nets trained | meta steps |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    best_mean = min(np.mean([finals[task_name, m, s]["test_error"] for s in seeds]) for m in methods)
    for method in methods:
        errors = [finals[task_name, method, s]["test_error"] for s in seeds]
        mean, std = np.mean(errors) * scale, np.std(errors) * scale
        cell = f"{mean:.3f} ± {std:.3f}" if regression else f"{mean:.2f} ± {std:.2f}"
        if np.isclose(np.mean(errors), best_mean):
            cell = f"**{cell}**"
        if method == "usual":
            rows.append(f"| {LABELS[method]} | {cell} | — | — | — | — | — | — | — | — |")
            continue
        diff, t_p, w_p = paired(errors, base)
        d = np.asarray(errors) - np.asarray(base)
        record = searches[method]
        cv = record.get("cv_score")
        rows.append(
            f"| {LABELS[method]} | {cell} | {diff * scale:+.{3 if regression else 2}f}"
            f"{'' if regression else ' pp'} | {_fmt_p(t_p)} | {_fmt_p(w_p)} | {int((d < 0).sum())} / "
            f"{int((d > 0).sum())} | {'—' if cv is None else f'{cv:.4f}'} | {record['time_s']:.0f} "
            f"| {record['fold_fits']} | {record['meta_steps'] or '—'} |")
    return rows


def summary_table(columns, kinds, methods, seeds):
    """Methods x tasks: mean ± std, best in bold, ↓ / ↑ where a paired t-test gives p < 0.05 against the usual loss."""
    lines = ["## Summary", "",
             "Test error % (classification) or test MSE (regression), mean ± std over seeds; **best** per column; "
             "↓ / ↑: better / worse than the usual loss, ⇓ / ⇑: than the usual loss with its learning rate tuned "
             "by CV, ▼ / ▲: than the practitioner's pick (the usual and known losses crossed with the learning-rate "
             "grid, the pair chosen by CV), with paired t-test p < 0.05.", "",
             "| method | " + " | ".join(title for _, title, _, _ in columns) + " |",
             "|---|" + "---|" * len(columns)]
    for method in methods:
        cells = []
        for task_name, _, finals, present in columns:
            if method not in present:
                cells.append("n/a")
                continue
            regression = kinds[task_name] == "regression"
            scale = 1.0 if regression else 100.0
            errors = [finals[task_name, method, s]["test_error"] for s in seeds]
            best = min(np.mean([finals[task_name, m, s]["test_error"] for s in seeds]) for m in present)
            cell = (f"{np.mean(errors):.3f} ± {np.std(errors):.3f}" if regression
                    else f"{np.mean(errors) * scale:.2f} ± {np.std(errors) * scale:.2f}")
            if np.isclose(np.mean(errors), best):
                cell = f"**{cell}**"
            for reference, marks in (("usual", "↓↑"), ("usual+lr", "⇓⇑"), ("practitioner", "▼▲")):
                if method == reference or reference not in present:
                    continue
                diff, t_p, _ = paired(errors, [finals[task_name, reference, s]["test_error"] for s in seeds])
                if math.isfinite(t_p) and t_p < 0.05:
                    cell += " " + (marks[0] if diff < 0 else marks[1])
            cells.append(cell)
        lines.append(f"| {LABELS[method]} | " + " | ".join(cells) + " |")
    return lines


def wins_table(columns, kinds, methods, seeds, reference="usual+lr"):
    """Per method, against ``reference``: tasks won, won significantly, lost badly."""
    lines = [f"## Against the {LABELS[reference]}", "",
             f"Per method, over the tasks where both ran: tasks with a lower mean test error than the "
             f"{LABELS[reference]} (`{reference}`), of those with paired t-test p < 0.05, and tasks where its mean "
             f"is worse by more than one standard deviation (of the {LABELS[reference]}'s errors over the seeds).",
             "", "| method | better | significantly better | worse by more than 1 sd | of tasks |",
             "|---|---|---|---|---|"]
    for method in methods:
        if method == reference:
            continue
        better = significant = bad = n = 0
        for task_name, _, finals, present in columns:
            if method not in present or reference not in present:
                continue
            errors = np.array([finals[task_name, method, s]["test_error"] for s in seeds])
            tuned = np.array([finals[task_name, reference, s]["test_error"] for s in seeds])
            diff, t_p, _ = paired(errors, tuned)
            n += 1
            better += bool(np.mean(errors) < np.mean(tuned))
            significant += bool(np.mean(errors) < np.mean(tuned) and math.isfinite(t_p) and t_p < 0.05)
            bad += bool(not np.all(np.isfinite(errors)) or np.mean(errors) > np.mean(tuned) + np.std(tuned))
        if n:
            lines.append(f"| {LABELS[method]} | {better} | {significant} | {bad} | {n} |")
    return lines


# --------------------------------------------------------------------------- pictures
def _style(method, k):
    if method == "usual":
        return {"color": "k", "ls": "--", "lw": 2}
    # fit_refine often keeps GP-LFL's loss: dash it so that both lines stay visible.
    return {"color": f"C{k - 1}", "ls": (0, (4, 2)) if method == "gp-lfl+refine" else "-"}


def _curve_outputs(task, n=200):
    """Constructed outputs: logits whose softmax gives the true class probability p, or residuals."""
    if task.kind == "regression":
        x = np.linspace(-3, 3, n)
        out = torch.tensor(x, dtype=torch.float32).reshape(-1, 1, 1)
        return x, out, torch.zeros(n, 1, 1)
    p = np.linspace(0.005, 0.995, n)
    if task.kind == "binary":
        logits = torch.tensor(np.log(p / (1 - p)), dtype=torch.float32).reshape(-1, 1)
        return p, logits, torch.ones(n, 1)
    k = task.n_classes
    probs = np.column_stack([p] + [(1 - p) / (k - 1)] * (k - 1))
    logits = torch.tensor(np.log(probs), dtype=torch.float32).reshape(n, 1, k)
    return p, logits, torch.zeros(n, 1, dtype=torch.int64)


def loss_curve(task, criterion, outputs, targets):
    """Per-sample loss, evaluated through the criterion itself on one constructed sample at a time."""
    with torch.no_grad():
        return np.array([float(criterion(o, t)) for o, t in zip(outputs, targets)])


def plot_loss_shapes(tasks, methods, searches, path):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(tasks), figsize=(4.6 * len(tasks), 7.5), squeeze=False)
    for j, task_name in enumerate(tasks):
        task = load_task(task_name)
        x, outputs, targets = _curve_outputs(task)
        curves = [("usual", loss_curve(task, task.usual_loss(), outputs, targets))]
        for method in methods:
            if method != "usual" and method in searches[task_name]:
                criterion = make_criterion(task, searches[task_name][method]["spec"])
                curves.append((method, loss_curve(task, criterion, outputs, targets)))
        usual_span = np.nanmax(curves[0][1]) - np.nanmin(curves[0][1])
        for i, ax in enumerate(axes[:, j]):
            for k, (method, values) in enumerate(curves):
                values = values - np.nanmin(values)  # an offset does not change the gradient
                if i == 1:
                    span = np.nanmax(values)
                    values = values / (span if span > 0 else 1.0)
                ax.plot(x, values, label=LABELS[method], **_style(method, k))
            if i == 0:  # keep the usual loss readable; steeper curves leave the frame
                ax.set_ylim(-0.05 * usual_span, 2.5 * usual_span)
            ax.grid(alpha=0.3)
            if task.kind == "regression":
                ax.set_xlabel("residual yhat − y  (y = 0)")
            else:
                ax.set_xlabel("predicted probability of the true class")
            ax.set_ylabel("per-sample loss − its minimum" if i == 0 else "loss, min-max scaled")
        usual = {"multiclass": "cross-entropy", "binary": "binary cross-entropy", "regression": "squared error"}
        axes[0, j].set_title(f"{task_name} (dashed: {usual[task.kind]})", fontsize="medium")
        axes[0, j].legend(fontsize="x-small")
    fig.suptitle("Found losses against the usual loss, evaluated through each criterion (top: shifted to minimum 0; "
                 "bottom: scaled to [0, 1]); multiclass: the other classes share 1 − p")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_progress(tasks, searches, path):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(tasks), figsize=(4.6 * len(tasks), 3.8), squeeze=False)
    for ax, task_name in zip(axes[0], tasks):
        usual = None
        for k, method in enumerate(["gp-lfl", "evomal", "taylorglo"]):
            record = searches[task_name].get(method)
            if not record or not record.get("history"):
                continue
            h = record["history"]
            t = [e["elapsed"] for e in h]
            ax.plot(t, [e["best_score"] for e in h], marker="o", ms=3, color=f"C{k}", label=f"{LABELS[method]} best")
            ax.plot(t, [e["median_score"] for e in h], ls=":", color=f"C{k}", label=f"{LABELS[method]} median")
            usual = record.get("usual_cv_score", usual)
        if usual is not None:
            ax.axhline(usual, color="k", ls="--", lw=1, label="usual loss (GP seed)")
        best = [e["best_score"] for m in ("gp-lfl", "evomal", "taylorglo")
                for e in searches[task_name].get(m, {}).get("history", [])]
        if best:  # medians can be far below; keep the best scores readable
            lo = min(min(best), usual if usual is not None else min(best))
            ax.set_ylim(lo - 0.5 * (max(best) - lo) - 1e-3, max(best) + 0.15 * (max(best) - lo) + 1e-3)
        kind = load_task(task_name).kind
        ax.set_title(task_name, fontsize="medium")
        ax.set_xlabel("search time (s); one point per generation")
        ax.set_ylabel("mean CV " + ("R²" if kind == "regression" else "accuracy"))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_test_curves(panels, path):
    """panels: list of (title, kind, {method: [curve per seed]}); lines are means, bands min to max."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.2), squeeze=False)
    for ax, (title, kind, series) in zip(axes[0], panels):
        positive = True
        for k, (method, curves) in enumerate(series.items()):
            curves = [c for c in curves if c]
            n = min(len(c) for c in curves)
            steps = np.array([c[i][0] for i in range(n) for c in curves[:1]])
            values = np.array([[c[i][1] for i in range(n)] for c in curves]) * (1 if kind == "regression" else 100)
            positive = positive and bool(np.all(values[:, 1:] > 0))
            style = _style(method, k)
            ax.plot(steps[1:], values.mean(0)[1:], label=LABELS[method], **style)
            ax.fill_between(steps[1:], values.min(0)[1:], values.max(0)[1:], alpha=0.12, color=style["color"])
        if positive:
            ax.set_yscale("log")
        ax.set_xlabel("training step")
        ax.set_ylabel("test MSE" if kind == "regression" else "test error (%)")
        ax.set_title(title, fontsize="medium")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=list(MODES), default="quick")
    parser.add_argument("--tasks", nargs="+", choices=list(LOADERS), help="default: the mode's tasks")
    parser.add_argument("--methods", nargs="+", choices=METHODS, help="default: all (the usual loss always runs)")
    parser.add_argument("--seeds", type=int, help="training seeds (default: 3 quick, 5 full)")
    parser.add_argument("--no-transfer", action="store_true", help="skip the transfer run")
    parser.add_argument("--verbose", type=int, default=1, help="LossSearchCV verbosity (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    wall = time.perf_counter()
    mode = MODES[args.mode]
    task_names = args.tasks or mode["tasks"]
    methods = ["usual"] + [m for m in (args.methods or METHODS) if m != "usual"]
    seeds = list(range(args.seeds or mode["seeds"]))

    def log(message):
        print(f"[{time.perf_counter() - wall:7.1f}s] {message}", flush=True)

    searches, finals, kinds, notes = {}, {}, {}, []
    for task_name in task_names:
        try:
            task = load_task(task_name)
        except Exception as exc:  # e.g. data that cannot be produced offline
            notes.append(f"{task_name} skipped: {type(exc).__name__}: {exc}")
            log(notes[-1])
            continue
        kinds[task_name] = task.kind
        if task.notes:
            notes.append(f"{task_name}: {task.notes}")
        config = task_config(args.mode, task_name)
        task_methods = [m for m in methods if not (task.kind == "regression" and m in CLASSIFICATION_ONLY)]
        searches[task_name] = {}
        for search in dict.fromkeys(SEARCH_OF[m] for m in task_methods if m != "usual"):
            record = get_search(task_name, search, config, args.verbose, log)
            searches[task_name].update({m: r for m, r in record.items() if m in task_methods})
        specs = {"usual": {"kind": "usual"}, **{m: r["spec"] for m, r in searches[task_name].items()}}
        jobs = [(task_name, m, specs[m], config["final_steps"], s, config["n_evals"])
                for m in task_methods for s in seeds]
        finals.update(run_finals(jobs, log))
        searches[task_name]["_methods"] = task_methods

    transfer = mode["transfer"]
    transfer_rows = None
    if not args.no_transfer and transfer["source"] in searches:
        source, target = transfer["source"], transfer["target"]
        t_methods = [m for m in transfer["methods"] if m in searches[source]]
        # A loss transfers, its learning rate does not (the source's may diverge on the target): every row
        # trains at the target net's own rate, as the usual loss does.
        specs = {"usual": {"kind": "usual"}, **{m: {k: v for k, v in searches[source][m]["spec"].items() if k != "lr"}
                                                for m in t_methods}}
        # The usual loss keeps its name, so a target task trained in this run shares its cache.
        jobs = [(target, m if m == "usual" else f"transfer:{m}", specs[m], transfer["steps"], s, mode["n_evals"])
                for m in ["usual"] + t_methods for s in seeds]
        transfer_rows = (target, ["usual"] + t_methods, run_finals(jobs, log))
        kinds.setdefault(target, load_task(target).kind)

    # ------------------------------------------------------------------ report
    RESULTS.mkdir(parents=True, exist_ok=True)
    done = [t for t in task_names if t in searches]
    compute = 0.0
    for t in done:  # one search can give several methods (GP-LFL and its fit_refine): count it once
        per_search = {}
        for m in searches[t]["_methods"][1:]:
            per_search[SEARCH_OF[m]] = max(per_search.get(SEARCH_OF[m], 0.0), searches[t][m]["time_s"])
        compute += sum(per_search.values())
    compute += sum(r["time_s"] for r in finals.values())
    if transfer_rows:
        compute += sum(r["time_s"] for r in transfer_rows[2].values())
    # The wall time of the last invocation that computed something survives reruns from the cache.
    run_log = CACHE / f"last_run_{args.mode}.json"
    this_run = {"date": datetime.datetime.now().isoformat(timespec="minutes"),
                "wall_s": time.perf_counter() - wall, **COUNTS}
    if COUNTS["computed"]:
        _save(run_log, this_run)
    last = _load(run_log) or this_run
    lines = [
        f"# Quality benchmark ({args.mode} mode)",
        "",
        f"Generated by `python benchmarks/bench_quality.py --mode {args.mode}` on {this_run['date'][:10]} "
        f"({platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, {N_JOBS} jobs). "
        f"Last invocation that computed results ({last['date']}): {last['wall_s'] / 60:.1f} min wall time, "
        f"{last['computed']} searches and trainings run, {last['cached']} taken from the cache. Compute recorded "
        f"in the cache for these rows: {compute / 60:.1f} min (searches plus final trainings, as timed in their "
        "processes; the final trainings run two at a time).",
        "",
        "Protocol: every search or tuning sees the task's training part only, with the same 3-fold CV; the "
        f"loss it found then trains the model on the whole training part ({len(seeds)} training seeds: same "
        "initialisation and batch order for every method), scored on the fixed test split. Classification: "
        "test error rate in %; regression: test MSE of the target standardised on the training part. "
        "Δ is the mean paired difference (method − usual loss; negative is better), with a paired t-test and a "
        f"Wilcoxon signed-rank p-value (with {len(seeds)} seeds the exact Wilcoxon test cannot go below "
        f"{2 / 2 ** len(seeds):.3g}). *CV score*: the method's "
        "own cross-validated estimate (accuracy or R²) of its chosen loss on the training part. *nets trained*: "
        "networks trained to the fitness budget by the search (`search_stats_['fold_fits']` for LossSearchCV); "
        "*meta steps*: unrolled differentiation steps (ML3, EvoMAL's local search, fit_refine). Best mean in bold.",
        "",
    ]
    columns = [(t, t, finals, searches[t]["_methods"]) for t in done]
    if transfer_rows:
        target, t_methods, t_finals = transfer_rows
        renamed = {(target, m.replace("transfer:", ""), s): r for (t, m, s), r in t_finals.items()}
        columns.append((target, f"{target} (transfer from {transfer['source']})", renamed, t_methods))
    lines += summary_table(columns, kinds, methods, seeds) + [""]
    if "practitioner" in methods:
        lines += wins_table(columns, kinds, methods, seeds, "practitioner") + [""]
    lines += wins_table(columns, kinds, methods, seeds) + [""]
    for task_name in done:
        config = task_config(args.mode, task_name)
        t_methods = searches[task_name]["_methods"]
        lines += [f"## {task_name}", "",
                  f"{load_task(task_name).X_train.shape[0]} training rows, {load_task(task_name).X_test.shape[0]} "
                  f"test rows; {config['fit_steps']} steps per network in the searches, {config['final_steps']} "
                  "in the final training.", ""]
        lines += task_table(task_name, kinds[task_name], t_methods, searches[task_name], finals, seeds)
        lines += ["", "Losses found:", ""]
        for m in t_methods[1:]:
            lines.append(f"- {LABELS[m]}: `{describe(searches[task_name][m]['spec'])}`")
        refine = searches[task_name].get("gp-lfl+refine", {}).get("details", {}).get("refine_results")
        if refine:
            kept = sum(r["kept"] for r in refine)
            improved = sum(r["score_after"] > r["score_before"] for r in refine)
            worse = sum(r["kept"] and r["score_after"] < r["score_before"] for r in refine)
            lines.append(f"- fit_refine improved the CV score (at the final budget) of {improved} of {len(refine)} "
                         f"refined programs, kept {kept} (by more than the margin), made {worse} worse: " + "; ".join(
                             f"{r['score_before']:.4f} → {r['score_after']:.4f}"
                             + (f" (margin {r['margin']:.4f})" if "margin" in r else "") for r in refine))
        evomal = searches[task_name].get("evomal", {}).get("details", {})
        if evomal.get("baseline"):
            base = evomal["baseline"]
            lines.append(f"- EvoMAL's search: rungs of {evomal['n_resources']} steps with {evomal['n_candidates']} "
                         f"programs; CV at the final budget on its folds and seeds: usual loss "
                         f"{base['net_lr_score']:.4f}, found loss {np.mean(base['found_split_scores']):.4f}")
        lines.append("")
    if transfer_rows:
        target, t_methods, t_finals = transfer_rows
        source = transfer["source"]
        lines += [f"## Transfer: losses found on {source} train {target}", "",
                  f"{transfer['steps']} training steps, {len(seeds)} seeds, compared with the usual loss.", ""]
        fake = {m: {**searches[source][m], "time_s": searches[source][m]["time_s"]} for m in t_methods[1:]}
        lines += task_table(target, kinds[target], t_methods, fake, renamed, seeds)
        lines += ["", f"(search columns: the search on {source}.)", ""]
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    lines += ["## Settings", "", "```"] + [f"{k}: {json.dumps(v)}" for k, v in mode.items()] + ["```", ""]
    (RESULTS / f"quality_{args.mode}.md").write_text("\n".join(lines))

    plot_loss_shapes(done, methods, {t: searches[t] for t in done}, RESULTS / f"loss_shapes_{args.mode}.png")
    plot_progress(done, searches, RESULTS / f"search_progress_{args.mode}.png")
    panels = []
    curve_task = next((t for t in ("digits-mlp", *done) if t in done), None)
    if curve_task:
        shown = [m for m in ("usual", "gp-lfl", "evomal", "gp-lfl+refine", "taylorglo") if m in
                 searches[curve_task]["_methods"]]
        panels.append((f"{curve_task}: test error during the final training ({len(seeds)} seeds)",
                       kinds[curve_task],
                       {m: [finals[curve_task, m, s]["curve"] for s in seeds] for m in shown}))
    if transfer_rows:
        target, t_methods, t_finals = transfer_rows
        panels.append((f"transfer to {target}: losses found on {transfer['source']}", kinds[target],
                       {m: [t_finals[target, m if m == "usual" else f"transfer:{m}", s]
                                    ["curve"] for s in seeds] for m in t_methods}))
    if panels:
        plot_test_curves(panels, RESULTS / f"test_curves_{args.mode}.png")
    log(f"wrote {RESULTS / f'quality_{args.mode}.md'} and the pictures; wall time "
        f"{time.perf_counter() - wall:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
