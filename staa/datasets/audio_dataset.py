"""A torch Dataset over `Record`s: float32 waveforms (fixed-length, or each at its own length) and integer labels."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from staa.datasets.records import DatasetError, Record
from staa.io.audio import load_audio, probe_audio

log = logging.getLogger(__name__)


class AudioDataset(Dataset):
    """Waveforms `[T]` at `sample_rate`, cropped or zero-padded to `clip_seconds` (None: each at its own length),
    with labels indexed into `classes`.

    `crop="random"` draws the window from a generator seeded by (seed, epoch, index), so a resumed
    run sees the same crops; `set_epoch` moves it on. `crop="center"` is for evaluation.
    Files at another rate are resampled, which is logged once; `strict_rate=True` refuses them instead.
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
        strict_rate: bool = False,
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
        headers = [probe_audio(r.path) for r in self.records]
        self._frames = [(h.frames, h.samplerate) for h in headers]
        self._check_rates(strict_rate)

    def _check_rates(self, strict: bool) -> None:
        other = [
            (r.path, rate) for r, (_, rate) in zip(self.records, self._frames) if rate != (self.sample_rate or rate)
        ]
        if other and strict:
            path, rate = other[0]
            raise DatasetError(
                f"{path}: is at {rate} Hz, not the model's {self.sample_rate} Hz ({len(other)} such file(s)); "
                "resample the data, or leave out the strict-rate option to have it resampled"
            )
        if other:
            rates = ", ".join(f"{r} Hz" for r in sorted({r for _, r in other}))
            log.warning(
                "resampling %d of %d clips (%s) to the model's %d Hz", len(other), len(self), rates, self.sample_rate
            )

    def lengths(self) -> list[int]:
        """Each item's length in samples, from the file headers (for `LengthBatchSampler`)."""
        if self.length is not None:
            return [self.length] * len(self)
        # torchaudio's resample returns ceil(frames * new / old) samples
        return [-(-frames * (self.sample_rate or rate) // rate) for frames, rate in self._frames]

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


def epoch_loader(dataset: AudioDataset, batch_size: int, seed: int, epoch: int) -> DataLoader:
    """Epoch `epoch` of training batches: the dataset's crops redrawn for the epoch and the clips shuffled, both from
    (seed, epoch) alone, so a resumed run sees the batches an uninterrupted one would; the last partial batch is
    dropped."""
    dataset.set_epoch(epoch)
    order = torch.Generator().manual_seed(seed * 1000 + epoch)
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True, generator=order)
