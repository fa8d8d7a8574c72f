"""metaloss_sk.fit_and_score: one candidate scored on one fold (training, scoring, chance level, failures)."""

import numpy as np
from conftest import classifier, iris

from metaloss_sk import SymbolicLoss
from metaloss_sk.fit_and_score import FitAndScore, fit_and_score
from metaloss_sk.training import Budget, Trainer

CE = "neg(mul(y, log(yhat)))"


def accuracy(net, X, y):
    return net.score(X, y)


def test_fit_and_score_scores_every_loss_of_a_group_as_it_would_alone():
    X, y = iris()
    train, test = np.arange(0, 150, 2), np.arange(1, 150, 2)
    evaluation = FitAndScore(Trainer(classifier()), "multiclass", accuracy)
    losses = [SymbolicLoss(CE), SymbolicLoss("square(sub(y, yhat))")]
    together = fit_and_score(evaluation, losses, X, y, train, test, Budget(4), 0)
    alone = [fit_and_score(evaluation, [loss], X, y, train, test, Budget(4), 0)[0] for loss in losses]
    assert [r.score for r in together] == [r.score for r in alone]
    assert all(r.status == "ok" for r in together)
    lr = fit_and_score(evaluation, losses[:1], X, y, train, test, Budget(4), 0, params={"lr": 1e-6})
    assert lr[0].score != together[0].score  # settings of the net can be overridden per call


def test_a_score_that_overflows_is_recorded_without_a_warning():
    import warnings

    from metaloss_sk.fit_and_score import FitAndScore, fit_and_score
    from metaloss_sk.training import Budget, Trainer

    X, y = iris()
    train, test = np.arange(0, 150, 2), np.arange(1, 150, 2)

    def overflowing(net, X, y):  # what r2_score does with a diverged regressor's outputs
        return np.float32(1e30) * np.float32(1e30)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        evaluation = FitAndScore(Trainer(classifier()), "multiclass", overflowing)
        (result,) = fit_and_score(evaluation, [SymbolicLoss("neg(mul(y, log(yhat)))")], X, y, train, test,
                                        Budget(max_epochs=1), 0)
    assert result.status == "nan" and result.message == "the score is not finite"


def test_chance_level_is_measured_with_the_search_scorer():
    X, y = iris()
    train, test = np.arange(0, 150, 2), np.arange(1, 150, 2)
    evaluation = FitAndScore(Trainer(classifier()), "multiclass", lambda net, X, y: net.score(X, y))
    anti, usual = fit_and_score(evaluation, [SymbolicLoss("mul(y, log(yhat))"), SymbolicLoss(CE)], X, y,
                                      train, test, Budget(4), 0)
    assert anti.status == "chance" and anti.score <= 1 / 3  # the measured score is kept
    assert usual.status == "ok" and usual.score > 1 / 3
