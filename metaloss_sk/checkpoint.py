"""The state of a running search, and its checkpoint: plain JSON, written atomically after every generation.

:class:`SearchState` holds everything the search needs to continue exactly
where it stopped (population, random state, every evaluated program and the
cache keys, history). A checkpoint file holds one state plus a signature of
the configuration and the data, so it is never resumed by a different search.
Loading parses JSON and programs (through :mod:`metaloss_sk._json`'s bounded,
strict reader); nothing is evaluated.

This module is the one place that knows the checkpoint's JSON layout, the
evaluator's records included (:meth:`SearchState.record` and
:meth:`SearchState.restore`); a change of the layout bumps ``VERSION``.
"""

import hashlib
import math
import os
from dataclasses import dataclass, field

import numpy as np

from . import _json
from ._rows import is_dict
from .loss import SymbolicLoss
from .program import parse
from .records import TOTALS, Outcome, Row, Rung

__all__ = ["SearchState", "search_signature", "signature", "save_checkpoint", "load_checkpoint", "check_writable"]

FORMAT = "metaloss_sk.checkpoint"
VERSION = 2
#: Checkpoints hold every evaluated program: allow more than a loss document.
MAX_CHECKPOINT_SIZE = 256 * 2**20


@dataclass
class SearchState:
    """Where a search stands between two generations.

    Attributes
    ----------
    population : list of Program
        The programs of the next generation to evaluate.
    rng : numpy.random.RandomState
        The evolution's random state, as it is before breeding from ``population``.
    generation : int
        The index of the next generation.
    best : float
        The best fitness so far (``-inf`` before any).
    stale : int
        Generations since ``best`` last improved.
    elapsed : float
        Seconds of search so far.
    history : list of dict
        One entry per evaluated generation.
    fold_seeds : list of int
        The seed of each CV fold (initialisation and batch order).
    refit_seed : int
        The seed of the final refit and local search.
    evaluator : dict
        The evaluator's records as JSON (every row, the cache keys and the
        totals): see :meth:`record` and :meth:`restore`.
    """

    population: list
    rng: np.random.RandomState
    generation: int = 0
    best: float = -math.inf
    stale: int = 0
    elapsed: float = 0.0
    history: list = field(default_factory=list)
    fold_seeds: list = field(default_factory=list)
    refit_seed: int = 0
    evaluator: dict = field(default_factory=dict)

    def record(self, evaluator):
        """Take the records of ``evaluator`` (an :class:`~metaloss_sk.evaluator.Evaluator`) into ``self.evaluator``."""
        rows = []
        for row in evaluator.rows.values():
            rungs = [{"n_resources": r.n_resources, "scores": r.scores, "n_seeds": r.n_seeds, "fit_time": r.fit_time,
                      "status": r.status, "message": r.message, "other_scores": r.other_scores} for r in row.rungs]
            rows.append({"program": str(row.program), "loss": row.loss.get_params(), "generation": row.generation,
                         "rungs": rungs, "status": row.status, "message": row.message,
                         "equivalent_to": row.equivalent_to, "fold_coefficients": row.fold_coefficients})
        self.evaluator = {"rows": rows, "keys": dict(evaluator.keys), "totals": dict(evaluator.totals)}

    def restore(self, evaluator):
        """Put the records :meth:`record` took back into ``evaluator``, in place of its own."""
        evaluator.rows = {}
        for entry in self.evaluator["rows"]:
            loss = SymbolicLoss(**entry["loss"])
            rungs = [Rung(n_resources=r["n_resources"], scores=_nan(r["scores"]), n_seeds=r["n_seeds"],
                          fit_time=r["fit_time"], outcome=Outcome(r["status"], r["message"]),
                          other_scores={k: _nan(v) for k, v in r.get("other_scores", {}).items()})
                     for r in entry["rungs"]]
            # A row's outcome is its last rung's; only a rejection, with no rung, is its own.
            rejection = Outcome(entry["status"], entry["message"]) if entry["status"] == "rejected" else None
            evaluator.rows[entry["program"]] = Row(
                program=loss.program_, loss=loss, generation=entry["generation"], rungs=rungs, rejection=rejection,
                equivalent_to=entry["equivalent_to"], fold_coefficients=entry["fold_coefficients"])
        evaluator.keys = dict(self.evaluator["keys"])
        evaluator.totals = {**dict.fromkeys(TOTALS, 0), **self.evaluator["totals"]}


def _describe(value):
    """A text for a setting that is the same in every process (reprs with addresses, sets and estimators unpacked)."""
    if hasattr(value, "get_params") and not isinstance(value, type):
        params = {k: v for k, v in value.get_params(deep=False).items() if not k.startswith("_")}
        return f"{type(value).__qualname__}({_describe(params)})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {_describe(v)}" for k, v in sorted(value.items(), key=lambda kv: str(kv[0])))\
            + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_describe(v) for v in value) + "]"
    if isinstance(value, (set, frozenset)):
        return "{" + ", ".join(sorted(_describe(v) for v in value)) + "}"
    text = repr(value)
    if " at 0x" in text and hasattr(value, "__dict__"):
        return f"{type(value).__qualname__}({_describe(vars(value))})"
    return text


