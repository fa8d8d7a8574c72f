"""What a user hands a search, checked and encoded: the net, its rows and targets, the Pipeline, the scorers.

:class:`Inputs` is built from the search's ``estimator`` (a skorch net, or a
Pipeline whose last step is one) and learns, in :meth:`Inputs.fit`, what the
search must remember of the data: the task, the classes and their encoding, a
dict input's keys, whether the target was one column. It turns the user's rows
into what the net takes (float32 arrays or skorch's dict of arrays, targets
as class indices or float columns), and, with a Pipeline, into one block of
rows per fold, transformed by the steps fitted on that fold's training rows.
"""

import numpy as np
import torch
from sklearn.base import clone, is_classifier
from sklearn.compose import TransformedTargetRegressor
from sklearn.metrics import check_scoring
from sklearn.model_selection import check_cv
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, LabelEncoder, StandardScaler
from sklearn.utils import _safe_indexing, check_array, check_consistent_length
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import validate_data
from skorch import NeuralNet, NeuralNetBinaryClassifier, NeuralNetClassifier, NeuralNetRegressor

from ._rows import is_dict, n_rows, placeholder, take, to_tensors
from .loss import usual_loss
from .training import build_net

__all__ = ["Inputs", "net_of", "scorers", "task_of", "to_float32"]


def net_of(estimator):
    """The skorch net: the estimator, or the last step of a Pipeline."""
    return estimator.steps[-1][1] if isinstance(estimator, Pipeline) else estimator


def task_of(net):
    """"multiclass", "binary" or "regression", from the net's class; a clear error for anything else."""
    if isinstance(net, NeuralNetBinaryClassifier):
        return "binary"
    if isinstance(net, NeuralNetClassifier):
        return "multiclass"
    if isinstance(net, NeuralNetRegressor):
        return "regression"
    if isinstance(net, NeuralNet):
        raise TypeError(
            f"estimator is a plain {type(net).__name__}; use NeuralNetClassifier, "
            "NeuralNetBinaryClassifier or NeuralNetRegressor so the search knows the task."
        )
    raise TypeError(
        f"estimator must be a skorch net (NeuralNetClassifier, NeuralNetBinaryClassifier or "
        f"NeuralNetRegressor) or a Pipeline whose last step is one, got {type(net).__name__}."
    )


def to_float32(X):
    """Rows as a dense float32 array (what a torch module takes)."""
    return np.asarray(X.toarray() if hasattr(X, "toarray") else X, dtype=np.float32)


def scorers(scoring, refit, net):
    """``(selecting scorer, other (name, scorer) pairs, scorer_)``; ``scorer_`` is a dict for multi-metric."""
    if isinstance(scoring, (list, tuple, set, dict)):
        named = dict(scoring) if isinstance(scoring, dict) else {s: s for s in scoring}
        if not named or not all(isinstance(name, str) for name in named):
            raise ValueError(f"multi-metric scoring must be a non-empty list of scorer names or a dict of name "
                             f"to scorer, got {scoring!r}.")
        found = {name: check_scoring(net, scoring=s) for name, s in named.items()}
        if not isinstance(refit, str) or refit not in found:
            raise ValueError(f"with multi-metric scoring, refit must name the metric that selects the loss, "
                             f"one of {sorted(found)}; got refit={refit!r}.")
        return found[refit], tuple(found.items()), found
    if isinstance(refit, str):
        raise ValueError(f"refit={refit!r} names a metric, but scoring is a single metric; give scoring "
                         "a list or dict of metrics, or use refit=True.")
    scorer = check_scoring(net, scoring=scoring)
    return scorer, (), scorer


