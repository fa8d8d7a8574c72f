"""Equivalence keys, gradient fingerprints and the rejection protocol."""

import numpy as np
import pytest
import torch
from conftest import classifier, iris

from metaloss_sk import LocalSearch, LossSearchCV, SymbolicLoss, parse
from metaloss_sk.filters import Probe, commutative_key, symbolic_key


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
    kw = dict(population_size=8, generations=3, cv=2, random_state=1, refit=False)
    plain = LossSearchCV(classifier(), equivalence="exact", rejection_steps=0, **kw).fit(X, y)
    filtered = LossSearchCV(classifier(), **kw).fit(X, y)
    assert str(filtered.best_loss_.program_) == str(plain.best_loss_.program_)
    assert filtered.best_score_ == plain.best_score_
    assert filtered.search_stats_["evaluations"] <= plain.search_stats_["evaluations"]


def test_without_a_cache_every_proposed_program_is_trained_and_the_winner_is_the_same():
    X, y = iris()
    kw = dict(population_size=8, generations=3, cv=2, random_state=1, refit=False, rejection_steps=0,
              gradient_bound=None)
    exact = LossSearchCV(classifier(), equivalence="exact", **kw).fit(X, y)
    none = LossSearchCV(classifier(), equivalence="none", **kw).fit(X, y)
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
    search = LossSearchCV(classifier(), population_size=8, generations=3, cv=2, random_state=1, refit=False,
                          rejection_steps=100).fit(X, y)
    for h in search.history_:
        assert h["proposed"] == h["cache_hits"] + h["equivalent"] + h["rejected"] + h["trained"]
    stats = search.search_stats_
    assert stats["proposed"] == 8 * stats["generations"]
    rejected = search.cv_results_["status"] == "rejected"
    assert rejected.sum() == stats["rejected"]
    equivalent = search.cv_results_["equivalent_to"] != ""
    assert equivalent.sum() == stats["equivalent"]


def test_with_local_search_on_every_candidate_only_commuted_programs_share_an_evaluation():
    from sklearn.utils.parallel import Parallel

    from metaloss_sk.engine import Evaluation
    from metaloss_sk.evaluator import Evaluator, EvaluatorConfig
    from metaloss_sk.training import Budget, Trainer

    X, y = iris()
    programs = ["neg(mul(y, log(yhat)))", "neg(mul(log(yhat), y))", "neg(mul(mul(y, log(yhat)), 1.0))"]
    evaluation = Evaluation(Trainer(classifier()), "multiclass", lambda net, X, y: net.score(X, y),
                            local_search=LocalSearch(meta_steps=2), local_search_budget=Budget(4))

    def evaluated(equivalence):
        config = EvaluatorConfig(evaluation, fold_seeds=(0, 1), budget=Budget(4), rejection_steps=0,
                                 equivalence=equivalence)
        splits = [(np.arange(0, 150, 2), np.arange(1, 150, 2)), (np.arange(1, 150, 2), np.arange(0, 150, 2))]
        evaluator = Evaluator(config, X, y, splits, parallel=Parallel(n_jobs=1, return_as="generator"))
        _, stats = evaluator.generation([parse(p) for p in programs], 0)
        return {p: row.equivalent_to for p, row in evaluator.rows.items()}, stats

    rows, stats = evaluated("gradient")
    assert rows == {programs[0]: "", programs[1]: programs[0], programs[2]: ""}
    assert stats["trained"] == 2
    assert evaluated("exact")[1]["trained"] == 3


def test_candidates_are_grouped_by_program_length_into_groups_of_even_cost():
    from metaloss_sk.evaluator import Evaluator, EvaluatorConfig

    programs = ["y", "neg(yhat)", "neg(mul(y, log(yhat)))", "square(sub(y, yhat))",
                "add(mul(y, log(yhat)), mul(sub(y, yhat), tanh(add(yhat, y))))"] * 3
    losses = [loss(p) for p in programs]
    def groups(n_jobs):
        config = EvaluatorConfig(evaluation=None, fold_seeds=(0,), budget=None, n_jobs=n_jobs, candidates_per_task=8)
        return Evaluator(config, None, None, [("train", "test")], parallel=None)._groups(losses)

    for n_jobs, sizes in [(1, [7, 8]), (4, [7, 8])]:  # as few groups as leave two tasks, whatever n_jobs is
        found = groups(n_jobs)
        assert sorted(i for g in found for i in g) == list(range(len(losses)))
        assert sorted(len(g) for g in found) == sizes
        nodes = [sum(len(losses[i].program_) for i in g) for g in found]
        assert max(nodes) - min(nodes) <= max(len(x.program_) for x in losses)
