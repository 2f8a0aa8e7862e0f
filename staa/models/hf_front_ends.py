"""Hugging Face feature extractors in torch, so that gradients reach the waveform.

Each front end is built from the transformers extractor itself (settings, mel filters and windows are its own
attributes), takes a waveform batch `[B, T]` and returns the keyword arguments of the model's forward, computed as
the extractor's `__call__` computes them in numpy (the tests hold each within 1e-4 of it).
"""

from __future__ import annotations

import torch
from torch import nn

from staa.models.features import zero_mean_unit_var


class WaveformFrontEnd(nn.Module):
    """Wav2Vec2FeatureExtractor (wav2vec 2.0, HuBERT, WavLM, data2vec-audio): the waveform itself, normalised per clip
    when `do_normalize`."""

    def __init__(self, extractor):
        super().__init__()
        self.normalize = bool(extractor.do_normalize)

    def forward(self, x: torch.Tensor) -> dict:
        return {"input_values": zero_mean_unit_var(x) if self.normalize else x}


class KaldiFbankFrontEnd(nn.Module):
    """ASTFeatureExtractor: Kaldi log-mel filterbank (torchaudio.compliance.kaldi, differentiable), padded or cut to
    `max_length` frames, then `(f - mean) / (2 std)`."""

    def __init__(self, extractor):
        super().__init__()
        self.rate, self.bins = int(extractor.sampling_rate), int(extractor.num_mel_bins)
        self.frames, self.normalize = int(extractor.max_length), bool(extractor.do_normalize)
        self.mean, self.std = float(extractor.mean), float(extractor.std)

    def forward(self, x: torch.Tensor) -> dict:
        from torchaudio.compliance import kaldi

        feats = []
        for clip in x:  # kaldi.fbank takes one clip at a time
            f = kaldi.fbank(clip[None], sample_frequency=self.rate, window_type="hanning", num_mel_bins=self.bins)
            f = f[: self.frames]
            feats.append(torch.nn.functional.pad(f, (0, 0, 0, self.frames - f.shape[0])))
        f = torch.stack(feats)
        return {"input_values": (f - self.mean) / (2 * self.std) if self.normalize else f}


class WhisperFrontEnd(nn.Module):
    """WhisperFeatureExtractor: every clip padded with silence or cut to `chunk_length` seconds (30 s for the
    released models; the encoder accepts no other length, so only a clip's first chunk is ever heard and a
    perturbation after it has no effect), then a log10 mel power spectrogram floored 8 decades under the clip's
    peak and scaled as `(s + 4) / 4`. `dither` is not applied: the victim stays deterministic."""

    def __init__(self, extractor):
        super().__init__()
        self.samples, self.n_fft, self.hop = int(extractor.n_samples), int(extractor.n_fft), int(extractor.hop_length)
        self.register_buffer("mel", torch.from_numpy(extractor.mel_filters).float().T.contiguous(), persistent=False)
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)

    def forward(self, x: torch.Tensor) -> dict:
        x = x[:, : self.samples]
        x = torch.nn.functional.pad(x, (0, self.samples - x.shape[1]))
        spec = torch.stft(x, self.n_fft, self.hop, window=self.window.to(x.dtype), return_complex=True)
        power = spec[..., :-1].abs() ** 2
        log = torch.clamp(self.mel.to(x.dtype) @ power, min=1e-10).log10()
        peak = log.amax(dim=(1, 2), keepdim=True)
        return {"input_features": (torch.maximum(log, peak - 8.0) + 4.0) / 4.0}


class W2vBertFrontEnd(nn.Module):
    """SeamlessM4TFeatureExtractor (w2v-BERT 2.0, SeamlessM4T): a Kaldi-style log-mel filterbank of the waveform in
    16-bit units (25 ms povey frames every 10 ms, DC offset removed, pre-emphasis 0.97, 512-point FFT), normalised
    per mel bin over the clip, then `stride` consecutive frames stacked into one (an odd last frame is padded with
    zeros and masked, as the extractor pads to an even count)."""

    FRAME, HOP, FFT, FLOOR = 400, 160, 512, 1.192092955078125e-07

    def __init__(self, extractor):
        super().__init__()
        self.stride = int(extractor.stride)
        self.register_buffer("mel", torch.from_numpy(extractor.mel_filters).double(), persistent=False)
        self.register_buffer("window", torch.from_numpy(extractor.window).double(), persistent=False)

    def forward(self, x: torch.Tensor) -> dict:
        # in float64, as the extractor computes: in float32 the 16-bit-scale powers lose about 2e-4 after normalising
        dtype, x = x.dtype, x.double()
        frames = (x * 2**15).unfold(-1, self.FRAME, self.HOP)
        frames = frames - frames.mean(dim=-1, keepdim=True)
        frames = torch.cat([frames[..., :1] * (1 - 0.97), frames[..., 1:] - 0.97 * frames[..., :-1]], dim=-1)
        power = torch.fft.rfft(frames * self.window.double(), n=self.FFT).abs() ** 2
        f = torch.clamp(power @ self.mel.double(), min=self.FLOOR).log()
        f = (f - f.mean(dim=1, keepdim=True)) / torch.sqrt(f.var(dim=1, keepdim=True) + 1e-7)
        batch, n, bins = f.shape
        mask = torch.ones(batch, n, dtype=torch.long, device=x.device)
        even = -(-n // 2) * 2  # the extractor pads to a multiple of 2 before stacking
        f, mask = torch.nn.functional.pad(f, (0, 0, 0, even - n)), torch.nn.functional.pad(mask, (0, even - n))
        keep = even - even % self.stride
        f = f[:, :keep].reshape(batch, keep // self.stride, bins * self.stride)
        return {"input_features": f.to(dtype), "attention_mask": mask[:, :keep][:, self.stride - 1 :: self.stride]}


FRONT_ENDS = {
    "Wav2Vec2FeatureExtractor": WaveformFrontEnd,
    "ASTFeatureExtractor": KaldiFbankFrontEnd,
    "WhisperFeatureExtractor": WhisperFrontEnd,
    "SeamlessM4TFeatureExtractor": W2vBertFrontEnd,
}

# the extractor settings the front ends read, with the type each must have (bool is no int here: `True` Hz is a typo)
SETTING_TYPES = {
    "sampling_rate": "int",
    "num_mel_bins": "int",
    "max_length": "int",
    "feature_size": "int",
    "chunk_length": "int",
    "hop_length": "int",
    "n_fft": "int",
    "stride": "int",
    "do_normalize": "bool",
    "mean": "number",
    "std": "number",
}
POSITIVE = (
    "sampling_rate",
    "num_mel_bins",
    "max_length",
    "feature_size",
    "chunk_length",
    "hop_length",
    "n_fft",
    "stride",
)
