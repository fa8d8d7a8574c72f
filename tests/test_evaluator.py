"""metaloss_sk.evaluator: the cache of fold results, the rungs, screening, the filters' place and the grouping."""

import json
from dataclasses import replace

import numpy as np
import pytest
from conftest import classifier, iris, plan
from sklearn.utils.parallel import Parallel

from metaloss_sk import LocalSearch, SymbolicLoss, parse
from metaloss_sk.checkpoint import SearchState
from metaloss_sk.evaluator import Evaluator, EvaluatorConfig
from metaloss_sk.fit_and_score import FitAndScore
from metaloss_sk.training import Budget, Trainer

CE = "neg(mul(y, log(yhat)))"


def accuracy(net, X, y):
    return net.score(X, y)


def _evaluator(screening=None, factor=3, **kw):
    X, y = iris()
    splits = [(np.arange(0, 150, 2), np.arange(1, 150, 2)), (np.arange(1, 150, 2), np.arange(0, 150, 2))]
    evaluation = FitAndScore(Trainer(classifier()), "multiclass", accuracy)
    config = EvaluatorConfig(evaluation, fold_seeds=(5, 6), plan=plan(screening=screening, factor=factor),
                             rejection_steps=0, **kw)
    return Evaluator(config, X, y, splits, Parallel(n_jobs=1, return_as="generator"))


def test_the_evaluator_trains_each_distinct_program_once_and_remembers_fold_results():
    evaluator = _evaluator()
    population = [parse(CE), parse("square(sub(y, yhat))"), parse(CE)]
    fitness, stats = evaluator.generation(population, 0)
    assert stats["trained"] == 2 and stats["cache_hits"] == 1 and fitness[0] == fitness[2]
    row = evaluator.rows[CE]
    assert row.rungs[0].n_resources == 12 and len(row.rungs[0].scores) == 2
    fits = len(evaluator._fold_results)
    (again,) = evaluator.cross_validate([SymbolicLoss(CE)], Budget(4))
    assert len(evaluator._fold_results) == fits  # the same budget and seeds: nothing trained again
    assert [fold[0].score for fold in again] == row.rungs[0].scores


def test_promote_adds_a_rung_with_more_seeds_and_budget():
    evaluator = _evaluator()
    evaluator.generation([parse(CE)], 0)
    (score,) = evaluator.promote([parse(CE)], Budget(8), n_seeds=2)
    row = evaluator.rows[CE]
    assert [r.n_resources for r in row.rungs] == [12, 24] and row.last.n_seeds == 2
    assert score == row.score == pytest.approx(np.mean(row.last.scores))
    assert evaluator.totals["ladder_fits"] == 2 * 2


def test_the_evaluator_state_restores_every_row():
    evaluator = _evaluator()
    evaluator.generation([parse(CE), parse("mul(y, yhat)")], 0)
    evaluator.promote([parse(CE)], Budget(8), n_seeds=2)
    state = SearchState(population=[], rng=None)
    state.record(evaluator)
    restored = _evaluator()
    replace(state, evaluator=json.loads(json.dumps(state.evaluator, default=float))).restore(restored)
    for key, row in evaluator.rows.items():
        back = restored.rows[key]
        assert (back.status, back.generation, len(back.rungs)) == (row.status, row.generation, len(row.rungs))
        np.testing.assert_array_equal(back.last.scores, row.last.scores)


PROGRAMS = [CE, "square(sub(y, yhat))", "mul(y, yhat)", "neg(mul(y, yhat))", "abs(sub(y, yhat))",
            "neg(mul(y, sqrt(yhat)))", "square(sub(yhat, y))"]


def test_screening_promotes_the_best_third_and_the_seed_and_ranks_the_rest_below():
    evaluator = _evaluator(screening=Budget(4, 4), factor=3, seed_programs=(CE,), equivalence="exact")
    population = [parse(p) for p in PROGRAMS]
    fitness, stats = evaluator.generation(population, 0)
    rows = [evaluator.rows[p] for p in PROGRAMS]
    assert all(row.rungs[0].n_resources == 4 for row in rows)
    promoted = [row for row in rows if len(row.rungs) == 2]
    assert stats["trained"] == 7 and stats["promoted"] == len(promoted) <= 1 + 3
    assert rows[0] in promoted and all(row.rungs[1].n_resources == 12 for row in promoted)
    others = [row for row in rows[1:] if row.status == "ok"]
    best = sorted(others, key=lambda row: -row.rungs[0].mean)[:3]
    assert {str(row.program) for row in promoted} == {CE} | {str(row.program) for row in best}
    is_promoted = np.array([len(row.rungs) == 2 for row in rows])
    assert fitness[is_promoted].min() > fitness[~is_promoted].max()
    screened = [(row.rungs[0].mean, f) for row, f in zip(rows, fitness) if len(row.rungs) == 1 and row.status == "ok"]
    assert sorted(screened) == sorted(screened, key=lambda pair: pair[1])  # the screening order is kept
    assert stats["fold_fits"] == 2 * (7 + len(promoted))
    assert stats["best_score"] == max(row.score for row in promoted)


