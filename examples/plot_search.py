"""Pictures of a search: progress, the found loss's shape against cross-entropy, and the Pareto front.

Run: python examples/plot_search.py [output-folder]
"""

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from skorch import NeuralNetClassifier  # noqa: E402

from metaloss_sk import LossSearchCV  # noqa: E402
from metaloss_sk.nets import MLP  # noqa: E402
from metaloss_sk.plotting import plot_loss_shape  # noqa: E402

out = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
out.mkdir(parents=True, exist_ok=True)
X, y = load_digits(return_X_y=True)
X = (X / 16).astype(np.float32)
net = NeuralNetClassifier(MLP, lr=0.01, optimizer__momentum=0.9, optimizer__nesterov=True, batch_size=128,
                          max_epochs=5, train_split=None, verbose=0)
search = LossSearchCV(net, population_size=8, generations=3, cv=3, random_state=0, n_jobs=2)
search.fit(X, y)
print(search.results_frame().head())

fig, axes = plt.subplots(1, 3, figsize=(15, 4))
search.plot_progress(ax=axes[0])
plot_loss_shape(search.best_loss_, ax=axes[1])
search.plot_pareto(ax=axes[2])
fig.tight_layout()
fig.savefig(out / "search.png", dpi=100)
print("wrote", out / "search.png")
