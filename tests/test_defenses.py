import numpy as np
import pytest
import torch

from defenses import DEFENSES, Chain, parse_defense
from staa.metrics.perceptual import perceptual_scores
from staa.metrics.perturbation import snr_db
from tests.conftest import tone

RATE = 16_000
DEFAULT_SPECS = [name for name in DEFENSES]


def _batch(seconds=1.0, odd=True):
    x = np.stack([tone(seconds, freq=f, seed=i) for i, f in enumerate([220, 440, 880])])
    if odd:
        x = x[:, :-1]  # an odd length: every defense must hand back exactly the same length
    return torch.from_numpy(x)


def _band_energy(x: torch.Tensor, freq: float) -> float:
    spec = torch.fft.rfft(x[0].double()).abs()
    bins = torch.fft.rfftfreq(x.shape[-1], 1 / RATE)
    return float(spec[(bins - freq).abs() < 20].pow(2).sum())


@pytest.mark.parametrize("spec", DEFAULT_SPECS)
def test_shape_dtype_finite_and_determinism(spec):
    x = _batch()
    y1 = parse_defense(spec)(x, RATE)
    y2 = parse_defense(spec)(x, RATE)  # a fresh object with the same (default) seed
    assert y1.shape == x.shape and y1.dtype == torch.float32
    assert torch.isfinite(y1).all()
    assert torch.equal(y1, y2), f"{spec} is not deterministic for a fixed seed"
    assert (spec == "none") == torch.equal(y1, x)  # every real defense changes the signal


@pytest.mark.parametrize("spec", ["noise:30", "shift:0.1"])
def test_random_defenses_differ_across_seeds_and_calls(spec):
    x = _batch()
    d = parse_defense(spec)
    first, second = d(x, RATE), d(x, RATE)
    assert d.random and not torch.equal(first, second)  # fresh draws per call: what EOT averages over
    assert not torch.equal(parse_defense(spec + ":seed=1")(x, RATE), parse_defense(spec)(x, RATE))


@pytest.mark.parametrize("spec", ["lowpass:4000", "resample:8000"])
def test_low_pass_family_removes_6khz_and_keeps_500hz(spec):
    t = torch.arange(RATE) / RATE
    x = (0.3 * torch.sin(2 * np.pi * 500 * t) + 0.3 * torch.sin(2 * np.pi * 6000 * t))[None]
    y = parse_defense(spec)(x, RATE)
    assert _band_energy(y, 6000) < 1e-3 * _band_energy(x, 6000)
    assert _band_energy(y, 500) == pytest.approx(_band_energy(x, 500), rel=0.05)


def test_lower_mp3_and_opus_bitrates_cost_more_quality():
    x = _batch(seconds=3.0, odd=False)[:1]
    x = x + 0.1 * torch.from_numpy(tone(3.0, freq=1700, seed=5))[None]  # richer than one tone
    pesq = {
        s: perceptual_scores(x, parse_defense(s)(x, RATE), RATE, workers=1)[0]["pesq"] for s in ["mp3:8", "mp3:128"]
    }
    assert pesq["mp3:8"] < pesq["mp3:128"] - 0.5
    err = {k: float((parse_defense(f"opus:{k}")(x, RATE) - x).pow(2).mean()) for k in (8, 64)}
    assert err[8] > err[64]
    verr = {lv: float((parse_defense(f"vorbis:{lv}")(x, RATE) - x).pow(2).mean()) for lv in (0.0, 1.0)}
    assert verr[1.0] > verr[0.0]


def test_quantize_lands_on_the_grid_within_half_a_step():
    x = _batch()
    y = parse_defense("quantize:8")(x, RATE)
    assert torch.allclose(y * 128, torch.round(y * 128))
    assert (y - x).abs().max() <= 0.5 / 128 + 1e-7


def test_median_removes_isolated_spikes_that_sparse_attacks_add():
    x = _batch()[:1]  # 220 Hz: neighbouring samples are close, so the median of three is near the true value
    spiky = x.clone()
    spiky[:, ::97] += 0.3
    y = parse_defense("median:3")(spiky, RATE)
    assert (y - x).abs()[:, ::97].mean() < 0.1 * 0.3
    assert (parse_defense("median:3")(x, RATE) - x).abs().mean() < 0.01  # a smooth tone passes


