"""One writer per folder: an exclusive `flock` on `FOLDER/.staa-run/lock`.

The kernel releases the lock however its holder ends (kill -9 included), so a lock is never stale in the
sense of blocking forever; the holder's pid and command stay in the file, so the next holder can say that
the run before it ended without cleaning up.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path

from staa.io.atomic import note_written

log = logging.getLogger(__name__)

META = ".staa-run"


class LockError(ValueError):
    """The folder is held by another process, or cannot be written at all."""


class FolderLock:
    def __init__(self, folder: str | os.PathLike, what: str):
        self.folder = Path(folder)
        lock = self.folder / META / "lock"
        try:
            lock.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as err:
            raise LockError(f"{self.folder}: cannot write here ({err.strerror})") from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._holder() or "another process"
            os.close(self._fd)
            raise LockError(
                f"{self.folder}: another staa run is writing here ({holder}); wait for it or choose another folder"
            ) from None
        if previous := self._holder():
            log.warning(
                "%s: the run that held this folder (%s) ended without releasing it; taking over", self.folder, previous
            )
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"pid {os.getpid()}, staa {what}\n".encode(), 0)
        note_written(lock)  # inside another run's folder (the demo's corpus), --force there removes it too

    def _holder(self) -> str:
        return os.pread(self._fd, 200, 0).decode(errors="replace").strip()

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)  # a clean end: the next holder has nothing to report
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "FolderLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()
