"""Batched predictions of a victim over a dataset."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset


@torch.inference_mode()
def predict(model: nn.Module, dataset: Dataset, *, batch_size: int = 64, device="cpu") -> tuple[list[int], list[int]]:
    """(labels, predictions) over `dataset`, in order, with the model in eval mode."""
    was_training = model.training
    model.eval()
    labels, preds = [], []
    for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        preds += model(x.to(device)).argmax(dim=1).tolist()
        labels += y.tolist()
    model.train(was_training)
    return labels, preds
