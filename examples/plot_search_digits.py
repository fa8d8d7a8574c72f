"""
A loss search on digits
=======================

Search a loss for a small MLP on scikit-learn's digits, then look at what
was found: the hall of fame, the search's progress, the found loss against
cross-entropy, and score against complexity.

The budgets are tiny (8 programs, 3 generations, 5 epochs), so this runs in
seconds; ``make demo`` runs a real search.
"""

# %%
# The data and the net
# --------------------
# The search cross-validates by itself, so the net holds out nothing
# (``train_split=None``): every candidate and the final refit then train on the
# same rows.
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from skorch import NeuralNetClassifier

from metaloss_sk import Evolution, LossSearchCV
from metaloss_sk.nets import MLP
from metaloss_sk.plotting import plot_loss_shape

X, y = load_digits(return_X_y=True)
X = (X / 16).astype(np.float32)
net = NeuralNetClassifier(
    MLP,
    lr=0.01,
    optimizer__momentum=0.9,
    optimizer__nesterov=True,
    batch_size=128,
    max_epochs=5,
    train_split=None,
    verbose=0,
)

# %%
# The search
# ----------
# ``Evolution`` holds the genetic programming settings; the defaults are
# EvoMAL's (a population of 25 for 50 generations).
search = LossSearchCV(
    net, generations=3, evolution=Evolution(population_size=8), cv=3, random_state=0
)
search.fit(X, y)
print("found loss:", search.best_loss_)
print("its CV score:", round(search.best_score_, 4), "at lr", search.best_lr_)
search.results_frame()[["infix", "length", "mean_test_score", "generation"]].head()

# %%
# What the search did
# -------------------
# The best and median score per generation, the found loss against
# cross-entropy (its term for the true class and for a false class, against
# the probability the net gives that class), and every program's score
# against its length, with the Pareto front.
fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
search.plot_progress(ax=axes[0, 0])
search.plot_pareto(ax=axes[0, 1])
plot_loss_shape(search.best_loss_, axes=axes[1])
fig.tight_layout()

# %%
# The README's picture is this figure: ``python examples/plot_search_digits.py docs``
# writes it to ``docs/search.png``.
if len(sys.argv) > 1:
    fig.savefig(Path(sys.argv[1]) / "search.png", dpi=80)
