"""Search a loss for a small MLP on iris, then use it in a new net.

Run: python examples/quickstart.py
"""

import numpy as np
from sklearn.datasets import load_iris
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from skorch import NeuralNetClassifier

from metaloss_sk import LossSearchCV
from metaloss_sk.nets import MLP

X, y = load_iris(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, stratify=y, random_state=0)
scaler = StandardScaler().fit(X_train)
X_train, X_test = (scaler.transform(a).astype(np.float32) for a in (X_train, X_test))

net = NeuralNetClassifier(MLP, module__n_in=4, module__n_hidden=16, module__n_out=3,
                          max_epochs=10, lr=0.05, batch_size=32, train_split=None, verbose=0)
search = LossSearchCV(net, population_size=10, generations=4, cv=3, random_state=0, verbose=1)
search.fit(X_train, y_train)

print("found loss:", search.best_loss_)
print("as LaTeX:  ", search.best_loss_.latex())
print("test accuracy of the refit net:", search.score(X_test, y_test))

# The found loss is an ordinary skorch criterion.
other = NeuralNetClassifier(MLP, module__n_in=4, module__n_hidden=32, module__n_out=3, max_epochs=10,
                            lr=0.05, batch_size=32, train_split=None, verbose=0, criterion=search.best_loss_)
print("a wider net trained with it:", other.fit(X_train, y_train).score(X_test, y_test))
