"""scikit-learn's estimator checks on a tiny search."""

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.utils.estimator_checks import check_estimator
from skorch import NeuralNetClassifier

from metaloss_sk import Evolution, LossSearchCV, Schedule

SHORT_TRAINING = ("two epochs of a linear model do not reach the check's training accuracy of 0.83 on its "
                  "blobs; the tiny configuration keeps the checks fast")


class AnyInputs(torch.nn.Module):
    """A linear model that adapts to any number of features (LazyLinear)."""

    def __init__(self, n_out=3):
        super().__init__()
        self.linear = torch.nn.LazyLinear(n_out)

    def forward(self, x):
        return self.linear(x.reshape(len(x), -1))


class AnyClasses(LossSearchCV):
    """The search, its module's output width set to the number of classes of each fit's ``y``.

    The search refuses a module with more or fewer outputs than classes, and
    the checks fit data of two and of three classes.
    """

    def fit(self, X, y, **fit_params):
        estimator = self.estimator
        try:
            self.estimator = clone(estimator).set_params(module__n_out=len(np.unique(np.asarray(y))))
        except Exception:  # noqa: BLE001 - a y the search itself refuses, with its own message
            pass
        try:
            return super().fit(X, y, **fit_params)
        finally:
            self.estimator = estimator


def test_check_estimator_passes_but_for_the_listed_reasons():
    net = NeuralNetClassifier(AnyInputs, max_epochs=2, lr=0.1, train_split=None, verbose=0)
    search = AnyClasses(net, evolution=Evolution(population_size=3, tournament_size=2), generations=1, cv=2,
                        random_state=0)
    expected = {"check_classifiers_train": SHORT_TRAINING}
    results = check_estimator(search, expected_failed_checks=expected, on_fail=None)
    failed = {r["check_name"] for r in results if r["status"] == "failed" and r["check_name"] not in expected}
    assert failed == set(), failed


def test_a_search_runs_with_metadata_routing_on_and_unrequested_weights_are_refused():
    import numpy as np
    import sklearn
    from conftest import classifier, iris
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = iris()
    kw = dict(evolution=Evolution(population_size=5, rejection_steps=50), cv=2, random_state=0, generations=1)
    with sklearn.config_context(enable_metadata_routing=True):
        search = LossSearchCV(make_pipeline(StandardScaler(), classifier()), scoring="accuracy", **kw).fit(X, y)
        assert search.best_score_ > 0.5
        # The search consumes no metadata: sklearn itself names weights nobody asked for.
        with pytest.raises(TypeError, match="sample_weight.*not routed"):
            GridSearchCV(LossSearchCV(classifier(), schedule=Schedule(), **kw), {"schedule__factor": [3]},
                         cv=2).fit(X, y, sample_weight=np.ones(150))