def test_without_screening_every_new_program_is_promoted():
    evaluator = _evaluator()
    _, stats = evaluator.generation([parse(p) for p in PROGRAMS[:3]], 0)
    assert stats["trained"] == stats["promoted"] == 3
    assert all(len(evaluator.rows[p].rungs) == 1 for p in PROGRAMS[:3])


SINGULAR = "neg(mul(y, log(add(yhat, sub(yhat, 1.0)))))"


def test_the_evaluator_rejects_a_singular_program_before_training_but_never_a_seed():
    X, y = iris()
    splits = [(np.arange(0, 150, 2), np.arange(1, 150, 2))]
    evaluation = FitAndScore(Trainer(classifier()), "multiclass", lambda net, X, y: net.score(X, y))
    config = EvaluatorConfig(evaluation, fold_seeds=(0,), plan=plan(), rejection_steps=0, seed_programs=(CE,))
    evaluator = Evaluator(config, X, y, splits, parallel=Parallel(n_jobs=1, return_as="generator"))
    fitness, stats = evaluator.generation([parse(CE), parse(SINGULAR)], 0)
    assert evaluator.rows[SINGULAR].status == "rejected" and "unstable" in evaluator.rows[SINGULAR].message
    assert evaluator.rows[CE].status == "ok" and np.isfinite(fitness[0]) and fitness[1] == -np.inf
    assert stats["rejected"] == 1 and stats["trained"] == 1
    protected = EvaluatorConfig(evaluation, fold_seeds=(0,), plan=plan(), rejection_steps=0,
                                seed_programs=(CE, SINGULAR))
    evaluator = Evaluator(protected, X, y, splits, parallel=Parallel(n_jobs=1, return_as="generator"))
    evaluator.generation([parse(CE), parse(SINGULAR)], 0)
    assert evaluator.rows[SINGULAR].status != "rejected"


COMMUTED = "neg(mul(log(yhat), y))"


def test_known_losses_skip_the_local_search_every_candidate_gets():
    X, y = iris()
    splits = [(np.arange(0, 150, 2), np.arange(1, 150, 2))]
    evaluation = FitAndScore(Trainer(classifier()), "multiclass", lambda net, X, y: net.score(X, y),
                            local_search=LocalSearch(meta_steps=5, n_checkpoints=1), local_search_budget=Budget(4))
    config = EvaluatorConfig(evaluation, fold_seeds=(0,), plan=plan(), rejection_steps=0, seed_programs=(CE,))
    evaluator = Evaluator(config, X, y, splits, parallel=Parallel(n_jobs=1, return_as="generator"))
    # A commuted cross-entropy is an evolved program: it gets its own local search, not the seed's score.
    evaluator.generation([parse(CE), parse(COMMUTED)], 0)
    assert evaluator.rows[CE].fold_coefficients == [None]
    assert evaluator.rows[COMMUTED].fold_coefficients[0] is not None
    assert not evaluator.rows[COMMUTED].equivalent_to


def loss(program, task="multiclass"):
    return SymbolicLoss(program, task=task)


def test_with_local_search_on_every_candidate_only_commuted_programs_share_an_evaluation():
    from sklearn.utils.parallel import Parallel

    from metaloss_sk.evaluator import Evaluator, EvaluatorConfig
    from metaloss_sk.fit_and_score import FitAndScore
    from metaloss_sk.training import Budget, Trainer

    X, y = iris()
    programs = ["neg(mul(y, log(yhat)))", "neg(mul(log(yhat), y))", "neg(mul(mul(y, log(yhat)), 1.0))"]
    evaluation = FitAndScore(Trainer(classifier()), "multiclass", lambda net, X, y: net.score(X, y),
                            local_search=LocalSearch(meta_steps=2), local_search_budget=Budget(4))

    def evaluated(equivalence):
        config = EvaluatorConfig(evaluation, fold_seeds=(0, 1), plan=plan(), rejection_steps=0,
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
        config = EvaluatorConfig(evaluation=None, fold_seeds=(0,), plan=None, n_jobs=n_jobs, candidates_per_task=8)
        return Evaluator(config, None, None, [("train", "test")], parallel=None)._groups(losses)

    for n_jobs, sizes in [(1, [7, 8]), (4, [7, 8])]:  # as few groups as leave two tasks, whatever n_jobs is
        found = groups(n_jobs)
        assert sorted(i for g in found for i in g) == list(range(len(losses)))
        assert sorted(len(g) for g in found) == sizes
        nodes = [sum(len(losses[i].program_) for i in g) for g in found]
        assert max(nodes) - min(nodes) <= max(len(x.program_) for x in losses)
