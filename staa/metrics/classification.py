"""Classification scores used in SER (unweighted accuracy: mean per-class recall; weighted accuracy; confusion) and the
one definition of an attack's success."""

from __future__ import annotations

import numpy as np


def classification_scores(y_true, y_pred, n_classes: int) -> dict:
    """UA (mean recall over classes present in y_true), WA (plain accuracy) and the confusion matrix (rows: truth)."""
    y_true, y_pred = np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)
    if y_true.shape != y_pred.shape or y_true.size == 0:
        raise ValueError("y_true and y_pred must be non-empty and of equal length")
    confusion = np.zeros((n_classes, n_classes), dtype=int)
    np.add.at(confusion, (y_true, y_pred), 1)
    support = confusion.sum(axis=1)
    present = support > 0
    recall = np.diag(confusion)[present] / support[present]
    return {
        "ua": float(recall.mean()),
        "wa": float(np.trace(confusion) / confusion.sum()),
        "confusion": confusion.tolist(),
        "n": int(y_true.size),
    }


def fooled(clean_pred, adv_pred, target=None):
    """Per clip, whether an attack succeeded: the prediction moved off the clean one (untargeted, the paper's fooling),
    or, with `target` (a class index or a tensor of them), landed on it. Tensors in, a bool tensor out."""
    return adv_pred != clean_pred if target is None else adv_pred == target


def accuracy(pred, labels) -> float:
    return float((pred == labels).float().mean()) if len(pred) else float("nan")


def fooling_rate(clean_pred, adv_pred) -> float:
    """Share of clips whose prediction the attack changed."""
    return float(fooled(clean_pred, adv_pred).float().mean()) if len(clean_pred) else float("nan")
