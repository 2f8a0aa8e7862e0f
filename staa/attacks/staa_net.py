"""STAA-Net as an attack object: one generator forward pass per batch, no gradients, no labels needed (a conditional
generator adds one forward pass of its surrogate, for the class)."""

from __future__ import annotations

import torch

from staa.attacks.base import Attack, check_batch
from staa.generator.network import STAAGenerator
from staa.models.inference import InferenceModel


class STAA(Attack):
    """`classifier` tells a class-conditional generator each clip's class when no labels `y` are given. By default
    (from a checkpoint) it is the generator's own surrogate, as an attacker has it: never the victim, so a
    transfer attack makes no query to the model it attacks. An unconditional generator needs neither."""

    name = "staa"

    def __init__(self, generator: STAAGenerator, model=None, eps: float | None = None, classifier=None):
        super().__init__(model)
        self.generator = generator.eval()
        if generator.conditional and classifier is None:
            raise ValueError(
                "a class-conditional generator needs a classifier (its surrogate) to tell it each clip's class"
            )
        # the traced copy (staa.models.inference): the class is a prediction without gradient, 2-3x faster on the mel models
        self.classifier = InferenceModel(classifier) if classifier is not None else None
        if eps is not None:
            self.generator.set_eps(eps)
        # a traced copy of the generator too: 1.1 against 1.3-2.0 ms per 3 s clip eager (cpu-fold, 2 CPU threads).
        # It freezes eps on its first call: set eps here, not on the generator later.
        self.fast_generator = InferenceModel(self.generator)

    @classmethod
    def from_checkpoint(
        cls, path, model=None, *, device="cpu", eps: float | None = None, sample_rate: int | None = None, surrogate=None
    ) -> "STAA":
        """Load a trained generator; `sample_rate` (the victim's) must be the one it was trained at. A conditional
        generator also loads its first surrogate: the file its checkpoint records (relative to the checkpoint,
        checked by SHA-256), or `surrogate` when given."""
        from staa.generator.checkpoint import load_generator, resolve_surrogate
        from staa.io.checkpoint import CheckpointError
        from staa.models.victim import load_victim

        gen = load_generator(path, device=device)
        if sample_rate is not None and gen.sample_rate != sample_rate:
            raise CheckpointError(
                f"{path}: the generator was trained at {gen.sample_rate} Hz, the victim runs at {sample_rate} Hz"
            )
        classifier = None
        if gen.conditional:  # it needs its surrogate to tell it each clip's class
            classifier = load_victim(resolve_surrogate(path, gen, surrogate), device=device).model
        return cls(gen, model, eps, classifier)

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        check_batch(x)  # here, not in the generator: its traced copy has no checks of values
        if not self.generator.conditional:
            return self.fast_generator(x)  # labels, if given, are not its business
        if y is None and getattr(self.generator, "target", None) is not None:  # trained for one target class
            y = torch.full((x.shape[0],), self.generator.target, dtype=torch.long, device=x.device)
        cls = y if y is not None else self.classifier(x).argmax(dim=1)
        self.generator.check_classes(x, cls)
        return self.fast_generator(x, cls)
