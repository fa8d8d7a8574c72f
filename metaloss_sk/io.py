"""Safe plain-text persistence for losses and halls of fame.

Pickle (and ``torch.load`` with ``weights_only=False``, and joblib) is
**unsafe for files you did not write yourself**: unpickling runs whatever code
the file names, so a hostile ``.pkl`` can take over your machine the moment
you load it. Use pickle only for your own files.

This module is the safe alternative. A :class:`~metaloss_sk.SymbolicLoss` is
fully described by its program string, task, link and coefficients, so it is
stored as a small JSON document::

    {"format": "metaloss_sk.loss", "version": 1,
     "program": "neg(mul(y, log(yhat)))", "task": "multiclass",
     "link": "auto", "coefficients": null}

Loading never evaluates anything. The text is decoded (strict UTF-8), parsed
with :func:`json.loads` (bounded in size and nesting, ``NaN``/``Infinity``
tokens and duplicate keys refused), and every field is then checked: allowed
keys only, exact types, known task and link, finite coefficients of the right
count, and a program accepted by the restricted grammar of
:func:`~metaloss_sk.parse` (which never calls ``eval``). Any malformed or
hostile input raises :class:`ValueError` naming the field and the problem;
only errors reading the file itself (:class:`OSError`) pass through
unchanged.

Files are written atomically: to a temporary file in the same directory that
then replaces the target, so a crash never leaves a half-written file.

Examples
--------
>>> from metaloss_sk import SymbolicLoss
>>> from metaloss_sk.io import dumps_loss, loads_loss
>>> loss = SymbolicLoss("square(sub(y, yhat))", task="regression")
>>> text = dumps_loss(loss)
>>> loads_loss(text)
SymbolicLoss(program='square(sub(y, yhat))', task='regression', link='auto')
>>> loads_loss('{"format": "metaloss_sk.loss", "version": 1, "task": "regression",'
...            ' "program": "__import__(\\'os\\').system(\\'x\\')"}')
Traceback (most recent call last):
    ...
ValueError: loss.program is not a valid program: unexpected character at position 11: "'" in ...
"""

import math

import numpy as np

from . import _json
from ._json import MAX_DOCUMENT_SIZE, MAX_NESTING
from ._validation import check_coefficients
from .loss import LINKS, TASKS, SymbolicLoss
from .program import parse

__all__ = [
    "MAX_DOCUMENT_SIZE",
    "MAX_NESTING",
    "LOSS_FORMAT",
    "HALL_OF_FAME_FORMAT",
    "FORMAT_VERSION",
    "loss_to_dict",
    "loss_from_dict",
    "dumps_loss",
    "loads_loss",
    "save_loss",
    "load_loss",
    "hall_of_fame_to_dict",
    "hall_of_fame_from_dict",
    "dumps_hall_of_fame",
    "loads_hall_of_fame",
    "save_hall_of_fame",
    "load_hall_of_fame",
]

#: Format marker of a saved loss.
LOSS_FORMAT = "metaloss_sk.loss"
#: Format marker of a saved hall of fame.
HALL_OF_FAME_FORMAT = "metaloss_sk.hall_of_fame"
#: The format version this module writes and reads.
FORMAT_VERSION = 1

#: Largest program string accepted, in characters (programs have at most
#: 10,000 nodes, which print in well under this).
MAX_PROGRAM_CHARS = 2**20

_HOF_FIELDS = ("program", "infix", "length", "depth", "generation", "mean_test_score", "std_test_score")
#: What ``python -m metaloss_sk search --output`` writes; its ``best_loss`` field is a loss document.
SEARCH_RESULT_FORMAT = "metaloss_sk.search_result"
_LOSS_REQUIRED = ("format", "version", "program", "task")
_LOSS_OPTIONAL = ("link", "coefficients")
_FLOAT32_MAX = float(np.finfo(np.float32).max)


# --------------------------------------------------------------------------- losses


