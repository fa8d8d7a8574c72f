"""The genetic programming: its settings (:class:`Evolution`), and which programs to try next.

:class:`Evolution` is a nested estimator of :class:`~metaloss_sk.LossSearchCV`
(``evolution=Evolution(...)``, ``evolution__*`` in a grid): the programs
proposed, how they vary, and which proposals are trained at all. The functions
are pure functions of programs, fitness values and a numpy random state (no
torch); variation uses gplearn's operators through
:class:`~metaloss_sk.program.SearchSpace`.
"""

import time
import warnings
from dataclasses import dataclass, replace
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator

from ._validation import InstanceOf, Interval, Numbers, Options, Pair, Range, check
from .primitives import EVOMAL_FUNCTION_SET
from .program import SearchSpace

__all__ = ["Evolution", "Stopping", "evolve", "initial_population", "tournament", "next_generation"]


class Evolution(BaseEstimator):
    """Settings of the genetic programming over loss programs (gplearn's names, EvoMAL's defaults).

    The first group says which programs are proposed and how they vary; the
    last three which proposals are trained at all (see "Filters" in the user
    guide): every other setting of a search is on
    :class:`~metaloss_sk.LossSearchCV`.

    Parameters
    ----------
    population_size : int, default=25
        Programs per generation.
    tournament_size : int, default=4
        Programs competing in each selection tournament.
    function_set : sequence of str, default=EVOMAL_FUNCTION_SET
        Primitives new programs are built from (see ``metaloss_sk.PRIMITIVES``).
    constants : sequence of float, default=(1.0, -1.0)
        Fixed constants offered as terminals (EvoMAL uses +1 and -1).
    const_range : tuple of two floats or None, default=None
        Range of gplearn's random constants, or None for none.
    init_depth : tuple of two ints, default=(2, 4)
        Height range of the initial programs.
    init_method : {"half and half", "grow", "full"}, default="half and half"
        gplearn's initialisation method.
    max_height : int, default=10
        An offspring taller than this is replaced by its parent.
    p_crossover, p_subtree_mutation, p_hoist_mutation, p_point_mutation : float
        Probabilities of the genetic operators (defaults 0.7, 0.25, 0, 0); the
        remainder is reproduction.
    p_point_replace : float, default=0.05
        Per-node replacement probability of point mutation.
    mutation_depth : tuple of two ints, default=(0, 2)
        Height range of subtrees grown by subtree mutation.
    parsimony_coefficient : float, default=0.0
        Subtracted per program node from the score when selecting parents.
    elitism : int, default=1
        Number of best distinct programs copied unchanged into each generation
        (the reference configures but never applies it).
    equivalence : {"none", "exact", "symbolic", "gradient"}, default="gradient"
        Which programs share one evaluation: none ("none": every proposed
        program that passes the gradient checks is trained, a repeat again,
        with the same seeds and so the same scores; a baseline for what the
        cache saves); identical text only ("exact", the reference's cache);
        also programs with the same sympy canonical form ("symbolic"); also
        programs with the same gradient with respect to the network's
        outputs on 100 probe rows of the first fold ("gradient": losses that
        differ by a constant, for instance). Whatever the setting, a loss
        whose gradient there is zero or not finite is rejected without
        training. With a local search on every candidate, where equal
        functions of different shapes learn different coefficients,
        "symbolic" and "gradient" share only programs that differ by swapped
        arguments of commutative primitives (``add``, ``mul``, ``min``,
        ``max``).
    gradient_bound : float or None, default=10
        A program whose gradient with respect to the net's outputs is not
        finite, or steeper than this many times the usual loss's steepest,
        anywhere on a grid over the outputs it can meet (probabilities in
        [0, 1]; standardised targets and outputs in [-4, 4] for regression)
        is rejected before any training, and the local search keeps no
        coefficients that make a loss so. None turns the check off. At 10,
        squared-log losses such as ``(log(y + yhat - 1) - ...)^2``, which
        learn fast at a short budget but diverged on LeNet-5 in the quality
        benchmark (their gradient is 30 to 40 times cross-entropy's near
        ``yhat = 0``), are rejected.
    rejection_steps : int, default=250
        EvoMAL's rejection protocol, run before any training: the probe
        rows' outputs are optimised directly for up to this many Adam steps
        (lr 0.01), and a loss that does not lower the task error there is
        rejected. 0 turns it off. EvoMAL uses 1000; on 300 random programs on
        digits, 250 rejected exactly the same ones at a quarter of the cost.

    Examples
    --------
    >>> from metaloss_sk import Evolution
    >>> Evolution(population_size=10).get_params()["population_size"]
    10
    """

    _parameter_constraints = {
        "population_size": [Interval(Integral, 2)],
        "tournament_size": [Interval(Integral, 1)],
        "function_set": [InstanceOf((list, tuple))],
        "constants": [Numbers()],
        "const_range": [Range(), None],
        "init_depth": [Pair(1)],
        "init_method": [Options(("half and half", "grow", "full"))],
        "max_height": [Interval(Integral, 1)],
        "p_crossover": [Interval(Real, 0, 1)],
        "p_subtree_mutation": [Interval(Real, 0, 1)],
        "p_hoist_mutation": [Interval(Real, 0, 1)],
        "p_point_mutation": [Interval(Real, 0, 1)],
        "p_point_replace": [Interval(Real, 0, 1)],
        "mutation_depth": [Pair(0)],
        "parsimony_coefficient": [Interval(Real, 0)],
        "elitism": [Interval(Integral, 0)],
        "equivalence": [Options(("none", "exact", "symbolic", "gradient"))],
        "gradient_bound": [Interval(Real, 0, None, closed="neither"), None],
        "rejection_steps": [Interval(Integral, 0)],
    }

    def __init__(self, population_size=25, tournament_size=4, function_set=EVOMAL_FUNCTION_SET,
                 constants=(1.0, -1.0), const_range=None, init_depth=(2, 4), init_method="half and half",
                 max_height=10, p_crossover=0.7, p_subtree_mutation=0.25, p_hoist_mutation=0.0,
                 p_point_mutation=0.0, p_point_replace=0.05, mutation_depth=(0, 2), parsimony_coefficient=0.0,
                 elitism=1, equivalence="gradient", gradient_bound=10.0, rejection_steps=250):
        self.population_size = population_size
        self.tournament_size = tournament_size
        self.function_set = function_set
        self.constants = constants
        self.const_range = const_range
        self.init_depth = init_depth
        self.init_method = init_method
        self.max_height = max_height
        self.p_crossover = p_crossover
        self.p_subtree_mutation = p_subtree_mutation
        self.p_hoist_mutation = p_hoist_mutation
        self.p_point_mutation = p_point_mutation
        self.p_point_replace = p_point_replace
        self.mutation_depth = mutation_depth
        self.parsimony_coefficient = parsimony_coefficient
        self.elitism = elitism
        self.equivalence = equivalence
        self.gradient_bound = gradient_bound
        self.rejection_steps = rejection_steps

    def check(self):
        """Raise ``ValueError`` naming the first setting that is out of range, alone or with another."""
        check(self.get_params(), self._parameter_constraints)
        if self.tournament_size > self.population_size:
            raise ValueError(f"tournament_size={self.tournament_size} is larger than "
                             f"population_size={self.population_size}; lower it or grow the population.")
        total = self.p_crossover + self.p_subtree_mutation + self.p_hoist_mutation + self.p_point_mutation
        if total > 1 + 1e-12:
            raise ValueError(f"p_crossover + p_subtree_mutation + p_hoist_mutation + p_point_mutation "
                             f"= {total:g} exceeds 1; the remainder is the reproduction probability.")
        if self.max_height < self.init_depth[1]:
            raise ValueError(f"max_height={self.max_height} is below the initial height "
                             f"init_depth={tuple(self.init_depth)}; raise it to at least {self.init_depth[1]}.")
        if self.elitism >= self.population_size:
            raise ValueError(f"elitism={self.elitism} must be smaller than population_size="
                             f"{self.population_size}, or nothing new is ever tried.")
        self.space()  # the function set's names
        return self

    def space(self):
        """The :class:`~metaloss_sk.program.SearchSpace` of these settings."""
        return SearchSpace(self.function_set, self.constants, self.const_range)


