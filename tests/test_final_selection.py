"""metaloss_sk.final_selection: the winner is chosen at the budget the net trains with, never
fragile, and shown beside the usual loss."""

import json

import numpy as np
import pytest
from conftest import classifier, iris

import metaloss_sk.evaluator as evaluator_module
from metaloss_sk import Evolution, LossSearchCV, Schedule, SymbolicLoss, parse
from metaloss_sk.training import Budget

CE = "neg(mul(y, log(yhat)))"
# log|2 yhat - 1|: finite values, but a gradient near 1e7 where yhat = 1/2, inside the domain.
SINGULAR = "neg(mul(y, log(add(yhat, sub(yhat, 1.0)))))"
KW = dict(evolution=Evolution(population_size=6, rejection_steps=50), generations=2, cv=2, random_state=0,
          refit=False)


@pytest.fixture(scope="module")
def laddered():
    # 75 training rows per fold, batches of 32: 3 steps an epoch, 24 steps for the net's 8 epochs;
    # and a screening rung of 3 steps below the fitness budget.
    X, y = iris()
    search = LossSearchCV(classifier(max_epochs=8),
                          schedule=Schedule(min_resources=6, screening=3, factor=2, n_finalists=2), **KW).fit(X, y)
    return search, X, y


def test_rungs_climb_from_the_fitness_budget_to_the_nets_own(laddered):
    search, _, _ = laddered
    assert search.n_resources_ == [3, 6, 12, 24]
    assert search.n_candidates_[1:] == sorted(search.n_candidates_[1:], reverse=True)
    assert search.n_candidates_[-1] <= 2 + 5  # the finalists, and the usual loss and the four known losses


def test_the_best_loss_is_scored_at_the_final_budget(laddered):
    search, _, _ = laddered
    results = search.cv_results_
    best = search.best_index_
    assert results["n_resources"][best] == 24 and results["iter"][best] == 3
    assert results["rank_test_score"][best] == 1
    assert search.best_score_ == pytest.approx(results["mean_test_score"][best])
    assert str(search.best_loss_.program_) == results["program"][best]
    # A program that only reached the fitness budget ranks below every finalist, whatever its score there.
    finalists = results["iter"] == 3
    assert results["rank_test_score"][~finalists].min() > results["rank_test_score"][finalists].max()


def test_the_usual_loss_always_reaches_the_final_rung(laddered):
    search, _, _ = laddered
    row = list(search.cv_results_["program"]).index(CE)
    assert search.cv_results_["iter"][row] == 3


def test_finalists_train_with_two_weight_seeds_per_fold(monkeypatch):
    calls = []
    real = evaluator_module.fit_and_score

    def record(evaluation, losses, X, y, train, test, budget, seed, params=None):
        calls.append((budget, len(train), seed, tuple(str(loss.program_) for loss in losses)))
        return real(evaluation, losses, X, y, train, test, budget, seed, params)

    monkeypatch.setattr(evaluator_module, "fit_and_score", record)
    X, y = iris()
    search = LossSearchCV(classifier(max_epochs=8), schedule=Schedule(min_resources=6, factor=2), baseline_lrs=None,
                          **KW).fit(X, y)
    winner = str(search.best_loss_.program_)
    final = Budget(max_epochs=8)
    seeds = {(n, seed) for budget, n, seed, programs in calls if budget == final and winner in programs}
    assert len(seeds) == 2 * 2  # two seeds on each of the two folds


def test_a_loss_at_chance_level_fails():
    X, y = iris()
    anti = "mul(y, log(yhat))"  # minimising it pushes the true class's probability to zero
    search = LossSearchCV(classifier(), seed_programs=[CE, anti], **KW).fit(X, y)
    row = list(search.cv_results_["program"]).index(anti)
    assert search.cv_results_["status"][row] == "chance"
    assert np.isnan(search.cv_results_["mean_test_score"][row])
    assert "no better than chance" in search.cv_results_["message"][row]
    assert str(search.best_loss_.program_) != anti


def test_a_search_where_nothing_learns_warns_and_keeps_the_usual_loss():
    X, y = iris()
    with pytest.warns(UserWarning, match="better than chance"):
        search = LossSearchCV(classifier(lr=1e-5, max_epochs=1), **KW).fit(X, y)
    assert str(search.best_loss_.program_) == CE


