"""The defense call shape: `Defense(params)(x: Tensor[B, T], sample_rate) -> Tensor[B, T]`, same length out.

`differentiable` says whether gradients through the defense mean anything (adaptive attacks use the
defense itself then, and its BPDA gradient, `Defense.gradient`, otherwise). `random` says whether two calls on the
same input differ (adaptive attacks then average gradients over draws: EOT). A random defense draws from
its own generator, seeded at construction, so a run is reproducible.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from staa import specs


class Defense:
    name = "defense"
    differentiable = False
    random = False

    def __call__(self, x: torch.Tensor, sample_rate: int) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[-1] == 0:
            raise ValueError(
                f"{self.spec}: expected waveforms as a tensor [batch, samples], got {getattr(x, 'shape', type(x))}"
            )
        if not isinstance(sample_rate, int) or sample_rate <= 0:
            raise ValueError(f"{self.spec}: sample_rate must be a positive integer, got {sample_rate!r}")
        self.check(sample_rate)
        y = self.apply(x, sample_rate)
        if y.shape != x.shape:  # every defense must keep the length; a mismatch is a bug, not user error
            raise RuntimeError(f"{self.spec} changed the shape {tuple(x.shape)} -> {tuple(y.shape)}")
        return y

    def reseed(self) -> Defense:
        """Start the random draws over from the seed the defense was built with (a random defense keeps its seed in
        `seed`), so that each use of one defense object draws as a fresh one would."""
        if self.random:
            self._gen = torch.Generator().manual_seed(self.seed)
        return self

    def check(self, sample_rate: int) -> None:
        """Raise ValueError if this defense cannot run at `sample_rate`; callers check before any work starts."""

    def apply(self, x: torch.Tensor, sample_rate: int) -> torch.Tensor:
        raise NotImplementedError

    def gradient(self, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """The gradient passed back through this defense when it has none of its own: BPDA's approximation (Athalye et
        al., 2018), the identity unless a defense knows a better one (ART's `estimate_gradient`)."""
        return grad

    def bpda(self, x: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """`self(x)`, differentiable: backward is the defense's own gradient where it has one, `self.gradient` otherwise."""
        if self.differentiable:
            return self(x, sample_rate)
        return _BPDA.apply(x, self, sample_rate)

    @property
    def spec(self) -> str:
        """The registry spec that rebuilds this defense, derived from its constructor's arguments (each stored under its
        own name): the first always, as in `mp3:32`; the others as `key=value` where they differ from their default."""
        params = specs.parameters(type(self))  # the ones `parse_defense` binds a spec to
        parts = [self.name]
        for i, p in enumerate(params):
            value = getattr(self, p.name)
            if i == 0:
                parts.append(specs.text(value))
            elif value != p.default:
                parts.append(f"{p.name}={specs.text(value)}")
        return ":".join(parts)

    def __repr__(self) -> str:
        return f"<defense {self.spec}>"


class _BPDA(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, defense, sample_rate):
        ctx.defense = defense
        ctx.save_for_backward(x)
        with torch.no_grad():
            return defense(x.detach(), sample_rate)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return ctx.defense.gradient(x, grad), None, None


class NumpyDefense(Defense):
    """A defense computed clip by clip in numpy (codecs, scipy, noisereduce): no gradient, BPDA only."""

    def apply(self, x, sample_rate):
        clips = x.detach().cpu().numpy().astype(np.float32)
        out = np.stack([self.apply_clip(c, sample_rate) for c in clips])
        return torch.from_numpy(out.astype(np.float32)).to(x.device)

    def apply_clip(self, clip: np.ndarray, sample_rate: int) -> np.ndarray:
        raise NotImplementedError


def fit_length(y: np.ndarray, n: int) -> np.ndarray:
    """Trim or zero-pad a decoded clip to `n` samples (codecs pad to whole frames)."""
    return y[:n] if len(y) >= n else np.pad(y, (0, n - len(y)))


def fit_length_torch(y: torch.Tensor, n: int) -> torch.Tensor:
    """`fit_length` for batches [B, T] in torch (keeps the graph)."""
    return y[..., :n] if y.shape[-1] >= n else torch.nn.functional.pad(y, (0, n - y.shape[-1]))


def positive(name: str, value, kind=float, hi=None):
    """`value` as `kind`, > 0 and at most `hi`: the documented range of a defense parameter."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or kind is int and value != int(value):
        raise ValueError(f"{name} must be {'an integer' if kind is int else 'a number'}, got {value!r}")
    value = kind(value)
    if not value > 0 or not math.isfinite(value) or (hi is not None and value > hi):
        raise ValueError(f"{name} must be > 0" + (f" and <= {hi:g}" if hi is not None else "") + f", got {value}")
    return value


def seed_value(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ValueError(f"seed must be an integer within 0 and 2**63 - 1, got {seed!r}")
    return seed
