"""What the tests share: small data and a tiny net that learns within a few steps."""

import numpy as np
from sklearn.datasets import load_iris
from sklearn.preprocessing import StandardScaler
from skorch import NeuralNetClassifier

from metaloss_sk.nets import MLP


def iris():
    """Iris, standardised, as float32 features and integer labels."""
    X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X).astype(np.float32), y


def classifier(**kw):
    """An MLP 4-8-3 for iris that beats chance within its few steps; ``kw`` overrides its settings."""
    params = dict(module=MLP, module__n_in=4, module__n_hidden=8, module__n_out=3, max_epochs=4, lr=0.2,
                  batch_size=32, train_split=None, verbose=0)
    return NeuralNetClassifier(**{**params, **kw})


def plan(fitness=None, screening=None, factor=3, n_train=75, batch_size=32):
    """An evaluator's :class:`~metaloss_sk.schedule.Plan`: a fitness budget (4 epochs) over ``n_train`` rows."""
    from metaloss_sk.schedule import Plan
    from metaloss_sk.training import Budget

    fitness = Budget(4) if fitness is None else fitness
    return Plan(n_train=n_train, batch_size=batch_size, fitness=fitness, rungs=(fitness,), screening=screening,
                factor=factor)
