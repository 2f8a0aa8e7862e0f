import numpy as np
import pytest
import torch

from staa.io.audio import AudioError, check_waveform, load_audio, save_audio
from tests.conftest import tone, write_wav


def test_roundtrip_and_resample(tmp_path):
    x = tone(rate=22_050)
    path = write_wav(tmp_path / "a.wav", x, 22_050, subtype="FLOAT")
    same, rate = load_audio(path, None)
    assert rate == 22_050 and same.dtype == torch.float32 and torch.allclose(same, torch.from_numpy(x))
    y, rate = load_audio(path, 16_000)
    assert rate == 16_000 and y.shape[0] == 16_000
    # resampling keeps a 220 Hz tone at 220 Hz
    spectrum = np.abs(np.fft.rfft(y.numpy()))
    assert abs(np.argmax(spectrum) - 220) <= 1


def test_save_is_atomic_and_checks(tmp_path):
    out = save_audio(tmp_path / "x.flac", torch.from_numpy(tone()), 16_000)
    assert out.is_file() and not list(tmp_path.glob(".*tmp"))
    with pytest.raises(AudioError, match="x.mp4"):
        save_audio(tmp_path / "x.mp4", tone(), 16_000)
    with pytest.raises(AudioError, match="NaN"):
        save_audio(tmp_path / "n.wav", np.full(100, np.nan, np.float32), 16_000)
    assert not (tmp_path / "n.wav").exists()


def _bad_files(tmp_path):
    good = write_wav(tmp_path / "good.wav")
    raw = good.read_bytes()
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "text.wav").write_bytes(b"this is not audio at all" * 20)
    (tmp_path / "header_only.wav").write_bytes(raw[:40])
    (tmp_path / "truncated.wav").write_bytes(raw[: len(raw) // 2])
    write_wav(tmp_path / "nan.wav", np.array([0.1, np.nan] * 800, np.float32), subtype="FLOAT")
    write_wav(tmp_path / "inf.wav", np.array([0.1, np.inf] * 800, np.float32), subtype="FLOAT")
    write_wav(tmp_path / "loud.wav", tone(amp=3.0), subtype="FLOAT")
    write_wav(tmp_path / "stereo.wav", np.stack([tone(), tone(freq=440)], axis=1))
    write_wav(tmp_path / "zero.wav", np.zeros((0,), np.float32))
    write_wav(tmp_path / "clipped.wav", np.sign(tone()) * 1.0)
    write_wav(tmp_path / "slow.wav", tone(rate=1000), rate=1000)
    return {
        "missing.wav": "no such file",
        "empty.wav": "empty file",
        "text.wav": "not readable audio",
        "header_only.wav": "not readable audio",
        "truncated.wav": "truncated",
        "nan.wav": "NaN/Inf",
        "inf.wav": "NaN/Inf",
        "loud.wav": "outside \\[-1, 1\\]",
        "stereo.wav": "2 channels",
        "zero.wav": "zero samples",
        "clipped.wav": "clipped",
        "slow.wav": "implausible sample rate",
    }


def test_every_bad_file_gives_a_clear_error(tmp_path):
    for name, problem in _bad_files(tmp_path).items():
        with pytest.raises(AudioError, match=problem) as err:
            load_audio(tmp_path / name)
        assert name in str(err.value), f"{name}: error does not name the file: {err.value}"


def test_explicit_options_accept_what_they_say(tmp_path):
    _bad_files(tmp_path)
    mixed, _ = load_audio(tmp_path / "stereo.wav", mono="mean")
    assert mixed.shape == (16_000,)
    assert torch.allclose(mixed, torch.from_numpy((tone() + tone(freq=440)) / 2), atol=1e-4)
    clipped, _ = load_audio(tmp_path / "clipped.wav", allow_clipped=True)
    assert clipped.abs().max() > 0.99
    with pytest.raises(AudioError, match="shorter than the minimum"):
        load_audio(write_wav(tmp_path / "short.wav", tone(seconds=0.1)), min_seconds=0.5)


def test_check_waveform_on_tensors():
    check_waveform(torch.zeros(2, 100))
    with pytest.raises(AudioError, match="<array>: has zero samples"):
        check_waveform(torch.zeros(2, 0))


@pytest.mark.parametrize(
    "subtype,rate",
    [
        ("PCM_U8", 8_000),
        ("PCM_16", 16_000),
        ("PCM_24", 44_100),
        ("PCM_32", 48_000),
        ("FLOAT", 96_000),
        ("DOUBLE", 192_000),
    ],
)
def test_every_common_bit_depth_and_rate_loads_and_resamples(tmp_path, subtype, rate):
    sine = lambda r: (0.3 * np.sin(2 * np.pi * 300 * np.arange(r // 2) / r)).astype(np.float32)
    path = write_wav(tmp_path / "x.wav", sine(rate), rate=rate, subtype=subtype)
    wave, original = load_audio(path, 16_000)
    assert original == 16_000 and wave.dtype == torch.float32 and wave.shape == (8000,)  # resampled from `rate`
    reference = torch.from_numpy(sine(16_000))
    tol = 0.02 if subtype == "PCM_U8" else 0.005  # 8-bit: a step of 1/128
    assert (wave[400:-400] - reference[400:-400]).abs().max() < tol  # away from the resampler's edges


def test_silence_square_waves_and_long_files_are_handled_as_documented(tmp_path):
    silence, _ = load_audio(write_wav(tmp_path / "silence.wav", np.zeros(16_000, np.float32)))
    assert (
        silence.abs().max() == 0
    )  # digital silence is valid audio (PESQ later reports it, see staa.metrics.perceptual)
    square = np.sign(np.sin(2 * np.pi * 100 * np.arange(16_000) / 16_000)).astype(np.float32)
    with pytest.raises(AudioError, match="clipped"):
        load_audio(write_wav(tmp_path / "square.wav", square, subtype="FLOAT"))  # full scale everywhere: clipped
    loaded, _ = load_audio(tmp_path / "square.wav", allow_clipped=True)
    assert loaded.abs().max() == 1.0
    long = write_wav(tmp_path / "long.wav", np.tile(tone(seconds=1.0), 600), subtype="PCM_16")  # ten minutes
    wave, _ = load_audio(long)
    assert wave.shape == (600 * 16_000,)
