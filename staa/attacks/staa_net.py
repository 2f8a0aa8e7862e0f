"""STAA-Net as an attack: a trained generator makes the perturbation in one forward pass, without the victim's
gradient or any query to it."""

from __future__ import annotations

import torch

from staa.attacks.base import Attack, check_eps
from staa.generator.checkpoint import GeneratorRecord, read_generator, read_record, resolve_surrogate
from staa.generator.network import STAAGenerator
from staa.io.checkpoint import CheckpointError
from staa.models.inference import InferenceModel


class STAA(Attack):
    r"""STAA-Net, the sparse generator attack: `x_adv = clip(x + v * m, -1, 1)` with magnitudes `|v| <= eps` and a
    binary position mask `m`, made by a Wave-U-Net in one forward pass (../docs/design.md; ../shared/STAA.md).

    Distance Measure : Linf (and a sparse support)

    Arguments:
        model (nn.Module or None): the victim. Never queried: the generator was trained on its surrogates, so on any
            other model this is a transfer attack. Only pass counting and the call shape use it.
        generator (str or STAAGenerator): a generator checkpoint (`staa train-attack`), or the network itself.
        eps (float or None): the l-inf budget; None keeps the one it was trained at.
        surrogate (str or None): the victim file that tells a class-conditional generator each clip's class, instead
            of the surrogate its checkpoint records (found relative to it and checked by SHA-256).
        classifier (nn.Module or None): that classifier as a module (a generator given as a network needs one when it
            is class-conditional).
        sample_rate (int or None): the victim's rate, checked against the generator's.

    Shape:
        - x: `(N, T)` waveforms in [-1, 1]. - y: `(N)` classes or None (untargeted: the classifier's prediction; a
          generator trained for one target class uses that class). - output: `(N, T)`.

    Examples::
        >>> attack = STAA(victim, "runs/demo/attacks/mel_cnn/best.pt", eps=0.002)
        >>> x_adv = attack(x)
    """

    name = "staa"
    kind = "generator"
    gradient = False
    grid_eps = False
    paths = ("generator", "surrogate")

    def __init__(
        self,
        model,
        generator: str | STAAGenerator,
        eps: float | None = None,
        surrogate: str | None = None,
        *,
        classifier=None,
        sample_rate: int | None = None,
        device="cpu",
    ):
        super().__init__(model)
        if eps is not None:
            check_eps(eps)
        if isinstance(generator, STAAGenerator):
            gen, self.record = generator, GeneratorRecord()  # a network alone records nothing
        else:
            gen, self.record = read_generator(generator, device=device)
            if sample_rate is not None and self.record.sample_rate != sample_rate:
                raise CheckpointError(
                    f"{generator}: the generator was trained at {self.record.sample_rate} Hz, the victim runs at "
                    f"{sample_rate} Hz"
                )
            if gen.conditional and classifier is None:  # it needs its surrogate to tell it each clip's class
                from staa.models.victim import load_victim

                classifier = load_victim(resolve_surrogate(generator, self.record, surrogate), device=device).model
        if gen.conditional and classifier is None:
            raise ValueError(
                "a class-conditional generator needs a classifier (its surrogate) to tell it each clip's class"
            )
        self.generator = gen.eval()
        # a traced copy: the class is a prediction without gradient, and tracing speeds up the mel models
        self.classifier = InferenceModel(classifier) if classifier is not None else None
        if eps is not None:
            self.generator.set_eps(eps)
        # traced too; it freezes eps on its first call, so eps is set here and not on the generator later
        self.fast_generator = InferenceModel(self.generator)

    @classmethod
    def from_checkpoint(cls, path, model=None, **kw) -> STAA:
        """`STAA(model, path, **kw)`."""
        return cls(model, path, **kw)

    @classmethod
    def validate(cls, params: dict) -> None:
        """Only eps: the checkpoint is read when the attack is built."""
        if params.get("eps") is not None:
            check_eps(params["eps"])

    @classmethod
    def describe(cls, params: dict, *, eps: float | None, victim_sha: str) -> dict:
        """Its budget is its spec's eps, else the one it was trained at; a transfer attack unless one of the
        surrogates it was trained on is the victim."""
        record = read_record(params["generator"])
        return {"eps": params.get("eps") or record.eps, "transfer": victim_sha not in record.surrogate_sha256}

    @torch.no_grad()
    def labels(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor | None:
        """The class a conditional generator is told: `y`, else its one target class, else the surrogate's
        prediction, never the victim's. An unconditional generator takes none."""
        if not self.generator.conditional:
            return None
        if y is None and self.record.target is not None:
            y = torch.full((x.shape[0],), self.record.target, dtype=torch.long)
        cls = y.to(x.device) if y is not None else self.classifier(x).argmax(dim=1)
        self.generator.check_classes(x, cls)
        return cls

    @torch.inference_mode()
    def perturb(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return self.fast_generator(x) if y is None else self.fast_generator(x, y)