def test_a_search_that_diverges_names_divergence_and_says_to_lower_lr():
    X, y = iris()
    with pytest.raises(RuntimeError, match=r"nan.*diverged.*NaN or infinite.*lower it") as error:
        LossSearchCV(classifier(lr=1e30), **{**KW, "generations": 1}).fit(X, y)
    assert "raise lr" not in str(error.value) and "train longer" not in str(error.value)


def test_divergence_is_named_beside_a_usual_loss_at_chance():
    from types import SimpleNamespace

    from metaloss_sk.final_selection import winner

    rows = [SimpleNamespace(program=CE, status="chance", score=np.nan, rungs=[]),
            SimpleNamespace(program="square(sub(y, yhat))", status="nan", score=np.nan, rungs=[])]
    with pytest.warns(UserWarning, match=r"train longer.*1 candidate\(s\) diverged.*lower it"):
        assert winner(rows, CE) is rows[0]


def test_baseline_shows_the_usual_loss_at_the_nets_lr_and_tuned(laddered):
    search, _, _ = laddered
    base = search.baseline_
    assert base["program"] == CE and base["n_resources"] == 24 and base["n_seeds"] == 2
    # Nine rates at the first rung of the ladder, the best two and the net's own at the final budget.
    assert len(base["ladder"][0]["lrs"]) == 9 and base["ladder"][-1]["lrs"] == base["lrs"]
    assert base["net_lr"] == 0.2 and 0.2 in base["lrs"] and len(base["lrs"]) <= 3
    assert base["tuned_score"] == np.nanmax(base["mean_test_score"]) >= base["net_lr_score"]
    assert base["mean_test_score"][base["lrs"].index(base["tuned_lr"])] == base["tuned_score"]
    # The search ran at the tuned rate: the usual loss's own row at the final rung is the tuned baseline.
    assert search.search_lr_ == base["tuned_lr"] == base["search_lr"]
    row = list(search.cv_results_["program"]).index(CE)
    assert base["tuned_score"] == pytest.approx(search.cv_results_["mean_test_score"][row])
    assert len(base["found_split_scores"]) == 2
    assert np.mean(base["found_split_scores"]) == pytest.approx(search.best_score_)
    json.dumps(base)  # plain values


def test_baseline_lrs_none_tries_the_nets_lr_only():
    X, y = iris()
    search = LossSearchCV(classifier(), baseline_lrs=None, **KW).fit(X, y)
    assert search.baseline_["lrs"] == [0.2] and search.baseline_["tuned_lr"] == 0.2


def test_verbose_summary_shows_the_found_loss_beside_the_usual_loss(capsys):
    X, y = iris()
    LossSearchCV(classifier(), verbose=1, **KW).fit(X, y)
    out = capsys.readouterr().out
    assert "found loss" in out and "usual loss, lr 0.2" in out and "usual loss, tuned lr" in out
    assert "per fold" in out


def test_search_lr_tuned_searches_at_the_usual_losss_best_learning_rate():
    X, y = iris()
    search = LossSearchCV(classifier(lr=0.05), search_lr="tuned", baseline_lrs=[0.02, 0.5],
                          evolution=Evolution(population_size=4), generations=1, cv=2, random_state=0).fit(X, y)
    base = search.baseline_
    assert search.search_lr_ == base["tuned_lr"] == base["lrs"][int(np.nanargmax(base["mean_test_score"]))]
    assert base["net_lr"] == 0.05 and search.search_lr_ != 0.05
    assert search.best_estimator_.lr == search.search_lr_
    # The usual loss's row at the final rung trained at the tuned rate: the same nets as the baseline's there.
    results = search.cv_results_
    row = list(results["program"]).index(base["program"])
    assert results["n_resources"][row] == base["n_resources"]
    assert results["mean_test_score"][row] == base["tuned_score"]


def test_search_lr_net_is_the_nets_own_and_a_grid_of_none_tunes_nothing():
    X, y = iris()
    for kw in (dict(search_lr="net"), dict(baseline_lrs=None)):
        search = LossSearchCV(classifier(), evolution=Evolution(population_size=4), generations=1, cv=2,
                              random_state=0, **kw).fit(X, y)
        assert search.search_lr_ == 0.2 and search.best_estimator_.lr == 0.2


