"""
Regression on raw targets
=========================

The diabetes targets run from 25 to 346. Trained on them as they are, most
losses make a net diverge; the search standardises the target on each
fold's training rows and maps predictions back (``standardize_target=True``,
the default), so ``best_estimator_`` predicts in the target's own units.
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from skorch import NeuralNetRegressor

from metaloss_sk import Evolution, LossSearchCV
from metaloss_sk.nets import MLP
from metaloss_sk.plotting import plot_loss_shape

X, y = load_diabetes(return_X_y=True)
X = StandardScaler().fit_transform(X).astype(np.float32)
y = y.astype(np.float32).reshape(-1, 1)  # a regressor's module has one output column per target
X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
print(f"targets from {y.min():.0f} to {y.max():.0f}")

# %%
# The search
# ----------
# The scorer is R² (the regressor's ``score``); the usual loss is squared
# error, seeded with absolute error and the pseudo-Huber loss.
net = NeuralNetRegressor(
    MLP,
    module__n_in=10,
    module__n_hidden=16,
    module__n_out=1,
    max_epochs=10,
    lr=0.01,
    batch_size=32,
    train_split=None,
    verbose=0,
)
search = LossSearchCV(net, generations=2, evolution=Evolution(population_size=6), random_state=0)
search.fit(X_train, y_train)
print("found loss:", search.best_loss_)
print("best_estimator_ is a", type(search.best_estimator_).__name__)
print("test R²:", round(search.score(X_test, y_test), 3))

# %%
# Predictions in the target's units, and the loss's shape
# -------------------------------------------------------
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
predicted = search.predict(X_test).ravel()
left.scatter(y_test.ravel(), predicted, s=12, alpha=0.7)
left.plot([y.min(), y.max()], [y.min(), y.max()], "k--", lw=1)
left.set_xlabel("true target")
left.set_ylabel("predicted")
left.set_title("Test rows")
plot_loss_shape(search.best_loss_, axes=right)
fig.tight_layout()
