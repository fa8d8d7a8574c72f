"""Equivalence keys, gradient fingerprints and the rejection protocol."""

import numpy as np
import pytest
import torch
from conftest import classifier, iris

from metaloss_sk import Evolution, LossSearchCV, SymbolicLoss
from metaloss_sk.filters import Probe, commutative_key, gradient_violations, symbolic_key


@pytest.fixture
def probe():
    torch.manual_seed(0)
    return Probe(torch.randn(100, 4), torch.randint(0, 4, (100,)), "multiclass")


def loss(program, task="multiclass"):
    return SymbolicLoss(program, task=task)


def test_commuted_programs_share_a_symbolic_key():
    assert symbolic_key(loss("mul(y, log(yhat))")) == symbolic_key(loss("mul(log(yhat), y)"))


def test_constant_folding_and_identities_share_a_symbolic_key():
    assert symbolic_key(loss("mul(y, yhat)")) == symbolic_key(loss("mul(mul(y, yhat), mul(1.0, 1.0))"))
    assert symbolic_key(loss("add(sub(y, y), mul(y, yhat))")) == symbolic_key(loss("mul(y, yhat)"))


def test_different_functions_have_different_symbolic_keys():
    assert symbolic_key(loss("mul(y, yhat)")) != symbolic_key(loss("mul(y, square(yhat))"))
    assert symbolic_key(loss("mul(y, yhat)")) != symbolic_key(loss("mul(y, yhat)", task="binary"))


def test_commutative_key_joins_only_commuted_programs():
    assert commutative_key(loss("mul(y, log(yhat))")) == commutative_key(loss("mul(log(yhat), y)"))
    # The same function, but another family once every edge has a coefficient.
    assert commutative_key(loss("mul(y, yhat)")) != commutative_key(loss("mul(mul(y, yhat), 1.0)"))
    assert commutative_key(loss("mul(y, yhat)")) != commutative_key(loss("mul(y, yhat)", task="binary"))


def test_commutative_key_of_a_loss_with_coefficients_keeps_their_positions():
    a = SymbolicLoss("add(y, yhat)", coefficients=[1.0, 2.0])
    b = SymbolicLoss("add(yhat, y)", coefficients=[1.0, 2.0])
    assert commutative_key(a) != commutative_key(b)


def test_losses_differing_by_a_constant_share_a_fingerprint(probe):
    a, b = probe.fingerprints([loss("neg(mul(y, log(yhat)))"), loss("add(neg(mul(y, log(yhat))), 1.0)")])
    assert a is not None and a == b


def test_scaled_losses_have_different_fingerprints(probe):
    a, b = probe.fingerprints([loss("neg(mul(y, log(yhat)))"), loss("mul(neg(mul(y, log(yhat))), 2.0)")])
    assert a != b


def test_a_loss_without_gradient_has_no_fingerprint(probe):
    # Summed over classes, softmax outputs minus one-hot targets is constant.
    assert probe.fingerprints([loss("sub(yhat, y)"), loss("sign(mul(y, yhat))")]) == [None, None]


def test_a_non_finite_loss_has_no_fingerprint(probe):
    assert probe.fingerprints([loss("add(mul(y, yhat), 1e39)")]) == [None]


def test_rejection_protocol_keeps_losses_that_lower_the_error_and_rejects_the_rest(probe):
    verdicts = probe.reject([loss("neg(mul(y, log(yhat)))"), loss("mul(y, yhat)"), loss("neg(mul(y, yhat))")])
    assert verdicts == [False, True, False]


def test_rejection_protocol_for_regression():
    torch.manual_seed(0)
    probe = Probe(torch.randn(50, 1), torch.randn(50), "regression")
    assert probe.reject([loss("square(sub(y, yhat))", "regression"),
                         loss("neg(square(sub(y, yhat)))", "regression")]) == [False, True]


def test_filters_do_not_change_the_winner():
    X, y = iris()
    kw = dict(generations=3, cv=2, random_state=1, refit=False)
    plain = LossSearchCV(classifier(), evolution=Evolution(population_size=8, equivalence="exact", rejection_steps=0),
                         **kw).fit(X, y)
    filtered = LossSearchCV(classifier(), evolution=Evolution(population_size=8), **kw).fit(X, y)
    assert str(filtered.best_loss_.program_) == str(plain.best_loss_.program_)
    assert filtered.best_score_ == plain.best_score_
    assert filtered.search_stats_["evaluations"] <= plain.search_stats_["evaluations"]


def test_without_a_cache_every_proposed_program_is_trained_and_the_winner_is_the_same():
    X, y = iris()
    kw = dict(generations=3, cv=2, random_state=1, refit=False)

    def evolution(equivalence):
        return Evolution(population_size=8, rejection_steps=0, gradient_bound=None, equivalence=equivalence)

    exact = LossSearchCV(classifier(), evolution=evolution("exact"), **kw).fit(X, y)
    none = LossSearchCV(classifier(), evolution=evolution("none"), **kw).fit(X, y)
    stats = none.search_stats_
    assert stats["cache_hits"] == 0 and stats["evaluations"] == stats["proposed"] == 24
    assert exact.search_stats_["cache_hits"] > 0
    assert str(none.best_loss_.program_) == str(exact.best_loss_.program_)
    assert none.best_score_ == exact.best_score_
    np.testing.assert_array_equal(none.cv_results_["program"], exact.cv_results_["program"])
    np.testing.assert_array_equal(none.cv_results_["generation"], exact.cv_results_["generation"])
    np.testing.assert_array_equal(none.cv_results_["mean_test_score"], exact.cv_results_["mean_test_score"])


def test_search_stats_account_for_every_proposed_program():
    X, y = iris()
    search = LossSearchCV(classifier(), evolution=Evolution(population_size=8, rejection_steps=100), generations=3,
                          cv=2, random_state=1, refit=False).fit(X, y)
    for h in search.history_:
        assert h["proposed"] == h["cache_hits"] + h["equivalent"] + h["rejected"] + h["trained"]
    stats = search.search_stats_
    assert stats["proposed"] == 8 * stats["generations"]
    rejected = search.cv_results_["status"] == "rejected"
    assert rejected.sum() == stats["rejected"]
    equivalent = search.cv_results_["equivalent_to"] != ""
    assert equivalent.sum() == stats["equivalent"]


SINGULAR = "neg(mul(y, log(add(yhat, sub(yhat, 1.0)))))"


CE = "neg(mul(y, log(yhat)))"


def test_the_gradient_check_rejects_a_singular_loss_and_keeps_the_usual_ones():
    ok, singular, mse = gradient_violations([SymbolicLoss(CE), SymbolicLoss(SINGULAR),
                                             SymbolicLoss("square(sub(y, yhat))", task="regression")], bound=100)
    assert ok is None and mse is None
    assert "gradient reaches" in singular
    assert gradient_violations([SymbolicLoss(SINGULAR)], bound=1e9) == [None]
