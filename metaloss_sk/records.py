"""What the search records of a candidate: its outcome, its results per training budget, its row; and the counters.

An :class:`Outcome` (a status and its message) is the one record of whether a
candidate trained well. A :class:`~metaloss_sk.fit_and_score.FoldResult` (one fold,
one weight seed) carries one; a :class:`Rung` (every fold at one budget)
carries the first failure among its fold results; a :class:`Row` (one
distinct program) has the outcome of its last rung, or the filters' verdict
if it never trained. All three read ``status`` and ``message`` through
(:class:`Reported`). :data:`COUNTS` and :data:`TOTALS` name the search's
counters once. Plain data: nothing here trains, and the checkpoint's JSON of
these records is :mod:`metaloss_sk.checkpoint`'s.
"""

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Outcome", "OK", "Reported", "Rung", "Row", "COUNTS", "TOTALS"]

#: One generation's counters (``history_``'s keys, in this order, before the scores) and their zeros.
COUNTS = {"proposed": 0, "cache_hits": 0, "equivalent": 0, "rejected": 0, "trained": 0, "promoted": 0,
          "failures": 0, "fit_time": 0.0, "local_search_time": 0.0, "filter_time": 0.0, "fold_fits": 0,
          "meta_nan_steps": 0, "train_time": 0.0}
#: The evaluator's running totals: every generation's counters but ``proposed``, and the final selection's ladder.
TOTALS = ("cache_hits", "equivalent", "rejected", "trained", "promoted", "failures", "meta_nan_steps", "filter_time",
          "train_time", "fit_time", "local_search_time", "fold_fits", "ladder_fits", "ladder_time")


@dataclass(frozen=True)
class Outcome:
    """Whether a candidate trained well, and if not, why.

    Attributes
    ----------
    status : str
        "ok"; "nan" (its loss or score turned non-finite), "chance" (it
        scored no better than a constant prediction), "error" (it raised) or
        "rejected" (the filters kept it from training).
    message : str
        The reason, for every status but "ok".
    """

    status: str = "ok"
    message: str = ""

    @property
    def ok(self):
        return self.status == "ok"

    @staticmethod
    def first_failure(outcomes):
        """The first of ``outcomes`` that is not ok; :data:`OK` if none is."""
        return next((o for o in outcomes if not o.ok), OK)


#: A candidate that trained well.
OK = Outcome()


class Reported:
    """A record with an ``outcome``: its ``status`` and ``message`` read through."""

    @property
    def status(self):
        return self.outcome.status

    @property
    def message(self):
        return self.outcome.message


@dataclass
class Rung(Reported):
    """A program's cross-validated result at one training budget."""

    n_resources: int  # optimizer steps per net (on the first fold)
    scores: list  # per fold, the mean over the weight seeds
    n_seeds: int = 1
    fit_time: float = 0.0  # per fold, mean
    outcome: Outcome = OK  # the first failure among its fold results
    other_scores: dict = field(default_factory=dict)  # metric name -> per fold, the mean over the seeds

    @property
    def mean(self):
        """Mean score over the folds; NaN if any fold (or seed) failed."""
        return float(np.mean(self.scores)) if self.outcome.ok else math.nan

    @property
    def std(self):
        return float(np.std(self.scores)) if self.outcome.ok else math.nan


@dataclass(eq=False)
class Row(Reported):
    """One distinct program: where it came from and its results at every rung it reached."""

    program: object  # Program
    loss: object  # SymbolicLoss, without coefficients
    generation: int
    rungs: list = field(default_factory=list)
    rejection: Outcome | None = None  # the filters' verdict, if they kept it from training
    equivalent_to: str = ""  # the program whose evaluation this one shares
    fold_coefficients: list | None = None  # per fold, learned by the local search at rung 0

    @property
    def outcome(self):
        """The filters' rejection if any, else the outcome of its last rung (:data:`OK` before any)."""
        if self.rejection is not None:
            return self.rejection
        return self.last.outcome if self.rungs else OK

    @property
    def last(self):
        return self.rungs[-1] if self.rungs else None

    @property
    def score(self):
        """The mean score at the highest rung reached (NaN if it failed or never trained)."""
        return self.last.mean if self.last is not None and self.outcome.ok else math.nan
