"""Audio I/O with soundfile, and the checks every waveform passes before a model sees it.

Every problem is an `AudioError` naming the file and what is wrong with it, so a run over a
user's folder fails (or skips, where the user asked for that) with a message they can act on.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from staa.io.atomic import atomic_open

MIN_SAMPLE_RATE = 4_000
MAX_SAMPLE_RATE = 384_000
MAX_SECONDS = 600  # longer files are refused before decoding (an hour of 48 kHz float32 is 700 MB)
# A sample this close to full scale counts as clipped; more than CLIP_SHARE of them marks the clip.
CLIP_LEVEL = 0.999
CLIP_SHARE = 0.01
# libsndfile notes a short data chunk as "data : 32000 (should be 15978)" and then reads what is there.
_TRUNCATED = re.compile(r"^(?:data|SSND)\s*:\s*\d+\s*\(should be \d+\)", re.MULTILINE)


class AudioError(ValueError):
    """A file (or array) that cannot be used as audio; the message names it and the problem."""

    def __init__(self, source: str | os.PathLike, problem: str):
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")


def check_waveform(
    x: np.ndarray | torch.Tensor,
    source: str | os.PathLike = "<array>",
    *,
    min_samples: int = 1,
    allow_clipped: bool = False,
) -> None:
    """Raise AudioError if `x` (any shape, samples last) is empty, non-finite, out of [-1, 1] or clipped."""
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if arr.size == 0 or arr.shape[-1] == 0:
        raise AudioError(source, "has zero samples")
    if arr.shape[-1] < min_samples:
        raise AudioError(source, f"is {arr.shape[-1]} samples long, shorter than the minimum {min_samples}")
    if not np.all(np.isfinite(arr)):
        raise AudioError(source, f"contains {int(np.sum(~np.isfinite(arr)))} NaN/Inf samples")
    peak = float(np.max(np.abs(arr)))
    if peak > 1.0:
        raise AudioError(source, f"has samples outside [-1, 1] (peak {peak:.3g}); scale it first")
    clipped = float(np.mean(np.abs(arr) >= CLIP_LEVEL))
    if clipped > CLIP_SHARE and not allow_clipped:
        raise AudioError(source, f"is clipped: {clipped:.1%} of samples at full scale (allow_clipped=True to accept)")


def probe_audio(path: str | os.PathLike):
    """Read only the header; raise AudioError if the file is missing, empty, corrupt or truncated."""
    path = Path(path)
    if path.is_dir():
        raise AudioError(path, "is a folder, not an audio file")
    if not path.is_file():
        raise AudioError(path, "no such file")
    if path.stat().st_size == 0:
        raise AudioError(path, "is an empty file (0 bytes)")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise AudioError(path, f"is not readable audio (corrupt or not an audio format): {err}") from None
    if _TRUNCATED.search(info.extra_info or ""):
        raise AudioError(path, "is truncated: the header promises more audio than the file holds")
    if info.frames == 0:
        raise AudioError(path, "has zero samples")
    if info.samplerate > 0 and info.frames / info.samplerate > MAX_SECONDS:
        # decoding it would take gigabytes of memory: an utterance corpus has nothing this long
        raise AudioError(
            path,
            f"is {info.frames / info.samplerate / 60:.0f} min long; clips longer than {MAX_SECONDS // 60} min are refused",
        )
    return info


def load_audio(
    path: str | os.PathLike,
    sample_rate: int | None = 16_000,
    *,
    mono: str = "require",
    min_seconds: float = 0.0,
    allow_clipped: bool = False,
) -> tuple[torch.Tensor, int]:
    """Read any soundfile-supported file as float32 mono `[T]`, resampled to `sample_rate` (None keeps it).

    `mono="require"` refuses multichannel files; `mono="mean"` down-mixes them by averaging channels.
    """
    if mono not in ("require", "mean"):
        raise ValueError(f"mono must be 'require' or 'mean', not {mono!r}")
    path = Path(path)
    probe_audio(path)
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise AudioError(path, f"is not readable audio (corrupt or not an audio format): {err}") from None
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise AudioError(path, f"has an implausible sample rate of {rate} Hz")
    if data.shape[1] > 1:
        if mono == "require":
            raise AudioError(path, f"has {data.shape[1]} channels; mono is required (or pass mono='mean')")
        data = data.mean(axis=1, keepdims=True)
    wav = data[:, 0]
    check_waveform(wav, path, min_samples=max(1, int(min_seconds * rate)), allow_clipped=allow_clipped)
    out = torch.from_numpy(np.ascontiguousarray(wav))
    if sample_rate is not None and rate != sample_rate:
        out = AF.resample(out, rate, sample_rate).clamp_(-1.0, 1.0)
        rate = sample_rate
    return out, rate


def save_audio(
    path: str | os.PathLike, x: torch.Tensor | np.ndarray, sample_rate: int, subtype: str = "PCM_16"
) -> Path:
    """Write mono `x` to WAV/FLAC (by suffix) atomically: a crash never leaves half a file under `path`."""
    path = Path(path)
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    arr = np.asarray(arr, dtype=np.float32).reshape(-1)
    check_waveform(arr, path, allow_clipped=True)
    fmt = {".wav": "WAV", ".flac": "FLAC"}.get(path.suffix.lower())
    if fmt is None:
        raise AudioError(path, "can only be written as .wav or .flac")
    try:
        with atomic_open(path, "wb") as fh:
            sf.write(fh, arr, sample_rate, subtype=subtype, format=fmt)
    except (AssertionError, RuntimeError, sf.LibsndfileError) as err:
        # soundfile asserts on a short write (a full disk): the disk's problem, said as an OSError
        full = isinstance(err, AssertionError)
        what = "could not be written: the disk is full" if full else f"could not be written ({err})"
        raise OSError(errno.ENOSPC if full else errno.EIO, what, str(path)) from None
    return path