class Inputs:
    """The search's view of its ``estimator`` and data; :meth:`fit` learns the encoding.

    Attributes (after :meth:`fit`)
    ------------------------------
    task : str
    classes_ : ndarray or None
        The class labels (classifiers).
    keys : tuple of str or None
        A dict input's keys (None for one array).
    y_1d : bool
        Whether a regression target was one-dimensional.
    """

    def __init__(self, estimator):
        self.estimator = estimator
        self.net = net_of(estimator)
        self.task = task_of(self.net)
        self.classes_, self.keys, self.y_1d, self._encoder = None, None, True, None

    # ------------------------------------------------------------ the net
    def check_net(self):
        """Refuse a net the search cannot train as the user would: its own train_split, criterion settings."""
        if getattr(self.net, "train_split", None) is not None:
            raise ValueError(f"the net's train_split is {self.net.train_split!r} (skorch's default holds out 20 % "
                             "of every fit for validation), so the refit net would train on fewer rows than the "
                             "candidates it was chosen by. LossSearchCV does its own cross-validation (cv): pass "
                             "train_split=None to the net.")
        criterion_params = sorted(k for k in self.net.get_params(deep=False) if k.startswith("criterion__"))
        if criterion_params:
            raise ValueError(f"the estimator sets {', '.join(criterion_params)}, but LossSearchCV replaces "
                             "the criterion with each candidate loss; remove those settings.")

    def preprocessing(self):
        """An unfitted clone of the Pipeline's steps before the net, or None."""
        if not isinstance(self.estimator, Pipeline) or len(self.estimator.steps) < 2:
            return None
        return clone(self.estimator[:-1])

    def around(self, net, standardize_target):
        """``net`` as the search's estimator holds it: after the Pipeline's steps (unfitted clones), and
        behind a target standardiser for regression with ``standardize_target`` (``best_estimator_``)."""
        steps = self.preprocessing()
        if steps is not None:
            net = Pipeline([*steps.steps, ("to_float32", FunctionTransformer(to_float32)),
                            (self.estimator.steps[-1][0], net)])
        if self.task == "regression" and standardize_target:
            net = TransformedTargetRegressor(regressor=net, transformer=StandardScaler())
        return net

    @property
    def n_classes(self):
        return 1 if self.task == "regression" else len(self.classes_)

    # ------------------------------------------------------------ rows and targets
    def fit(self, owner, X, y):
        """Check ``(X, y)``, learn the encoding, and return them as the net takes them.

        ``owner`` (the search) receives ``n_features_in_`` and ``feature_names_in_``, as
        :func:`~sklearn.utils.validation.validate_data` sets them.
        """
        return self._check(owner, X, y, reset=True)

    def transform(self, owner, X, y):
        """``(X, y)`` checked against what :meth:`fit` saw, as the net takes them."""
        return self._check(owner, X, y, reset=False)

    def _check(self, owner, X, y, reset):
        if y is None:
            raise ValueError("LossSearchCV needs targets: y is None.")
        if reset:
            self.keys = None
        if is_dict(X) or self.preprocessing() is not None:
            y = check_array(y, ensure_2d=False, dtype="numeric" if self.task == "regression" else None,
                            ensure_min_samples=2, input_name="y")
            if not is_dict(X):  # the Pipeline's steps take the rows as they are
                validate_data(owner, X, skip_check_array=True, reset=reset)
                check_consistent_length(X, y)
            elif self.preprocessing() is not None:
                raise ValueError(f"X is a dict of arrays ({', '.join(map(repr, X))}), but the estimator is a "
                                 "Pipeline, whose steps take one array or DataFrame; give the net alone or "
                                 "one array.")
            else:
                X = self.dict_rows(owner, X, reset)
                if len(y) != n_rows(X):
                    raise ValueError(f"X's arrays have {n_rows(X)} rows and y has {len(y)}; give one target "
                                     "per row.")
        else:
            X, y = validate_data(owner, X, y, dtype=np.float32, order="C", allow_nd=True, ensure_min_samples=2,
                                 reset=reset, multi_output=self.task == "regression",
                                 y_numeric=self.task == "regression")
        if self.task == "regression":
            if reset:
                self.y_1d = np.ndim(y) == 1
            return X, self.encode(y)
        check_classification_targets(y)
        if reset:
            classes = getattr(self.net, "classes", None)
            self._encoder = LabelEncoder().fit(y if classes is None else classes)
            self.classes_ = self._encoder.classes_
            if len(self.classes_) < 2:
                raise ValueError(f"y has a single class ({self.classes_[0]!r}); a classifier needs at least two.")
            if self.task == "binary" and len(self.classes_) != 2:
                raise ValueError(f"NeuralNetBinaryClassifier needs exactly two classes, y has "
                                 f"{len(self.classes_)}; use NeuralNetClassifier.")
        return X, self.encode(y)

    def rows(self, owner, X):
        """Rows to predict on, checked against what :meth:`fit` saw (raw rows, where a Pipeline takes them)."""
        if is_dict(X) or self.keys is not None:
            if not is_dict(X):
                raise ValueError(f"the search was fitted on a dict of arrays with keys {list(self.keys)}; "
                                 "give X in the same form.")
            return self.dict_rows(owner, X, reset=False)
        if self.preprocessing() is not None:  # best_estimator_ is the Pipeline: its steps take the raw rows
            validate_data(owner, X, skip_check_array=True, reset=False)
            return X
        return validate_data(owner, X, dtype=np.float32, order="C", allow_nd=True, reset=False)

    def dict_rows(self, owner, X, reset):
        """skorch's dict input, checked: float arrays as float32, integer ones (embedding indices) kept.

        Fitting on a dict records its keys (and forgets ``owner``'s
        ``n_features_in_``); a dict given later must have the same keys.
        """
        keys = tuple(X)
        if not keys:
            raise ValueError("X is an empty dict; give one array per input of the module's forward.")
        if not reset and keys != self.keys:
            raise ValueError(f"X is a dict with keys {list(keys)}, but the search was fitted on "
                             + ("one array" if self.keys is None else f"a dict with keys {list(self.keys)}") + ".")
        rows = {}
        for key, value in X.items():
            if not isinstance(key, str) or not key.isidentifier():
                raise ValueError(f"X's key {key!r} is not a name: skorch passes each key to the module's "
                                 "forward as a keyword argument.")
            array = np.asarray(value.cpu() if torch.is_tensor(value) else value)
            if array.ndim == 0 or array.dtype.kind not in "fiub":
                raise ValueError(f"X[{key!r}] must be a numeric array with one entry per row, got "
                                 f"{type(value).__name__} of dtype {array.dtype} and shape {array.shape}.")
            if array.dtype.kind == "f":
                if not np.isfinite(array).all():
                    raise ValueError(f"X[{key!r}] holds NaN or infinite values; impute or drop them first.")
                array = array.astype(np.float32, copy=False)
            rows[key] = np.ascontiguousarray(array)
        lengths = {key: len(array) for key, array in rows.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"X's arrays must have one entry per row each, got {lengths} rows.")
        if reset:
            self.keys = keys
            for name in ("n_features_in_", "feature_names_in_"):  # an array's, from an earlier fit
                owner.__dict__.pop(name, None)
        return rows

    def encode(self, y):
        """Targets as the net takes them: float32 columns for regression, class indices (floats for binary)."""
        y = np.ascontiguousarray(y)
        if self.task == "regression":
            return y.reshape(len(y), -1).astype(np.float32)
        if not np.isin(y, self._encoder.classes_).all():
            raise ValueError("y contains labels the search was not fitted on (or that are not in the "
                             "estimator's `classes`).")
        return self._encoder.transform(y).astype(np.float32 if self.task == "binary" else np.int64)

    def decode(self, y):
        """The net's predictions in the user's terms: labels, or targets of the shape given."""
        if self.task == "regression":
            return y.reshape(len(y)) if self.y_1d and y.ndim == 2 and y.shape[1] == 1 else y
        return self.classes_[np.asarray(y).astype(np.int64)]

    # ------------------------------------------------------------ folds
    def splits(self, cv, X, y):
        """The ``cv`` splits; a dict ``X`` is split by its number of rows (sklearn's splitters take arrays)."""
        rows = placeholder(X) if is_dict(X) else X
        return list(check_cv(cv, y, classifier=is_classifier(self.estimator)).split(rows, y))

    def net_rows(self, X, y):
        """All rows as the net sees them: through the Pipeline's steps fitted on them, as float32."""
        steps = self.preprocessing()
        return X if steps is None else to_float32(steps.fit(X, y).transform(X))

    def fold_rows(self, X, y, splits):
        """``(X, y, splits)`` for the evaluator: each fold's rows through steps fitted on its training rows.

        Without preprocessing, the data and splits as they are. With it, one
        block of rows per fold (every row, transformed by the steps fitted on
        that fold's training rows, so its test rows never inform them) and
        each fold's splits shifted into its block: the evaluator indexes rows
        as always, and nothing leaks across folds.
        """
        steps = self.preprocessing()
        if steps is None:
            return X, y, splits
        blocks = [to_float32(clone(steps).fit(_safe_indexing(X, train), y[train]).transform(X))
                  for train, _ in splits]
        if len({block.shape[1:] for block in blocks}) > 1:
            raise ValueError(f"the Pipeline's steps give a different number of features on different folds "
                             f"({sorted({block.shape[1] for block in blocks})}); fix the categories (for "
                             "OneHotEncoder, pass categories= or handle_unknown='ignore').")
        n = len(y)
        return (np.concatenate(blocks), np.concatenate([y] * len(splits)),
                [(train + k * n, test + k * n) for k, (train, test) in enumerate(splits)])

    # ------------------------------------------------------------ one batch before any search
    def preflight(self, X, y):
        """Fail early, with the net's own message, when the net cannot run a batch at all."""
        net = build_net(self.net, usual_loss(self.task))
        torch.manual_seed(0)
        n = min(n_rows(X), 4)
        try:
            net.initialize()
            with torch.no_grad():
                out = net.infer(to_tensors(take(X, slice(0, n)), net.device))
        except Exception as exc:
            raise _batch_error(exc) from exc
        self._check_output_width(out, y)
        try:
            with torch.no_grad():
                net.criterion_(out, torch.as_tensor(y[:n], device=net.device))
        except Exception as exc:
            raise _batch_error(exc) from exc

    def _check_output_width(self, out, y):
        """Refuse a module with one output per class (per target column for regression) too many or too few."""
        if not torch.is_tensor(out) or out.dim() not in (1, 2):
            return  # several outputs, or images: the loss says whether it can take them
        width = 1 if out.dim() == 1 else int(out.shape[1])
        if self.task == "binary":
            expected, why = 1, "NeuralNetBinaryClassifier takes one (the positive class's logit)"
        elif self.task == "multiclass":
            expected = len(self.classes_)
            why = f"y has {expected} classes ({', '.join(map(str, self.classes_[:5]))}{', ...' * (expected > 5)})"
        else:
            expected = int(np.shape(y)[1])
            why = f"y has {expected} target column(s)"
        if width != expected:
            raise ValueError(
                f"the net's module gives {width} output(s) per row, but {why}: give its last layer {expected} "
                f"output(s) (module__n_out={expected} for metaloss_sk.nets.MLP, or the out_features of the "
                "module's output layer)." + (" For two classes with two outputs, use NeuralNetClassifier."
                                             if self.task == "binary" and width == 2 else ""))


def _batch_error(exc):
    return ValueError(f"the estimator cannot run one batch of this data with a symbolic loss: "
                      f"{type(exc).__name__}: {exc}")
