"""Plain JSON files for the package's documents: strict, bounded reads and atomic writes.

Every JSON document the package writes (losses, halls of fame, checkpoints)
goes through :func:`dumps` / :func:`write`, and every one it reads through
:func:`loads` / :func:`read`:

- values are plain Python (NumPy and torch values converted, NaN written as
  ``null``; infinities refused), so any strict JSON parser reads the files;
- reading is bounded in size and nesting, refuses ``NaN``/``Infinity`` tokens
  and duplicate keys, and never evaluates anything;
- a file is written to a temporary file in the same directory that then
  replaces the target, so a crash never leaves a half-written file.
"""

import contextlib
import json
import math
import os
import re
import secrets
import stat

import numpy as np
import torch

__all__ = ["MAX_DOCUMENT_SIZE", "MAX_NESTING", "dumps", "loads", "plain", "read", "write"]

#: Largest document accepted, in characters (or bytes, when reading bytes).
MAX_DOCUMENT_SIZE = 16 * 2**20
#: Deepest JSON nesting accepted.
MAX_NESTING = 32
# A JSON string: quotes around anything but quotes and backslashes, or escapes.
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def plain(value):
    """NumPy and torch values as plain Python ones, recursively; NaN as None (infinities stay, and fail to write)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().tolist()
    elif isinstance(value, np.ndarray):
        value = value.tolist()
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, str):
        return str(value)
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def dumps(document):
    """Strict JSON text of a document (made :func:`plain` first)."""
    return json.dumps(plain(document), indent=2, allow_nan=False) + "\n"


def write(path, document):
    """Write a document to ``path`` atomically."""
    _atomic_write(os.fspath(path), dumps(document))


def loads(text, what, max_size=MAX_DOCUMENT_SIZE):
    """Parse JSON text (str or bytes), bounded and strict; ValueError naming ``what`` otherwise."""
    if isinstance(text, (bytes, bytearray, memoryview)):
        if len(text) > max_size:
            raise ValueError(f"{what} document is too large ({len(text)} bytes; at most {max_size})")
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"{what} document is not valid UTF-8: {e.reason} at byte {e.start}") from None
    if not isinstance(text, str):
        raise ValueError(f"a {what} document must be str or bytes, got {type(text).__name__}")
    if len(text) > max_size:
        raise ValueError(f"{what} document is too large ({len(text)} characters; at most {max_size})")
    _check_nesting(text)
    try:
        return json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_object)
    except RecursionError:
        raise ValueError(f"{what} document is nested too deeply") from None
    except ValueError as e:  # JSONDecodeError, the hooks above, over-long integers
        raise ValueError(f"{what} document is not valid JSON: {_shorten(str(e))}") from None


def read(path, what, max_size=MAX_DOCUMENT_SIZE):
    """:func:`loads` of a file's bytes; OSError if it cannot be read."""
    with open(path, "rb") as f:
        data = f.read(max_size + 1)
    if len(data) > max_size:
        raise ValueError(f"{os.fspath(path)!s} is too large (more than {max_size} bytes)")
    return loads(data, what, max_size)


def _reject_constant(name):
    raise ValueError(f"non-finite number {name} is not allowed")


def _object(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            raise ValueError(f"duplicate key {k[:40]!r}")
        d[k] = v
    return d


def _check_nesting(text):
    """Refuse deep nesting before json.loads can recurse into it."""
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    if len(brackets) <= MAX_NESTING:
        return
    codes = np.frombuffer(brackets.encode("ascii"), dtype=np.uint8)
    steps = np.where((codes == ord("[")) | (codes == ord("{")), 1, -1)
    if np.cumsum(steps).max() > MAX_NESTING:
        raise ValueError(f"document is nested more than {MAX_NESTING} levels deep")


def _shorten(text, n=200):
    return text if len(text) <= n else text[: n - 3] + "..."


def _temporary(path):
    """``(fd, name)`` of a new temporary file next to ``path``; an OSError names ``path``, not the hidden file."""
    directory = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = os.path.join(directory, f".{base}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp  # the umask applies, as for open(path, "w")
        except FileExistsError:
            continue
        except OSError as e:
            raise type(e)(e.errno, e.strerror, path) from None
    raise FileExistsError(f"could not create a temporary file next to {path}")  # pragma: no cover


def try_write(path):
    """Create and remove the temporary file :func:`write` would write ``path`` through; OSError if it cannot."""
    fd, tmp = _temporary(os.fspath(path))
    os.close(fd)
    os.unlink(tmp)


def _atomic_write(path, text):
    """Write ``text`` to ``path`` through a temporary file in the same directory."""
    path = os.fspath(path)
    data = text.encode("utf-8")
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = _temporary(path)
    try:
        with os.fdopen(fd, "wb") as f:
            with contextlib.suppress(OSError):  # keep the mode of a file being replaced
                os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable (POSIX)
        with contextlib.suppress(OSError):
            dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