def initial_population(space, size, seeds, random_state, init_depth=(2, 4),
                       init_method="half and half", max_tries=20):
    """Seed programs first, then distinct random valid programs (ramped half-and-half).

    Random programs are redrawn up to ``max_tries`` times to avoid duplicates;
    after that a duplicate is accepted rather than looping forever in a tiny space.
    """
    population = list(dict.fromkeys(seeds))[:size]
    seen = set(population)
    while len(population) < size:
        for _ in range(max_tries):
            program = space.repair(space.random_program(random_state, init_depth, init_method), random_state)
            if program not in seen:
                break
        population.append(program)
        seen.add(program)
    return population


def tournament(fitness, tournament_size, random_state):
    """Index of the fittest of ``tournament_size`` programs drawn uniformly (with replacement)."""
    contenders = random_state.randint(len(fitness), size=tournament_size)
    return int(contenders[np.argmax(fitness[contenders])])


def next_generation(population, fitness, space, settings, random_state):
    """Breed the next population.

    ``settings`` is an :class:`Evolution`. Its ``elitism`` fittest distinct
    programs pass unchanged. Every other child comes from a parent chosen by
    tournament, through crossover, subtree, hoist or point mutation with the
    given probabilities, or reproduction otherwise. A child taller than
    ``max_height`` is replaced by its parent (EvoMAL); a child missing ``y`` or
    ``yhat`` is repaired.

    ``fitness`` is "higher is better" and already includes any parsimony
    penalty; failed programs carry ``-inf``.
    """
    fitness = np.asarray(fitness, dtype=float)
    order = np.argsort(-fitness, kind="stable")
    v = settings
    elite = list(dict.fromkeys(population[i] for i in order))[:v.elitism]
    thresholds = np.cumsum([v.p_crossover, v.p_subtree_mutation, v.p_hoist_mutation, v.p_point_mutation])
    children = list(elite)
    while len(children) < len(population):
        parent = population[tournament(fitness, v.tournament_size, random_state)]
        u = random_state.uniform()
        if u < thresholds[0]:
            donor = population[tournament(fitness, v.tournament_size, random_state)]
            child = space.crossover(parent, donor, random_state)
        elif u < thresholds[1]:
            child = space.subtree_mutation(parent, random_state, tuple(v.mutation_depth))
        elif u < thresholds[2]:
            child = space.hoist_mutation(parent, random_state)
        elif u < thresholds[3]:
            child = space.point_mutation(parent, random_state, v.p_point_replace)
        else:
            child = parent
        child = space.repair(child, random_state)
        if child.depth > v.max_height:
            child = parent
        children.append(child)
    return children


