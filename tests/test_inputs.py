"""metaloss_sk.inputs: what the search accepts (arrays, tensors, dicts of arrays, Pipelines),
and clear errors for the rest."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from conftest import classifier, iris
from sklearn.datasets import load_diabetes
from sklearn.metrics import accuracy_score
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from skorch import NeuralNetBinaryClassifier, NeuralNetClassifier, NeuralNetRegressor
from skorch.helper import SliceDict
from torch import nn

import metaloss_sk.evaluator as evaluator_module
from metaloss_sk import Evolution, LocalSearch, LossSearchCV
from metaloss_sk._rows import take
from metaloss_sk.fit_and_score import FitAndScore, _chance
from metaloss_sk.nets import MLP

KW = dict(evolution=Evolution(population_size=5, rejection_steps=50), cv=2, random_state=0, refit=False)


def test_float64_input_is_cast_and_the_callers_array_untouched():
    X, y = iris()
    X64 = X.astype(np.float64)
    copy = X64.copy()
    search = LossSearchCV(classifier(), generations=1, **{**KW, "refit": True}).fit(X64, y)
    np.testing.assert_array_equal(X64, copy)
    assert search.predict(X64).shape == (len(X),)


@pytest.mark.parametrize("make, match", [
    (lambda X, y: (np.where(np.arange(X.size).reshape(X.shape) == 7, np.nan, X), y), "NaN"),
    (lambda X, y: (np.where(np.arange(X.size).reshape(X.shape) == 7, np.inf, X), y), "infinity"),
    (lambda X, y: (X, np.where(np.arange(len(y)) == 3, np.nan, y)), "NaN"),
    (lambda X, y: (X[:-1], y), "inconsistent numbers of samples"),
    (lambda X, y: (X[:0], y[:0]), "0 sample"),
    (lambda X, y: (X[:1], y[:1]), r"1 sample\(s\)"),
    (lambda X, y: (X, np.zeros_like(y)), "single class"),
    (lambda X, y: (X[:, 0], y), "Expected 2D array"),
    (lambda X, y: (sp.csr_matrix(X), y), "[Ss]parse"),
    (lambda X, y: (X, None), "y is None"),
    (lambda X, y: (X, y + 0.5), "Unknown label type"),
])
def test_bad_input_gets_a_clear_error(make, match):
    X, y = make(*iris())
    with pytest.raises((ValueError, TypeError), match=match):
        LossSearchCV(classifier(), generations=1, **KW).fit(X, y)


def test_fit_parameters_are_refused_by_name_before_any_training(monkeypatch):
    monkeypatch.setattr(evaluator_module.Evaluator, "generation", lambda *a, **k: pytest.fail("trained"))
    X, y = iris()
    with pytest.raises(TypeError, match="sample_weight.*as a dict of arrays.*Weighted rows"):
        LossSearchCV(classifier(), generations=1, **KW).fit(X, y, sample_weight=np.ones(len(y)))


@pytest.mark.parametrize("pipeline", [False, True])
def test_a_net_that_holds_out_a_validation_split_is_refused_before_any_training(monkeypatch, pipeline):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from skorch.dataset import ValidSplit

    monkeypatch.setattr(evaluator_module.Evaluator, "generation", lambda *a, **k: pytest.fail("trained"))
    monkeypatch.setattr(NeuralNetClassifier, "fit", lambda *a, **k: pytest.fail("trained"))
    net = classifier(train_split=ValidSplit(5))  # skorch's default
    X, y = iris()
    with pytest.raises(ValueError, match=r"train_split is .*ValidSplit.*pass train_split=None"):
        LossSearchCV(make_pipeline(StandardScaler(), net) if pipeline else net, generations=1, **KW).fit(X, y)


def test_an_unknown_scorer_is_named():
    X, y = iris()
    with pytest.raises(ValueError, match="no_such_scorer"):
        LossSearchCV(classifier(), generations=1, scoring="no_such_scorer", **KW).fit(X, y)


def test_two_dimensional_targets_for_a_single_output_regressor_are_refused():
    X, y = load_diabetes(return_X_y=True)
    X = X.astype(np.float32)
    regressor = NeuralNetRegressor(MLP, module__n_in=10, module__n_hidden=4, module__n_out=1, max_epochs=1,
                                   train_split=None, verbose=0)
    Y = np.stack([y, y], axis=1).astype(np.float32)
    with pytest.raises(ValueError, match=r"gives 1 output\(s\) per row, but y has 2 target column"):
        LossSearchCV(regressor, generations=1, **KW).fit(X, Y)


@pytest.mark.parametrize("task, n_out, match", [
    ("multiclass", 2, r"gives 2 output\(s\) per row, but y has 3 classes.*module__n_out=3"),
    ("multiclass", 5, r"gives 5 output\(s\) per row, but y has 3 classes.*module__n_out=3"),
    ("binary", 2, r"shape \(n,\) or \(n, 1\), got \(4, 2\)"),  # skorch's own check, already before training
    ("regression", 3, r"gives 3 output\(s\) per row, but y has 1 target column.*module__n_out=1"),
])
def test_a_module_whose_output_width_does_not_fit_the_classes_is_refused_before_training(
        monkeypatch, task, n_out, match):

    monkeypatch.setattr(evaluator_module.Evaluator, "generation", lambda *a, **k: pytest.fail("trained"))
    X, y = iris()
    net = classifier(module__n_out=n_out)
    if task == "binary":
        y = (y == 0).astype(np.float32)
        net = NeuralNetBinaryClassifier(MLP, module__n_in=4, module__n_hidden=8, module__n_out=n_out,
                                        train_split=None, verbose=0)
    elif task == "regression":
        y = X[:, 0].copy()
        net = NeuralNetRegressor(MLP, module__n_in=4, module__n_hidden=8, module__n_out=n_out,
                                 train_split=None, verbose=0)
    with pytest.raises(ValueError, match=match):
        LossSearchCV(net, generations=1, **KW).fit(X, y)


def test_torch_tensors_are_accepted_as_input():
    X, y = iris()
    search = LossSearchCV(classifier(), generations=1, **KW).fit(torch.as_tensor(X), torch.as_tensor(y))
    assert np.isfinite(search.best_score_)


DICT_KW = dict(evolution=Evolution(population_size=6, rejection_steps=50), generations=2, cv=2, random_state=0)


class OneInput(nn.Module):
    def __init__(self):
        super().__init__()
        self.mlp = MLP(4, 8, 3)

    def forward(self, X):
        return self.mlp(X)


class TwoInputs(OneInput):
    """The same parameters as OneInput, its features given in two parts."""

    def forward(self, petals, sepals, sample_weight=None):
        return self.mlp(torch.cat([petals, sepals], 1))


class WeightedNet(NeuralNetClassifier):
    """skorch's recipe for per-row weights: they come in X and go to the criterion."""

    def get_loss(self, y_pred, y_true, X=None, training=False):
        return self.criterion_(y_pred, torch.as_tensor(y_true, device=self.device),
                               sample_weight=X["sample_weight"])


