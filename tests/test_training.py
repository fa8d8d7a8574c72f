"""metaloss_sk.training: the fast loop trains as skorch's fit does, and nets it cannot honour fall back."""

import numpy as np
import pytest
from conftest import classifier, iris

from metaloss_sk import Evolution, LossSearchCV

SMALL = dict(generations=2, cv=2, random_state=0, evolution=Evolution(population_size=5, rejection_steps=50))


def test_fast_loop_trains_like_skorch_fit():
    # Without shuffling both loops see the same batches, so the scores agree. skorch's loop trains whole
    # epochs, so the learning-rate ladder's first rung (4 steps, not a whole number of 3-step epochs) is
    # left out: search_lr="net".
    X, y = iris()
    net = classifier(iterator_train__shuffle=False)
    fast = LossSearchCV(net, train_loop="fast", refit=False, search_lr="net", **SMALL).fit(X, y).cv_results_
    slow = LossSearchCV(net, train_loop="skorch", refit=False, search_lr="net", **SMALL).fit(X, y).cv_results_
    assert list(fast["program"]) == list(slow["program"])
    np.testing.assert_allclose(fast["mean_test_score"], slow["mean_test_score"], atol=1e-12)


def test_net_with_callbacks_falls_back_to_skorch_fit():
    from skorch.callbacks import GradientNormClipping
    X, y = iris()
    net = classifier(callbacks=[GradientNormClipping(1.0)], lr=0.5)
    with pytest.raises(ValueError, match="has callbacks"):
        LossSearchCV(net, train_loop="fast", **SMALL).fit(X, y)
    search = LossSearchCV(net, refit=False, **SMALL).fit(X, y)
    assert (search.cv_results_["status"] == "ok").any()