@dataclass(frozen=True)
class Stopping:
    """When the generation loop stops before its last generation (LossSearchCV's settings of the same names).

    ``start`` is the ``time.perf_counter()`` the search started at.
    """

    start: float
    max_time: float | None = None
    n_iter_no_change: int | None = None
    max_evaluations: int | None = None

    def max_new(self, n_trained):
        """How many more programs the next generation may train (None: no limit)."""
        return None if self.max_evaluations is None else max(self.max_evaluations - n_trained, 0)

    def reached(self, stale, n_trained):
        """True once a rule says stop: ``stale`` generations without a better best, ``n_trained`` programs."""
        return ((self.n_iter_no_change is not None and stale >= self.n_iter_no_change)
                or (self.max_time is not None and time.perf_counter() - self.start >= self.max_time)
                or (self.max_evaluations is not None and n_trained >= self.max_evaluations))


def evolve(evaluator, settings, state, generations, stopping, progress, hall_of_fame, save=None):
    """The generation loop: evaluate, report, breed, save, until ``generations`` or a :class:`Stopping` rule.

    ``state`` (a :class:`~metaloss_sk.checkpoint.SearchState`) is updated in
    place; ``save``, if given, receives it (with the evaluator's state) after
    every generation. The next population is bred even after the last
    generation, so a checkpoint can always continue. Returns True if the loop
    was interrupted (Ctrl-C) after at least one evaluation, which it then
    reports as a warning; an interruption before any is raised.
    """
    space = settings.space()
    try:
        for generation in range(state.generation, generations):
            fitness, stats = evaluator.generation(state.population, generation,
                                                  stopping.max_new(evaluator.n_trained))
            elapsed = time.perf_counter() - stopping.start + state.elapsed
            state.history.append({"generation": generation, **stats, "elapsed": elapsed})
            progress.generation(state.history[-1], evaluator.rows.values(), hall_of_fame)
            improved = stats["best_score"] > state.best
            state.best = float(np.fmax(state.best, stats["best_score"]))
            state.stale = 0 if improved else state.stale + 1
            penalty = settings.parsimony_coefficient * np.array([len(p) for p in state.population])
            state.population = next_generation(state.population, fitness - penalty, space, settings, state.rng)
            state.generation = generation + 1
            if save is not None:
                saved = replace(state, elapsed=elapsed)
                saved.record(evaluator)
                save(saved)
            if stopping.reached(state.stale, evaluator.n_trained):
                break
    except KeyboardInterrupt:
        if not evaluator.rows:
            raise
        warnings.warn(
            f"LossSearchCV was interrupted after {len(state.history)} generation(s); the search "
            "stops here and takes the best program at the fitness budget, without the final selection.",
            UserWarning, stacklevel=3)
        return True
    return False
