"""Per-clip measures of a perturbation delta = x_adv - x over a batch [B, T]: l0, l-inf, distortion dB (as in STAA-Net's
paper), SNR and segmental SNR."""

from __future__ import annotations

import torch

_TINY = 1e-12


# clips quieter than this (RMS in dB re full scale) hold no speech to attack: speech sits near -20 to -35 dBFS, and
# a perturbation within eps is louder than such a clip, so a "success" on it measures nothing
SILENCE_DBFS = -60.0


def near_silent(x: torch.Tensor, floor_dbfs: float = SILENCE_DBFS) -> torch.Tensor:
    """Per clip of `[B, T]`: True where its RMS level is below `floor_dbfs`."""
    rms = x.double().pow(2).mean(dim=-1).sqrt()
    return 20 * torch.log10(rms.clamp_min(_TINY)) < floor_dbfs


def l0_count(clean: torch.Tensor, adv: torch.Tensor, tol: float = 0.0) -> torch.Tensor:
    """Number of samples changed by more than `tol` (pass ~1/32768 for audio read back from 16-bit files)."""
    return ((adv - clean).abs() > tol).sum(dim=-1)


def l0_ratio(clean: torch.Tensor, adv: torch.Tensor, tol: float = 0.0) -> torch.Tensor:
    return l0_count(clean, adv, tol).float() / clean.shape[-1]


def linf(clean: torch.Tensor, adv: torch.Tensor) -> torch.Tensor:
    return (adv - clean).abs().amax(dim=-1)


def distortion_db(clean: torch.Tensor, adv: torch.Tensor) -> torch.Tensor:
    """20 log10(max|x| / max|delta|): higher is quieter; +inf where delta is zero."""
    peak_delta = linf(clean, adv)
    db = 20 * torch.log10(clean.abs().amax(dim=-1).clamp_min(_TINY) / peak_delta.clamp_min(_TINY))
    return db.where(peak_delta > 0, torch.tensor(float("inf")))


def snr_db(clean: torch.Tensor, adv: torch.Tensor) -> torch.Tensor:
    """10 log10(||x||^2 / ||delta||^2); +inf where delta is zero."""
    noise = (adv - clean).pow(2).sum(dim=-1)
    snr = 10 * torch.log10(clean.pow(2).sum(dim=-1).clamp_min(_TINY) / noise.clamp_min(_TINY))
    return snr.where(noise > 0, torch.tensor(float("inf")))


def seg_snr_db(
    clean: torch.Tensor, adv: torch.Tensor, frame: int = 256, floor: float = -10.0, ceil: float = 35.0
) -> torch.Tensor:
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
    return {
        "l0_count": l0_count(clean, adv),
        "l0_ratio": l0_ratio(clean, adv),
        "linf": linf(clean, adv),
        "distortion_db": distortion_db(clean, adv),
        "snr_db": snr_db(clean, adv),
        "seg_snr_db": seg_snr_db(clean, adv),
    }
