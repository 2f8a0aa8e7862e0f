import math

import numpy as np
import pytest
import torch

from staa.metrics.classification import accuracy, fooling_rate
from staa.metrics.perceptual import perceptual_scores
from staa.metrics.perturbation import distortion_db, l0_count, l0_ratio, seg_snr_db, snr_db
from tests.conftest import tone


def _speechlike(seconds=3.0, seed=0):
    """Harmonics under a syllable-rate envelope: enough for PESQ's voice activity detector."""
    rate = 16_000
    t = np.arange(int(seconds * rate)) / rate
    f0 = 140 + 20 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    env = np.clip(np.sin(2 * np.pi * 3 * t), 0, None) ** 2
    noise = np.random.default_rng(seed).normal(0, 1e-3, t.shape)
    return torch.from_numpy((0.2 * voiced * env + noise).astype(np.float32))


def test_pesq_stoi_of_a_clip_with_itself_are_the_maximum_and_drop_with_noise():
    x = _speechlike()[None]
    noisy = x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    same, degraded = perceptual_scores(torch.cat([x, x]), torch.cat([x, noisy]), 16_000, workers=1)
    assert (
        same["pesq"] > 4.5
        and same["stoi"] == pytest.approx(1.0, abs=1e-6)
        and same["estoi"] == pytest.approx(1.0, abs=1e-6)
    )
    assert degraded["pesq"] < same["pesq"] - 1 and degraded["stoi"] < same["stoi"]


def test_pesq_refusals_are_nan_with_a_reason_not_an_exception():
    silence = torch.zeros(1, 48_000)
    hiss = silence + 1e-4 * torch.randn(silence.shape, generator=torch.Generator().manual_seed(0))
    (score,) = perceptual_scores(silence, hiss, 16_000, workers=1)
    assert math.isnan(score["pesq"]) and score["pesq_error"] == "no utterance detected"
    with pytest.raises(ValueError, match="2 clean clips but 1"):
        perceptual_scores(torch.zeros(2, 100), torch.zeros(1, 100), 16_000)


def test_the_pool_gives_the_in_process_numbers_and_other_rates_are_resampled():
    clean = torch.stack([_speechlike(seed=i) for i in range(4)])
    adv = clean + 0.01 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(1))
    pooled, local = perceptual_scores(clean, adv, 16_000, workers=2), perceptual_scores(clean, adv, 16_000, workers=1)
    for p, q in zip(pooled, local):  # equal up to the last bits (BLAS threading differs between processes)
        assert p["pesq_error"] == q["pesq_error"]
        assert [p[k] for k in ("pesq", "stoi", "estoi")] == pytest.approx(
            [q[k] for k in ("pesq", "stoi", "estoi")], rel=1e-9
        )
    import scipy.signal

    up_c = torch.from_numpy(scipy.signal.resample_poly(clean[:1].numpy(), 3, 1, axis=-1).astype(np.float32))
    up_a = torch.from_numpy(scipy.signal.resample_poly(adv[:1].numpy(), 3, 1, axis=-1).astype(np.float32))
    at48 = perceptual_scores(up_c, up_a, 48_000, workers=1)[0]["pesq"]
    assert at48 == pytest.approx(perceptual_scores(clean[:1], adv[:1], 16_000, workers=1)[0]["pesq"], abs=0.3)


def test_snr_and_segmental_snr_of_known_noise():
    x = torch.from_numpy(tone(2.0, amp=0.5))[None]
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    noise = noise * x.norm() / noise.norm() / 10  # 20 dB below the signal
    assert snr_db(x, x + noise).item() == pytest.approx(20.0, abs=0.5)
    assert seg_snr_db(x, x + noise).item() == pytest.approx(20.0, abs=1.0)  # a steady tone: every frame near 20 dB
    assert seg_snr_db(x, x).item() == pytest.approx(35.0)  # clamped at the conventional ceiling


def test_l0_distortion_accuracy_and_fooling_of_known_values():
    clean = torch.zeros(2, 10)
    clean[:, 0] = 0.5
    mask = torch.tensor([[1, 0, 0, 1, 0, 0, 0, 0, 0, 1], [0] * 10], dtype=torch.float32)
    adv = clean + 0.005 * mask
    assert l0_count(clean, adv).tolist() == [3, 0] and l0_ratio(clean, adv).tolist() == pytest.approx([0.3, 0.0])
    assert distortion_db(clean, adv)[0].item() == pytest.approx(40.0, abs=1e-3)  # 20 log10(0.5 / 0.005)
    assert distortion_db(clean, adv)[1].item() == math.inf
    assert accuracy(torch.tensor([1, 2, 3, 0]), torch.tensor([1, 2, 0, 0])) == 0.75
    assert fooling_rate(torch.tensor([1, 2, 3, 0]), torch.tensor([1, 0, 0, 0])) == 0.5
