"""
A search inside a Pipeline with a ColumnTransformer
===================================================

A table with numeric and text columns: the ColumnTransformer scales the
numbers and one-hot encodes the text, and the search treats the Pipeline as
``GridSearchCV`` does: the steps before the net are fitted on each fold's
training rows only, and ``best_estimator_`` is the refit Pipeline.
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_wine
from sklearn.metrics import ConfusionMatrixDisplay
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from skorch import NeuralNetClassifier

from metaloss_sk import Evolution, LossSearchCV
from metaloss_sk.nets import MLP

# %%
# A frame with a text column
# --------------------------
# Wine's 13 measurements, and a made-up text column (the alcohol level as
# "low" or "high") for the encoder.
wine = load_wine(as_frame=True)
frame = wine.data.assign(strength=np.where(wine.data["alcohol"] > 13, "high", "low"))
X_train, X_test, y_train, y_test = train_test_split(
    frame, wine.target, stratify=wine.target, random_state=0
)
numeric = list(wine.data.columns)

# %%
# The Pipeline and the search
# ---------------------------
# The net sees 13 scaled numbers and 2 one-hot columns. The search casts the
# Pipeline's output to float32 for torch.
columns = ColumnTransformer(
    [("num", StandardScaler(), numeric), ("cat", OneHotEncoder(), ["strength"])]
)
net = NeuralNetClassifier(
    MLP,
    module__n_in=15,
    module__n_hidden=16,
    module__n_out=3,
    max_epochs=10,
    lr=0.05,
    batch_size=32,
    train_split=None,
    verbose=0,
)
search = LossSearchCV(
    make_pipeline(columns, net),
    scoring="f1_macro",
    generations=2,
    evolution=Evolution(population_size=6),
    random_state=0,
)
search.fit(X_train, y_train)
print("found loss:", search.best_loss_)
print(search.best_estimator_)
print("test F1 (macro):", round(search.score(X_test, y_test), 3))

# %%
# The refit Pipeline on the test rows
# -----------------------------------
fig, ax = plt.subplots(figsize=(4.5, 4))
ConfusionMatrixDisplay.from_estimator(
    search.best_estimator_, X_test, y_test, ax=ax, colorbar=False
)
ax.set_title("Test rows, net trained with the found loss")
fig.tight_layout()
