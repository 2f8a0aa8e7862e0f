import pytest
import torch

from staa.models import MODELS, build_model


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_waveform_to_logits_end_to_end(arch):
    torch.manual_seed(0)
    model = build_model(arch, n_classes=5).eval()
    for length in (16_000, 24_001):
        x = (0.1 * torch.randn(3, length)).requires_grad_()
        logits = model(x)
        assert logits.shape == (3, 5) and torch.isfinite(logits).all()
        logits[:, 0].sum().backward()
        assert x.grad.abs().sum() > 0, "attacks need a gradient on the waveform"
    # features live inside: a batch of one and a batch of three agree
    x = 0.1 * torch.randn(3, 16_000)
    assert torch.allclose(model(x)[:1], model(x[:1]), atol=1e-4)


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_gradient_is_finite_on_digital_silence(arch):
    """A silent clip (or a batch with one) must not give NaN gradients: attacks and training steps start from it."""
    torch.manual_seed(0)
    model = build_model(arch, n_classes=4).eval()
    x = torch.cat([torch.zeros(1, 16_000), 0.1 * torch.randn(1, 16_000)]).requires_grad_()
    model(x).logsumexp(dim=1).sum().backward()
    assert torch.isfinite(x.grad).all()
    model.zero_grad()
    model(x.detach()).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_architectures_differ_in_kind():
    params = {arch: sum(p.numel() for p in build_model(arch, 4).parameters()) for arch in MODELS}
    assert len(MODELS) >= 4 and len(set(params.values())) == len(params)
    kinds = {arch: {type(m).__name__ for m in build_model(arch, 4).modules()} for arch in MODELS}
    assert "LSTM" in kinds["emo18"] and "LSTM" in kinds["zhao19"]
    assert "Conv2d" in kinds["mel_cnn"] and "TransformerEncoder" in kinds["mel_transformer"] and "GRU" in kinds["crnn"]


def test_registry_errors():
    with pytest.raises(ValueError, match="unknown architecture 'resnet'"):
        build_model("resnet", 4)
    with pytest.raises(ValueError, match="bad config for mel_cnn"):
        build_model("mel_cnn", 4, depth=3)


@pytest.mark.parametrize("arch", ["emo18", "zhao19", "crnn"])
def test_rnn_victims_leave_cudnn_out_where_it_has_no_eval_backward(arch, monkeypatch):
    from staa.models import build_model, rnn

    lstm = torch.nn.LSTM(4, 4).eval()

    class OnGPU:  # the rule reads only where the batch lives
        is_cuda = True

    assert rnn.cudnn_cannot_backward(lstm, OnGPU()) == torch.backends.cudnn.enabled  # an attack: eval, gradient
    with torch.no_grad():
        assert not rnn.cudnn_cannot_backward(lstm, OnGPU())  # inference keeps cuDNN
    assert not rnn.cudnn_cannot_backward(lstm.train(), OnGPU()) and not rnn.cudnn_cannot_backward(lstm, torch.zeros(1))
    # the victim's own call takes that path: its RNN runs with cuDNN switched off, and the gradient still flows
    seen, flags = [], torch.backends.cudnn.flags
    monkeypatch.setattr(rnn, "cudnn_cannot_backward", lambda r, h: True)
    monkeypatch.setattr(torch.backends.cudnn, "flags", lambda **kw: seen.append(kw) or flags(**kw))
    model = build_model(arch, 4).eval()
    x = (0.1 * torch.randn(1, 16_000)).requires_grad_(True)
    model(x).sum().backward()
    assert seen == [{"enabled": False}] and x.grad.abs().sum() > 0
