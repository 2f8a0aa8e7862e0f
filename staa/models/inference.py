"""Predictions of a trained victim: batched over a dataset (`predict`), and a faster copy for forwards that
need no gradient (`InferenceModel`: the evaluation grid's victims, STAA's generator and its surrogate).

The faster copy is TorchScript's freeze + optimize_for_inference, which folds batch norm into the convolutions,
pre-packs their weights for oneDNN and fuses the activations: on CPU it made the log-mel CNNs' forwards 2-3.5x
faster (mel_cnn, crnn) and left the raw-waveform models and the transformer as they were (`scripts/bench_eval.py`
reports the ratio; `scripts/bench_generator.py` the generators'). torch 2.14 marks TorchScript deprecated;
torch.compile was as fast on mel_cnn but not on emo18, and spent ~35 s compiling each model. So the copy is used
only where no gradient is needed, it is checked against the eager model on the first batch of each clip length,
and the eager model answers whenever tracing fails or disagrees.
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
    """`InferenceModel(model)(x, *inputs)`, like `model(x, *inputs)` in eval mode without gradients, only faster.

    Tracing records one path through `forward`: fine for the suite's victims and the generator, which branch on
    nothing but shapes, but any check of values inside `forward` (finite input, valid classes) is not in the copy,
    so callers check first. A traced copy is made per clip length, since the feature front ends' frame counts
    follow it. Parameters and buffers are frozen into the copy: change the model, make a new InferenceModel."""

    def __init__(self, model: nn.Module, *, atol: float = 1e-3, max_lengths: int = 8):
        self.model, self.atol, self.max_lengths = model.eval(), atol, max_lengths
        self._traced: dict[int, torch.jit.ScriptModule | None] = {}

    def __call__(self, x: torch.Tensor, *inputs: torch.Tensor) -> torch.Tensor:
        length = x.shape[-1]
        if length not in self._traced:
            # clips of many lengths (a dataset kept at its utterances' lengths): past a few, each new trace would
            # cost more time than it saves and hold another copy of the weights, so the eager model takes the rest
            traced = sum(m is not None for m in self._traced.values())
            self._traced[length] = self._trace(x, *inputs) if traced < self.max_lengths else None
        with torch.inference_mode():
            return (self._traced[length] or self.model)(x, *inputs)

    @property
    def traced(self) -> bool:
        """Whether any clip length runs on a traced copy."""
        return any(m is not None for m in self._traced.values())

    def _trace(self, *inputs: torch.Tensor):
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore", FutureWarning)  # the deprecation notice; see the module docstring
                warnings.simplefilter("ignore", torch.jit.TracerWarning)  # input checks (nn.RNN's, the generator's)
                fast = torch.jit.optimize_for_inference(
                    torch.jit.freeze(torch.jit.trace(self.model, inputs, check_trace=False))
                )
                agree = torch.allclose(fast(*inputs), self.model(*inputs), rtol=0.0, atol=self.atol)
        except Exception as err:  # noqa: BLE001 - any failure to trace leaves the eager model in charge
            log.info("no traced copy of %s (%s); predicting with the eager model", type(self.model).__name__, err)
            return None
        if not agree:
            log.warning(
                "the traced copy of %s disagrees with it; predicting with the eager model", type(self.model).__name__
            )
            return None
        return fast