def test_wiener_and_spectral_gates_reduce_noise():
    clean = torch.from_numpy(tone(2.0, freq=300, seed=0, amp=0.3))
    clean[RATE // 2 :] = 0  # the second part is silence, where only noise remains
    noisy = (clean + 0.02 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0)))[None]
    for spec in ["wiener:5", "spectral_gate:1", "torch_gate:1"]:
        y = parse_defense(spec)(noisy, RATE)[0]
        residual = y[RATE:].pow(2).mean() / noisy[0, RATE:].pow(2).mean()
        kept = (y[: RATE // 2] * clean[: RATE // 2]).sum() / clean[: RATE // 2].pow(2).sum()
        assert residual < 0.25 and kept > 0.2, (
            spec,
            float(residual),
            float(kept),
        )  # noise down >= 6 dB, the tone stays


@pytest.mark.parametrize("prop_decrease", [1.0, 0.6])
def test_separable_torch_gate_equals_noisereduce_torch_gate(prop_decrease):
    from noisereduce.torchgate import TorchGate

    from defenses.denoise import SeparableTorchGate

    gen = torch.Generator().manual_seed(0)
    x = _batch(seconds=2.0) * torch.linspace(0, 1, 2 * RATE - 1) + 0.01 * torch.randn(3, 2 * RATE - 1, generator=gen)
    ref = TorchGate(RATE, prop_decrease=prop_decrease)(x)
    fast = SeparableTorchGate(RATE, prop_decrease=prop_decrease)(x)
    assert fast.shape == ref.shape
    assert (
        ref - x[:, : ref.shape[-1]]
    ).abs().max() > 1e-3  # the gate did something to compare (istft drops the last partial hop)
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=0)  # mask edges included: zero padding as conv2d's "same"


def test_mel_inversion_keeps_the_spectral_envelope():
    x = _batch(odd=False)[:1]
    y = parse_defense("griffin_lim")(x, RATE)
    assert _band_energy(y, 220) > 0.3 * _band_energy(x, 220)
    assert _band_energy(y, 3000) < 0.1 * _band_energy(y, 220)


def test_noise_is_at_the_requested_snr_and_shift_is_a_circular_roll():
    x = _batch(seconds=2.0)
    y = parse_defense("noise:20")(x, RATE)
    assert snr_db(x, y).mean().item() == pytest.approx(20.0, abs=0.5)
    d = parse_defense("shift:0.05")
    z = d(x, RATE)
    for clip, out in zip(x, z):
        shifts = [s for s in range(-800, 801) if torch.equal(torch.roll(clip, s), out)]
        assert len(shifts) == 1


def test_a_chain_equals_the_composition():
    x = _batch()
    chain = parse_defense("resample:8000+mp3:64+quantize:10")
    assert isinstance(chain, Chain) and chain.spec == "resample:8000+mp3:64+quantize:10" and not chain.differentiable
    manual = parse_defense("quantize:10")(parse_defense("mp3:64")(parse_defense("resample:8000")(x, RATE), RATE), RATE)
    assert torch.equal(chain(x, RATE), manual)


def test_bpda_passes_the_identity_gradient_through_non_differentiable_defenses():
    x = _batch().requires_grad_(True)
    y = parse_defense("mp3:32").bpda(x, RATE)
    assert torch.equal(y.detach(), parse_defense("mp3:32")(x.detach(), RATE))  # forward is the real defense
    (y * 3).sum().backward()
    assert torch.allclose(x.grad, torch.full_like(x, 3.0))
    x.grad = None
    parse_defense("lowpass:2000").bpda(x, RATE).pow(2).sum().backward()  # a real gradient, not the identity
    assert not torch.allclose(x.grad, 2 * x.detach())


def test_a_chain_keeps_the_real_gradient_of_its_differentiable_parts_and_a_defense_may_supply_its_own():
    x = _batch().requires_grad_(True)
    lowpass, chain = parse_defense("lowpass:2000"), parse_defense("mp3:32+lowpass:2000")
    chain.bpda(x, RATE).sum().backward()
    real = torch.autograd.grad(lowpass(x, RATE).sum(), x)[0]  # identity through mp3, then the low-pass's own
    assert torch.allclose(x.grad, real, atol=1e-6) and not torch.allclose(x.grad, torch.ones_like(x))

    class Halving(type(parse_defense("mp3:32"))):
        def gradient(self, x, grad):
            return grad / 2

    x.grad = None
    Halving(32).bpda(x, RATE).sum().backward()
    assert torch.allclose(x.grad, torch.full_like(x, 0.5))


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "foo",
        "mp3:33",
        "mp3:32:7",
        "lowpass:-1",
        "noise:abc",
        "median:4",
        "quantize:1",
        "resample:0",
        "opus:300",
        "noise:500",
        "shift:0",
        "spectral_gate:0",
        "mp3+",
    ],
)
def test_bad_specs_are_clear_errors(bad):
    with pytest.raises(ValueError):
        parse_defense(bad)


