"""The universal perturbation: one sparse delta within eps, tiled to any clip, that fools held-out clips."""

import pytest
import torch

from staa.attacks import Universal, parse_attack
from staa.generator.universal import load_universal, save_universal, tile, train_universal
from staa.io.checkpoint import CheckpointError, save_checkpoint
from tests.conftest import TONE_FREQS, fit_tone_model, tone


def test_tiling_repeats_the_delta_from_its_offset():
    d = torch.arange(5.0)
    assert tile(d, 12).tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1]
    assert tile(d, 4, offset=3).tolist() == [3, 4, 0, 1]


def test_a_trained_delta_is_sparse_within_eps_and_fools_held_out_clips_better_than_noise(tmp_path):
    model, held_out = fit_tone_model()
    # the same task drawn again (other noise): the clips the delta learns on
    train = torch.stack([torch.from_numpy(tone(0.5, freq=f, seed=500 + j)) for j in range(4) for f in TONE_FREQS])
    labels = model(train).argmax(1)
    data = list(zip(train, labels))
    eps, samples = 0.05, 2000
    delta, history = train_universal(
        [model], data, eps=eps, samples=samples, epochs=20, l0=0.3, lr=0.1, batch_size=4, progress=False
    )
    assert delta.shape == (samples,) and delta.abs().max() <= eps + 1e-7
    assert 0 < float((delta != 0).float().mean()) <= 0.35 and history[-1]["l0_ratio"] <= 0.35
    path = tmp_path / "u.pt"
    save_universal(path, delta, eps=eps, sample_rate=16_000, surrogates=["tones"], history=history)
    attack = parse_attack(f"universal:delta={path}").build(model, sample_rate=16_000)
    x_adv = attack(held_out)
    added = x_adv - held_out
    assert torch.allclose(added, tile(delta, held_out.shape[-1]).expand_as(added), atol=1e-6)  # one delta for all
    with torch.no_grad():
        clean = model(held_out).argmax(1)
        fooled = float((model(x_adv).argmax(1) != clean).float().mean())
        # noise of the same budget and density, placed at random
        gen = torch.Generator().manual_seed(0)
        noise = (
            eps * torch.sign(torch.randn(samples, generator=gen)) * (delta != 0)[torch.randperm(samples, generator=gen)]
        )
        by_noise = float(
            (model((held_out + tile(noise, held_out.shape[-1])).clamp(-1, 1)).argmax(1) != clean).float().mean()
        )
    assert fooled >= by_noise + 0.25, (fooled, by_noise)
    smaller = Universal(model, str(path), eps=0.01)
    assert (smaller(held_out) - held_out).abs().max() <= 0.01 + 1e-6


def test_a_delta_file_that_breaks_its_budget_or_is_not_one_is_refused(tmp_path):
    bad = tmp_path / "bad.pt"
    save_checkpoint(bad, "universal", {"delta": torch.full((10,), 0.5), "eps": 0.03, "sample_rate": 16_000})
    with pytest.raises(CheckpointError, match="exceeds the eps"):
        load_universal(bad)
    save_checkpoint(bad, "generator", {"delta": torch.zeros(10), "eps": 0.03, "sample_rate": 16_000})
    with pytest.raises(CheckpointError, match="expected staa-ser/universal"):
        Universal(None, str(bad))
