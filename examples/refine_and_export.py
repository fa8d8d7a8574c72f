"""Tune the best programs' coefficients (EvoMAL's local search), save the loss as JSON,
and export it as a standalone PyTorch function.

Run: python examples/refine_and_export.py
"""

import tempfile
from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.preprocessing import StandardScaler
from skorch import NeuralNetBinaryClassifier

from metaloss_sk import LocalSearch, LossSearchCV
from metaloss_sk.nets import MLP
from metaloss_sk.io import load_loss, save_loss

X, y = load_breast_cancer(return_X_y=True)
X = StandardScaler().fit_transform(X).astype(np.float32)

net = NeuralNetBinaryClassifier(MLP, module__n_in=30, module__n_hidden=16, module__n_out=1,
                                max_epochs=5, lr=0.05, batch_size=64, train_split=None, verbose=0)
search = LossSearchCV(net, population_size=8, generations=3, cv=3, random_state=0)
search.fit(X, y)
search.fit_refine(X, y, LocalSearch(meta_steps=30, top_k=2))
for r in search.refine_results_:
    print(f"{r['program']}: CV {r['score_before']:.4f} -> {r['score_after']:.4f}  kept={r['kept']}")
print("best loss:", search.best_loss_)

with tempfile.TemporaryDirectory() as tmp:
    path = Path(tmp) / "loss.json"
    save_loss(search.best_loss_, path)  # plain JSON: safe to share, unlike pickle
    print("reloaded:", load_loss(path))

print(search.export_torch("learned_loss"))