def net(module, cls=NeuralNetClassifier):
    return cls(module, max_epochs=4, lr=0.2, batch_size=32, train_split=None, verbose=0)


def as_dict(X, **extra):
    return {"petals": X[:, :2], "sepals": X[:, 2:], **extra}


@pytest.mark.parametrize("train_loop", ["fast", "skorch"])
@pytest.mark.parametrize("local_search", [None, LocalSearch(meta_steps=5, n_checkpoints=2)])
def test_a_dict_of_inputs_searches_as_the_stacked_array(train_loop, local_search):
    X, y = iris()
    kw = dict(DICT_KW, train_loop=train_loop, local_search=local_search)
    stacked = LossSearchCV(net(OneInput), **kw).fit(X, y)
    split = LossSearchCV(net(TwoInputs), **kw).fit(as_dict(X), y)
    assert list(split.cv_results_["program"]) == list(stacked.cv_results_["program"])
    np.testing.assert_array_equal(split.cv_results_["mean_test_score"], stacked.cv_results_["mean_test_score"])
    assert str(split.best_loss_) == str(stacked.best_loss_)
    np.testing.assert_array_equal(split.predict_proba(as_dict(X)), stacked.predict_proba(X))
    assert split.score(as_dict(X), y) == stacked.score(X, y)
    assert not hasattr(split, "n_features_in_")


def test_a_slice_dict_and_a_resumed_search(tmp_path):
    X, y = iris()
    path = tmp_path / "search.json"
    LossSearchCV(net(TwoInputs), **dict(DICT_KW, generations=1), checkpoint=path).fit(SliceDict(**as_dict(X)), y)
    resumed = LossSearchCV(net(TwoInputs), **DICT_KW, checkpoint=path).fit(as_dict(X), y)
    whole = LossSearchCV(net(TwoInputs), **DICT_KW).fit(as_dict(X), y)
    np.testing.assert_array_equal(resumed.cv_results_["mean_test_score"], whole.cv_results_["mean_test_score"])
    assert len(resumed.history_) == 2


def test_model_selection_slices_a_slice_dict_for_the_search():
    X, y = iris()
    scores = cross_val_score(LossSearchCV(net(TwoInputs), **dict(DICT_KW, generations=1)), SliceDict(**as_dict(X)), y,
                             cv=StratifiedKFold(2, shuffle=True, random_state=0))
    assert scores.shape == (2,) and np.all(scores > 0.5)


