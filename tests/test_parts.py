"""The search's parts on their own: evolution, the checkpoint, the evaluator and the engine."""

import json
import math

import numpy as np
import pytest
from conftest import classifier, iris, plan
from sklearn.utils.parallel import Parallel

from metaloss_sk import SymbolicLoss, parse
from metaloss_sk.checkpoint import SearchState, load_checkpoint, save_checkpoint
from metaloss_sk.engine import Evaluation, evaluate_candidates
from metaloss_sk.evaluator import Evaluator, EvaluatorConfig
from metaloss_sk.evolution import Evolution, initial_population, next_generation, tournament
from metaloss_sk.primitives import EVOMAL_FUNCTION_SET
from metaloss_sk.program import SearchSpace
from metaloss_sk.training import Budget, Trainer

CE = "neg(mul(y, log(yhat)))"
SPACE = SearchSpace(EVOMAL_FUNCTION_SET)


def accuracy(net, X, y):
    return net.score(X, y)


# ---------------------------------------------------------------- evolution
def test_initial_population_puts_the_seeds_first_and_draws_distinct_valid_programs():
    population = initial_population(SPACE, 12, [parse(CE)], np.random.RandomState(0))
    assert str(population[0]) == CE and len(population) == 12
    assert len(set(map(str, population))) == 12
    assert all(p.is_valid_loss for p in population)


def test_tournament_picks_the_fittest_contender():
    fitness = np.array([0.1, 0.9, 0.5, 0.3])
    picks = [tournament(fitness, 4, np.random.RandomState(s)) for s in range(50)]
    assert all(fitness[i] >= np.sort(fitness)[0] for i in picks) and picks.count(1) > 25


def test_next_generation_keeps_the_elite_and_respects_the_maximum_height():
    rng = np.random.RandomState(0)
    population = initial_population(SPACE, 10, [parse(CE)], rng)
    fitness = np.linspace(0, 1, 10)
    children = next_generation(population, fitness, SPACE, Evolution(max_height=4, elitism=2), rng)
    assert children[:2] == [population[9], population[8]]
    assert len(children) == 10 and all(c.depth <= 4 or c in population for c in children)
    assert all(c.is_valid_loss for c in children)


def test_the_elite_is_the_best_program_that_did_not_fail():
    rng = np.random.RandomState(0)
    population = initial_population(SPACE, 6, [], rng)
    fitness = np.array([-np.inf] * 5 + [0.5])
    children = next_generation(population, fitness, SPACE, Evolution(elitism=1), rng)
    assert children[0] == population[5]


# ---------------------------------------------------------------- checkpoint
def test_search_state_round_trips_through_strict_json(tmp_path):
    rng = np.random.RandomState(3)
    rng.uniform(size=5)
    state = SearchState(population=[parse(CE), parse("square(sub(y, yhat))")], rng=rng, generation=4,
                        best=-math.inf, stale=1, elapsed=2.5,
                        history=[{"generation": 0, "best_score": math.nan, "median_score": 0.5}],
                        fold_seeds=[1, 2], refit_seed=9, evaluator={"rows": [], "keys": {}, "totals": {}})
    path = tmp_path / "state.json"
    save_checkpoint(path, state, "sig")
    json.loads(path.read_text(), parse_constant=lambda name: pytest.fail(f"{name} in the file"))
    back = load_checkpoint(path, "sig")
    assert back.population == state.population and back.generation == 4 and back.best == -math.inf
    assert back.fold_seeds == [1, 2] and back.refit_seed == 9 and math.isnan(back.history[0]["best_score"])
    assert back.rng.uniform() == rng.uniform()
    with pytest.raises(ValueError, match="other settings"):
        load_checkpoint(path, "another")
    assert load_checkpoint(tmp_path / "missing.json", "sig") is None


# ---------------------------------------------------------------- evaluator and engine
def _evaluator(screening=None, factor=3, **kw):
    X, y = iris()
    splits = [(np.arange(0, 150, 2), np.arange(1, 150, 2)), (np.arange(1, 150, 2), np.arange(0, 150, 2))]
    evaluation = Evaluation(Trainer(classifier()), "multiclass", accuracy)
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
    restored = _evaluator()
    restored.restore(json.loads(json.dumps(evaluator.state(), default=float)))
    for key, row in evaluator.rows.items():
        back = restored.rows[key]
        assert (back.status, back.generation, len(back.rungs)) == (row.status, row.generation, len(row.rungs))
        np.testing.assert_array_equal(back.last.scores, row.last.scores)


def test_the_engine_scores_every_loss_of_a_group_as_it_would_alone():
    X, y = iris()
    train, test = np.arange(0, 150, 2), np.arange(1, 150, 2)
    evaluation = Evaluation(Trainer(classifier()), "multiclass", accuracy)
    losses = [SymbolicLoss(CE), SymbolicLoss("square(sub(y, yhat))")]
    together = evaluate_candidates(evaluation, losses, X, y, train, test, Budget(4), 0)
    alone = [evaluate_candidates(evaluation, [loss], X, y, train, test, Budget(4), 0)[0] for loss in losses]
    assert [r.score for r in together] == [r.score for r in alone]
    assert all(r.status == "ok" for r in together)
    lr = evaluate_candidates(evaluation, losses[:1], X, y, train, test, Budget(4), 0, params={"lr": 1e-6})
    assert lr[0].score != together[0].score  # settings of the net can be overridden per call


# ---------------------------------------------------------------- screening inside a generation
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
