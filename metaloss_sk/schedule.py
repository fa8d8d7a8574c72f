"""Every training budget of a search, worked out once: :class:`Schedule` (settings) and :class:`Plan`.

A search trains nets for several budgets: the screening inside each
generation, the fitness budget, the rungs of the final selection up to the
final budget (where the learning rate is tuned and the winner chosen). A
:class:`Schedule` holds the user's settings (a nested estimator of
:class:`~metaloss_sk.LossSearchCV`, ``schedule__*`` in a grid);
:meth:`Schedule.plan` turns them, the net and a fold's number of training
rows into a frozen :class:`Plan` that the other modules receive.
"""

from dataclasses import dataclass
from numbers import Integral, Real

from sklearn.base import BaseEstimator

from ._validation import Interval, Options, check
from .training import Budget

__all__ = ["EVOMAL_STEPS", "Plan", "Schedule"]

#: EvoMAL's fitness budget: optimizer steps per candidate.
EVOMAL_STEPS = 500


@dataclass(frozen=True)
class Plan:
    """The budgets of one search, each a :class:`~metaloss_sk.training.Budget`.

    Attributes
    ----------
    n_train, batch_size : int
        A fold's training rows (the first fold's) and the net's batch size
        (-1: all rows): what a budget's optimizer steps are counted over.
    fitness : Budget
        The genetic search's fitness budget.
    rungs : tuple of Budget
        The final selection's rungs, ``factor`` times longer each; the last
        is the final budget (:attr:`final`).
    screening : Budget or None
        The screening budget inside every generation, or None.
    factor : float
        The rungs' ratio, and the share (``1 / factor``) a rung promotes.
    n_finalists, final_seeds : int
        Programs at the final rung (besides the seeds), and weight seeds per fold there.
    """

    n_train: int
    batch_size: int
    fitness: Budget
    rungs: tuple
    screening: Budget | None = None
    factor: float = 3
    n_finalists: int = 3
    final_seeds: int = 2

    @property
    def final(self):
        """The final budget: the net's own, where the winner is chosen and the rate tuned."""
        return self.rungs[-1]

    @property
    def searched(self):
        """The genetic search's budgets: the screening's (if any), then the fitness budget."""
        return [self.fitness] if self.screening is None else [self.screening, self.fitness]

    def steps(self, budget):
        """Optimizer steps of ``budget`` over a fold's training rows."""
        return int(budget.steps(self.n_train, self.batch_size))


class Schedule(BaseEstimator):
    """Settings of the training budgets of a search, in optimizer steps per net.

    Parameters
    ----------
    min_resources : "auto" or int, default="auto"
        The fitness budget of the genetic search: optimizer steps each
        candidate trains for on each fold. "auto" is EvoMAL's 500, or the
        final budget if that is smaller.
    max_resources : "auto" or int, default="auto"
        The final budget, at which the winner is chosen: optimizer steps, or
        "auto" for the net's own ``max_epochs`` over a fold's training rows.
    factor : float, default=3
        Each rung of the final selection trains ``factor`` times longer than
        the one before, with a ``factor`` times smaller field, from the
        fitness budget up to the final one.
    screening : "auto", int or None, default="auto"
        A rung below the fitness budget inside every generation: each new
        program first trains for this many optimizer steps, without local
        search, and only the best ``1 / factor`` of them (and the seed
        programs) go on to the local search and the fitness budget. The
        others keep their screening score as fitness, below every promoted
        program's, and never enter the final selection. None screens
        nothing. "auto" screens for the fitness budget divided by ``factor``
        where every candidate gets the local search (EvoMAL: a promoted
        program costs about three trainings there, and screening found
        better winners at a third of the time), and not otherwise: without
        the local search it saved a quarter of a GP-LFL search on digits and
        cost 0.5 points of test error (benchmarks/results/screening_quality.md).
    n_finalists : int, default=3
        Programs at the final rung (besides the seed programs).
    final_seeds : int, default=2
        Weight seeds per fold at the final rung (and for the learning-rate
        tuning's best rates).

    Examples
    --------
    >>> from metaloss_sk import Schedule
    >>> Schedule(min_resources=100).get_params()["min_resources"]
    100
    """

    _parameter_constraints = {
        "min_resources": [Options(("auto",)), Interval(Integral, 1)],
        "max_resources": [Options(("auto",)), Interval(Integral, 1)],
        "factor": [Interval(Real, 1, None, closed="neither")],
        "screening": [Options(("auto",)), Interval(Integral, 1), None],
        "n_finalists": [Interval(Integral, 1)],
        "final_seeds": [Interval(Integral, 1)],
    }

    def __init__(self, min_resources="auto", max_resources="auto", factor=3, screening="auto", n_finalists=3,
                 final_seeds=2):
        self.min_resources = min_resources
        self.max_resources = max_resources
        self.factor = factor
        self.screening = screening
        self.n_finalists = n_finalists
        self.final_seeds = final_seeds

    def check(self):
        """Raise ``ValueError`` naming the first setting that is out of range, alone or with another."""
        check(self.get_params(), self._parameter_constraints)
        if isinstance(self.max_resources, Integral) and isinstance(self.min_resources, Integral) \
                and self.min_resources > self.max_resources:
            raise ValueError(f"min_resources={self.min_resources} exceeds max_resources={self.max_resources}; "
                             "the fitness budget cannot be longer than the final one.")
        return self

    def plan(self, net, n_train, local_search_every=False):
        """The :class:`Plan` for ``net`` on folds of ``n_train`` training rows.

        ``local_search_every``: every candidate gets the local search (then
        ``screening="auto"`` screens).
        """
        batch_size = net.batch_size
        final = Budget(net.max_epochs) if self.max_resources == "auto" else Budget(net.max_epochs,
                                                                                   self.max_resources)
        final_steps = final.steps(n_train, batch_size)
        steps = EVOMAL_STEPS if self.min_resources == "auto" else self.min_resources
        fitness = final if steps >= final_steps else Budget(net.max_epochs, steps)
        fitness_steps = fitness.steps(n_train, batch_size)
        screening = None
        if self.screening is not None and (self.screening != "auto" or local_search_every):
            screening = (fitness.shortened(self.factor, n_train, batch_size) if self.screening == "auto"
                         else Budget(net.max_epochs, self.screening))
            if screening.max_steps >= fitness_steps:
                raise ValueError(f"screening={self.screening!r} gives {screening.max_steps} optimizer steps, not "
                                 f"fewer than the fitness budget's {fitness_steps} "
                                 f"(min_resources={self.min_resources!r}): give fewer steps, or screening=None.")
        # Counted down from the final budget, so that no rung comes within a factor of the fitness
        # budget, which the genetic search measured already.
        rungs, rung_steps = [final], final_steps / self.factor
        while rung_steps >= fitness_steps * self.factor:
            rungs.insert(0, Budget(net.max_epochs, int(round(rung_steps))))
            rung_steps /= self.factor
        return Plan(n_train=int(n_train), batch_size=batch_size, fitness=fitness, rungs=tuple(rungs),
                    screening=screening, factor=self.factor, n_finalists=self.n_finalists,
                    final_seeds=self.final_seeds)


