"""Which programs to try next: selection, variation, elitism.

Pure functions of programs, fitness values and a numpy random state; no torch.
Variation uses gplearn's operators through :class:`~metaloss_sk.program.SearchSpace`.
"""

from dataclasses import dataclass

import numpy as np

__all__ = ["Variation", "initial_population", "tournament", "next_generation"]


@dataclass(frozen=True)
class Variation:
    """Probabilities and limits of the genetic operators (gplearn's names)."""

    p_crossover: float = 0.7
    p_subtree_mutation: float = 0.25
    p_hoist_mutation: float = 0.0
    p_point_mutation: float = 0.0
    p_point_replace: float = 0.05
    mutation_depth: tuple = (0, 2)
    max_height: int = 10


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


def next_generation(population, fitness, space, variation, random_state, tournament_size=4, elitism=1):
    """Breed the next population.

    The ``elitism`` fittest distinct programs pass unchanged (the reference
    configures but never applies this). Every other child comes from a parent
    chosen by tournament, through crossover, subtree, hoist or point mutation
    with the given probabilities, or reproduction otherwise. A child taller
    than ``max_height`` is replaced by its parent (EvoMAL); a child missing
    ``y`` or ``yhat`` is repaired.

    ``fitness`` is "higher is better" and already includes any parsimony
    penalty; failed programs carry ``-inf``.
    """
    fitness = np.asarray(fitness, dtype=float)
    order = np.argsort(-fitness, kind="stable")
    elite = list(dict.fromkeys(population[i] for i in order))[:elitism]
    v = variation
    thresholds = np.cumsum([v.p_crossover, v.p_subtree_mutation, v.p_hoist_mutation, v.p_point_mutation])
    children = list(elite)
    while len(children) < len(population):
        parent = population[tournament(fitness, tournament_size, random_state)]
        u = random_state.uniform()
        if u < thresholds[0]:
            donor = population[tournament(fitness, tournament_size, random_state)]
            child = space.crossover(parent, donor, random_state)
        elif u < thresholds[1]:
            child = space.subtree_mutation(parent, random_state, v.mutation_depth)
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
