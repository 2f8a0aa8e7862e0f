"""The STAA-Net generator: a Wave-U-Net with one encoder and two decoders (mask positions, magnitudes).

`forward(x)` returns `x_adv = clip(x + v * m, -1, 1)` in one pass, where `v = eps * tanh(.)` bounds the
magnitude in l-inf and `m` is a near-binary mask: hard 0/1 in eval mode; in training each element is,
with probability 1/2, the soft value and otherwise the hard one (which carries no gradient), so the
network learns to make masks that survive binarisation. A conditional generator (`num_classes > 0`, ours) takes
`forward(x, cls)`, each clip's class: unconditioned, the generator learns one universal target class (docs/design.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from staa.io.validate import check_fields, in_range


@dataclass(frozen=True)
class GeneratorConfig:
    channels: int = 8  # feature channels at the first (finest) level
    growth: float = 2.0  # channel multiplier per level
    levels: int = 3
    kernel: int = 5
    stride: int = 8  # resampling factor per level
    head_channels: int = 2  # channels of the decoders' finest layer, the costliest one
    # > 1: fold the waveform into `fold` channels at 1/fold of its rate before the first layer and unfold the
    # outputs after the last (space-to-depth), so no layer runs at the full sample rate
    fold: int = 1
    eps: float = 0.03  # l-inf bound on the perturbation
    # how the mask is binarised in training: "stochastic" (the paper: each element soft or hard at random)
    # or "straight_through" (hard forward, soft gradient: the training forward equals the test forward)
    train_mask: str = "stochastic"
    # > 0: the generator also takes a class per clip (the class to move away from, or the target) as an
    # embedding at the bottleneck; 0: waveform only, as in the paper (see STAAGenerator)
    num_classes: int = 0
    # v = eps * tanh(magnitude_gain * h): above 1 the magnitudes reach the budget from smaller activations
    magnitude_gain: float = 1.0

    def __post_init__(self):
        check_fields(self)
        if not 0 < self.eps <= 1:
            raise ValueError(f"eps must be > 0 and <= 1, got {self.eps}")
        for name, hi in (
            ("channels", 1024),
            ("head_channels", 1024),
            ("levels", 12),
            ("kernel", 63),
            ("stride", 64),
            ("fold", 256),
            ("num_classes", 10_000),
            ("growth", 4),
            ("magnitude_gain", 100),
        ):
            in_range(name, getattr(self, name), None, hi)
        if (
            self.levels < 1
            or min(self.channels, self.head_channels, self.kernel, self.fold) < 1
            or self.stride < 2
            or self.growth < 1
            or not self.magnitude_gain > 0
        ):
            raise ValueError(f"invalid generator shape: {self}")
        if self.train_mask not in ("stochastic", "straight_through"):
            raise ValueError(f"train_mask must be 'stochastic' or 'straight_through', got {self.train_mask!r}")
        if self.num_classes < 0 or self.num_classes == 1:
            raise ValueError(f"num_classes must be 0 (unconditional) or >= 2, got {self.num_classes}")

    def widths(self) -> list[int]:
        return [int(round(self.channels * self.growth**i)) for i in range(self.levels)]

    @property
    def block(self) -> int:
        """Inputs are zero-padded to a multiple of this many samples."""
        return self.fold * self.stride**self.levels


# The authors' size (32 channels doubling over 6 levels) costs as much as PGD-10 per clip on a CPU. "cpu" keeps the
# full-resolution layer thin and resamples by 8 per level, so most work is at 1/8 rate or below; "cpu-fold" runs no
# layer at the full rate at all. Their timings: docs/experiments.md (scripts/bench_generator.py).
PRESETS = {
    "paper": GeneratorConfig(channels=32, growth=2.0, levels=6, kernel=5, stride=4, head_channels=32),
    "cpu": GeneratorConfig(channels=8, growth=2.0, levels=3, kernel=5, stride=8, head_channels=2),
    # finer resampling: slower, and its generator against emo18 transferred better in our runs
    "cpu-fine": GeneratorConfig(channels=8, growth=2.0, levels=4, kernel=5, stride=4, head_channels=2),
    # folded by 16 (space-to-depth): no layer at the full rate, the full-rate layers being most of "cpu"'s time
    "cpu-fold": GeneratorConfig(channels=16, growth=2.0, levels=3, kernel=5, stride=4, fold=16, head_channels=16),
}


def _conv(c_in: int, c_out: int, kernel: int, stride: int = 1) -> nn.Sequential:
    groups = 4 if c_out % 4 == 0 else 1  # GroupNorm: batch-size independent, so one clip = a batch of one
    return nn.Sequential(
        nn.Conv1d(c_in, c_out, kernel, stride=stride, padding=kernel // 2),
        nn.GroupNorm(groups, c_out),
        nn.LeakyReLU(0.2),
    )


def _fold(h: torch.Tensor, r: int) -> torch.Tensor:
    """[B, C, T] -> [B, C * r, T / r]: channel c * r + j holds sample j of each block of r."""
    b, c, t = h.shape
    return h if r == 1 else h.reshape(b, c, t // r, r).transpose(2, 3).reshape(b, c * r, t // r)


def _unfold(h: torch.Tensor) -> torch.Tensor:
    """[B, r, T / r] -> [B, T], the inverse of `_fold` for one channel."""
    return h.transpose(1, 2).reshape(h.shape[0], -1)


class _Decoder(nn.Module):
    """Level by level: narrow (1x1 conv) at the coarse rate, upsample by linear interpolation as in
    Wave-U-Net, fuse with the encoder's skip. Narrowing before upsampling keeps full-rate work small."""

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        w = cfg.widths()
        skips = [2 * cfg.fold] + w[:-1]  # the finest skip is the (folded) input itself: waveform and dither
        outs = [cfg.head_channels] + w[:-1]
        self.narrow = nn.ModuleList(nn.Conv1d(w[i], outs[i], 1) for i in reversed(range(cfg.levels)))
        self.stride = cfg.stride
        self.fuse = nn.ModuleList(_conv(outs[i] + skips[i], outs[i], cfg.kernel) for i in reversed(range(cfg.levels)))
        self.out = nn.Conv1d(cfg.head_channels, cfg.fold, 1)

    def forward(self, h: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        for narrow, fuse, skip in zip(self.narrow, self.fuse, reversed(skips)):
            up = F.interpolate(narrow(h), scale_factor=self.stride, mode="linear", align_corners=False)
            h = fuse(torch.cat([up, skip], dim=1))
        if self.out.out_channels > 1:
            return self.out(h)
        # The 1x1 conv to one channel, as a weighted sum: oneDNN's 1x1 conv with a single output
        # channel took a fifth of the generator's time at full rate.
        return (h * self.out.weight[0]).sum(dim=1, keepdim=True) + self.out.bias


class STAAGenerator(nn.Module):
    def __init__(self, cfg: GeneratorConfig = PRESETS["cpu"]):
        super().__init__()
        self.cfg = cfg
        w = cfg.widths()
        ins = [2 * cfg.fold] + w[:-1]
        self.encoder = nn.ModuleList(_conv(ins[i], w[i], cfg.kernel, cfg.stride) for i in range(cfg.levels))
        self.bottleneck = _conv(w[-1], w[-1], cfg.kernel)
        # Whole-clip context: the convolutions alone see well under a second, but which perturbation
        # flips an emotion depends on the whole utterance (and on what the victim makes of it).
        self.context = nn.Linear(w[-1], w[-1])
        self.condition = nn.Embedding(cfg.num_classes, w[-1]) if cfg.num_classes else None
        self.positions = _Decoder(cfg)
        # Start with the mask on almost everywhere, then let the sparsity loss thin it. With the default init
        # the first mask was all on or all off depending on the seed (density 0.001 to 1.0 over six seeds); an
        # all-off hard mask passes no gradient to the magnitudes, and such runs stayed near an empty mask for epochs.
        nn.init.constant_(self.positions.out.bias, 1.0)
        self.magnitudes = _Decoder(cfg)
        self.register_buffer("eps", torch.tensor(float(cfg.eps)))
        # A fixed dither pattern as a second input channel. A convolutional network maps digital silence
        # to a constant, so without it the generator cannot place any perturbation in silent stretches
        # (a third of a typical clip); with it, it can shape noise there. Fixed seed: same output every call.
        dither = torch.randn(1 << 16, generator=torch.Generator().manual_seed(0)) * 0.01
        self.register_buffer("dither", dither, persistent=False)

    @property
    def config(self) -> dict:
        return asdict(self.cfg)

    def set_eps(self, eps: float) -> None:
        if not 0 < eps <= 1:
            raise ValueError(f"eps must be > 0 and <= 1, got {eps}")
        self.eps.fill_(float(eps))

    @property
    def conditional(self) -> bool:
        return self.condition is not None

    def perturbation(
        self, x: torch.Tensor, cls: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(v, m, m_soft) for waveforms `x [B, T]`, each `[B, T]`; `m` is binarised as in `forward`.
        `cls [B]`: the class of each clip, for a conditional generator (`num_classes > 0`) only."""
        if x.dim() != 2 or x.shape[-1] == 0:
            raise ValueError(f"expected waveforms [batch, samples] with samples > 0, got shape {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise ValueError("input waveforms contain NaN or Inf")
        self.check_classes(x, cls)
        length = x.shape[-1]
        x = F.pad(x, (0, -length % self.cfg.block))
        reps = -(-x.shape[-1] // self.dither.shape[0])
        dither = self.dither.repeat(reps)[: x.shape[-1]].expand_as(x)
        h = _fold(torch.stack([x, dither], dim=1), self.cfg.fold)
        skips = []
        for enc in self.encoder:
            skips.append(h)
            h = enc(h)
        h = self.bottleneck(h)
        h = h + self.context(h.mean(dim=-1))[:, :, None]
        if self.conditional:
            h = h + self.condition(cls)[:, :, None]
        m_soft = ((torch.tanh(_unfold(self.positions(h, skips))) + 1) / 2)[:, :length]
        v = (self.eps * torch.tanh(self.cfg.magnitude_gain * _unfold(self.magnitudes(h, skips))))[:, :length]
        hard = (m_soft >= 0.5).to(m_soft.dtype)
        if self.training and self.cfg.train_mask == "straight_through":
            m = hard + (m_soft - m_soft.detach())  # exactly `hard` forward, the soft gradient backward
        elif self.training:
            pick_soft = torch.rand_like(m_soft) < 0.5
            m = torch.where(pick_soft, m_soft, hard.detach())
        else:
            m = hard
        return v, m, m_soft

    def check_classes(self, x: torch.Tensor, cls: torch.Tensor | None) -> None:
        if not self.conditional:
            if cls is not None:
                raise ValueError("this generator is unconditional (num_classes 0): it takes no classes")
            return
        if cls is None:
            raise ValueError(
                f"this generator is class-conditional ({self.cfg.num_classes} classes): pass the class of each clip"
            )
        if cls.shape != x.shape[:1] or cls.dtype != torch.long or ((cls < 0) | (cls >= self.cfg.num_classes)).any():
            raise ValueError(f"classes must be {x.shape[0]} integers in [0, {self.cfg.num_classes}), got {cls}")

    def forward(self, x: torch.Tensor, cls: torch.Tensor | None = None) -> torch.Tensor:
        v, m, _ = self.perturbation(x, cls)
        return (x + v * m).clamp(-1.0, 1.0)
