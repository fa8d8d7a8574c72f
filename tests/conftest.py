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
