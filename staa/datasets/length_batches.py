"""Batches of equal-length clips, for clips kept at their own lengths (no padding: it changes many models' outputs)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from torch.utils.data import Sampler


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped by exact length (shortest first), each group cut into batches of at most `batch_size`, in
    index order within a group; clips of one length keep their order, so equal-length data batches as before."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    groups: dict[int, list[int]] = {}
    for i, n in enumerate(lengths):
        groups.setdefault(int(n), []).append(i)
    return [
        idx[k : k + batch_size] for n in sorted(groups) for idx in [groups[n]] for k in range(0, len(idx), batch_size)
    ]


class LengthBatchSampler(Sampler[list[int]]):
    """`DataLoader(dataset, batch_sampler=LengthBatchSampler(dataset.lengths(), 16))`: stackable batches."""

    def __init__(self, lengths: Sequence[int], batch_size: int):
        self.batches = length_batches(lengths, batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)
