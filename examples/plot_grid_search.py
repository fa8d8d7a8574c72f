"""
GridSearchCV over the search
============================

``LossSearchCV`` is an ordinary scikit-learn estimator, so an outer search
can tune its settings. The genetic programming settings sit in an
:class:`~metaloss_sk.Evolution` and route as ``evolution__*`` (the budget's
as ``schedule__*``, the local search's as ``local_search__*``). Here the
outer grid, with an outer 2-fold CV on iris, crosses two parsimony
coefficients (a penalty per program node when parents are chosen) with the
two learning-rate policies: the net's own rate, or the usual loss's rate
tuned by CV before the search.
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_iris
from sklearn.model_selection import GridSearchCV
from skorch import NeuralNetClassifier

from metaloss_sk import Evolution, LossSearchCV
from metaloss_sk.nets import MLP

X, y = load_iris(return_X_y=True)
X = ((X - X.mean(0)) / X.std(0)).astype(np.float32)
net = NeuralNetClassifier(
    MLP,
    module__n_in=4,
    module__n_hidden=8,
    module__n_out=3,
    max_epochs=8,
    lr=0.1,
    batch_size=32,
    train_split=None,
    verbose=0,
)
search = LossSearchCV(
    net, generations=1, evolution=Evolution(population_size=5), cv=2, random_state=0
)

grid = GridSearchCV(
    search, {"evolution__parsimony_coefficient": [0.0, 0.01], "search_lr": ["net", "tuned"]}, cv=2
)
grid.fit(X, y)
print("best setting:", grid.best_params_)
print("its loss:", grid.best_estimator_.best_loss_)

# %%
# The outer scores
# ----------------
# Each bar is the outer CV score of a whole search run with that setting.
settings = [
    f"parsimony {p['evolution__parsimony_coefficient']}\nsearch_lr={p['search_lr']!r}"
    for p in grid.cv_results_["params"]
]
fig, ax = plt.subplots(figsize=(7, 3.8))
ax.bar(
    settings,
    grid.cv_results_["mean_test_score"],
    yerr=grid.cv_results_["std_test_score"],
    capsize=4,
)
ax.set_ylabel("outer CV accuracy")
ax.set_ylim(0, 1)
ax.set_title("GridSearchCV over LossSearchCV")
fig.tight_layout()

# %%
# The other way round: a found loss in a grid
# -------------------------------------------
# A found loss is an ordinary skorch criterion. A grid sets it as skorch
# parameters (the class and its ``criterion__*`` settings: skorch refuses a
# criterion instance on a net that is not initialised), beside cross-entropy.
import torch  # noqa: E402

found = grid.best_estimator_.best_loss_
candidates = [
    {"criterion": [torch.nn.CrossEntropyLoss]},
    {k: [v] for k, v in found.as_params().items()},
]
compare = GridSearchCV(net, candidates, cv=3).fit(X, y)
for params, score in zip(compare.cv_results_["params"], compare.cv_results_["mean_test_score"]):
    print(f"{score:.3f}  {params.get('criterion__program', 'cross-entropy')}")
