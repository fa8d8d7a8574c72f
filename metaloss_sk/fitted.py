"""What a fitted :class:`~metaloss_sk.LossSearchCV` offers beside its attributes.

Predictions through ``best_estimator_`` (as ``GridSearchCV`` delegates to
its ``best_estimator_``, each method there only when the net has it), the
hall of fame's losses, the results as a table and as pictures, and the found
loss as standalone PyTorch source.
"""

from numbers import Integral

import numpy as np
from sklearn.base import clone
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from .export import to_torch_source
from .loss import SymbolicLoss

__all__ = ["FittedSearchMixin"]


def _estimator_has(attr):
    def check(self):
        return hasattr(self.best_estimator_ if hasattr(self, "best_estimator_") else self.estimator, attr)
    return check


class FittedSearchMixin:
    """Methods of a fitted search; the search sets ``_inputs`` (an :class:`~metaloss_sk.inputs.Inputs`) and
    ``_scorer`` in ``fit``."""

    # -------------------------------------------------------------- results
    def results_frame(self):
        """The hall of fame as a pandas DataFrame (program, infix, sympy, complexity, scores)."""
        from .plotting import results_frame
        return results_frame(self)

    def plot_progress(self, ax=None):
        """Best and median CV score per generation (matplotlib)."""
        from .plotting import plot_progress
        return plot_progress(self, ax=ax)

    def plot_pareto(self, ax=None):
        """CV score against program length, with the Pareto front (matplotlib)."""
        from .plotting import plot_pareto
        return plot_pareto(self, ax=ax)

    def loss(self, rank=1):
        """The hall of fame's ``rank``-th loss (1 is the best) as a :class:`SymbolicLoss`.

        With learned coefficients where :meth:`fit_refine` kept some (the
        best loss is ``best_loss_`` itself, coefficients and all). Use it as
        ``best_loss_`` is used: ``net.set_params(criterion=search.loss(2))``.
        """
        check_is_fitted(self, "hall_of_fame_")
        if isinstance(rank, bool) or not isinstance(rank, Integral) or not 1 <= rank <= len(self.hall_of_fame_):
            raise ValueError(f"rank must be an integer from 1 to {len(self.hall_of_fame_)} (the hall of fame's "
                             f"size), got {rank!r}.")
        entry = self.hall_of_fame_[rank - 1]
        if entry["program"] == str(self.best_loss_.program_):  # with its coefficients, if it learned some
            return clone(self.best_loss_)
        return SymbolicLoss(entry["program"], task=self.best_loss_.task, link=self.best_loss_.link,
                            coefficients=entry.get("coefficients"))

    def export_torch(self, name="learned_loss"):
        """Source of a standalone PyTorch function computing ``best_loss_`` (no metaloss_sk needed)."""
        check_is_fitted(self, "best_loss_")
        return to_torch_source(self.best_loss_, name)

    # ----------------------------------------------------------- delegation
    def _check_X(self, X):
        """``X`` as the net takes it; first, as every delegating method, a ``NotFittedError`` before ``fit``."""
        check_is_fitted(self, "best_estimator_")
        return self._inputs.rows(self, X)

    @available_if(_estimator_has("predict"))
    def predict(self, X):
        """Predict with ``best_estimator_`` (labels mapped back to ``classes_``)."""
        X = self._check_X(X)
        return self._inputs.decode(self.best_estimator_.predict(X))

    @available_if(_estimator_has("predict_proba"))
    def predict_proba(self, X):
        """Class probabilities from ``best_estimator_``."""
        X = self._check_X(X)
        return self.best_estimator_.predict_proba(X)

    @available_if(_estimator_has("predict_proba"))
    def predict_log_proba(self, X):
        """Log of :meth:`predict_proba`."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    @available_if(_estimator_has("forward"))
    def forward(self, X):
        """Raw module outputs of ``best_estimator_`` as a tensor."""
        X = self._check_X(X)
        return self.best_estimator_.forward(X)

    def score(self, X, y):
        """Score ``best_estimator_`` on ``(X, y)`` with the search's scorer."""
        X = self._check_X(X)
        return float(self._scorer(self.best_estimator_, X, self._inputs.encode(np.asarray(y))))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.estimator_type = getattr(self.estimator, "_estimator_type", None)
        try:
            inner = self.estimator.__sklearn_tags__()
            tags.estimator_type = inner.estimator_type
            tags.classifier_tags = inner.classifier_tags
            tags.regressor_tags = inner.regressor_tags
        except AttributeError:
            pass
        tags.input_tags.sparse = False
        return tags
