"""How well a short screening budget ranks candidate losses: the evidence behind ``screening``'s default.

EvoMAL's reference setting (digits, MLP 64-128-10, one 25 % validation split,
SGD lr 0.01 with Nesterov momentum, 500-step fitness). A GP-LFL search
(population 25, ``--generations``) supplies the programs, as a search would
meet them; every distinct program it trained is then scored again by one
evaluator, on the same split and weight seed:

- at screening budgets of 500 / 9, 500 / 3 and 500 / 2 steps (no local search);
- at the fitness budget of 500 steps without local search (GP-LFL's fitness);
- at the fitness budget after EvoMAL's local search (250 meta steps, the
  default 10 validated checkpoints) on ``--evomal`` of them, drawn at random.

Reported per screening budget: Spearman's rank correlation with each fitness,
and, for groups of ``--group`` programs drawn at random (a generation's new
programs), how often the group's best program by fitness is among the best
``1 / factor`` by screening score (promoted) for factor 2, 3 and 4.

    python benchmarks/studies/study_screening.py [--generations 14] [--evomal 120] [--group 13]
"""

import argparse
import datetime
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr
from sklearn.datasets import load_digits
from sklearn.model_selection import ShuffleSplit
from sklearn.utils.parallel import Parallel
from skorch import NeuralNetClassifier

from metaloss_sk import Evolution, LocalSearch, LossSearchCV, Schedule, SymbolicLoss
from metaloss_sk.evaluator import Evaluator, EvaluatorConfig
from metaloss_sk.fit_and_score import FitAndScore
from metaloss_sk.nets import MLP
from metaloss_sk.training import Budget, Trainer

RESULTS = Path(__file__).resolve().parents[1] / "results"  # benchmarks/results
FITNESS = 500
SCREENS = {"500/9": 56, "500/3": 167, "500/2": 250}


def accuracy(net, X, y):
    return net.score(X, y)


def digits():
    X, y = load_digits(return_X_y=True)
    return (X / 16).astype(np.float32), y


def net():
    return NeuralNetClassifier(MLP, lr=0.01, optimizer__momentum=0.9, optimizer__nesterov=True,
                               optimizer__weight_decay=5e-4, batch_size=128, max_epochs=100, train_split=None,
                               verbose=0)


def programs(generations, searches):
    """The distinct programs GP-LFL searches trained (not rejected, not sharing another's evaluation)."""
    X, y = digits()
    found = {}
    for seed in range(searches):
        search = LossSearchCV(net(), evolution=Evolution(population_size=25), generations=generations,
                              schedule=Schedule(min_resources=FITNESS, max_resources=FITNESS, final_seeds=1),
                              baseline_lrs=None,
                              cv=ShuffleSplit(1, test_size=0.25, random_state=0), refit=False, random_state=seed,
                              n_jobs=2).fit(X, y)
        results = search.cv_results_
        keep = (results["status"] != "rejected") & (results["equivalent_to"] == "")
        found.update(dict.fromkeys(results["program"][keep]))
    return list(found)


def evaluator(X, y):
    split = next(ShuffleSplit(1, test_size=0.25, random_state=0).split(X))
    plan = Schedule(min_resources=FITNESS, max_resources=FITNESS, screening=None).plan(net(), len(split[0]))
    config = EvaluatorConfig(FitAndScore(Trainer(net()), "multiclass", accuracy), fold_seeds=(12345,),
                             plan=plan, rejection_steps=0)
    return Evaluator(config, X, y, [split], Parallel(n_jobs=2, return_as="generator"))


def scores(evaluate, losses, budget, **kw):
    """Per loss its validation accuracy (NaN where it failed other than at chance level), and its FoldResults."""
    results = [fold[0] for (fold,) in evaluate.cross_validate(losses, budget, **kw)]
    return np.array([r.score if r.status in ("ok", "chance") else math.nan for r in results]), results


