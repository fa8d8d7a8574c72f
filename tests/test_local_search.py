"""metaloss_sk.local_search: the LocalSearch settings and the local search through a skorch net."""

import numpy as np
import pytest
from conftest import bad_values, case_id, classifier, iris

from metaloss_sk import LocalSearch, LossSearchCV, SymbolicLoss

#: These networks are tiny: on a busy machine, spinning OpenMP workers make multi-threaded tiny kernels many
#: times slower, never faster.
pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_skorch_local_search_screens_checkpoints_at_a_fraction_of_the_budget(monkeypatch):
    from conftest import classifier, iris

    from metaloss_sk.local_search import LocalSearch, local_search_losses
    from metaloss_sk.training import Budget, Trainer

    budgets = []
    fit = Trainer.fit

    def spy(self, losses, X, y, budget, seed, **params):
        budgets.append((budget.steps(len(X), 32), len(losses)))
        return fit(self, losses, X, y, budget, seed, **params)

    monkeypatch.setattr(Trainer, "fit", spy)
    X, y = iris()  # 120 training rows of 150, batches of 32: 4 steps an epoch, 24 in 6 epochs
    for screen_factor, expected in ((3, 8), (None, 24)):
        budgets.clear()
        settings = LocalSearch(meta_steps=6, meta_lr=0.2, n_checkpoints=3, screen_factor=screen_factor)
        (result,) = local_search_losses(Trainer(classifier()), lambda net, X, y: net.score(X, y), [SymbolicLoss()],
                                  X, y, 0, settings, Budget(6))
        assert budgets[:1] == [(expected, 4)]  # the start and three checkpoints, together
        assert budgets[1:] == ([(24, 2)] if result.confirmed else [])
        assert len(result.checkpoints) == 4
    with pytest.raises(ValueError, match="screen_factor"):
        LocalSearch(screen_factor=1).check()


def test_the_local_search_keeps_no_coefficients_that_make_the_loss_singular():
    from conftest import classifier, iris

    from metaloss_sk.filters import gradient_violations
    from metaloss_sk.local_search import LocalSearch, local_search_losses
    from metaloss_sk.training import Budget, Trainer

    # log|y + yhat - 1| is singular at yhat = 1 for y = 0: a coefficient on yhat above the one on
    # the constant moves the singular point inside (0, 1).
    X, y = iris()
    loss = SymbolicLoss("neg(mul(y, log(add(add(y, yhat), -1.0))))")
    for checkpoints in (0, 4):  # the last coefficients, unvalidated, are singular here
        settings = LocalSearch(meta_steps=8, meta_lr=0.05, n_checkpoints=checkpoints)
        (result,) = local_search_losses(Trainer(classifier()), lambda net, X, y: net.score(X, y), [loss], X, y, 0,
                                  settings, Budget(4), gradient_bound=10)
        assert gradient_violations([result.loss], 10) == [None]


def test_the_skorch_local_search_validates_by_training_the_net():
    from conftest import classifier, iris

    from metaloss_sk.local_search import LocalSearch, local_search_losses
    from metaloss_sk.training import Budget, Trainer

    X, y = iris()
    settings = LocalSearch(meta_steps=6, meta_lr=0.2, n_checkpoints=3, screen_factor=None)  # each at Budget(4)
    (result,) = local_search_losses(Trainer(classifier()), lambda net, X, y: net.score(X, y), [SymbolicLoss()], X, y,
                              0, settings, Budget(4))
    scores = [score for _, score in result.checkpoints]
    assert len(scores) == 4 and all(0 <= s <= 1 for s in scores)
    # The returned coefficients are the best checkpoint's: retrained on the local search's own
    # split (20 % of the rows held out, drawn from the seed), they score its best score.
    order = np.random.RandomState(0).permutation(len(X))
    valid, train = order[:30], order[30:]
    ((net, failure),) = Trainer(classifier()).fit([result.loss], X[train], y[train], Budget(4), 0)
    assert failure is None and net.score(X[valid], y[valid]) == pytest.approx(max(scores))


def test_local_search_settings_are_checked_and_route_through_get_params():
    from metaloss_sk import LocalSearch, LossSearchCV

    with pytest.raises(ValueError, match="meta_steps"):
        LocalSearch(meta_steps=0).check()
    with pytest.raises(ValueError, match="candidates"):
        LocalSearch(candidates="some").check()
    search = LossSearchCV(None, local_search=LocalSearch())
    search.set_params(local_search__meta_steps=7)
    assert search.get_params()["local_search__meta_steps"] == 7


LOCAL_SEARCH_CASES = bad_values(LocalSearch._parameter_constraints)


@pytest.mark.parametrize("name, value", LOCAL_SEARCH_CASES, ids=[case_id(c) for c in LOCAL_SEARCH_CASES])
def test_check_refuses_a_bad_value_of_every_parameter_naming_it(name, value):
    with pytest.raises(ValueError, match=rf"^{name} must be "):
        LocalSearch(**{name: value}).check()


@pytest.mark.parametrize("name, value", LOCAL_SEARCH_CASES, ids=[case_id(c) for c in LOCAL_SEARCH_CASES])
def test_fit_refuses_a_bad_value_of_every_local_search_parameter_naming_it(monkeypatch, name, value):
    import metaloss_sk.search as search_module

    monkeypatch.setattr(search_module, "Evaluator", lambda *a, **k: pytest.fail("trained before the check"))
    X, y = iris()
    search = LossSearchCV(classifier(), local_search=LocalSearch(**{name: value}), generations=1, cv=2)
    with pytest.raises(ValueError, match=rf"^{name} must be "):
        search.fit(X, y)