def test_bad_inputs_name_the_defense():
    d = parse_defense("mp3:32")
    with pytest.raises(ValueError, match="mp3:32"):
        d(torch.zeros(16000), RATE)
    with pytest.raises(ValueError, match="sample_rate"):
        d(torch.zeros(1, 16000), 0)
    with pytest.raises(ValueError, match="Nyquist"):
        parse_defense("lowpass:9000")(torch.zeros(1, 100), RATE)


def test_digital_silence_stays_finite_through_every_defense():
    # noisereduce's non-stationary gate returned NaN for an all-zero clip (found by the property test)
    x = torch.stack([torch.zeros(RATE), torch.from_numpy(tone(1.0, freq=300, seed=0, amp=0.3))])
    for name in DEFENSES:
        y = parse_defense(name)(x, RATE)
        assert torch.isfinite(y).all(), name
    assert torch.equal(parse_defense("spectral_gate:1")(x, RATE)[0], x[0])


# every registered defense with parameters away from their defaults (seeds included), to catch a spec that drops one
NON_DEFAULT = {
    "none": "none",
    "mp3": "mp3:64",
    "opus": "opus:24",
    "vorbis": "vorbis:0.5",
    "resample": "resample:11025",
    "lowpass": "lowpass:3000.5:taps=101",
    "median": "median:5",
    "wiener": "wiener:7",
    "quantize": "quantize:10",
    "spectral_gate": "spectral_gate:0.7",
    "torch_gate": "torch_gate:0.6",
    "griffin_lim": "griffin_lim:64:iterations=4:n_fft=256",
    "noise": "noise:25.5:seed=7",
    "shift": "shift:0.05:seed=3",
    "amr_nb": "amr_nb:6.7",
    "g711": "g711:alaw",
    "g722": "g722",
    "g726": "g726:24",
    "aac": "aac:48",
    "telephone": "telephone",
    "mobile": "mobile",
}


def test_every_defense_spec_rebuilds_an_equal_defense():
    import inspect

    assert set(NON_DEFAULT) == set(DEFENSES)
    x = 0.1 * torch.randn(2, 4000, generator=torch.Generator().manual_seed(0))
    for name, text in NON_DEFAULT.items():
        d = parse_defense(text)
        assert d.spec == text
        again = parse_defense(d.spec)
        params = [p for p in inspect.signature(type(d)).parameters]
        assert {p: getattr(again, p) for p in params} == {p: getattr(d, p) for p in params}, name
        assert torch.equal(parse_defense(d.spec)(x, 16_000), parse_defense(text)(x, 16_000)), name  # seeds included
    assert parse_defense("resample:8000+noise:30:seed=2").spec == "resample:8000+noise:30:seed=2"


def _lag(x: np.ndarray, y: np.ndarray, span: int = 60) -> int:
    """The shift of y against x that correlates best, within +-span samples."""
    n = len(x) - 2 * span
    return max(range(-span, span + 1), key=lambda k: float(np.dot(y[span + k : span + k + n], x[span : span + n])))


@pytest.mark.parametrize("spec", ["amr_nb:12.2", "g711:mulaw", "g711:alaw", "g722", "g726:32", "aac:32", "mobile"])
def test_voice_codecs_round_trip_in_line_with_the_input_and_really_encode(spec):
    """Same length, lined up sample for sample (the codec's delay and AAC's priming cut), close to the clip in the
    speech band and yet changed by the coding."""
    from scipy.signal import butter, sosfiltfilt

    rng = np.random.default_rng(0)
    band = butter(6, [200, 3400], btype="bandpass", fs=RATE, output="sos")  # what 8 kHz telephony keeps
    x = torch.from_numpy(0.2 * sosfiltfilt(band, rng.standard_normal((2, RATE))).astype(np.float32))
    d = parse_defense(spec)
    y = d(x, RATE)
    assert y.shape == x.shape and not d.differentiable and not d.random
    assert torch.equal(y, d(x, RATE))  # deterministic: a fresh codec state per clip
    a, b = x[0].numpy(), y[0].numpy()
    assert _lag(a, b) == 0
    snr = 10 * np.log10((a**2).sum() / ((a - b) ** 2).sum())
    assert 3 < snr < 60, snr


def test_a_lower_voice_codec_bitrate_costs_more():
    x = torch.from_numpy(tone(1.0, freq=300, seed=0, amp=0.3))[None]
    err = lambda s: float((parse_defense(s)(x, RATE) - x).pow(2).mean())
    assert err("g726:16") > 1.5 * err("g726:40")  # ADPCM: fewer bits, coarser steps
    # the named channels are the codecs they stand for
    assert torch.equal(parse_defense("telephone")(x, RATE), parse_defense("g711:mulaw")(x, RATE))
    assert torch.equal(parse_defense("mobile")(x, RATE), parse_defense("amr_nb:12.2")(x, RATE))
