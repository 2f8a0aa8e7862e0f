"""Property-based tests (hypothesis) over defenses and metrics: shapes, ranges, no NaN out for finite in."""

import math

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from defenses import parse_defense
from staa.metrics.perturbation import distortion_db, l0_ratio, linf, seg_snr_db, snr_db

FAST_SPECS = [
    "none",
    "mp3:64",
    "opus:32",
    "vorbis:0.5",
    "resample:8000",
    "lowpass:4000",
    "median:3",
    "wiener:5",
    "quantize:8",
    "spectral_gate:1",
    "torch_gate:1",
    "griffin_lim:40",
    "noise:20",
    "shift:0.05",
    "resample:8000+quantize:10",
]


@st.composite
def waveforms(draw, min_len=1, max_len=6000):
    batch = draw(st.integers(1, 3))
    length = draw(st.integers(min_len, max_len))
    seed = draw(st.integers(0, 2**31 - 1))
    kind = draw(st.sampled_from(["noise", "tone", "silence", "spikes"]))
    g = torch.Generator().manual_seed(seed)
    if kind == "noise":
        x = torch.randn(batch, length, generator=g) * draw(st.floats(1e-4, 0.3))
    elif kind == "tone":
        t = torch.arange(length) / 16_000
        x = draw(st.floats(0.01, 0.9)) * torch.sin(2 * math.pi * draw(st.floats(50, 7000)) * t).repeat(batch, 1)
    elif kind == "silence":
        x = torch.zeros(batch, length)
    else:
        x = torch.zeros(batch, length)
        x[:, torch.randint(length, (min(5, length),), generator=g)] = 0.5
    return x.clamp(-1, 1)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(x=waveforms(), spec=st.sampled_from(FAST_SPECS))
def test_defenses_keep_shape_and_dtype_and_stay_finite(x, spec):
    y = parse_defense(spec)(x, 16_000)
    assert y.shape == x.shape and y.dtype == torch.float32
    assert torch.isfinite(y).all()
    assert y.abs().max() <= 4.0  # no blow-up (noise can add a little above full scale; codecs may overshoot slightly)


@settings(max_examples=40, deadline=None)
@given(x=waveforms(), scale=st.floats(0.0, 0.1), density=st.floats(0.0, 1.0), seed=st.integers(0, 1000))
def test_perturbation_metrics_ranges(x, scale, density, seed):
    g = torch.Generator().manual_seed(seed)
    mask = (torch.rand(x.shape, generator=g) < density).float()
    adv = x + scale * mask * torch.randn(x.shape, generator=g)
    ratio = l0_ratio(x, adv)
    assert ((ratio >= 0) & (ratio <= 1)).all()
    assert (linf(x, adv) >= 0).all()
    assert not torch.isnan(distortion_db(x, adv)).any() and not torch.isnan(snr_db(x, adv)).any()
    seg = seg_snr_db(x, adv)
    assert ((seg >= -10 - 1e-4) & (seg <= 35 + 1e-4)).all()
    unchanged = (adv == x).all(dim=-1)
    assert torch.isinf(distortion_db(x, adv)[unchanged]).all()  # no change: infinitely quiet, never NaN


@settings(max_examples=20, deadline=None)
@given(bits=st.integers(2, 24), x=waveforms(max_len=2000))
def test_quantize_is_idempotent_and_bounded(bits, x):
    q = parse_defense(f"quantize:{bits}")
    once = q(x, 16_000)
    assert torch.equal(q(once, 16_000), once)
    assert (once - x).abs().max() <= 0.5 / 2 ** (bits - 1) + 1e-6 or x.abs().max() >= 1.0 - 2.0 ** -(bits - 1)
    assert np.isfinite(once.numpy()).all()
