import pytest
import torch
from torch import nn

from staa.models import MODELS, build_model
from staa.models.inference import InferenceModel


def _with_batch_norm_statistics(model: nn.Module) -> nn.Module:
    """Untrained batch norm is the identity; folding it into a convolution is only tested by real statistics."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return model.eval()


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_inference_copy_predicts_what_the_model_does(arch):
    torch.manual_seed(0)
    model = _with_batch_norm_statistics(build_model(arch, n_classes=5))
    fast = InferenceModel(model)
    x = 0.1 * torch.randn(7, 16_000)
    fast(x[:4])  # traced on a batch of four, then used on other batch sizes
    assert fast.traced
    with torch.no_grad():
        assert torch.allclose(fast(x), model(x), atol=1e-4)
        assert torch.equal(fast(x[4:]).argmax(1), model(x[4:]).argmax(1))
        y = 0.1 * torch.randn(2, 12_345)  # another length gets its own copy
        assert torch.allclose(fast(y), model(y), atol=1e-4)


class _Counter(nn.Module):
    """Its output changes from call to call: a trace records one call's constant and disagrees with the next."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return x * self.calls


class _Untraceable(nn.Module):
    def forward(self, x):
        return x + 1, "a string: no traced function can return one"


@pytest.mark.parametrize("module", [_Counter, _Untraceable])
def test_the_eager_model_answers_when_the_traced_copy_cannot_be_trusted(module):
    model = module()
    fast = InferenceModel(model)
    x = torch.ones(2, 10)
    first = fast(x)
    assert not fast.traced
    if isinstance(model, _Counter):
        assert torch.equal(first, x * 3)  # trace and check made calls 1 and 2; the answer is the eager call 3
    else:
        assert torch.equal(first[0], x + 1)


def test_past_its_length_cap_the_eager_model_answers():
    """A dataset kept at its utterances' lengths would otherwise trace (and hold) one copy per length."""
    torch.manual_seed(0)
    model = build_model("mel_cnn", n_classes=3).eval()
    fast = InferenceModel(model, max_lengths=2)
    with torch.no_grad():
        for length in (8_000, 8_001, 8_002, 8_000):
            x = 0.1 * torch.randn(2, length)
            assert torch.allclose(fast(x), model(x), atol=1e-4)
    assert [m is not None for m in fast._traced.values()] == [True, True, False]
