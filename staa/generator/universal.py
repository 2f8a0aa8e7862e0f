"""A universal perturbation: one sparse delta for every clip, a learned magnitude times a near-binary mask, tiled to
any length (the over-the-air and privacy threat model of SER, e.g. DARE-GP, IMWUT 2023): made once against one or
several surrogates, then played on anything, with no model query at attack time."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from staa.generator.losses import cw_margin
from staa.io.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


class UniversalDelta(nn.Module):
    """delta = eps * tanh(v) * sigmoid(s / temperature) over `samples`; `hard()` the saved form, its mask binarised."""

    def __init__(self, samples: int, eps: float):
        super().__init__()
        self.eps = eps
        # a random start: at v = 0 the delta is zero, the mask has no gradient, and the sparsity term shuts it all
        self.v = nn.Parameter(0.5 * torch.randn(samples))
        self.s = nn.Parameter(
            torch.zeros(samples)
        )  # half open: the margin opens what fools, the sparsity term shuts the rest

    def mask(self, temperature: float = 1.0) -> torch.Tensor:
        return torch.sigmoid(self.s / temperature)

    def forward(self, temperature: float = 1.0) -> torch.Tensor:
        return self.eps * torch.tanh(self.v) * self.mask(temperature)

    @torch.no_grad()
    def hard(self) -> torch.Tensor:
        return self.eps * torch.tanh(self.v) * (self.s > 0)


def tile(delta: torch.Tensor, length: int, offset: int = 0) -> torch.Tensor:
    """The delta repeated to `length` samples, starting `offset` samples into it."""
    reps = (offset + length) // len(delta) + 1
    return delta.repeat(reps)[offset : offset + length]


def train_universal(
    surrogates: list[nn.Module],
    dataset,
    *,
    eps: float,
    samples: int,
    epochs: int = 5,
    l0: float = 0.2,
    w_spa: float = 10.0,
    kappa: float = 1.0,
    lr: float = 0.01,
    batch_size: int = 16,
    seed: int = 0,
    progress: bool = True,
) -> tuple[torch.Tensor, list[dict]]:
    """The hard delta and each epoch's mean loss, fooling rate and mask density on `dataset` (its own clips: a
    universal delta is scored on held-out ones by the attack). Each batch meets the delta at a random offset, since
    a delta played over the air starts anywhere in a clip."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    delta = UniversalDelta(samples, eps)
    opt = torch.optim.Adam(delta.parameters(), lr=lr)
    for m in surrogates:
        m.eval().requires_grad_(False)
    history = []
    for epoch in range(1, epochs + 1):
        temperature = max(0.1, 1.0 - 0.9 * (epoch - 1) / max(1, epochs - 1))  # the mask hardens over training
        total = fooled = n = 0.0
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=gen)
        for x, _ in tqdm(loader, desc=f"universal epoch {epoch}", disable=not progress, leave=False):
            offset = int(torch.randint(samples, (1,), generator=gen))
            x_adv = (x + tile(delta(temperature), x.shape[-1], offset)).clamp(-1, 1)
            loss, wrong = 0.0, torch.zeros(len(x), dtype=torch.bool)
            for m in surrogates:
                with torch.no_grad():
                    y = m(x).argmax(1)  # move away from each surrogate's own clean answer
                logits = m(x_adv)
                loss = loss + cw_margin(logits, y, kappa=kappa).mean() / len(surrogates)
                wrong |= logits.argmax(1) != y
            density = delta.mask(temperature).mean()
            loss = loss + w_spa * torch.relu(density - l0)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, fooled, n = total + float(loss.detach()) * len(x), fooled + float(wrong.sum()), n + len(x)
        history.append(
            {
                "epoch": epoch,
                "loss": total / n,
                "train_fooling_rate": fooled / n,
                "l0_ratio": float((delta.s > 0).float().mean()),
            }
        )
    return delta.hard(), history


def save_universal(
    path, delta: torch.Tensor, *, eps: float, sample_rate: int, surrogates: list[str], history: list
) -> None:
    save_checkpoint(
        path,
        "universal",
        {
            "delta": delta.detach().cpu(),
            "eps": eps,
            "sample_rate": sample_rate,
            "surrogates": surrogates,
            "history": history,
        },
    )


def load_universal(path) -> dict:
    ckpt = load_checkpoint(path, "universal", ("delta", "eps", "sample_rate"))
    delta = ckpt["delta"]
    if not isinstance(delta, torch.Tensor) or delta.dim() != 1 or not len(delta) or not torch.isfinite(delta).all():
        raise CheckpointError(f"{path}: its delta is not a finite one-dimensional tensor")
    if delta.abs().max() > ckpt["eps"] + 1e-6:
        raise CheckpointError(f"{path}: its delta exceeds the eps it records ({ckpt['eps']})")
    return ckpt
