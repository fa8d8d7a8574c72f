"""The known losses the search starts from: each is its textbook form, and the search never returns less."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import classifier, iris
from sklearn.datasets import load_diabetes
from sklearn.preprocessing import StandardScaler
from skorch import NeuralNetRegressor

from metaloss_sk import Evolution, LocalSearch, LossSearchCV, SymbolicLoss, parse
from metaloss_sk.nets import MLP
from metaloss_sk.zoo import known_losses

CE = "neg(mul(y, log(yhat)))"
COMMUTED = "neg(mul(log(yhat), y))"

KW = dict(evolution=Evolution(population_size=8, rejection_steps=50), generations=2, cv=2, random_state=0,
          refit=False, baseline_lrs=None)


def _multiclass_forms(k, smoothing=0.1):
    def focal(z, t):
        log_p = F.log_softmax(z, -1).gather(1, t[:, None])[:, 0]
        return (-(1 - log_p.exp()) ** 2 * log_p).mean()

    def poly1(z, t):
        p_t = F.softmax(z, -1).gather(1, t[:, None])[:, 0]
        return F.cross_entropy(z, t) + (1 - p_t).mean()

    return {
        "cross-entropy": F.cross_entropy,
        "label smoothing 0.1": lambda z, t: F.cross_entropy(z, t, label_smoothing=smoothing),
        "focal 2": focal,
        "poly-1": poly1,
        "Brier": lambda z, t: ((F.softmax(z, -1) - F.one_hot(t, k)) ** 2).sum(-1).mean(),
    }


@pytest.mark.parametrize("k", [3, 10])
def test_each_known_classification_loss_equals_its_torch_form(k):
    torch.manual_seed(0)
    logits, targets = torch.randn(64, k) * 2, torch.randint(0, k, (64,))  # no probability under log's 1e-7 floor
    losses = known_losses("multiclass", k)
    assert list(losses) == list(_multiclass_forms(k))
    for name, form in _multiclass_forms(k).items():
        loss = SymbolicLoss(losses[name])
        assert float(loss(logits, targets)) == pytest.approx(float(form(logits, targets)), rel=1e-5), name


def test_each_known_binary_loss_equals_its_torch_form():
    torch.manual_seed(0)
    z, t = torch.randn(64) * 2, torch.randint(0, 2, (64,)).float()
    two_class = torch.stack([-z, z], -1) / 2  # softmax of (-z/2, z/2) is (sigmoid(-z), sigmoid(z))
    for name, form in _multiclass_forms(2).items():
        loss = SymbolicLoss(known_losses("binary")[name], task="binary")
        assert float(loss(z, t)) == pytest.approx(float(form(two_class, t.long())), rel=1e-5), name


def test_each_known_regression_loss_equals_its_torch_form():
    torch.manual_seed(0)
    out, y = torch.randn(64, 1) * 2, torch.randn(64, 1)
    forms = {"squared error": F.mse_loss(out, y), "absolute error": F.l1_loss(out, y),
             "pseudo-Huber": (torch.sqrt(1 + (out - y) ** 2) - 1).mean()}
    losses = known_losses("regression")
    assert list(losses) == list(forms)
    for name, value in forms.items():
        assert float(SymbolicLoss(losses[name], task="regression")(out, y)) == pytest.approx(float(value), rel=1e-5)


def test_known_losses_parse_print_and_round_trip():
    for task in ("multiclass", "binary", "regression"):
        for program in known_losses(task, 10).values():
            p = parse(program)
            assert p.is_valid_loss and str(p) == program.replace("(1,", "(1.0,").replace(", 1)", ", 1.0)")
            assert parse(p.infix()).infix() == p.infix()
    assert "0.01" in parse(known_losses("multiclass", 10)["label smoothing 0.1"]).infix()


def test_a_classifier_needs_two_classes():
    with pytest.raises(ValueError, match="n_classes"):
        known_losses("multiclass", 1)


@pytest.fixture(scope="module")
def searched():
    X, y = iris()
    return LossSearchCV(classifier(), **KW).fit(X, y)


def test_the_search_seeds_every_known_loss_and_reports_it(searched):
    known = searched.baseline_["known_losses"]
    assert [k["name"] for k in known] == list(known_losses("multiclass", 3))
    final = searched.n_resources_[-1]
    programs = list(searched.cv_results_["program"])
    for entry in known:  # each climbed to the final budget, at the search's learning rate
        row = programs.index(entry["program"])
        assert searched.cv_results_["n_resources"][row] == final == entry["n_resources"]
        assert entry["mean_test_score"] == pytest.approx(searched.cv_results_["mean_test_score"][row])
        assert entry["split_scores"] == pytest.approx([searched.cv_results_[f"split{k}_test_score"][row]
                                                       for k in range(2)])


def test_the_best_loss_is_never_below_the_best_known_loss(searched):
    best_known = max(k["mean_test_score"] for k in searched.baseline_["known_losses"])
    assert searched.best_score_ >= best_known


def test_seed_programs_usual_seeds_the_usual_loss_only():
    X, y = iris()
    search = LossSearchCV(classifier(), seed_programs="usual", **KW).fit(X, y)
    assert [k["name"] for k in search.baseline_["known_losses"]] == ["cross-entropy"]


def test_a_regressor_starts_from_the_regression_losses():
    X, y = load_diabetes(return_X_y=True)
    X = StandardScaler().fit_transform(X).astype(np.float32)
    net = NeuralNetRegressor(MLP, module__n_in=10, module__n_hidden=16, module__n_out=1, max_epochs=10,
                             lr=0.05, batch_size=32, train_split=None, verbose=0)
    search = LossSearchCV(net, **KW).fit(X, y)
    assert [k["name"] for k in search.baseline_["known_losses"]] == list(known_losses("regression"))
    assert all(math.isfinite(k["mean_test_score"]) for k in search.baseline_["known_losses"])


def test_an_evomal_search_returns_a_known_loss_as_it_is():
    X, y = iris()
    search = LossSearchCV(classifier(), local_search=LocalSearch(meta_steps=5, n_checkpoints=1), **KW).fit(X, y)
    known = {k["program"]: k for k in search.baseline_["known_losses"]}
    assert search.best_score_ >= max(k["mean_test_score"] for k in known.values())
    if str(search.best_loss_.program_) in known:
        assert search.best_loss_.coefficients is None


def test_the_final_contest_tunes_each_contenders_rate_beside_the_search_rate():
    from metaloss_sk.final_selection import learning_rates, neighbour_rates

    X, y = iris()
    search = LossSearchCV(classifier(), **{**KW, "baseline_lrs": "auto", "refit": True}).fit(X, y)
    contest = search.baseline_["contest"]
    rates = neighbour_rates(learning_rates("auto", 0.2), search.search_lr_)
    assert len(rates) == 2 and set(contest["champion_scores"]) <= {search.search_lr_, *rates}
    assert contest["champion_lr"] == max(contest["champion_scores"], key=contest["champion_scores"].get)
    assert contest["challenger_lr"] == max(contest["challenger_scores"], key=contest["challenger_scores"].get)
    winner = "challenger" if contest["replaced"] else "champion"
    assert search.best_lr_ == contest[f"{winner}_lr"] == search.best_estimator_.lr
    assert str(search.best_loss_.program_) == contest[winner]
    assert search.best_score_ == pytest.approx(contest[f"{winner}_scores"][search.best_lr_])


def test_a_search_at_the_nets_rate_keeps_it_to_the_end():
    X, y = iris()
    search = LossSearchCV(classifier(), search_lr="net", **{**KW, "refit": True}).fit(X, y)
    assert search.best_lr_ == search.search_lr_ == 0.2 == search.best_estimator_.lr


