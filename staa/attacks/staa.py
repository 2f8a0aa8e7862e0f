"""STAA-Net as an attack object: one generator forward pass per batch, no gradients, no labels needed."""
from __future__ import annotations

import torch

from staa.attacks.base import Attack
from staa.generator import STAAGenerator


class STAA(Attack):
    name = "staa"

    def __init__(self, generator: STAAGenerator, model=None, eps: float | None = None):
        super().__init__(model)
        self.generator = generator.eval()
        if eps is not None:
            self.generator.set_eps(eps)

    @classmethod
    def from_checkpoint(cls, path, model=None, *, device="cpu", eps: float | None = None, sample_rate: int | None = None) -> "STAA":
        """Load a trained generator; `sample_rate` (the victim's) must be the one it was trained at."""
        from staa.checkpoint import CheckpointError
        from staa.generator_training import load_generator

        gen = load_generator(path, device=device)
        if sample_rate is not None and gen.sample_rate != sample_rate:
            raise CheckpointError(f"{path}: the generator was trained at {gen.sample_rate} Hz, the victim runs at {sample_rate} Hz")
        return cls(gen, model, eps)

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.generator(x)  # the generator checks shape and finiteness itself
