"""PESQ (wide-band, ITU-T P.862.2) and STOI / extended STOI: the slow, per-clip scores, computed in a process pool
across cores (`perceptual_scores`). Free of torch, so that pool workers start fast."""

from __future__ import annotations

import math
import os

import numpy as np
import scipy.signal
from pesq import BufferTooShortError, NoUtterancesError, PesqError, pesq
from pystoi import stoi

from staa.io.workers import worker_pool

PESQ_RATE = 16000  # wide-band PESQ is defined at 16 kHz


def _at_16k(x: np.ndarray, rate: int) -> np.ndarray:
    if rate == PESQ_RATE:
        return x
    g = math.gcd(rate, PESQ_RATE)
    return scipy.signal.resample_poly(x, PESQ_RATE // g, rate // g)


def clip_scores(clean: np.ndarray, degraded: np.ndarray, rate: int) -> dict:
    """{'pesq', 'stoi', 'estoi', 'pesq_error'}; PESQ is NaN with the reason in `pesq_error` when it refuses
    a clip (no utterance detected in silence or noise, too short)."""
    out = {"pesq": math.nan, "pesq_error": ""}
    try:
        out["pesq"] = float(pesq(PESQ_RATE, _at_16k(clean, rate), _at_16k(degraded, rate), "wb"))
    except NoUtterancesError:
        out["pesq_error"] = "no utterance detected"
    except BufferTooShortError:
        out["pesq_error"] = "clip too short for PESQ"
    except (PesqError, ValueError) as err:
        out["pesq_error"] = str(err) or type(err).__name__
    out["stoi"] = float(stoi(clean, degraded, rate, extended=False))
    out["estoi"] = float(stoi(clean, degraded, rate, extended=True))
    return out


def _star(args):
    return clip_scores(*args)


def perceptual_scores(clean, degraded, sample_rate: int, *, workers: int | None = None) -> list[dict]:
    """PESQ-wb, STOI and ESTOI for each pair of clips ([N, T] arrays or tensors), `workers` processes
    (default: every core this process may use; 1 computes in process)."""
    clean = [np.asarray(c, dtype=np.float64) for c in _numpy(clean)]
    degraded = [np.asarray(d, dtype=np.float64) for d in _numpy(degraded)]
    if len(clean) != len(degraded):
        raise ValueError(f"{len(clean)} clean clips but {len(degraded)} degraded ones")
    jobs = [(c, d, sample_rate) for c, d in zip(clean, degraded)]
    workers = workers or len(os.sched_getaffinity(0))
    if workers <= 1 or len(jobs) < 4:
        return [clip_scores(*j) for j in jobs]
    with worker_pool(workers) as pool:
        return list(pool.map(_star, jobs, chunksize=max(1, len(jobs) // (4 * workers))))


def _numpy(x):
    return x.detach().cpu().numpy() if hasattr(x, "detach") else x  # a torch tensor, without importing torch
