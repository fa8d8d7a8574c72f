"""metaloss_sk.evolution: the Evolution settings and the breeding of programs."""

import numpy as np
import pytest
from conftest import bad_values, case_id, classifier, iris

from metaloss_sk import LossSearchCV, parse
from metaloss_sk.evolution import Evolution, initial_population, next_generation, tournament
from metaloss_sk.primitives import EVOMAL_FUNCTION_SET
from metaloss_sk.program import SearchSpace

SPACE = SearchSpace(EVOMAL_FUNCTION_SET)


CE = "neg(mul(y, log(yhat)))"


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


EVOLUTION_CASES = bad_values(Evolution._parameter_constraints)


@pytest.mark.parametrize("name, value", EVOLUTION_CASES, ids=[case_id(c) for c in EVOLUTION_CASES])
def test_check_refuses_a_bad_value_of_every_parameter_naming_it(name, value):
    with pytest.raises(ValueError, match=rf"^{name} must be "):
        Evolution(**{name: value}).check()


@pytest.mark.parametrize("name, value", EVOLUTION_CASES, ids=[case_id(c) for c in EVOLUTION_CASES])
def test_fit_refuses_a_bad_value_of_every_evolution_parameter_naming_it(monkeypatch, name, value):
    import metaloss_sk.search as search_module

    monkeypatch.setattr(search_module, "Evaluator", lambda *a, **k: pytest.fail("trained before the check"))
    X, y = iris()
    search = LossSearchCV(classifier(), evolution=Evolution(**{name: value}), generations=1, cv=2)
    with pytest.raises(ValueError, match=rf"^{name} must be "):
        search.fit(X, y)


@pytest.mark.parametrize("params, match", [
    (dict(population_size=4, tournament_size=5), "^tournament_size=5 is larger than population_size=4"),
    (dict(p_crossover=0.5, p_subtree_mutation=0.3, p_hoist_mutation=0.3), "exceeds 1"),
    (dict(max_height=3, init_depth=(2, 4)), "^max_height=3 is below"),
    (dict(population_size=4, tournament_size=2, elitism=4), "^elitism=4 must be smaller than population_size=4"),
    (dict(function_set=["add", "frobnicate"]), "frobnicate"),
])
def test_check_refuses_settings_that_do_not_fit_together(params, match):
    with pytest.raises(ValueError, match=match):
        Evolution(**params).check()
    assert Evolution().check().population_size == 25