def loss_to_dict(loss):
    """Describe a loss as a JSON-able dict.

    Parameters
    ----------
    loss : SymbolicLoss
        The loss.

    Returns
    -------
    dict
        ``{"format": "metaloss_sk.loss", "version": 1, "program": str,
        "task": str, "link": str, "coefficients": list of float or None}``,
        which :func:`loss_from_dict` turns back into an equal loss.

    Raises
    ------
    TypeError
        If ``loss`` is not a :class:`~metaloss_sk.SymbolicLoss`.
    ValueError
        If the loss could not be loaded back (e.g. its program string is
        longer than ``MAX_PROGRAM_CHARS``).
    """
    if not isinstance(loss, SymbolicLoss):
        raise TypeError(f"expected a SymbolicLoss, got {type(loss).__name__}")
    params = loss.get_params()
    program = params["program"]
    coefficients = params["coefficients"]
    d = {
        "format": LOSS_FORMAT,
        "version": FORMAT_VERSION,
        "program": program if isinstance(program, str) else str(loss.program_),
        "task": str(params["task"]),
        "link": str(params["link"]),
        "coefficients": None if coefficients is None else [float(c) for c in coefficients],
    }
    _check_loss_dict(d, "loss")  # what is written must load back
    return d


def loss_from_dict(d):
    """Build a loss from a dict made by :func:`loss_to_dict`.

    Parameters
    ----------
    d : dict
        The description. ``format``, ``version``, ``program`` and ``task``
        are required; ``link`` defaults to ``"auto"`` and ``coefficients`` to
        None. No other key is allowed.

    Returns
    -------
    SymbolicLoss

    Raises
    ------
    ValueError
        For anything malformed, naming the field: a wrong format marker or
        version, missing or unknown keys, a wrong type, an unknown task or a
        link that does not fit it, coefficients that are not finite numbers
        (in float32 range) or not one per edge of the program, or a program
        that the grammar of :func:`~metaloss_sk.parse` rejects.
    """
    program, task, link, coefficients = _check_loss_dict(d, "loss")
    return SymbolicLoss(program, task=task, link=link, coefficients=coefficients)


def dumps_loss(loss):
    """The loss as JSON text (see :func:`loss_to_dict`).

    Parameters
    ----------
    loss : SymbolicLoss

    Returns
    -------
    str
    """
    return _json.dumps(loss_to_dict(loss))


def loads_loss(text):
    """Read a loss from JSON text, never evaluating anything.

    Parameters
    ----------
    text : str or bytes
        The document; bytes must be UTF-8.

    Returns
    -------
    SymbolicLoss

    Raises
    ------
    ValueError
        For any malformed input (see :func:`loss_from_dict`), text that is not
        JSON, bytes that are not UTF-8, a document larger than
        ``MAX_DOCUMENT_SIZE`` or nested deeper than ``MAX_NESTING``.
    """
    return loss_from_dict(_json.loads(text, "loss"))


def save_loss(loss, path):
    """Write a loss to a JSON file, atomically.

    Parameters
    ----------
    loss : SymbolicLoss
    path : str or path-like
        The file; replaced if it exists.
    """
    _json.write(path, loss_to_dict(loss))


def load_loss(path):
    """Read a loss from a JSON file written by :func:`save_loss` (or by the command line's ``--output``).

    Safe for untrusted files: nothing in the file is ever evaluated.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    SymbolicLoss

    Raises
    ------
    ValueError
        For any malformed content (see :func:`loads_loss`).
    OSError
        If the file cannot be read.
    """
    document = _json.read(path, "loss")
    if isinstance(document, dict) and document.get("format") == SEARCH_RESULT_FORMAT:
        document = document.get("best_loss")  # the command line's result: the loss is one of its fields
    return loss_from_dict(document)


# --------------------------------------------------------------------------- hall of fame