#: LossSearchCV's settings that leave the genetic search's course as it is: a checkpoint resumes under others.
_FREE_SETTINGS = ("n_jobs", "verbose", "max_time", "checkpoint", "refit", "generations", "n_iter_no_change",
                  "max_evaluations", "baseline_lrs", "schedule")


def search_signature(params, evolution, schedule, X, y):
    """:func:`signature` of what decides a search's course: ``params`` (LossSearchCV's, not deep) but the free
    ones, its :class:`~metaloss_sk.Evolution` and the budgets of its :class:`~metaloss_sk.Schedule` the
    genetic search uses."""
    course = {"min_resources": schedule.min_resources, "screening": schedule.screening,
              **({"factor": schedule.factor} if schedule.screening is not None else {})}
    return signature({**{k: v for k, v in params.items() if k not in _FREE_SETTINGS}, "evolution": evolution,
                      "schedule": course}, X, y)


def signature(params, X, y):
    """A hash of the search's settings and data; resuming requires it to match."""
    h = hashlib.sha256()
    h.update(_describe(params).encode())
    if is_dict(X):  # skorch's dict input: every array, by name
        for key in sorted(X):
            h.update(repr(key).encode())
            _update(h, X[key])
    else:
        _update(h, X)
    _update(h, y)
    return h.hexdigest()


def _update(h, a):
    a = np.ascontiguousarray(a)
    h.update(str((a.shape, a.dtype.str)).encode())
    h.update(a.tobytes())


def check_writable(path):
    """Raise ValueError, before any training, if a checkpoint could not be written at ``path``.

    The message names ``path`` and the reason: a directory, a folder that
    does not exist or is a file, or the operating system's reason (permission
    denied, a read-only file system) when the temporary file the write goes
    through cannot be created there.
    """
    folder = os.path.dirname(os.path.abspath(os.fspath(path)))
    if os.path.isdir(os.fspath(path)):
        raise ValueError(f"checkpoint={os.fspath(path)!r} is a directory; give a file path such as "
                         f"{os.path.join(os.fspath(path), 'search.json')!r}.")
    if not os.path.isdir(folder):
        existing = folder
        while not os.path.exists(existing) and os.path.dirname(existing) != existing:
            existing = os.path.dirname(existing)
        if os.path.exists(existing) and not os.path.isdir(existing):
            raise ValueError(f"checkpoint={os.fspath(path)!r}: {existing!r} is a file, not a folder; give a path "
                             "in a folder.")
        raise ValueError(f"checkpoint={os.fspath(path)!r}: its folder {folder!r} does not exist; create it first.")
    try:
        _json.try_write(path)
    except OSError as e:
        raise ValueError(f"checkpoint={os.fspath(path)!r} cannot be written: {e.strerror or e} in its folder "
                         f"{folder!r}.") from None


def save_checkpoint(path, state, signature):
    """Write ``state`` (a :class:`SearchState`) to ``path`` atomically, as strict JSON."""
    name, keys, pos, has_gauss, cached = state.rng.get_state()
    _json.write(path, {
        "format": FORMAT, "version": VERSION, "signature": signature,
        "population": [str(p) for p in state.population],
        "rng": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "generation": state.generation, "best": state.best if math.isfinite(state.best) else None,
        "stale": state.stale, "elapsed": state.elapsed,
        "history": state.history, "fold_seeds": state.fold_seeds, "refit_seed": state.refit_seed,
        "evaluator": state.evaluator,
    })


def load_checkpoint(path, expected_signature):
    """The :class:`SearchState` saved at ``path``, or None if there is no file.

    Raises
    ------
    ValueError
        If the file is not a checkpoint of this version, or was written by a
        search with other settings or data.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        return None
    try:
        document = _json.read(path, "checkpoint", max_size=MAX_CHECKPOINT_SIZE)
        if not isinstance(document, dict) or document.get("format") != FORMAT or document.get("version") != VERSION:
            raise ValueError(f"it is not a metaloss_sk checkpoint (version {VERSION})")
    except (OSError, ValueError) as exc:
        raise ValueError(f"checkpoint {path!r} cannot be read: {exc}") from exc
    if document.get("signature") != expected_signature:
        raise ValueError(
            f"checkpoint {path!r} was written by a search with other settings or data; "
            "delete it or choose another checkpoint path."
        )
    for entry in document["history"]:  # scores written as null when there was none
        for key in ("best_score", "median_score"):
            entry[key] = math.nan if entry.get(key) is None else entry[key]
    name, keys, pos, has_gauss, cached = document["rng"]
    rng = np.random.RandomState()
    rng.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    return SearchState(
        population=[parse(p) for p in document["population"]], rng=rng, generation=document["generation"],
        best=-math.inf if document["best"] is None else document["best"], stale=document["stale"],
        elapsed=document["elapsed"], history=document["history"], fold_seeds=document["fold_seeds"],
        refit_seed=document["refit_seed"], evaluator=document["evaluator"],
    )


def _nan(values):
    """Scores read back from JSON: null is NaN."""
    return [math.nan if v is None else v for v in values]
