"""Per-clip measures of a perturbation delta = x_adv - x, as STAA-Net's paper reports them."""
from __future__ import annotations

import torch

_TINY = 1e-12


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
