"""PESQ (wide-band, ITU-T P.862.2) and STOI / extended STOI of one clip: the slow, per-clip scores, kept free of
torch so that pool workers start fast."""
from __future__ import annotations

import math

import numpy as np
import scipy.signal
from pesq import BufferTooShortError, NoUtterancesError, PesqError, pesq
from pystoi import stoi

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
