"""
Reusing, refining and exporting a found loss
============================================

A found loss is a :class:`~metaloss_sk.SymbolicLoss`: an ordinary skorch
criterion that another net can train with, that EvoMAL's local search can
refine (one learned coefficient per edge of its program), and that saves as
plain JSON or exports as a standalone PyTorch function.
"""

import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from skorch import NeuralNetBinaryClassifier

from metaloss_sk import Evolution, LocalSearch, LossSearchCV
from metaloss_sk.io import load_loss, save_loss
from metaloss_sk.nets import MLP
from metaloss_sk.plotting import plot_loss_shape

X, y = load_breast_cancer(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, stratify=y, random_state=0)
scaler = StandardScaler().fit(X_train)
X_train, X_test = (scaler.transform(a).astype(np.float32) for a in (X_train, X_test))

net = NeuralNetBinaryClassifier(
    MLP,
    module__n_in=30,
    module__n_hidden=16,
    module__n_out=1,
    max_epochs=5,
    lr=0.05,
    batch_size=64,
    train_split=None,
    verbose=0,
)
search = LossSearchCV(net, generations=2, evolution=Evolution(population_size=6), random_state=0)
search.fit(X_train, y_train)
before = search.best_loss_
print("found loss:", before)

# %%
# Refine the winners' coefficients
# --------------------------------
# ``fit_refine`` runs EvoMAL's local search on the best programs. Its
# checkpoints are validated, and a refined loss replaces its program only if
# it scores better at the final budget by more than the margin.
search.fit_refine(X_train, y_train, LocalSearch(meta_steps=20, top_k=2, n_checkpoints=2))
for r in search.refine_results_:
    print(
        f"{r['program']}: CV {r['score_before']:.4f} -> {r['score_after']:.4f}, kept: {r['kept']}"
    )

# %%
# Another net trains with it
# --------------------------
wider = NeuralNetBinaryClassifier(
    MLP,
    module__n_in=30,
    module__n_hidden=64,
    module__n_out=1,
    max_epochs=5,
    lr=search.best_lr_,
    batch_size=64,
    train_split=None,
    verbose=0,
    criterion=search.best_loss_,
)
print("a wider net, test accuracy:", round(wider.fit(X_train, y_train).score(X_test, y_test), 3))

# %%
# Save, reload and export
# -----------------------
# JSON is safe to share: loading parses and validates it and never runs code
# (unlike pickle). The export is a function that needs only torch.
with tempfile.TemporaryDirectory() as folder:
    path = Path(folder) / "loss.json"
    save_loss(search.best_loss_, path)
    print("reloaded:", load_loss(path))
print(search.best_loss_.latex())
print(search.export_torch("learned_loss"))

# %%
# The losses' shapes
# ------------------
# The found loss and the second best of the hall of fame, against
# cross-entropy; each curve scaled to [0, 1].
plot_loss_shape([search.loss(1), search.loss(2)], labels=["best", "second"])
plt.gcf().set_size_inches(11, 4.2)
plt.gcf().tight_layout()
