"""An intermediate-feature loss for transfer, as the transfer generators CDA, LTP and BIA use: besides moving the
surrogates' decision, the perturbation should scramble what their middle layers see. Models of one task tend to
share mid-level features more than decision boundaries, so a perturbation that disturbs them carries further."""

from __future__ import annotations

import torch
from torch import nn


def middle_layer(model: nn.Module) -> str:
    """The name of `model`'s middle convolution (in the order the model registers its modules): the mid-level
    features, neither the front end's nor the classifier's."""
    convs = [name for name, mod in model.named_modules() if isinstance(mod, (nn.Conv1d, nn.Conv2d))]
    if not convs:
        raise ValueError(f"{type(model).__name__} has no convolution to take features from; name a feature_layer")
    return convs[len(convs) // 2]


class FeatureTaps:
    """Forward hooks on one layer of each model; `outputs()` is each layer's output of the models' latest call.

    A context manager: the hooks are removed on leaving it, so the models are untouched outside."""

    def __init__(self, models, layer: str | None = None):
        self.models = list(models)
        self.names = [layer or middle_layer(m) for m in self.models]
        self._out: list = [None] * len(self.models)
        self._handles = []

    def __enter__(self) -> FeatureTaps:
        for i, (model, name) in enumerate(zip(self.models, self.names)):
            try:
                module = model.get_submodule(name)
            except AttributeError:
                raise ValueError(f"{type(model).__name__} has no layer {name!r} to take features from") from None
            self._handles.append(module.register_forward_hook(self._keeper(i)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _keeper(self, i: int):
        def keep(_module, _inputs, output):
            self._out[i] = output[0] if isinstance(output, tuple) else output

        return keep

    def outputs(self) -> list[torch.Tensor]:
        if any(o is None for o in self._out):
            raise RuntimeError("every model must run inside the taps before their features are read")
        return list(self._out)


def feature_similarity(clean: list[torch.Tensor], adversarial: list[torch.Tensor]) -> torch.Tensor:
    """Mean over models and clips of the cosine similarity between each clip's clean and adversarial features
    (flattened): 1 when the perturbation leaves them as they were; the generator minimises it. Scale-free, so
    surrogates whose features differ in size and magnitude weigh alike."""
    sims = [
        nn.functional.cosine_similarity(c.flatten(1), a.flatten(1), dim=1).mean() for c, a in zip(clean, adversarial)
    ]
    return torch.stack(sims).mean()
