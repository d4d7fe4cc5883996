"""Reading JSON inputs with errors that name the file, and writing result files so that
nothing is ever half-written.

Every file the package writes (checkpoints, configs, logs, results, ONNX models, figures) goes
through `write_atomic`: the content goes to `<name>.tmp`, is flushed to the disk (fsync), and
is renamed over the target, whose folder is then fsynced too, so neither a crash nor a power
loss can leave a truncated or empty file under the real name. A full disk or a read-only folder
is a `WriteError` naming the path; the temporary file is removed and the previous version of
the target stays as it was.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from .errors import PoseDataError, WriteError

try:
    import orjson as _orjson
except ImportError:  # optional: the standard parser gives the same documents
    _orjson = None
# Every digit to "0", "." and "e"/"E" kept, the rest to " ": an integer part is " 000...".
_DIGITS = bytes(48 if 48 <= i <= 57 else i if i in b".eE" else 32 for i in range(256))
_LONG = b"0" * 19


def _has_long_integer(data: bytes) -> bool:
    """An integer part of 19 digits or more: maybe beyond 64 bits (orjson reads integers below
    -2**63 or above 2**64 - 1 as floats). A translate and a find: fast."""
    digits = data.translate(_DIGITS)
    return digits.startswith(_LONG) or digits.find(b" " + _LONG) >= 0


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Python's cycle collector paused: reading, checking and scoring a large COCO document makes
    hundreds of thousands of dicts and lists and no cycles, and every collection on the way
    walks all of them again (about a tenth of the time of a 5,000-image file)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@gc_paused()
def read_json(path: str | Path, what: str = "annotation file") -> Any:
    """A JSON file, or a PoseDataError naming it and what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise PoseDataError(f"{path}: {what} not found")
    try:
        data = path.read_bytes()
        # orjson is several times faster on large files (`poserenet[fast]`), but reads integers
        # beyond 64 bits as floats: those files go to the standard parser, as do its errors.
        if _orjson is not None and not _has_long_integer(data):
            try:
                return _orjson.loads(data)
            except _orjson.JSONDecodeError:
                pass  # the standard parser says what is wrong, or takes what orjson does not (10**400)
        return json.loads(data.decode("utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise PoseDataError(f"{path}: cannot read {what}: {e}") from None
    except json.JSONDecodeError as e:
        raise PoseDataError(f"{path}: {what} is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
    except RecursionError:
        raise PoseDataError(f"{path}: {what} is nested too deeply") from None


def is_id(value: Any) -> bool:
    """A COCO id: a string or a 64-bit integer (pycocotools keeps ids in numpy arrays); not a
    bool, although `true == 1` in Python."""
    return (isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63) or isinstance(value, str)


def all_ids(values: list[Any]) -> bool:
    """`is_id` of every one of `values`, in bulk: all strings, or all 64-bit integers."""
    kinds = set(map(type, values))
    if kinds == {int}:
        return -(2**63) <= min(values) and max(values) < 2**63
    return kinds <= {str}


def finite_numbers(value: Any) -> np.ndarray | None:
    """`value` as a float64 array if it is a flat JSON list of finite numbers (not booleans,
    text, nested lists, NaN, infinity or integers too large for a float), else None. Fast: the
    readers check every keypoint of every person with it."""
    if not isinstance(value, list):
        return None
    rows = finite_rows([value], len(value))
    return None if rows is None else rows[0]


def _lists_of(values: list[Any], n: int) -> bool:
    return set(map(type, values)) == {list} and set(map(len, values)) == {n}


def finite_rows(values: list[Any], n: int) -> np.ndarray | None:
    """`values` as a float64 array [len(values), n] if every one of them is a list of `n` finite
    numbers (ints and floats, numpy's float64 among them; not booleans, text, nested lists, NaN,
    infinity or integers too large for a float), else None. One pass over a whole file's keypoints:
    the readers take it when a file is clean and check record by record, to name the bad one,
    when it is not."""
    if not values:
        return np.zeros((0, n))
    if not _lists_of(values, n):
        return None
    if not all(t is int or issubclass(t, float) for t in set(map(type, itertools.chain.from_iterable(values)))):
        return None  # a bool is an int to Python, but not a number here
    try:
        arr = np.fromiter(itertools.chain.from_iterable(values), np.float64, len(values) * n)
    except OverflowError:  # an integer too large for a float
        return None
    return arr.reshape(len(values), n) if np.isfinite(arr).all() else None


def clean_rows(values: list[Any], n: int) -> bool:
    """Whether `finite_rows(values, n)` accepts `values`, without building the array. Results
    files hold floats, and for them one pass answers: `float.conjugate` admits floats alone, and
    their sum is finite only if every one of them is (an overflow to infinity or any other type
    goes to `finite_rows`, which decides)."""
    if not values:
        return True
    if not _lists_of(values, n):
        return False
    try:
        if math.isfinite(sum(map(float.conjugate, itertools.chain.from_iterable(values)), 0.0)):
            return True
    except TypeError:  # an integer, text, a nested list...
        pass
    return finite_rows(values, n) is not None


def write_atomic(path: str | Path, write: Callable[[Path], None]) -> None:
    """`write(tmp)` writes the content to the temporary path it is given; it then replaces `path`."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync(path.parent)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise WriteError(f"{path}: cannot write ({e.strerror or e})") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text_atomic(path: str | Path, text: str) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(text))


def write_json_atomic(path: str | Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj))
