"""Cross-validated fitness of loss programs: cache, filters, parallel dispatch.

The search says which programs to score; this module decides which of them
need training at all (exact repeats, equivalent programs and degenerate losses
do not), dispatches the rest to :mod:`~metaloss_sk.engine` in groups through
joblib, and keeps one row per distinct program for ``cv_results_``.
"""

import math
import time

import numpy as np
import torch
from joblib import effective_n_jobs
from sklearn.utils.parallel import delayed

from .engine import candidate_net, evaluate_candidates
from .filters import Probe, commutative_key, symbolic_key
from .loss import CROSS_ENTROPY, SymbolicLoss
from .program import parse

__all__ = ["Evaluator", "mean_score"]

SQUARED_ERROR = "square(sub(y, yhat))"
_PROBE_ROWS = 100
_TOTALS = ("cache_hits", "equivalent", "rejected", "trained", "failures", "meta_nan_steps", "filter_time",
           "train_time", "fit_time", "local_search_time")


def mean_score(results):
    """Mean CV score of one program's fold results; NaN if any fold failed."""
    return np.nan if any(r.status != "ok" for r in results) else float(np.mean([r.score for r in results]))


class Evaluator:
    """Scores programs by cross-validation, training each distinct program once."""

    def __init__(self, search, X, y, splits, fast, local_search):
        self.search, self.X, self.y = search, X, y
        self.splits, self.fast, self.local_search = splits, fast, local_search
        self.budget = search._budget()
        self.parallel = None
        self.progress = None  # a tqdm bar over proposed candidates, when verbose
        self._advanced = 0.0
        self.rows = {}  # program string -> row dict
        self.keys = {}  # symbolic key or gradient fingerprint -> representative program string
        self._probe = None
        self.totals = dict.fromkeys(_TOTALS, 0)

    def _groups(self, losses):
        """Indices of ``losses`` in groups of at most ``candidates_per_task``, of even cost.

        There are as few groups as leave every worker a task. A candidate's
        cost beyond the network's grows with its program's length (every
        node is a few tensor operations per step), so the longest programs are
        dealt first, each to the group with room and the fewest nodes so far.
        A candidate's result does not depend on its group, so the grouping
        may follow the number of workers without changing any result.
        """
        if not losses:
            return []
        workers = effective_n_jobs(self.search.n_jobs)
        n = min(len(losses), max(-(-len(losses) // self.search.candidates_per_task),
                                 -(-workers // len(self.splits))))
        capacity = -(-len(losses) // n)
        groups, cost = [[] for _ in range(n)], [0] * n
        for i in sorted(range(len(losses)), key=lambda i: -len(losses[i].program_)):
            g = min((g for g in range(n) if len(groups[g]) < capacity), key=lambda g: cost[g])
            groups[g].append(i)
            cost[g] += len(losses[i].program_)
        return [sorted(group) for group in groups]

    def cross_validate(self, losses, local_search=None):
        """FoldResults per loss and fold, dispatched in groups through joblib."""
        search = self.search
        indices = self._groups(losses)
        groups = [[losses[i] for i in group] for group in indices]
        tasks = [(g, k) for g in range(len(groups)) for k in range(len(self.splits))]
        results = []
        try:
            # Results arrive in submission order, so they never depend on n_jobs.
            for group_results in self.parallel(
                delayed(evaluate_candidates)(
                    search.estimator, groups[g], self.X, self.y, *self.splits[k], self.budget,
                    int(search._fold_seeds[k]), search.scorer_, "fast" if self.fast else "skorch",
                    search.error_score, local_search)
                for g, k in tasks
            ):
                results.append(group_results)
                self.advance(len(group_results) / len(self.splits))
        except Exception as exc:
            if type(exc).__name__ not in ("TerminatedWorkerError", "KilledWorker"):
                raise
            programs = ", ".join(str(loss.program_) for loss in losses)
            raise RuntimeError(
                f"a parallel worker died (killed, or out of memory) while training one of these "
                f"candidate losses: {programs}. The checkpoint, if any, holds the last completed "
                f"generation; rerun fit to resume."
            ) from exc
        per_loss = [[None] * len(self.splits) for _ in losses]
        for (g, k), group_results in zip(tasks, results):
            for i, result in zip(indices[g], group_results):
                per_loss[i][k] = result
        return per_loss

    def __call__(self, population, generation):
        """Fitness of every program of ``population`` and this generation's statistics."""
        search = self.search
        if search.equivalence == "none":  # no cache: every program is trained, repeats too
            new = list(population)
        else:
            new = list(dict.fromkeys(p for p in population if str(p) not in self.rows))
        stats = {"proposed": len(population), "cache_hits": len(population) - len(new),
                 "equivalent": 0, "rejected": 0, "trained": 0, "failures": 0, "fit_time": 0.0,
                 "local_search_time": 0.0}
        start = time.perf_counter()
        losses = {str(p): search._criterion(p) for p in new}
        alias, rejected = self._filter(new, losses)
        to_train = [p for p in new if str(p) not in alias and str(p) not in rejected]
        if search.max_evaluations is not None:
            budget = max(search.max_evaluations - self.n_trained, 0)
            to_train, skipped = to_train[:budget], {str(p) for p in to_train[budget:]}
        else:
            skipped = set()
        filter_time = time.perf_counter() - start
        self.advance(len(population) - len(to_train))
        folds = self.cross_validate([losses[str(p)] for p in to_train], self.local_search)
        train_time = time.perf_counter() - start - filter_time
        for p, results in zip(to_train, folds):
            self._record(p, generation, losses[str(p)], results)
            self.totals["meta_nan_steps"] += sum(r.meta_nan_steps for r in results)
            stats["fit_time"] += sum(r.fit_time for r in results)
            stats["local_search_time"] += sum(r.local_search_time for r in results)
            stats["failures"] += not np.isfinite(self.rows[str(p)]["mean_test_score"])
        for p in new:
            key = str(p)
            if key in rejected:
                self._record(p, generation, losses[key], None, status="rejected", message=rejected[key])
            elif key in alias and alias[key] in self.rows:
                self._record(p, generation, losses[key], None, equivalent_to=self.rows[alias[key]])
        stats.update(equivalent=sum(k in self.rows for k in alias), rejected=len(rejected),
                     trained=len(to_train), filter_time=filter_time, train_time=train_time)
        for key in _TOTALS:
            if key != "meta_nan_steps":  # counted per fold result above
                self.totals[key] += stats[key]
        # Programs beyond max_evaluations were never trained: they cannot be selected.
        fitness = np.array([np.nan if str(p) in skipped or str(p) not in self.rows
                            else self.rows[str(p)]["mean_test_score"] for p in population])
        fitness = np.nan_to_num(fitness, nan=-np.inf)
        finite = fitness[np.isfinite(fitness)]
        stats.update(best_score=float(finite.max()) if finite.size else -math.inf,
                     median_score=float(np.median(finite)) if finite.size else math.nan,
                     best_program=str(population[int(np.argmax(fitness))]))
        return fitness, stats

    def advance(self, n):
        """Move the progress bar by ``n`` candidates (fractions accumulate; the bar shows whole ones)."""
        if self.progress is not None:
            self._advanced += n
            whole = min(int(round(self._advanced, 6)), self.progress.total)
            self.progress.update(whole - self.progress.n)

    def state(self):
        """JSON-able state: every row, the cache keys and the totals."""
        rows = []
        for row in self.rows.values():
            rows.append({k: (v.get_params() if k == "criterion" else v) for k, v in row.items()})
        return {"rows": rows, "keys": self.keys, "totals": self.totals}

    def restore(self, state):
        """Undo :meth:`state`."""
        self.rows = {}
        for row in state["rows"]:
            row = {**row, "criterion": SymbolicLoss(**row["criterion"]),
                   "scores": np.array([np.nan if v is None else v for v in row["scores"]], dtype=float)}
            self.rows[row["program"]] = row
        self.keys = dict(state["keys"])
        self.totals = {**dict.fromkeys(_TOTALS, 0), **state["totals"]}  # a total added since it was written

    @property
    def n_trained(self):
        return self.totals["trained"]

    def _filter(self, programs, losses):
        """Split off programs equivalent to an evaluated one, and degenerate ones.

        Returns ``alias`` (program -> representative program) and ``rejected``
        (program -> reason).
        """
        search = self.search
        alias, rejected, candidates = {}, {}, []
        if search.equivalence == "none":
            def key_of(loss):
                return None
        elif search.equivalence == "exact":
            def key_of(loss):
                return str(loss.program_)
        elif self.local_search is None:
            key_of = symbolic_key
        else:  # equal functions of different shapes learn different coefficients
            key_of = commutative_key
        for p in programs:
            key = key_of(losses[str(p)])
            if key is None:
                candidates.append(p)
            elif key in self.keys:
                alias[str(p)] = self.keys[key]
            else:
                self.keys[key] = str(p)
                candidates.append(p)
        if not candidates or (search.equivalence != "gradient" and not search.rejection_steps):
            return alias, rejected
        probe = self.probe()
        fingerprints = probe.fingerprints([losses[str(p)] for p in candidates])
        kept = []
        for p, fingerprint in zip(candidates, fingerprints):
            if fingerprint is None:
                rejected[str(p)] = "no gradient: zero or non-finite on the probe rows"
            elif search.equivalence == "gradient" and self.local_search is None and fingerprint in self.keys:
                alias[str(p)] = self.keys[fingerprint]
            else:
                self.keys.setdefault(fingerprint, str(p))
                kept.append(p)
        if search.rejection_steps and kept:
            # One chunk per worker: the protocol's cost is mostly per step, not per loss.
            groups = np.array_split(np.arange(len(kept)), min(effective_n_jobs(search.n_jobs), len(kept)))
            verdicts = [v for chunk in self.parallel(
                delayed(probe.reject)([losses[str(kept[i])] for i in group], steps=search.rejection_steps)
                for group in groups) for v in chunk]
            order = [i for group in groups for i in group]
            for i, reject in zip(order, verdicts):
                p = kept[i]
                if reject:
                    rejected[str(p)] = "rejection protocol: the task error did not improve"
        return alias, rejected

    def probe(self):
        """The probe rows of fold 0 through fold 0's freshly initialised network (built once)."""
        if self._probe is None:
            search = self.search
            train = self.splits[0][0]
            rows = np.random.RandomState(search._fold_seeds[0]).permutation(train)[:_PROBE_ROWS]
            loss = search._criterion(parse(CROSS_ENTROPY if search._task != "regression" else SQUARED_ERROR))
            net = candidate_net(search.estimator, loss)
            torch.manual_seed(int(search._fold_seeds[0]))
            net.initialize()
            with torch.no_grad():
                outputs = net.infer(torch.as_tensor(self.X[rows], device=net.device)).cpu()
            self._probe = Probe(outputs, torch.as_tensor(self.y[rows]), search._task)
        return self._probe

    def _record(self, program, generation, loss, folds, status="ok", message="", equivalent_to=None):
        if equivalent_to is not None:
            row = {**equivalent_to, "equivalent_to": equivalent_to["program"], "mean_fit_time": 0.0,
                   "std_fit_time": 0.0}
        elif folds is None:
            row = {"scores": np.full(len(self.splits), np.nan), "mean_test_score": np.nan,
                   "std_test_score": np.nan, "mean_fit_time": 0.0, "std_fit_time": 0.0,
                   "status": status, "message": message, "equivalent_to": ""}
        else:
            mean = mean_score(folds)
            scores = np.array([r.score for r in folds], dtype=float)
            times = np.array([r.fit_time for r in folds])
            row = {"scores": scores, "mean_test_score": mean,
                   "std_test_score": scores.std() if np.isfinite(mean) else np.nan,
                   "mean_fit_time": times.mean(), "std_fit_time": times.std(),
                   "status": next((r.status for r in folds if r.status != "ok"), "ok"),
                   "message": next((r.message for r in folds if r.status != "ok"), ""),
                   "equivalent_to": ""}
        # A program trained again (no cache) keeps the generation that first proposed it.
        generation = self.rows.get(str(program), {}).get("generation", generation)
        row.update(program=str(program), infix=program.infix(), length=program.length, depth=program.depth,
                   generation=generation, criterion=loss)
        self.rows[str(program)] = row

    def results(self):
        rows = list(self.rows.values())
        out = {key: np.array([r[key] for r in rows]) for key in
               ("program", "infix", "length", "depth", "generation", "mean_test_score",
                "std_test_score", "mean_fit_time", "std_fit_time", "status", "message", "equivalent_to")}
        for k in range(len(self.splits)):
            out[f"split{k}_test_score"] = np.array([r["scores"][k] for r in rows])
        scores = np.nan_to_num(out["mean_test_score"], nan=-np.inf)
        # Dense ranking as in scikit-learn: ties share a rank; failures rank last.
        order = np.unique(-scores, return_inverse=True)[1]
        out["rank_test_score"] = (order + 1).astype(np.int32)
        out["params"] = [r["criterion"].as_params() for r in rows]
        return out

    def losses(self):
        """The SymbolicLoss of each row of :meth:`results`."""
        return [r["criterion"] for r in self.rows.values()]
