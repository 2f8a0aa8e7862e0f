"""Random circular time shift of each clip by up to `max_seconds` either way: desynchronises a perturbation
crafted for exact sample positions. Random, so EOT applies."""

from __future__ import annotations

import torch

from defenses.base import Defense, seed_value


class TimeShift(Defense):
    r"""Random circular shift of each clip by up to `max_seconds` either way: desynchronises a perturbation made for exact sample positions.

    Differentiable: yes · Random: yes (EOT)

    Arguments:
        max_seconds (float): the largest shift, in (0, 10]. Default: 0.1.
        seed (int): the first draw; `reseed()` starts over. Default: 0.

    Shape:
        - x: `(N, T)` waveforms in [-1, 1] at `sample_rate` Hz. - output: `(N, T)`, same length.

    Examples::
        >>> TimeShift(0.1)(x, 16_000)
    """

    name = "shift"
    differentiable = True
    random = True

    def __init__(self, max_seconds: float = 0.1, seed: int = 0):
        if isinstance(max_seconds, bool) or not isinstance(max_seconds, (int, float)) or not 0.0 < max_seconds <= 10.0:
            raise ValueError(f"shift max_seconds must be within (0, 10], got {max_seconds!r}")
        self.max_seconds, self.seed = float(max_seconds), seed_value(seed)
        self.reseed()

    def apply(self, x, sample_rate):
        limit = max(1, int(self.max_seconds * sample_rate))
        shifts = torch.randint(-limit, limit + 1, (x.shape[0],), generator=self._gen).tolist()
        return torch.stack([torch.roll(clip, s) for clip, s in zip(x, shifts)])
