"""Cross-validated fitness of loss programs: cache, filters, parallel dispatch, records.

The search says which programs to score and at which budget; this module
decides which of them need training at all (exact repeats, equivalent
programs and degenerate losses do not), dispatches the rest to
:func:`~metaloss_sk.fit_and_score.fit_and_score` in groups through joblib, and
keeps one :class:`~metaloss_sk.records.Row` per distinct program with its scores at every rung of
training budget it reached. It knows nothing of the search object: it is
built from a frozen :class:`EvaluatorConfig`, the data, the splits and a joblib
``Parallel``, so it can be built and tested alone.
"""

import math
import time
from dataclasses import dataclass, replace

import numpy as np
import torch
from joblib import effective_n_jobs
from sklearn.utils.parallel import delayed

from ._rows import take, to_tensors
from .filters import Probe, commutative_key, gradient_violations, symbolic_key
from .fit_and_score import fit_and_score, single_thread, standardize
from .loss import SymbolicLoss
from .records import COUNTS, TOTALS, Outcome, Row, Rung
from .training import build_net

__all__ = ["EvaluatorConfig", "Evaluator", "Row", "Rung"]

_PROBE_ROWS = 100
#: Tasks a call to ``cross_validate`` is split into at least (where it has the candidates):
#: two workers' worth, whatever ``n_jobs`` is, so that the grouping never follows ``n_jobs``.
_MIN_TASKS = 2


@dataclass(frozen=True)
class EvaluatorConfig:
    """Everything the evaluator needs besides the data.

    Attributes
    ----------
    evaluation : FitAndScore
        What scoring a candidate on a fold means (sent to the workers).
    fold_seeds : tuple of int
        The seed of every fold: its initialisation and batch order.
    plan : Plan
        The search's budgets (:class:`~metaloss_sk.schedule.Plan`): the
        fitness budget (rung 0; rung 1 after a screening), the screening
        budget at which each generation's new programs are screened before
        the best ``1 / factor`` go on (None: every new program goes straight
        to the fitness budget), and the steps a budget means.
    n_jobs : int or None
        Workers (for the rejection protocol's chunks; results do not depend on it).
    candidates_per_task : int
        Most candidates trained together by one task.
    equivalence : {"none", "exact", "symbolic", "gradient"}
        Which programs share one evaluation (see ``LossSearchCV``).
    rejection_steps : int
        Steps of EvoMAL's rejection protocol; 0 turns it off.
    gradient_bound : float or None
        Largest gradient a loss may have on its output domain, in units of the
        usual loss's largest; None turns the check off.
    seed_programs : tuple of str
        Programs never filtered out nor left unpromoted, and never given the
        local search (the usual loss and the known losses the search starts
        from).
    """

    evaluation: object
    fold_seeds: tuple
    plan: object
    n_jobs: object = None
    candidates_per_task: int = 8
    equivalence: str = "gradient"
    rejection_steps: int = 250
    gradient_bound: float | None = 10.0
    seed_programs: tuple = ()