def _row(program, scores, steps=24):
    from metaloss_sk.records import Row, Rung

    return Row(program=parse(program), loss=SymbolicLoss(program), generation=0,
               rungs=[Rung(n_resources=6, scores=[0.5, 0.5, 0.5]), Rung(n_resources=steps, scores=scores)])


def test_an_evolved_program_replaces_the_best_known_loss_only_beyond_the_margin():
    from metaloss_sk.final_selection import contest_at_rates

    def contest(rows, margin):
        return contest_at_rates(None, rows, (CE,), margin, None, 2, 0.1)

    evolved = "neg(mul(y, log(mul(yhat, yhat))))"
    known = _row(CE, [0.80, 0.82, 0.84])
    noisy = _row(evolved, [0.86, 0.81, 0.85])  # +0.02 on average, one standard error of 0.0208
    best, lr, scores, record = contest([known, noisy], "se")
    assert best is known and lr == 0.1 and scores == [0.80, 0.82, 0.84] and not record["replaced"]
    assert record["champion"] == CE and record["challenger"] == evolved
    assert record["difference"] == pytest.approx(0.02) and record["margin"] == pytest.approx(0.0208, abs=1e-4)
    assert contest([known, noisy], 0.0)[0] is noisy
    clear = _row(evolved, [0.83, 0.85, 0.87])  # +0.03 on every fold: no noise in the difference
    assert contest([known, clear], "se")[0] is clear
    assert contest([known, clear], 0.05)[0] is known
    assert contest_at_rates(None, [known, clear], (), "se", None, 2, 0.1) is None  # no known loss: no contest


def test_the_learning_rate_grid_is_halved_over_weight_seeds_at_the_final_budget(laddered):
    from metaloss_sk.final_selection import LR_FACTORS, learning_rates

    assert len(LR_FACTORS) == 9 and min(LR_FACTORS) == pytest.approx(0.01) and max(LR_FACTORS) == pytest.approx(100)
    assert learning_rates("auto", 0.2) == sorted(learning_rates("auto", 0.2)) and 0.2 in learning_rates("auto", 0.2)
    search, _, _ = laddered
    first, last = search.baseline_["ladder"]
    assert first["n_seeds"] == 1 and first["lrs"] == learning_rates("auto", 0.2)
    # The best two rates with one seed, and the net's own, go on to two seeds.
    finite = [lr for lr, score in zip(first["lrs"], first["mean_test_score"]) if np.isfinite(score)]
    best_two = sorted(finite, key=lambda lr: -first["mean_test_score"][first["lrs"].index(lr)])[:2]
    assert last["n_seeds"] == 2 and last["lrs"] == sorted({*best_two, 0.2})
    assert search.baseline_["n_resources"] == search.n_resources_[-1]


def test_one_fold_better_and_the_others_tied_is_not_beyond_one_standard_error():
    from metaloss_sk.final_selection import beats

    # mean = a / 3 and standard error = a / 3 exactly; rounding once tipped this to "kept".
    assert not beats([0.9855233853006681, 0.98, 0.97], [0.9844097995545656, 0.98, 0.97], "se")[0]
    assert beats([0.9855233853006681, 0.98, 0.97], [0.9844097995545656, 0.98, 0.97], 0.0)[0]


def test_simplest_within_one_se_picks_the_shortest_program_near_the_best_at_the_final_rung():
    from metaloss_sk import simplest_within_one_se

    results = {
        "program": ["a", "b", "c", "d", "e"],
        "length": np.array([9, 5, 3, 1, 7]),
        "iter": np.array([2, 2, 2, 1, 2]),
        "mean_test_score": np.array([0.90, 0.88, 0.80, 0.95, np.nan]),
        "std_test_score": np.array([0.04, 0.01, 0.01, 0.0, np.nan]),
        "split0_test_score": np.zeros(5), "split1_test_score": np.zeros(5), "split2_test_score": np.zeros(5),
        "split3_test_score": np.zeros(5),
    }
    # Best at the final rung: a (0.90, se 0.04 / 2 = 0.02): b (0.88) is within and shorter; c is not; d never
    # reached the final rung; e failed.
    assert simplest_within_one_se(results) == 1
    results["std_test_score"][0] = 0.0
    assert simplest_within_one_se(results) == 0
