"""Dataset loaders: each turns a dataset folder (in its own layout) into a list of `Record`s."""

from __future__ import annotations

from staa.datasets.audio_dataset import AudioDataset, epoch_loader
from staa.datasets.cremad import load_cremad
from staa.datasets.demos import load_demos
from staa.datasets.emobox import load_emobox
from staa.datasets.emodb import load_emodb
from staa.datasets.hf_datasets import load_hf_dataset
from staa.datasets.iemocap import load_iemocap
from staa.datasets.length_batches import LengthBatchSampler, length_batches
from staa.datasets.manifest import load_manifest
from staa.datasets.ravdess import load_ravdess
from staa.datasets.records import DatasetError, Record

LOADERS = {
    "iemocap": load_iemocap,
    "emodb": load_emodb,
    "ravdess": load_ravdess,
    "cremad": load_cremad,
    "demos": load_demos,
    "manifest": load_manifest,
    "emobox": load_emobox,
    "hf": load_hf_dataset,
}


def load_records(kind: str, root, *, folds=None, fold: int = 1, **options) -> list[Record]:
    """Records of dataset `kind` (one of LOADERS) at `root`; the built-in corpus is a `manifest`. `folds` (the fold
    set's folder) and `fold` choose an `emobox` split; the other layouts carry their split in their files."""
    if kind not in LOADERS:
        raise DatasetError(f"unknown dataset {kind!r}; choose one of {', '.join(LOADERS)}")
    if kind == "emobox":
        options |= {"folds": folds, "fold": fold}
    return LOADERS[kind](root, **options)


__all__ = [
    "AudioDataset",
    "DatasetError",
    "LOADERS",
    "LengthBatchSampler",
    "Record",
    "epoch_loader",
    "length_batches",
    "load_records",
]
