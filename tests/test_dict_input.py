"""skorch's dict input (a module with several inputs) through the search, and rows weighted that way."""

import numpy as np
import pytest
import torch
from conftest import iris
from sklearn.metrics import accuracy_score
from sklearn.model_selection import StratifiedKFold, cross_val_score
from skorch import NeuralNetClassifier
from skorch.helper import SliceDict
from torch import nn
from torch.nn import functional as F

from metaloss_sk import Evolution, LocalSearch, LossSearchCV, SymbolicLoss
from metaloss_sk._rows import take
from metaloss_sk.engine import Evaluation, _chance
from metaloss_sk.nets import MLP

KW = dict(evolution=Evolution(population_size=6, rejection_steps=50), generations=2, cv=2, random_state=0)


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
@pytest.mark.parametrize("local_search", [None, LocalSearch(meta_steps=5, checkpoints=2)])
def test_a_dict_of_inputs_searches_as_the_stacked_array(train_loop, local_search):
    X, y = iris()
    kw = dict(KW, train_loop=train_loop, local_search=local_search)
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
    LossSearchCV(net(TwoInputs), **dict(KW, generations=1), checkpoint=path).fit(SliceDict(**as_dict(X)), y)
    resumed = LossSearchCV(net(TwoInputs), **KW, checkpoint=path).fit(as_dict(X), y)
    whole = LossSearchCV(net(TwoInputs), **KW).fit(as_dict(X), y)
    np.testing.assert_array_equal(resumed.cv_results_["mean_test_score"], whole.cv_results_["mean_test_score"])
    assert len(resumed.history_) == 2


def test_model_selection_slices_a_slice_dict_for_the_search():
    X, y = iris()
    scores = cross_val_score(LossSearchCV(net(TwoInputs), **dict(KW, generations=1)), SliceDict(**as_dict(X)), y,
                             cv=StratifiedKFold(2, shuffle=True, random_state=0))
    assert scores.shape == (2,) and np.all(scores > 0.5)


def test_weights_in_x_reach_every_candidate_loss():
    X, y = iris()
    ones = LossSearchCV(net(TwoInputs, WeightedNet), **KW).fit(as_dict(X, sample_weight=np.ones(len(y))), y)
    plain = LossSearchCV(net(TwoInputs), train_loop="skorch", **KW).fit(as_dict(X), y)
    np.testing.assert_array_equal(ones.cv_results_["mean_test_score"], plain.cv_results_["mean_test_score"])
    # Weights of 3 triple every gradient: with SGD, the nets train differently.
    threes = LossSearchCV(net(TwoInputs, WeightedNet), **KW).fit(as_dict(X, sample_weight=np.full(len(y), 3.0)), y)
    assert list(threes.cv_results_["program"])[:1] == list(plain.cv_results_["program"])[:1]
    assert not np.array_equal(threes.cv_results_["mean_test_score"], plain.cv_results_["mean_test_score"])
    assert isinstance(threes.best_estimator_, WeightedNet)


def test_symbolic_loss_weights_rows():
    torch.manual_seed(0)
    logits, target, w = torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2]), torch.rand(6)
    loss = SymbolicLoss()
    expected = (F.cross_entropy(logits, target, reduction="none") * w).mean()
    torch.testing.assert_close(loss(logits, target, sample_weight=w), expected)
    torch.testing.assert_close(loss(logits, target, sample_weight=torch.ones(6)), loss(logits, target))
    mse = SymbolicLoss("square(sub(y, yhat))", task="regression")
    out, t = torch.randn(6, 2), torch.randn(6, 2)
    torch.testing.assert_close(mse(out, t, sample_weight=w), (((out - t) ** 2).mean(1) * w).mean())
    with pytest.raises(ValueError, match="one weight per row of the batch \\(6\\)"):
        loss(logits, target, sample_weight=torch.ones(5))


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
        LossSearchCV(net(TwoInputs), **KW).fit(X, y)


def test_predicting_needs_the_fitted_keys():
    X, y = iris()
    search = LossSearchCV(net(TwoInputs), **dict(KW, generations=1)).fit(as_dict(X), y)
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
    evaluation = Evaluation(trainer=None, task="multiclass", scorer=weighted_accuracy)
    chance = _chance(evaluation, take(rows, train), y[train], take(rows, test), y[test])
    majority = np.bincount(y[train]).argmax()  # iris's classes tie: the first
    assert chance == accuracy_score(y[test], np.full(len(test), majority), sample_weight=w[test])
    search = LossSearchCV(net(TwoInputs, WeightedNet), scoring=weighted_accuracy, **KW).fit(rows, y)
    assert search.best_score_ > chance