class Evaluator:
    """Scores programs by cross-validation, training each distinct program once per budget.

    Parameters
    ----------
    config : EvaluatorConfig
    X, y : arrays
        The search's rows (float32 features; encoded targets).
    splits : list of (train, test) index arrays
    parallel : joblib.Parallel
        With ``return_as="generator"``: results arrive in submission order,
        so they never depend on ``n_jobs``.
    progress : callable or None
        Called with the number of proposed candidates dealt with (fractions
        accumulate): the search's progress bar.
    """

    def __init__(self, config, X, y, splits, parallel, progress=None):
        self.config, self.X, self.y, self.splits = config, X, y, splits
        self.parallel, self.progress = parallel, progress or (lambda n: None)
        self.rows = {}  # program string -> Row
        self.keys = {}  # symbolic key or gradient fingerprint -> representative program string
        self.totals = dict.fromkeys(TOTALS, 0)
        self._fold_results = {}  # (loss key, fold, seed, budget, params) -> FoldResult
        self._probe = None

    # ------------------------------------------------------------ genetic search
    def generation(self, population, generation, max_new=None):
        """Fitness of every program of ``population`` at the fitness budget, and the generation's statistics.

        At most ``max_new`` programs are trained; the others (beyond the
        search's evaluation budget) get fitness ``-inf``. With a screening
        budget, every new program is first trained for it (without local
        search) and only the best ``1 / factor`` of them, and the seed
        programs, go on to the local search and the fitness budget; the
        others keep their screening score as fitness, below every promoted
        program's.
        """
        config = self.config
        if config.equivalence == "none":  # no cache: every program is trained, repeats too
            new = list(population)
        else:
            new = list(dict.fromkeys(p for p in population if str(p) not in self.rows))
        start = time.perf_counter()
        losses = {str(p): SymbolicLoss(str(p), task=config.evaluation.task) for p in new}
        with single_thread():
            alias, rejected = self._filter(new, losses)
        to_train = [p for p in new if str(p) not in alias and str(p) not in rejected]
        skipped = set()
        if max_new is not None:
            skipped = {str(p) for p in to_train[max_new:]}
            to_train = to_train[:max_new]
        filter_time = time.perf_counter() - start
        self.progress(len(population) - len(to_train))
        stats = {**COUNTS, "proposed": len(population), "cache_hits": len(population) - len(new),
                 "trained": len(to_train), "promoted": len(to_train), "filter_time": filter_time}
        promoted, weight, fresh = to_train, 1.0, (generation, losses)
        plan = config.plan
        if plan.screening is not None and to_train:
            weight = 0.5  # of the progress bar's unit per candidate, for each pass
            screened = self.cross_validate([losses[str(p)] for p in to_train], plan.screening, progress=weight)
            self._add_rungs(to_train, screened, plan.screening, stats, fresh)
            fresh = None
            promoted = self._promoted(to_train)
            stats["promoted"] = len(promoted)
            self.progress(weight * (len(to_train) - len(promoted)))
        # The seed programs (the known losses) enter as they are: without the local search.
        seeded = [config.evaluation.local_search is not None and str(p) in config.seed_programs for p in promoted]
        folds = [None] * len(promoted)
        for plain in (False, True):
            indices = [i for i, s in enumerate(seeded) if s == plain]
            for i, result in zip(indices, self.cross_validate(
                    [losses[str(promoted[i])] for i in indices], plan.fitness, progress=weight,
                    local_search=None if plain else config.evaluation.local_search)):
                folds[i] = result
        self._add_rungs(promoted, folds, plan.fitness, stats, fresh)
        if config.evaluation.local_search is not None:
            for p, results in zip(promoted, folds):
                self.rows[str(p)].fold_coefficients = [fold[0].coefficients for fold in results]
        stats["failures"] = sum(self.rows[str(p)].status != "ok" for p in to_train)
        stats["train_time"] = time.perf_counter() - start - filter_time
        for p in new:
            key = str(p)
            if key in alias and alias[key] in self.rows and self.rows[alias[key]].status == "rejected":
                rejected[key] = self.rows[alias[key]].message  # the same function as a rejected program
                del alias[key]
            if key in rejected:
                row = self._row(p, generation, losses[key])
                row.rungs, row.rejection = [], Outcome("rejected", rejected[key])
                stats["rejected"] += 1
            elif key in alias and alias[key] in self.rows:
                source = self.rows[alias[key]]
                row = self._row(p, generation, losses[key])
                row.rungs, row.rejection = list(source.rungs), source.rejection
                row.equivalent_to, row.fold_coefficients = str(source.program), source.fold_coefficients
                stats["equivalent"] += 1
        for key in TOTALS:
            self.totals[key] += stats.get(key, 0)
        fitness = self._fitness(population, skipped)
        finite = fitness[np.isfinite(fitness)]
        scores = np.array([self.rows[str(p)].score for p in population if str(p) not in skipped
                           and str(p) in self.rows and self.reached_fitness(self.rows[str(p)])])
        scores = scores[np.isfinite(scores)]
        stats.update(best_score=float(scores.max()) if scores.size else math.nan,
                     median_score=float(np.median(scores)) if scores.size else math.nan,
                     best_program=str(population[int(np.argmax(fitness))]) if finite.size else str(population[0]))
        return fitness, stats

    def _add_rungs(self, programs, folds, budget, stats, fresh=None):
        """Record each program's rung at ``budget``; ``fresh=(generation, losses)``: in new rows."""
        for p, results in zip(programs, folds):
            row = self.rows[str(p)] if fresh is None else self._row(p, fresh[0], fresh[1][str(p)])
            row.rungs.append(self._rung(results, budget))
            stats["meta_nan_steps"] += sum(fold[0].meta_nan_steps for fold in results)
            stats["fit_time"] += sum(fold[0].fit_time for fold in results)
            stats["local_search_time"] += sum(fold[0].local_search_time for fold in results)
            stats["fold_fits"] += len(results)

    def _promoted(self, screened):
        """The seed programs, and the best ``1 / factor`` (at least one) of the other ``screened`` programs."""
        protected = set(self.config.seed_programs)
        size = math.ceil(len(screened) / self.config.plan.factor)
        # A score at chance level after a short budget may still rise: such programs fill the
        # places the others leave, by their score; those that failed otherwise never go on.
        live = [self.rows[str(p)] for p in screened
                if self.rows[str(p)].status in ("ok", "chance") and str(p) not in protected]
        live.sort(key=lambda row: (row.status != "ok", -float(np.mean(row.last.scores))))
        best = {str(row.program) for row in live[:size]}
        return [p for p in screened if str(p) in protected or str(p) in best]

    def reached_fitness(self, row):
        """Whether ``row`` was trained at the fitness budget (not only screened)."""
        return len(row.rungs) > (self.config.plan.screening is not None)

    def _fitness(self, population, skipped):
        """The genetic search's fitness: screened-only programs rank below every promoted one.

        Their screening scores are shifted (order kept) to just below the
        lowest promoted score in the population, so a tournament prefers any
        promoted program and, among the rest, the better screened one.
        """
        rows = [None if str(p) in skipped else self.rows.get(str(p)) for p in population]
        fitness = np.array([-np.inf if row is None else row.score for row in rows], dtype=float)
        fitness = np.nan_to_num(fitness, nan=-np.inf)
        if self.config.plan.screening is None:
            return fitness
        screened_only = np.array([row is not None and not self.reached_fitness(row) for row in rows])
        top, low = fitness[~screened_only], fitness[screened_only]
        top, low = top[np.isfinite(top)], low[np.isfinite(low)]
        if top.size and low.size:
            gap = max(float(top.max() - top.min()), 1.0) * 1e-3
            fitness[screened_only] += top.min() - low.max() - gap
        return fitness

    def _row(self, program, generation, loss):
        # A program trained again (no cache) keeps the generation that first proposed it.
        generation = self.rows[str(program)].generation if str(program) in self.rows else generation
        row = Row(program=program, loss=loss, generation=generation)
        self.rows[str(program)] = row
        return row

    # ------------------------------------------------------------ rungs of budget
    def promote(self, programs, budget, n_seeds=1):
        """Score distinct evaluated programs at ``budget`` with ``n_seeds`` weight seeds per fold.

        Adds a :class:`Rung` to each program's row and returns their mean
        scores. Programs that learned coefficients keep each fold's own.
        """
        rows = [self.rows[str(p)] for p in programs]
        candidates = [self.candidate(row) for row in rows]
        start, fits = time.perf_counter(), len(self._fold_results)
        folds = self.cross_validate(candidates, budget, n_seeds=n_seeds)
        self.totals["ladder_time"] += time.perf_counter() - start
        self.totals["ladder_fits"] += len(self._fold_results) - fits
        for row, results in zip(rows, folds):
            row.rungs.append(self._rung(results, budget))
        return [row.score for row in rows]

    def candidate(self, row):
        """What trains for ``row``: its loss, or one per fold where the local search learned coefficients."""
        if row.fold_coefficients is None:
            return row.loss
        return [row.loss.with_coefficients(c) if c is not None else row.loss for c in row.fold_coefficients]

    def _rung(self, results, budget):
        """A :class:`Rung` from per-fold lists of per-seed FoldResults."""
        scores = [float(np.mean([r.score for r in fold])) for fold in results]
        names = [name for name, _ in self.config.evaluation.other_scorers]
        others = {name: [float(np.mean([r.other_scores.get(name, math.nan) for r in fold])) for fold in results]
                  for name in names}
        return Rung(n_resources=self.config.plan.steps(budget), other_scores=others,
                    scores=scores, n_seeds=len(results[0]) if results else 1,
                    fit_time=float(np.mean([r.fit_time for fold in results for r in fold])) if results else 0.0,
                    outcome=Outcome.first_failure(r.outcome for fold in results for r in fold))

    # ------------------------------------------------------------ dispatch
    def seeds(self, n_seeds):
        """The weight seeds of every fold: the fold's own first, then seeds derived from it."""
        return [[int(s)] + [int(v) for v in np.random.RandomState(int(s)).randint(2**31 - 1, size=n_seeds - 1)]
                for s in self.config.fold_seeds]

    def cross_validate(self, candidates, budget, n_seeds=1, params=None, local_search=None, local_search_budget=None,
                       progress=0.0):
        """Per candidate, per fold, per weight seed: the FoldResult of training it at ``budget``.

        A candidate is a SymbolicLoss, or one per fold. ``params`` override
        the net's settings; a ``local_search`` (LocalSearch) learns each
        loss's coefficients first, its checkpoints trained for
        ``local_search_budget`` (default the configured one). Results already
        computed are taken from the evaluator's memory; the rest are
        dispatched in groups through joblib.
        """
        params = dict(params or {})
        seeds = self.seeds(n_seeds)
        evaluation = replace(self.config.evaluation, local_search=local_search,
                             local_search_budget=local_search_budget or self.config.evaluation.local_search_budget)
        per_fold = [[c[k] if isinstance(c, list) else c for c in candidates] for k in range(len(self.splits))]
        keys = {}
        todo = {}  # (fold, seed) -> indices of candidates to train
        for k, losses in enumerate(per_fold):
            for s, seed in enumerate(seeds[k]):
                for i, loss in enumerate(losses):
                    key = (repr(loss), repr((local_search, local_search and evaluation.local_search_budget)), k,
                           seed, budget, tuple(sorted(params.items())))
                    keys[i, k, s] = key
                    if key not in self._fold_results:
                        todo.setdefault((k, s), []).append(i)
        tasks = []
        for (k, s), indices in todo.items():
            for group in self._groups([per_fold[k][i] for i in indices]):
                tasks.append((k, s, [indices[g] for g in group]))
        try:
            # The generator first: zip then exhausts it, and joblib sees every result taken.
            for results, (k, s, group) in zip(self.parallel(
                delayed(fit_and_score)(evaluation, [per_fold[k][i] for i in group], self.X, self.y,
                                             *self.splits[k], budget, seeds[k][s], params)
                for k, s, group in tasks
            ), tasks):
                for i, result in zip(group, results):
                    self._fold_results[keys[i, k, s]] = result
                    if local_search is not None and result.coefficients is not None:
                        # Training with the learned coefficients from this seed gives this same result.
                        refined = per_fold[k][i].with_coefficients(result.coefficients)
                        self._fold_results[(repr(refined), repr((None, None))) + keys[i, k, s][2:]] = result
                if progress:  # the progress bar's unit per candidate this pass is worth
                    self.progress(progress * len(results) / len(self.splits))
        except Exception as exc:
            if type(exc).__name__ not in ("TerminatedWorkerError", "KilledWorker"):
                raise
            programs = ", ".join(str(c.program_ if isinstance(c, SymbolicLoss) else c[0].program_)
                                 for c in candidates)
            raise RuntimeError(
                f"a parallel worker died (killed, or out of memory) while training one of these "
                f"candidate losses: {programs}. The checkpoint, if any, holds the last completed "
                f"generation; rerun fit to resume."
            ) from exc
        return [[[self._fold_results[keys[i, k, s]] for s in range(len(seeds[k]))] for k in range(len(self.splits))]
                for i in range(len(candidates))]

    def _groups(self, losses):
        """Indices of ``losses`` in groups of at most ``candidates_per_task``, of even cost.

        The grouping depends on the candidates (and the number of folds)
        alone, never on ``n_jobs``: a group of a batched network rounds its
        products as one network, so a candidate's result can differ in its
        last bits with the group it trained in (see
        :mod:`~metaloss_sk.batched`), and fixed groups keep every result
        independent of the number of workers and the backend. There are as
        few groups as leave ``_MIN_TASKS`` tasks over the folds. A
        candidate's cost beyond the network's grows with its program's
        length (every node is a few tensor operations per step), so the
        longest programs are dealt first, each to the group with room and the
        fewest nodes so far.
        """
        if not losses:
            return []
        n = min(len(losses), max(-(-len(losses) // self.config.candidates_per_task),
                                 -(-_MIN_TASKS // len(self.splits))))
        capacity = -(-len(losses) // n)
        groups, cost = [[] for _ in range(n)], [0] * n
        for i in sorted(range(len(losses)), key=lambda i: -len(losses[i].program_)):
            g = min((g for g in range(n) if len(groups[g]) < capacity), key=lambda g: cost[g])
            groups[g].append(i)
            cost[g] += len(losses[i].program_)
        return [sorted(group) for group in groups]

    # ------------------------------------------------------------ filters
    def _filter(self, programs, losses):
        """Split off programs equivalent to an evaluated one, and degenerate ones.

        Returns ``alias`` (program -> representative program) and ``rejected``
        (program -> reason). Seed programs are never rejected by the rejection
        protocol or the gradient bound; a loss with no gradient at all is
        rejected whatever its origin.
        """
        config = self.config
        alias, rejected, candidates = {}, {}, []
        if config.equivalence == "none":
            def key_of(loss):
                return None
        elif config.equivalence == "exact":
            def key_of(loss):
                return str(loss.program_)
        elif config.evaluation.local_search is None:
            key_of = symbolic_key
        else:  # equal functions of different shapes learn different coefficients
            key_of = commutative_key
        protected = set(config.seed_programs)
        for p in programs:
            key = key_of(losses[str(p)])
            if key is None or (str(p) in protected and config.evaluation.local_search is not None):
                # A seed skips the local search: its score says nothing of its family's coefficients.
                candidates.append(p)
            elif key in self.keys:
                alias[str(p)] = self.keys[key]
            else:
                self.keys.setdefault(key, str(p))
                candidates.append(p)
        if config.gradient_bound is not None:
            checked = []
            for p, reason in zip(candidates, gradient_violations([losses[str(p)] for p in candidates],
                                                                 config.gradient_bound)):
                if reason is not None and str(p) not in protected:
                    rejected[str(p)] = reason
                else:
                    checked.append(p)
            candidates = checked
        if not candidates or (config.equivalence != "gradient" and not config.rejection_steps):
            return alias, rejected
        probe = self.probe()
        fingerprints = probe.fingerprints([losses[str(p)] for p in candidates])
        kept = []
        for p, fingerprint in zip(candidates, fingerprints):
            if fingerprint is None:  # a loss that cannot move the net fails, even a seed
                rejected[str(p)] = "no gradient: zero or non-finite on the probe rows"
            elif (config.equivalence == "gradient" and config.evaluation.local_search is None
                  and fingerprint in self.keys):
                alias[str(p)] = self.keys[fingerprint]
            else:
                self.keys.setdefault(fingerprint, str(p))
                if str(p) not in protected:
                    kept.append(p)
        if config.rejection_steps and kept:
            # One chunk per worker: the protocol's cost is mostly per step, not per loss.
            groups = np.array_split(np.arange(len(kept)), min(effective_n_jobs(config.n_jobs), len(kept)))
            verdicts = [v for chunk in self.parallel(
                delayed(_reject)(probe, [losses[str(kept[i])] for i in group], config.rejection_steps)
                for group in groups) for v in chunk]
            for i, reject in zip([i for group in groups for i in group], verdicts):
                if reject:
                    rejected[str(kept[i])] = "rejection protocol: the task error did not improve"
        return alias, rejected

    def probe(self):
        """The probe rows of fold 0 through fold 0's freshly initialised network (built once)."""
        if self._probe is None:
            evaluation = self.config.evaluation
            train = self.splits[0][0]
            rows = np.random.RandomState(self.config.fold_seeds[0]).permutation(train)[:_PROBE_ROWS]
            targets = self.y[rows]
            if evaluation.standardize:
                mean, scale = standardize(self.y[train])
                targets = (targets - mean) / scale
            net = build_net(evaluation.trainer.estimator, SymbolicLoss(task=evaluation.task))
            torch.manual_seed(int(self.config.fold_seeds[0]))
            net.initialize()
            with torch.no_grad():
                outputs = net.infer(to_tensors(take(self.X, rows), net.device)).cpu()
            self._probe = Probe(outputs, torch.as_tensor(targets), evaluation.task)
        return self._probe

    @property
    def n_trained(self):
        return self.totals["trained"]


def _reject(probe, losses, steps):
    """EvoMAL's rejection protocol on ``losses`` (a parallel task, on one thread as every task)."""
    with single_thread():
        return probe.reject(losses, steps=steps)

