"""Atomic file writes: write to a temp file beside the target, then rename over it.

A crash or Ctrl-C mid-write leaves the previous file (or none) under the final name, never half of one.
Files get the permissions of a plain `open` (0666 less the umask), not mkstemp's private 0600.
Inside `recording(callback)` every write reports its final path to `callback` before its first byte, so a run
folder can list exactly what its command wrote, even when the process is killed mid-way, and can refuse a path.
"""

from __future__ import annotations

import contextlib
import contextvars
import csv
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import IO, Callable, Iterator

_RECORDER: contextvars.ContextVar[Callable[[Path], None] | None] = contextvars.ContextVar(
    "staa_atomic_recorder", default=None
)
# mkstemp's names: "." + target name + "." + 8 random characters + ".tmp"
_TEMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def recording(callback: Callable[[Path], None]) -> Iterator[None]:
    """Report the path of every atomic write in this block (this thread, and processes forked from it)."""
    token = _RECORDER.set(callback)
    try:
        yield
    finally:
        _RECORDER.reset(token)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Open a temp file for writing (`mode` "w" or "wb"); it replaces `path` only if the block succeeds."""
    path = Path(path)
    note_written(path)  # before its folder or first byte: the recorder may refuse the path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": ""})) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """A temp folder to fill (a library's `save_pretrained`); it replaces `path` whole only if the block succeeds,
    and each file in it is reported to the active `recording`."""
    path = Path(path)
    note_written(path)  # before anything is written: the recorder may refuse the folder
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmpdir"))
    try:
        yield tmp
        for f in sorted(q for q in tmp.rglob("*") if q.is_file()):
            note_written(path / f.relative_to(tmp))
        if path.is_dir():
            old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmpdir"))
            os.replace(path, old / path.name)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def note_written(path: str | os.PathLike) -> None:
    """Report a file written other than through `atomic_open` (a lock file) to the active `recording`, if any."""
    if (record := _RECORDER.get()) is not None:
        record(Path(path))


def remove_stale_temp_files(folder: str | os.PathLike) -> int:
    """Delete the temp files that writes killed mid-way (kill -9, power loss) left under `folder`; returns how many.
    Call it only while no other process writes there (a run folder's lock is held)."""
    count = 0
    for p in Path(folder).rglob(".*.tmp"):
        if _TEMP_NAME.match(p.name) and p.is_file() and not p.is_symlink():
            p.unlink(missing_ok=True)
            count += 1
    for p in list(Path(folder).rglob(".*.tmpdir")):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
            count += 1
    return count


_UNSAFE = re.compile(r"[^A-Za-z0-9_.=-]")


def safe_name(text: str, limit: int = 100) -> str:
    """`text` as a file name: kept when it is one already (short, plain characters, not hidden); otherwise its unsafe
    characters become `_`, it is cut to `limit` and a hash of the full text is appended, so two names never collide."""
    name = _UNSAFE.sub("_", text)
    if name == text and 0 < len(name) <= limit and not name.startswith("."):
        return name
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{name.lstrip('.')[: limit - 11]}-{digest}"


def spreadsheet_safe(value):
    """A text cell that a spreadsheet would run as a formula (=, +, -, @, tab, CR first) gets a leading quote
    (OWASP's advice against CSV injection); numbers and other text pass unchanged."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def write_csv(path: str | os.PathLike, fieldnames: list[str], rows, *, safe: bool = True) -> Path:
    """Rows (dicts) as CSV, atomically; with `safe`, text cells are neutralised for spreadsheets (`spreadsheet_safe`)."""
    with atomic_open(path) as fh:
        writer = csv.DictWriter(fh, fieldnames=fieldnames, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({k: spreadsheet_safe(v) for k, v in r.items()} if safe else r for r in rows)
    return Path(path)


def write_json(path: str | os.PathLike, obj) -> Path:
    with atomic_open(path) as fh:
        json.dump(obj, fh, indent=2, sort_keys=True)
        fh.write("\n")
    return Path(path)
