"""scikit-learn's estimator checks on a tiny search."""

import torch
from sklearn.utils.estimator_checks import check_estimator
from skorch import NeuralNetClassifier

from metaloss_sk import LossSearchCV

FIXED_OUTPUTS = ("the tiny module has a fixed number of outputs (3), as skorch modules fix the number "
                 "of classes at construction; data with other class counts cannot be predicted back")


class AnyInputs(torch.nn.Module):
    """A linear model that adapts to any number of features (LazyLinear)."""

    def __init__(self, n_out=3):
        super().__init__()
        self.linear = torch.nn.LazyLinear(n_out)

    def forward(self, x):
        return self.linear(x.reshape(len(x), -1))


def test_check_estimator_passes_but_for_the_listed_reasons():
    net = NeuralNetClassifier(AnyInputs, max_epochs=2, lr=0.1, train_split=None, verbose=0)
    search = LossSearchCV(net, population_size=3, tournament_size=2, generations=1, cv=2, random_state=0)
    expected = {
        "check_estimators_dtypes": FIXED_OUTPUTS,
        "check_dtype_object": FIXED_OUTPUTS,
        "check_classifiers_classes": FIXED_OUTPUTS,
        "check_classifiers_train": FIXED_OUTPUTS,
        "check_classifier_data_not_an_array": FIXED_OUTPUTS,
    }
    results = check_estimator(search, expected_failed_checks=expected, on_fail=None)
    failed = {r["check_name"] for r in results if r["status"] == "failed" and r["check_name"] not in expected}
    assert failed == set(), failed


def test_a_search_runs_with_metadata_routing_on_and_unrequested_weights_are_refused():
    import numpy as np
    import pytest
    import sklearn
    from conftest import classifier, iris
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = iris()
    kw = dict(population_size=5, cv=2, random_state=0, rejection_steps=50, generations=1)
    with sklearn.config_context(enable_metadata_routing=True):
        search = LossSearchCV(make_pipeline(StandardScaler(), classifier()), scoring="accuracy", **kw).fit(X, y)
        assert search.best_score_ > 0.5
        # The search consumes no metadata: sklearn itself names weights nobody asked for.
        with pytest.raises(TypeError, match="sample_weight.*not routed"):
            GridSearchCV(LossSearchCV(classifier(), **kw), {"factor": [3]}, cv=2).fit(X, y, sample_weight=np.ones(150))