def test_weights_in_x_reach_every_candidate_loss():
    X, y = iris()
    ones = LossSearchCV(net(TwoInputs, WeightedNet), **DICT_KW).fit(as_dict(X, sample_weight=np.ones(len(y))), y)
    plain = LossSearchCV(net(TwoInputs), train_loop="skorch", **DICT_KW).fit(as_dict(X), y)
    np.testing.assert_array_equal(ones.cv_results_["mean_test_score"], plain.cv_results_["mean_test_score"])
    # Weights of 3 triple every gradient: with SGD, the nets train differently.
    threes = LossSearchCV(net(TwoInputs, WeightedNet), **DICT_KW).fit(as_dict(X, sample_weight=np.full(len(y), 3.0)), y)
    assert list(threes.cv_results_["program"])[:1] == list(plain.cv_results_["program"])[:1]
    assert not np.array_equal(threes.cv_results_["mean_test_score"], plain.cv_results_["mean_test_score"])
    assert isinstance(threes.best_estimator_, WeightedNet)


@pytest.mark.parametrize("make, match", [
    (lambda X, y: ({}, y), "empty dict"),
    (lambda X, y: ({"petals": X[:, :2], "sepals": X[:-1, 2:]}, y), "one entry per row each"),
    (lambda X, y: (as_dict(X), y[:-1]), "150 rows and y has 149"),
    (lambda X, y: ({"petals": X[:, :2], "sepals": np.where(X[:, 2:] > 1, np.nan, X[:, 2:])}, y),
     "X\\['sepals'\\] holds NaN"),
    (lambda X, y: ({"petals": X[:, :2], 3: X[:, 2:]}, y), "key 3 is not a name"),
    (lambda X, y: ({"petals": X[:, :2], "sepals": X[:, 2:].astype(str)}, y),
     "X\\['sepals'\\] must be a numeric array"),
])
def test_a_bad_dict_gets_a_clear_error(make, match):
    X, y = make(*iris())
    with pytest.raises(ValueError, match=match):
        LossSearchCV(net(TwoInputs), **DICT_KW).fit(X, y)


def test_predicting_needs_the_fitted_keys():
    X, y = iris()
    search = LossSearchCV(net(TwoInputs), **dict(DICT_KW, generations=1)).fit(as_dict(X), y)
    with pytest.raises(ValueError, match="fitted on a dict of arrays with keys \\['petals', 'sepals'\\]"):
        search.predict(X)
    with pytest.raises(ValueError, match="keys \\['petals'\\], but the search was fitted on a dict"):
        search.predict({"petals": X[:, :2]})


def weighted_accuracy(net_, X, y):
    return accuracy_score(y, net_.predict(X), sample_weight=X["sample_weight"])


def test_a_scorer_can_weight_by_the_dict_and_chance_is_scored_the_same_way():
    X, y = iris()
    w = np.where(y == 2, 4.0, 1.0)
    rows = as_dict(X, sample_weight=w)
    train, test = np.arange(0, 150, 2), np.arange(1, 150, 2)
    evaluation = FitAndScore(trainer=None, task="multiclass", scorer=weighted_accuracy)
    chance = _chance(evaluation, take(rows, train), y[train], take(rows, test), y[test])
    majority = np.bincount(y[train]).argmax()  # iris's classes tie: the first
    assert chance == accuracy_score(y[test], np.full(len(test), majority), sample_weight=w[test])
    search = LossSearchCV(net(TwoInputs, WeightedNet), scoring=weighted_accuracy, **DICT_KW).fit(rows, y)
    assert search.best_score_ > chance


SMALL = dict(generations=2, cv=2, random_state=0, evolution=Evolution(population_size=5, rejection_steps=50))


def test_a_pipeline_must_end_in_a_skorch_net():
    X, y = iris()
    with pytest.raises(TypeError, match="Pipeline whose last step is one"):
        LossSearchCV(make_pipeline(StandardScaler(), StandardScaler()), **SMALL).fit(X, y)


def test_estimator_that_is_not_a_skorch_net_is_rejected():
    from sklearn.linear_model import LogisticRegression
    X, y = iris()
    with pytest.raises(TypeError, match="skorch net"):
        LossSearchCV(LogisticRegression()).fit(X, y)


def test_a_net_that_cannot_run_the_data_fails_early_with_its_message():
    X, y = iris()
    with pytest.raises(ValueError, match="cannot run one batch"):
        LossSearchCV(classifier(module__n_in=7), **SMALL).fit(X, y)
