"""STAA-Net's four losses. Each returns a scalar averaged over the batch."""

from __future__ import annotations

import torch


def cw_margin(
    logits: torch.Tensor, labels: torch.Tensor, *, targeted: bool = False, kappa: float = 0.0
) -> torch.Tensor:
    """Carlini-Wagner margin, per example, floored at -kappa.

    Untargeted (`labels` = the clean prediction): z_label - max_{j != label} z_j, which the attack
    pushes below -kappa. Targeted (`labels` = the target): max_{j != target} z_j - z_target.
    """
    true = logits.gather(1, labels[:, None])[:, 0]
    others = logits.masked_fill(torch.nn.functional.one_hot(labels, logits.shape[1]).bool(), float("-inf")).amax(dim=1)
    margin = others - true if targeted else true - others
    return margin.clamp(min=-kappa)


def adversarial_loss(logits, labels, *, targeted: bool = False, kappa: float = 0.0) -> torch.Tensor:
    return cw_margin(logits, labels, targeted=targeted, kappa=kappa).mean()


def magnitude_loss(v: torch.Tensor) -> torch.Tensor:
    """||v||_2 per clip (the authors' default weight is 0)."""
    return v.norm(p=2, dim=-1).mean()


def sparsity_loss(m: torch.Tensor) -> torch.Tensor:
    """||m||_1 per clip divided by its length: the share of perturbed samples, so the weight does not
    depend on the clip length (on 3 s clips the unnormalised norm is 48,000 times larger)."""
    return m.abs().mean(dim=-1).mean()


def quality_loss(m_soft: torch.Tensor) -> torch.Tensor:
    """||round(m_soft) - m_soft||_2 per clip: pushes the soft mask towards 0/1."""
    return (torch.round(m_soft) - m_soft).norm(p=2, dim=-1).mean()
