"""Per-clip scores of an adversarial (or defended) clip against its clean original.

Cheap ones in torch over a batch (l0, linf, distortion dB as in STAA-Net's paper, SNR, segmental SNR);
PESQ-wb / STOI / ESTOI in a process pool across cores (`perceptual_scores`)."""
from __future__ import annotations

import os

import numpy as np
import torch

from eval.perceptual import _star, clip_scores
from staa.perturbation_metrics import distortion_db, l0_count, l0_ratio, linf, snr_db
from staa.workers import worker_pool

__all__ = ["accuracy", "fooling_rate", "l0_count", "l0_ratio", "linf", "distortion_db", "snr_db", "seg_snr_db",
           "perturbation_scores", "perceptual_scores", "clip_scores"]


def accuracy(pred: torch.Tensor, labels: torch.Tensor) -> float:
    return float((pred == labels).float().mean()) if len(pred) else float("nan")


def fooling_rate(clean_pred: torch.Tensor, adv_pred: torch.Tensor) -> float:
    """Share of clips whose prediction the attack changed (untargeted success, the paper's measure)."""
    return float((clean_pred != adv_pred).float().mean()) if len(clean_pred) else float("nan")


def seg_snr_db(clean: torch.Tensor, adv: torch.Tensor, frame: int = 256, floor: float = -10.0, ceil: float = 35.0) -> torch.Tensor:
    """Segmental SNR: mean over frames of the per-frame SNR, each clamped to [floor, ceil] dB (the usual
    convention, so silent frames neither dominate nor go to -inf); frames of digital silence are skipped."""
    n = clean.shape[-1] // frame * frame
    if n == 0:
        return snr_db(clean, adv).clamp(floor, ceil)
    c = clean[..., :n].unfold(-1, frame, frame).pow(2).sum(-1)
    e = (adv - clean)[..., :n].unfold(-1, frame, frame).pow(2).sum(-1)
    per = (10 * torch.log10(c.clamp_min(1e-12) / e.clamp_min(1e-12))).clamp(floor, ceil)
    voiced = c > 1e-10
    return (per * voiced).sum(-1) / voiced.sum(-1).clamp_min(1)


def perturbation_scores(clean: torch.Tensor, adv: torch.Tensor) -> dict[str, torch.Tensor]:
    """The cheap per-clip scores of a batch, as tensors [batch]."""
    return {"l0_count": l0_count(clean, adv), "l0_ratio": l0_ratio(clean, adv), "linf": linf(clean, adv),
            "distortion_db": distortion_db(clean, adv), "snr_db": snr_db(clean, adv), "seg_snr_db": seg_snr_db(clean, adv)}


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
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x