def promoted_best(screen, target, group, factor, rng, draws=2000):
    """Share of random groups whose best program by ``target`` is among the top ``1 / factor`` by ``screen``."""
    hits, group = 0, min(group, len(screen))
    for _ in range(draws):
        idx = rng.choice(len(screen), size=group, replace=False)
        top = idx[np.argsort(-screen[idx], kind="stable")[:math.ceil(group / factor)]]
        hits += int(idx[np.argmax(target[idx])] in top)
    return hits / draws


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=16)
    parser.add_argument("--searches", type=int, default=4, help="GP-LFL searches (seeds 0, 1, ...) to draw from")
    parser.add_argument("--evomal", type=int, default=120)
    parser.add_argument("--group", type=int, default=13)
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    found = programs(args.generations, args.searches)
    t_search = time.perf_counter() - start
    X, y = digits()
    evaluate = evaluator(X, y)
    losses = [SymbolicLoss(p) for p in found]
    full, _ = scores(evaluate, losses, Budget(100, FITNESS))
    screen = {name: scores(evaluate, losses, Budget(100, steps))[0] for name, steps in SCREENS.items()}
    rng = np.random.RandomState(0)
    subset = np.sort(rng.choice(len(losses), size=min(args.evomal, len(losses)), replace=False))
    t0 = time.perf_counter()
    evomal, learned = scores(evaluate, [losses[i] for i in subset], Budget(100, FITNESS), local_search=LocalSearch())
    # The local search starts from 1 + 0.001 N(0, 1) per edge: a checkpoint kept after the start moved further.
    moved = sum(r.coefficients is not None and np.max(np.abs(np.asarray(r.coefficients) - 1)) > 0.01
                for r in learned)
    t_evomal = time.perf_counter() - t0

    lines = [
        "# Screening: how well a short budget ranks candidate losses",
        "",
        f"Generated by `python benchmarks/studies/study_screening.py --generations {args.generations} --searches "
        f"{args.searches} --evomal "
        f"{args.evomal} --group {args.group}` on {datetime.date.today()} ({platform.machine()}, "
        f"torch {torch.__version__}); {time.perf_counter() - start:.0f} s (the GP-LFL search {t_search:.0f} s, "
        f"the local searches {t_evomal:.0f} s).",
        "",
        f"{len(losses)} distinct programs trained by {args.searches} GP-LFL searches (seeds 0 to "
        f"{args.searches - 1}) on digits (EvoMAL's reference setting: "
        "MLP 64-128-10, one 25 % validation split, SGD lr 0.01 with Nesterov momentum), each scored again on "
        "the same split and weight seed. *GP-LFL fitness*: validation accuracy after 500 steps; *EvoMAL "
        f"fitness*: after EvoMAL's local search (250 meta steps, 10 checkpoints) and 500 steps, on {len(subset)} "
        "of them drawn at random. Spearman's rho over the programs that did not fail (scores at chance level "
        f"kept). *best promoted, factor f*: over 2000 random groups of {args.group} programs (a generation's new "
        "ones), how often the group's best by fitness is among its best ceil(group / f) by screening score.",
        "",
        "| screening budget | steps | rho with GP-LFL fitness | rho with EvoMAL fitness "
        "| best promoted (GP-LFL), f = 2 / 3 / 4 | best promoted (EvoMAL), f = 2 / 3 / 4 |",
        "|---|---|---|---|---|---|",
    ]
    for name, steps in SCREENS.items():
        s = screen[name]
        ok = np.isfinite(s) & np.isfinite(full)
        rho_full = spearmanr(s[ok], full[ok]).statistic
        sub, ev = s[subset], evomal
        ok_ev = np.isfinite(sub) & np.isfinite(ev)
        rho_ev = spearmanr(sub[ok_ev], ev[ok_ev]).statistic
        gp = " / ".join(f"{promoted_best(s[ok], full[ok], args.group, f, np.random.RandomState(1)):.2f}"
                        for f in (2, 3, 4))
        em = " / ".join(f"{promoted_best(sub[ok_ev], ev[ok_ev], args.group, f, np.random.RandomState(1)):.2f}"
                        for f in (2, 3, 4))
        lines.append(f"| {name} | {steps} | {rho_full:.3f} (n={ok.sum()}) | {rho_ev:.3f} (n={ok_ev.sum()}) "
                     f"| {gp} | {em} |")
    ok = np.isfinite(full[subset]) & np.isfinite(evomal)
    lines += [
        "",
        f"For scale: rho between GP-LFL and EvoMAL fitness on the same programs: "
        f"{spearmanr(full[subset][ok], evomal[ok]).statistic:.3f} (n={ok.sum()}). Failed (non-finite) at 500 "
        f"steps: {int(np.isnan(full).sum())} of {len(full)}. The local search kept coefficients other than "
        f"its start (some coefficient more than 0.01 from 1) for {moved} of {len(subset)} programs; the others "
        "kept the start, their first validated checkpoint, so their EvoMAL fitness is their GP-LFL fitness "
        "(with coefficients within 0.001 of 1).",
        "",
    ]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "screening.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
