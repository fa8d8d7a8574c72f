"""metaloss_sk.schedule: the Schedule settings and the Plan of every budget."""

import pytest
from conftest import bad_values, case_id, classifier, iris

from metaloss_sk import Evolution, LocalSearch, LossSearchCV, Schedule
from metaloss_sk.training import Budget

SMALL = dict(generations=2, cv=2, random_state=0, evolution=Evolution(population_size=5, rejection_steps=50))


def test_auto_screening_only_where_every_candidate_gets_the_local_search():
    # 75 training rows per fold, batches of 32: 3 steps an epoch; fitness 6 steps, factor 3.
    search = LossSearchCV(classifier(), schedule=Schedule(min_resources=6))

    def screening(search):
        return search._schedule.plan(search._net, 75, search._every_candidate_settings() is not None).screening

    assert screening(search) is None
    assert screening(search.set_params(local_search=LocalSearch(candidates="winners"))) is None
    assert screening(search.set_params(local_search="all")) == Budget(4, 2)
    assert screening(search.set_params(local_search=None, schedule__screening=2)) == Budget(4, 2)


def test_screening_must_be_shorter_than_the_fitness_budget():
    X, y = iris()
    with pytest.raises(ValueError, match="screening=6 gives 6 optimizer steps"):
        LossSearchCV(classifier(), schedule=Schedule(screening=6, min_resources=6), **SMALL).fit(X, y)


def test_the_plan_counts_the_rungs_down_from_the_final_budget_by_factor():
    # 75 training rows, batches of 32: 3 steps an epoch, 24 for the net's 8 epochs.
    net = classifier(max_epochs=8)
    plan = Schedule(min_resources=6, screening=3, factor=2, n_finalists=2).plan(net, 75)
    assert [plan.steps(b) for b in (plan.screening, plan.fitness, *plan.rungs)] == [3, 6, 12, 24]
    assert plan.final == Budget(8) and plan.searched == [plan.screening, plan.fitness]
    assert (plan.factor, plan.n_finalists, plan.final_seeds) == (2, 2, 2)
    # "auto": EvoMAL's 500 steps, or the final budget where that is shorter; no rung below the final one then.
    auto = Schedule().plan(net, 75)
    assert auto.fitness == auto.final and auto.rungs == (Budget(8),) and auto.screening is None
    assert Schedule(max_resources=12).plan(net, 75).final == Budget(8, 12)


SCHEDULE_CASES = bad_values(Schedule._parameter_constraints)


@pytest.mark.parametrize("name, value", SCHEDULE_CASES, ids=[case_id(c) for c in SCHEDULE_CASES])
def test_check_refuses_a_bad_value_of_every_parameter_naming_it(name, value):
    with pytest.raises(ValueError, match=rf"^{name} must be "):
        Schedule(**{name: value}).check()


@pytest.mark.parametrize("name, value", SCHEDULE_CASES, ids=[case_id(c) for c in SCHEDULE_CASES])
def test_fit_refuses_a_bad_value_of_every_schedule_parameter_naming_it(monkeypatch, name, value):
    import metaloss_sk.search as search_module

    monkeypatch.setattr(search_module, "Evaluator", lambda *a, **k: pytest.fail("trained before the check"))
    X, y = iris()
    search = LossSearchCV(classifier(), schedule=Schedule(**{name: value}), **SMALL)
    with pytest.raises(ValueError, match=rf"^{name} must be "):
        search.fit(X, y)


def test_check_refuses_a_fitness_budget_longer_than_the_final_one():
    with pytest.raises(ValueError, match="^min_resources=10 exceeds max_resources=5"):
        Schedule(min_resources=10, max_resources=5).check()
    assert Schedule(min_resources=5, max_resources=5).check().min_resources == 5
