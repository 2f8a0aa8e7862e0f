"""A torch Dataset over `Record`s: fixed-length float32 waveforms and integer labels."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from staa.datasets.records import DatasetError, Record
from staa.io.audio import load_audio


class AudioDataset(Dataset):
    """Waveforms `[T]` cropped or zero-padded to `clip_seconds`, with labels indexed into `classes`.

    `crop="random"` draws the window from a generator seeded by (seed, epoch, index), so a resumed
    run sees the same crops; `set_epoch` moves it on. `crop="center"` is for evaluation.
    """

    def __init__(
        self,
        records: Sequence[Record],
        classes: Sequence[str],
        *,
        sample_rate: int = 16_000,
        clip_seconds: float | None = 3.0,
        crop: str = "center",
        seed: int = 0,
        allow_clipped: bool = False,
    ):
        if crop not in ("center", "random"):
            raise ValueError(f"crop must be 'center' or 'random', not {crop!r}")
        if not records:
            raise DatasetError("no records to build a dataset from")
        self.classes = list(classes)
        unknown = sorted({r.label for r in records} - set(self.classes))
        if unknown:
            raise DatasetError(f"labels {unknown} are not among the classes {self.classes}")
        self.records = list(records)
        self.sample_rate = sample_rate
        self.length = None if clip_seconds is None else int(round(clip_seconds * sample_rate))
        self.crop, self.seed, self.epoch = crop, seed, 0
        self.allow_clipped = allow_clipped

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.records)

    def labels(self) -> list[int]:
        return [self.classes.index(r.label) for r in self.records]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        rec = self.records[i]
        x, _ = load_audio(rec.path, self.sample_rate, allow_clipped=self.allow_clipped)
        return self._fit(x, i), self.classes.index(rec.label)

    def _fit(self, x: torch.Tensor, i: int) -> torch.Tensor:
        if self.length is None:
            return x
        extra = x.shape[0] - self.length
        if extra < 0:
            return torch.nn.functional.pad(x, (0, -extra))
        if self.crop == "center":
            start = extra // 2
        else:
            start = int(np.random.default_rng([self.seed, self.epoch, i]).integers(extra + 1))
        return x[start : start + self.length]