def hall_of_fame_to_dict(entries, task=None):
    """Describe a hall of fame as a JSON-able dict.

    Parameters
    ----------
    entries : iterable of dict
        As in ``LossSearchCV.hall_of_fame_``: each with keys ``program``,
        ``infix``, ``length``, ``depth``, ``generation``, ``mean_test_score``
        and ``std_test_score``, and optionally ``coefficients`` (one per edge
        of the program, or None) and ``n_resources`` (the training steps the
        scores were measured at). NumPy scalars and arrays and torch tensors
        become plain Python values; NaN scores become ``null``.
    task : {"multiclass", "binary", "regression"} or None, default=None
        The task the programs were searched for, recorded in the document.

    Returns
    -------
    dict
        ``{"format": "metaloss_sk.hall_of_fame", "version": 1, "task": ...,
        "entries": [...]}``.

    Raises
    ------
    ValueError
        If an entry would not load back: a missing or unknown key, a wrong
        type, an infinite score, a program the grammar rejects, or a length or
        depth that does not match the program.
    """
    if isinstance(entries, (str, bytes, dict)):
        raise ValueError(f"entries must be a list of dicts, got {type(entries).__name__}")
    try:
        entries = list(entries)
    except TypeError:
        raise ValueError(f"entries must be a list of dicts, got {type(entries).__name__}") from None
    plain = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ValueError(f"entries[{i}] must be a dict, got {type(entry).__name__}")
        plain.append({str(k) if isinstance(k, str) else k: _json.plain(v) for k, v in entry.items()})
    d = {"format": HALL_OF_FAME_FORMAT, "version": FORMAT_VERSION, "task": task, "entries": plain}
    _check_hall_of_fame_dict(d)
    return d


def hall_of_fame_from_dict(d):
    """Read the entries of a hall of fame from a dict made by :func:`hall_of_fame_to_dict`.

    Parameters
    ----------
    d : dict

    Returns
    -------
    entries : list of dict
        Plain Python values; ``null`` scores become ``float("nan")``.
    task : str or None
        The recorded task.

    Raises
    ------
    ValueError
        For anything malformed, naming the entry and field.
    """
    return _check_hall_of_fame_dict(d)


def dumps_hall_of_fame(entries, task=None):
    """A hall of fame as JSON text (see :func:`hall_of_fame_to_dict`).

    Parameters
    ----------
    entries : iterable of dict
    task : str or None, default=None

    Returns
    -------
    str
    """
    return _json.dumps(hall_of_fame_to_dict(entries, task=task))


def loads_hall_of_fame(text, return_task=False):
    """Read a hall of fame from JSON text, never evaluating anything.

    Parameters
    ----------
    text : str or bytes
        The document; bytes must be UTF-8.
    return_task : bool, default=False
        Also return the recorded task.

    Returns
    -------
    entries : list of dict
        Every program has been parsed by the restricted grammar.
    task : str or None
        Only with ``return_task=True``.

    Raises
    ------
    ValueError
        For any malformed input, naming the entry and field.
    """
    entries, task = hall_of_fame_from_dict(_json.loads(text, "hall of fame"))
    return (entries, task) if return_task else entries


def save_hall_of_fame(entries, path, task=None):
    """Write a hall of fame to a JSON file, atomically.

    Parameters
    ----------
    entries : iterable of dict
        E.g. ``search.hall_of_fame_``; see :func:`hall_of_fame_to_dict`.
    path : str or path-like
        The file; replaced if it exists.
    task : {"multiclass", "binary", "regression"} or None, default=None
        The search's task, recorded in the file, e.g.
        ``search.best_loss_.task``.

    Examples
    --------
    >>> import os, tempfile
    >>> from metaloss_sk.io import load_hall_of_fame, save_hall_of_fame
    >>> entries = [{"program": "neg(mul(y, log(yhat)))", "infix": "-(y * log(yhat))",
    ...             "length": 5, "depth": 3, "generation": 0,
    ...             "mean_test_score": 0.9, "std_test_score": float("nan")}]
    >>> path = os.path.join(tempfile.mkdtemp(), "hof.json")
    >>> save_hall_of_fame(entries, path, task="multiclass")
    >>> load_hall_of_fame(path)[0]["std_test_score"]
    nan
    """
    _json.write(path, hall_of_fame_to_dict(entries, task=task))


