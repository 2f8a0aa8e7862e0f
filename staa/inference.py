"""Predictions of a trained victim: batched over a dataset (`predict`), and a faster copy for predictions that
need no gradient (`InferenceModel`, the evaluation grid's forwards).

The faster copy is TorchScript's freeze + optimize_for_inference, which folds batch norm into the convolutions,
pre-packs their weights for oneDNN and fuses the activations: on CPU it made the log-mel CNNs' forwards 2-3.5x
faster (mel_cnn, crnn) and left the raw-waveform models and the transformer as they were (`scripts/bench_eval.py`
reports the ratio). torch 2.14 marks TorchScript deprecated; torch.compile was as fast on mel_cnn but not on
emo18, and spent ~35 s compiling each model. So the copy is used only where no gradient is needed, it is checked
against the eager model on the first batch of each clip length, and the eager model answers whenever tracing
fails or disagrees.
"""
from __future__ import annotations

import logging
import warnings

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

log = logging.getLogger(__name__)


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


class InferenceModel:
    """`InferenceModel(model)(x) -> logits`, like `model(x)` in eval mode without gradients, only faster.

    Tracing records one path through `forward`: fine for the suite's victims, which branch on nothing
    but shapes. A traced copy is made per clip length, since the feature front ends' frame counts follow it."""

    def __init__(self, model: nn.Module, *, atol: float = 1e-3):
        self.model, self.atol = model.eval(), atol
        self._traced: dict[int, torch.jit.ScriptModule | None] = {}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        length = x.shape[-1]
        if length not in self._traced:
            self._traced[length] = self._trace(x)
        with torch.inference_mode():
            return (self._traced[length] or self.model)(x)

    @property
    def traced(self) -> bool:
        """Whether any clip length runs on a traced copy."""
        return any(m is not None for m in self._traced.values())

    def _trace(self, x: torch.Tensor):
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore", FutureWarning)  # the deprecation notice; see the module docstring
                warnings.simplefilter("ignore", torch.jit.TracerWarning)  # nn.RNN's input checks: shapes only
                fast = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(self.model, x, check_trace=False)))
                agree = torch.allclose(fast(x), self.model(x), rtol=0.0, atol=self.atol)
        except Exception as err:  # noqa: BLE001 - any failure to trace leaves the eager model in charge
            log.info("no traced copy of %s (%s); predicting with the eager model", type(self.model).__name__, err)
            return None
        if not agree:
            log.warning("the traced copy of %s disagrees with it; predicting with the eager model", type(self.model).__name__)
            return None
        return fast
