"""Run folders: what a command wrote there, who is writing there now, and what it was run on.

`OUT/.staa-run/` holds
- `run.json`: the command, and the SHA-256 of every input file (checkpoints, manifests, configs) it was given;
  `--resume` refuses when one of them has changed since;
- `written`: the folder-relative path of every file the command wrote, one per line, appended before each file
  takes its final name; `--force` removes exactly these and nothing else the folder holds;
- `lock`: held for the whole run (`staa.io.lock`), so a second run into the folder is refused.

A folder is a run folder only if staa-ser made it: `--resume` and `--force` refuse a non-empty folder without
`.staa-run/`, and every command refuses an output folder that holds one of its inputs or lies inside a data folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Iterable

from staa.io.atomic import recording, remove_stale_temp_files, write_json
from staa.io.checkpoint import file_sha256
from staa.io.lock import META, FolderLock, LockError

log = logging.getLogger(__name__)


SETUP_FILES = {"config.json"}  # what a command writes before its first result


class RunDirError(ValueError):
    """An output folder that cannot be used for this run; the message names it and says why."""


def _resolve(path: Path) -> Path:
    try:
        return path.resolve()
    except (RuntimeError, OSError) as err:  # a symlink loop: RuntimeError before Python 3.13, OSError after
        raise RunDirError(f"{path}: cannot be resolved ({err})") from None


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or path.is_relative_to(folder)


def check_name(out) -> None:
    """Refuse an --out that is not valid UTF-8 (`staa.cli.main` checks every command's, before any work)."""
    # a byte that is not UTF-8 (a surrogate escape from argv) would fail only when a report names the folder
    try:
        str(out).encode("utf-8")
    except UnicodeEncodeError:
        raise RunDirError(f"{ascii(str(out))}: is not valid UTF-8; choose another --out") from None


def check_inputs(out: str | os.PathLike, inputs: Iterable = (), data_dirs: Iterable = ()) -> None:
    """Refuse an output folder that holds one of `inputs` (files, folders or victim specs the command reads) or that
    lies inside, or holds, one of `data_dirs`; paths are compared resolved, through symlinks."""
    out_path = Path(out)
    target = _resolve(out_path)
    for d in data_dirs:
        folder = _resolve(Path(d))
        if _inside(target, folder):
            raise RunDirError(
                f"{out_path}: outputs may not go inside the data folder {d}; a data folder is never written to"
            )
        if _inside(folder, target):
            raise RunDirError(f"{out_path}: holds the data folder {d}; choose an output folder outside your data")
    from staa.models.victim import source_path

    for p in inputs:
        path = source_path(p)  # a victim spec's file or folder; any other input is a path already
        if path is not None and _inside(_resolve(path), target):
            raise RunDirError(f"{out_path}: holds the input {p}; choose an output folder outside your inputs")


def check_output_file(out: str | os.PathLike, inputs: Iterable = (), data_dirs: Iterable = ()) -> None:
    """Refuse a single output file (`--out FILE.json`) that is a folder, one of `inputs` (files, folders or victim
    specs) or inside one, or inside one of `data_dirs`; compared resolved, through symlinks."""
    out_path = Path(out)
    if out_path.is_dir():
        raise RunDirError(f"{out_path}: is a folder; --out names the JSON file to write")
    target = _resolve(out_path)
    for d in data_dirs:
        if _inside(target, _resolve(Path(d))):
            raise RunDirError(f"{out_path}: lies inside the data folder {d}; a data folder is never written to")
    from staa.models.victim import source_path

    for p in inputs:
        path = source_path(p)
        if path is not None and _inside(target, _resolve(path)):
            raise RunDirError(f"{out_path}: is the input {p}; choose another --out, inputs are never overwritten")


def audio_fingerprint(paths: Iterable) -> str:
    """SHA-256 over every audio file's name, size, mtime and content (head and tail past 1 MiB): a file replaced
    under the same name, even at the same size, changes it; the manifest's own hash cannot see that."""
    h = hashlib.sha256()
    for name in sorted(map(str, paths)):
        try:
            st = os.stat(name)
            with open(name, "rb") as fh:
                head = fh.read(1 << 20)
                if st.st_size > 1 << 20:
                    fh.seek(max(1 << 20, st.st_size - (1 << 16)))
                    head += fh.read()
        except OSError:
            h.update(f"{name}\tmissing\n".encode("utf-8", "surrogateescape"))
            continue
        digest = hashlib.sha256(head).hexdigest()
        h.update(f"{name}\t{st.st_size}\t{st.st_mtime_ns}\t{digest}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


class RunDir:
    """An output folder claimed by one command: `with RunDir.claim(...) as run:` holds its lock and records every
    atomic write inside it until the block ends."""

    def __init__(self, path: Path, command: str, lock: FolderLock):
        self.path, self.command, self._lock = path, command, lock
        self._root = path.resolve()
        self._meta = path / META
        self._recording = None
        self._fresh = False

    @classmethod
    def claim(
        cls,
        out: str | os.PathLike,
        command: str,
        *,
        resume: bool = False,
        force: bool = False,
        inputs: dict[str, str | os.PathLike] | None = None,
        audio: Iterable = (),
    ) -> "RunDir":
        """Lock `out` for `command`; `--force` clears what an earlier run of it wrote, `--resume` checks that the
        `inputs` (label -> file) and the `audio` files are those that run read. A non-empty folder needs one of the
        two."""
        path = Path(out)
        _resolve(path)
        if path.exists() and not path.is_dir():
            raise RunDirError(f"{path}: exists and is not a folder")
        if path.is_dir() and not (path / META).is_dir() and any(path.iterdir()):
            cls._refuse_foreign(path, resume or force)  # before the lock: nothing is written into a folder not ours
        try:
            lock = FolderLock(path, command)
        except LockError as err:
            raise RunDirError(str(err)) from None
        run = cls(path, command, lock)
        try:
            run._prepare(resume, force, {k: str(v) for k, v in (inputs or {}).items()}, list(audio))
        except BaseException:
            lock.release()
            raise
        return run

    def _contents(self) -> list[Path]:
        return [p for p in self.path.iterdir() if p.name != META]

    def _info(self) -> dict | None:
        f = self._meta / "run.json"
        if not f.is_file():
            return None
        try:
            info = json.loads(f.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError, OSError):
            info = None
        if (
            not isinstance(info, dict)
            or not isinstance(info.get("command"), str)
            or not isinstance(info.get("inputs"), dict)
            or not all(isinstance(v, dict) for v in info["inputs"].values())
        ):
            raise RunDirError(f"{f}: is damaged; move the folder aside and start a new run")
        return info

    @staticmethod
    def _refuse_foreign(path: Path, asked: bool) -> None:
        if asked:
            raise RunDirError(
                f"{path}: was not made by staa-ser (no {META}/), so --resume and --force do not touch it; choose another --out"
            )
        raise RunDirError(
            f"{path}: exists, is not empty and was not made by a staa-ser command (no {META}/); choose another "
            "--out (--resume and --force work only on staa-ser run folders)"
        )

    def _prepare(self, resume: bool, force: bool, inputs: dict[str, str], audio: list) -> None:
        info = self._info()
        contents = self._contents()
        self._fresh = not contents
        if contents and info is None:
            self._refuse_foreign(self.path, resume or force)
        if stale := remove_stale_temp_files(self.path):
            log.info("%s: removed %d temp file(s) of an interrupted write", self.path, stale)
        contents = self._contents()
        if info is not None and info["command"] != self.command and (contents or resume):
            raise RunDirError(
                f"{self.path}: is a `staa {info['command']}` run folder, not one of `staa {self.command}`; choose another --out"
            )
        if contents and not (resume or force):
            raise RunDirError(
                f"{self.path}: exists and is not empty; pass --resume to continue that run or --force to start over"
            )
        hashes = {label: self._hash(p) for label, p in inputs.items()}
        if audio:
            hashes["audio files"] = {"path": f"the {len(audio)} audio files", "sha256": audio_fingerprint(audio)}
        if resume and info is not None:
            for label, digest in hashes.items():
                old = info["inputs"].get(label)
                if old is not None and old.get("sha256") != digest["sha256"]:
                    raise RunDirError(
                        f"{digest['path']}: changed since this run started ({label}); --resume would mix results of "
                        "two inputs. Rerun with --force to start over"
                    )
            hashes = {**info["inputs"], **hashes}
        if force and info is not None:
            self._remove_written()
        write_json(self._meta / "run.json", {"tool": "staa-ser", "command": self.command, "inputs": hashes})

    @staticmethod
    def _hash(path: str) -> dict:
        from staa.models.victim import fingerprint, source_path, split_spec

        if split_spec(path)[0]:  # a user's model (hf:DIR, torchscript:FILE, python:module:function): its files
            found = source_path(path)
            return {"path": path, "sha256": fingerprint(path) if found is not None and found.exists() else None}
        p = Path(path)
        if p.is_dir():  # a dataset folder: its listing (names and sizes), not gigabytes of audio
            h = hashlib.sha256()
            for f in sorted(q for q in p.rglob("*") if q.is_file()):
                h.update(f"{f.relative_to(p).as_posix()}\t{f.stat().st_size}\n".encode())
            return {"path": path, "sha256": h.hexdigest()}
        if not p.is_file():
            return {"path": path, "sha256": None}  # the command reports a missing input in its own words
        return {"path": path, "sha256": file_sha256(p)}

    def written(self) -> list[Path]:
        """The files this folder's command wrote (those still there), as paths under the folder."""
        journal = self._meta / "written"
        if not journal.is_file():
            return []
        out = []
        for line in dict.fromkeys(journal.read_text(encoding="utf-8", errors="replace").splitlines()):
            p = self.path / line
            # a hand-edited journal must not reach outside the folder (through "..", an absolute path or a link)
            if (
                line
                and not Path(line).is_absolute()
                and ".." not in Path(line).parts
                and _inside(p.parent.resolve(), self._root)
            ):
                if p.is_file() or p.is_symlink():
                    out.append(p)
        return out

    def _remove_written(self) -> None:
        files = self.written()
        for p in files:
            p.unlink(missing_ok=True)
        for folder in sorted(
            {q for p in files for q in p.parents if _inside(q.resolve(), self._root) and q != self.path},
            key=lambda q: len(q.parts),
            reverse=True,
        ):
            try:
                folder.rmdir()  # only folders the removal left empty
            except OSError:
                pass
        (self._meta / "written").unlink(missing_ok=True)
        log.info("%s: --force removed %d file(s) of the earlier run", self.path, len(files))

    def record(self, path: Path) -> None:
        """Journal a write (called before its first byte); refuse one that a symlink inside the folder would carry
        out of it (a linked `examples/` would otherwise write into, and on --force delete from, a user's folder)."""
        real = _resolve(path.parent) / path.name
        try:
            rel = real.relative_to(self._root)
        except ValueError:
            if _inside(Path(os.path.abspath(path)), Path(os.path.abspath(self.path))):
                raise RunDirError(
                    f"{path}: a symlink inside the run folder {self.path} leads out of it; staa-ser never writes "
                    "through one (remove the link, or choose another --out)"
                ) from None
            return  # written outside the run folder: not this folder's business
        with open(self._meta / "written", "a", encoding="utf-8") as fh:
            fh.write(f"{rel.as_posix()}\n")

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> "RunDir":
        self._recording = recording(self.record)
        self._recording.__enter__()
        return self

    def __exit__(self, exc_type, *exc) -> None:
        try:
            self._recording.__exit__(exc_type, *exc)
            if exc_type is not None and self._fresh:
                self._undo_setup()
        finally:
            self.release()

    def _undo_setup(self) -> None:
        """A fresh run that failed before computing anything (bad data found after the claim) leaves the folder
        empty again, so the corrected command runs there without --force; anything more it wrote is kept."""
        written = self.written()
        if all(p.parent == self.path and p.name in SETUP_FILES for p in written):
            for p in written:
                p.unlink(missing_ok=True)
            (self._meta / "written").unlink(missing_ok=True)