def load_hall_of_fame(path, return_task=False):
    """Read a hall of fame from a JSON file written by :func:`save_hall_of_fame`.

    Safe for untrusted files: nothing in the file is ever evaluated.

    Parameters
    ----------
    path : str or path-like
    return_task : bool, default=False
        Also return the recorded task.

    Returns
    -------
    entries : list of dict
    task : str or None
        Only with ``return_task=True``.

    Raises
    ------
    ValueError
        For any malformed content (see :func:`loads_hall_of_fame`).
    OSError
        If the file cannot be read.
    """
    entries, task = hall_of_fame_from_dict(_json.read(path, "hall of fame"))
    return (entries, task) if return_task else entries


# --------------------------------------------------------------------------- validation


def _check_loss_dict(d, where):
    _check_header(d, where, LOSS_FORMAT)
    _check_keys(d, where, _LOSS_REQUIRED, _LOSS_OPTIONAL)
    program = _check_program(d["program"], f"{where}.program")
    task = _check_task(d["task"], f"{where}.task", allow_none=False)
    link = d.get("link", "auto")
    if not isinstance(link, str):
        raise ValueError(f"{where}.link must be a string, got {_kind(link)}")
    if link != "auto" and link not in LINKS[task]:
        raise ValueError(
            f"{where}.link={_show(link)} does not fit task={task!r}; "
            f"use one of {('auto',) + LINKS[task]}"
        )
    coefficients = _check_coefficients(d.get("coefficients"), f"{where}.coefficients", program)
    return str(d["program"]), task, str(link), coefficients


def _check_hall_of_fame_dict(d):
    where = "hall of fame"
    _check_header(d, where, HALL_OF_FAME_FORMAT)
    _check_keys(d, where, ("format", "version", "entries"), ("task",))
    task = _check_task(d.get("task"), f"{where}.task", allow_none=True)
    entries = d["entries"]
    if not isinstance(entries, (list, tuple)):
        raise ValueError(f"{where}.entries must be an array, got {_kind(entries)}")
    return [_check_entry(e, f"entries[{i}]") for i, e in enumerate(entries)], task


def _check_entry(e, where):
    _check_keys(e, where, _HOF_FIELDS, ("coefficients", "n_resources"))
    program = _check_program(e["program"], f"{where}.program")
    if not isinstance(e["infix"], str):
        raise ValueError(f"{where}.infix must be a string, got {_kind(e['infix'])}")
    length = _check_int(e["length"], f"{where}.length", low=1)
    if length != len(program):
        raise ValueError(f"{where}.length is {length} but the program has {len(program)} nodes")
    depth = _check_int(e["depth"], f"{where}.depth", low=0)
    if depth != program.depth:
        raise ValueError(f"{where}.depth is {depth} but the program has depth {program.depth}")
    out = {
        "program": str(e["program"]),
        "infix": str(e["infix"]),
        "length": length,
        "depth": depth,
        "generation": _check_int(e["generation"], f"{where}.generation", low=0),
        "mean_test_score": _check_score(e["mean_test_score"], f"{where}.mean_test_score"),
        "std_test_score": _check_score(e["std_test_score"], f"{where}.std_test_score"),
    }
    if "coefficients" in e:
        out["coefficients"] = _check_coefficients(e["coefficients"], f"{where}.coefficients", program)
    if "n_resources" in e:
        out["n_resources"] = _check_int(e["n_resources"], f"{where}.n_resources", low=1)
    return out


