"""metaloss_sk.fitted: what a fitted search offers (predictions through best_estimator_, the hall of fame's
losses, export), and a NotFittedError from each before fit."""

import numpy as np
import pytest
import torch
from conftest import classifier, iris
from sklearn.exceptions import NotFittedError

from metaloss_sk import Evolution, LossSearchCV, SymbolicLoss

SMALL = dict(generations=2, cv=2, random_state=0, evolution=Evolution(population_size=5, rejection_steps=50))


@pytest.fixture(scope="module")
def fitted():
    X, y = iris()
    labels = np.array(["setosa", "versicolor", "virginica"])[y]  # predict maps the encoding back
    return LossSearchCV(classifier(), **SMALL).fit(X, labels), X, labels


def test_predictions_go_through_best_estimator_and_come_back_as_the_users_labels(fitted):
    search, X, labels = fitted
    assert set(search.predict(X)) <= set(labels) and search.predict(X).dtype == labels.dtype
    proba = search.predict_proba(X)
    assert proba.shape == (len(X), 3)
    with np.errstate(divide="ignore"):
        np.testing.assert_allclose(search.predict_log_proba(X), np.log(proba))
    out = search.forward(X)
    assert isinstance(out, torch.Tensor) and out.shape == (len(X), 3)
    assert search.score(X, labels) == pytest.approx(np.mean(search.predict(X) == labels))


def test_every_hall_of_fame_entry_is_a_usable_loss(fitted):
    search, X, y = fitted
    assert str(search.loss(1)) == str(search.best_loss_)
    for rank, entry in enumerate(search.hall_of_fame_, 1):
        loss = search.loss(rank)
        assert isinstance(loss, SymbolicLoss) and str(loss.program_) == entry["program"]
    with pytest.raises(ValueError, match="rank must be an integer from 1"):
        search.loss(len(search.hall_of_fame_) + 1)


def test_the_exported_source_computes_the_found_loss(fitted):
    search = fitted[0]
    namespace = {}
    exec(search.export_torch("found"), namespace)  # noqa: S102 - the package's own generated source
    outputs, target = torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2])
    torch.testing.assert_close(namespace["found"](outputs, target), search.best_loss_(outputs, target))


@pytest.mark.parametrize("method", ["predict", "predict_proba", "predict_log_proba", "forward", "score", "loss",
                                    "export_torch"])
def test_every_method_raises_not_fitted_before_fit(method):
    X, y = iris()
    args = {"score": (X, y), "loss": (), "export_torch": ()}.get(method, (X,))
    with pytest.raises(NotFittedError):
        getattr(LossSearchCV(classifier(), **SMALL), method)(*args)
