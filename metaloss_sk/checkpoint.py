"""Checkpoints of a running search: plain JSON, written atomically after every generation.

A checkpoint holds everything the search needs to continue exactly where it
stopped (population, random state, every evaluated program and the cache
keys, history) plus a signature of the configuration and the data, so a
checkpoint is never resumed by a different search. Loading parses JSON and
programs; nothing is evaluated.
"""

import hashlib
import json
import os

import numpy as np

from .io import _atomic_write

__all__ = ["signature", "save_checkpoint", "load_checkpoint", "rng_to_json", "rng_from_json"]

FORMAT = "metaloss_sk.checkpoint"
VERSION = 1


def signature(params, X, y):
    """A hash of the search's settings and data; resuming requires it to match."""
    h = hashlib.sha256()
    h.update(repr(sorted((k, repr(v)) for k, v in params.items())).encode())
    for a in (X, y):
        a = np.ascontiguousarray(a)
        h.update(str((a.shape, a.dtype.str)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def rng_to_json(rng):
    name, keys, pos, has_gauss, cached = rng.get_state()
    return [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]


def rng_from_json(state):
    name, keys, pos, has_gauss, cached = state
    rng = np.random.RandomState()
    rng.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    return rng


def _plain(value):
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value)
    if isinstance(value, (np.integer, int)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def save_checkpoint(path, state):
    """Write ``state`` (JSON-able, NaN allowed) to ``path`` atomically."""
    _atomic_write(os.fspath(path), json.dumps({"format": FORMAT, "version": VERSION, **_plain(state)}))


def load_checkpoint(path, expected_signature):
    """The state saved at ``path``, or None if there is no file.

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
        with open(path, encoding="utf-8") as f:
            state = json.load(f)
    except (OSError, ValueError) as exc:
        raise ValueError(f"checkpoint {path!r} cannot be read: {exc}") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT or state.get("version") != VERSION:
        raise ValueError(f"{path!r} is not a metaloss_sk checkpoint (version {VERSION}).")
    if state.get("signature") != expected_signature:
        raise ValueError(
            f"checkpoint {path!r} was written by a search with other settings or data; "
            "delete it or choose another checkpoint path."
        )
    return state