def _check_header(d, where, expected):
    if not isinstance(d, dict):
        raise ValueError(f"a {where} document must be a JSON object, got {_kind(d)}")
    if "format" not in d:
        raise ValueError(f"not a {where} document: no 'format' field (expected {expected!r})")
    fmt = d["format"]
    if not isinstance(fmt, str) or fmt != expected:
        shown = _show(fmt) if isinstance(fmt, str) else _kind(fmt)
        raise ValueError(f"not a {where} document: format is {shown}, expected {expected!r}")
    if "version" not in d:
        raise ValueError(f"{where} document has no 'version' field")
    version = d["version"]
    if isinstance(version, bool) or not isinstance(version, int):
        raise ValueError(f"{where}.version must be an integer, got {_kind(version)}")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{where} document has version {_show_int(version)}; this metaloss_sk reads version {FORMAT_VERSION}"
        )


def _check_keys(d, where, required, optional):
    if not isinstance(d, dict):
        raise ValueError(f"{where} must be a JSON object, got {_kind(d)}")
    bad = [k for k in d if not isinstance(k, str)]
    if bad:
        raise ValueError(f"{where} has a key that is not a string ({type(bad[0]).__name__})")
    unknown = [k for k in d if k not in required and k not in optional]
    if unknown:
        names = ", ".join(_show(k) for k in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        raise ValueError(f"{where} has unknown key(s) {names}; allowed: {', '.join(required + optional)}")
    missing = [k for k in required if k not in d]
    if missing:
        raise ValueError(f"{where} is missing the field(s) {', '.join(map(repr, missing))}")


def _check_program(text, where):
    if not isinstance(text, str):
        raise ValueError(f"{where} must be a string, got {_kind(text)}")
    if len(text) > MAX_PROGRAM_CHARS:
        raise ValueError(f"{where} is too long ({len(text)} characters; at most {MAX_PROGRAM_CHARS})")
    try:
        return parse(str(text))
    except ValueError as e:
        raise ValueError(f"{where} is not a valid program: {e}") from None


def _check_task(task, where, allow_none):
    if task is None and allow_none:
        return None
    if not isinstance(task, str):
        raise ValueError(f"{where} must be a string{' or null' if allow_none else ''}, got {_kind(task)}")
    if task not in TASKS:
        raise ValueError(f"{where}={_show(task)} is not supported; use one of {TASKS}")
    return str(task)


def _check_coefficients(values, where, program):
    if values is None:
        return None
    if not isinstance(values, (list, tuple)):
        raise ValueError(f"{where} must be an array of numbers or null, got {_kind(values)}")
    for i, c in enumerate(values):
        if isinstance(c, bool) or not isinstance(c, (int, float)):
            raise ValueError(f"{where}[{i}] must be a number, got {_kind(c)}")
        # Compare before converting: float() of a huge int overflows.
        if not (isinstance(c, int) or math.isfinite(c)) or abs(c) > _FLOAT32_MAX:
            raise ValueError(f"{where}[{i}] must be finite and within float32 range, got {_show_number(c)}")
    return [float(c) for c in check_coefficients(values, program, where)]


def _check_int(value, where, low):
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{where} must be an integer, got {_kind(value)}")
    if value < low:
        raise ValueError(f"{where} must be at least {low}, got {_show_int(value)}")
    if value > 2**63 - 1:
        raise ValueError(f"{where} is too large")
    return int(value)


def _check_score(value, where):
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where} must be a number or null, got {_kind(value)}")
    if isinstance(value, int):
        if abs(value) > 2**1023:
            raise ValueError(f"{where} is too large for a float")
        return float(value)
    if math.isnan(value):
        return math.nan
    if not math.isfinite(value):
        raise ValueError(f"{where} must be finite or null, got {_show_number(value)}")
    return float(value)


# --------------------------------------------------------------------------- helpers


def _kind(value):
    """What a value is, in JSON words, without ever calling its repr."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _show(text, n=40):
    """repr of a string, shortened first (strings in documents may be huge)."""
    return repr(text if len(text) <= n else text[: n - 3] + "...")


def _show_int(value):
    return str(value) if abs(value) < 10**20 else ("a huge negative integer" if value < 0 else "a huge integer")


def _show_number(value):
    return _show_int(value) if isinstance(value, int) else repr(float(value))
