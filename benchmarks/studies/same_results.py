"""Record or compare a small search's results on a fixed seed (issue 32: a redesign changes no result).

    python benchmarks/studies/same_results.py record OUT.json   # on the code before the change
    python benchmarks/studies/same_results.py compare OUT.json  # on the code after it

Two searches: GP-LFL on a digits subset (screening off, seeds, tuned rate,
the contest) and EvoMAL (local search on every candidate, screening) on iris;
each records ``cv_results_``'s programs, statuses and scores, ``best_loss_``,
``best_score_``, ``best_lr_``, ``n_resources_`` and ``search_stats_``'s counts.
"""

import json
import math
import sys

import numpy as np
import torch
from sklearn.datasets import load_digits, load_iris
from skorch import NeuralNetClassifier

import metaloss_sk
from metaloss_sk import LocalSearch, LossSearchCV

try:
    from metaloss_sk.nets import MLP
except ImportError:
    from metaloss_sk.datasets import MLP


def search(net, small, **kwargs):
    """A LossSearchCV with the GP settings ``small`` given the way this version takes them."""
    if hasattr(metaloss_sk, "Evolution"):
        return LossSearchCV(net, evolution=metaloss_sk.Evolution(**small), **kwargs)
    return LossSearchCV(net, **small, **kwargs)


def runs():
    torch.set_num_threads(1)
    X, y = load_digits(return_X_y=True)
    X = (X[:400] / 16).astype(np.float32)
    y = y[:400]
    net = NeuralNetClassifier(MLP, module__n_in=64, module__n_hidden=32, module__n_out=10, max_epochs=4, lr=0.05,
                              batch_size=64, train_split=None, verbose=0)
    gp = search(net, {"population_size": 8}, generations=3, random_state=0, baseline_lrs=[0.01, 0.05, 0.2])
    yield "gp-lfl digits", gp.fit(X, y)
    Xi, yi = load_iris(return_X_y=True)
    Xi = ((Xi - Xi.mean(0)) / Xi.std(0)).astype(np.float32)
    net = NeuralNetClassifier(MLP, module__n_in=4, module__n_hidden=16, module__n_out=3, max_epochs=20, lr=0.1,
                              batch_size=32, train_split=None, verbose=0)
    ls = LocalSearch(meta_steps=10)
    evo = search(net, {"population_size": 6}, generations=2, random_state=1, local_search=ls, search_lr="net",
                 baseline_lrs=None)
    yield "evomal iris", evo.fit(X=Xi, y=yi)


def summary(s):
    r = s.cv_results_
    return {
        "programs": [str(p) for p in r["program"]],
        "status": [str(v) for v in r["status"]],
        "mean_test_score": [None if not math.isfinite(v) else round(float(v), 10) for v in r["mean_test_score"]],
        "best_loss": str(s.best_loss_), "best_score": round(float(s.best_score_), 10), "best_lr": s.best_lr_,
        "n_resources": [int(v) for v in s.n_resources_],
        "stats": {k: s.search_stats_[k] for k in ("evaluations", "cache_hits", "rejected", "fold_fits")
                  if k in s.search_stats_},
    }


if __name__ == "__main__":
    mode, path = sys.argv[1], sys.argv[2]
    got = {name: summary(s) for name, s in runs()}
    if mode == "record":
        with open(path, "w") as f:
            json.dump(got, f, indent=1)
        print(f"recorded {path}")
    else:
        with open(path) as f:
            want = json.load(f)
        same = got == want
        for name in want:
            for key in want[name]:
                if want[name][key] != got.get(name, {}).get(key):
                    print(f"{name}: {key} differs:\n  before {want[name][key]}\n  after  {got[name].get(key)}")
        print("same results" if same else "DIFFERENT results")
        sys.exit(0 if same else 1)
