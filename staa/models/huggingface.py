"""Users' own Hugging Face audio classifiers (`hf:DIR`) as victims: waveform `[B, T]` in, logits `[B, C]` out.

The model's feature extractor runs in numpy, which would cut the gradient at the waveform, so its settings are read
from `DIR/preprocessor_config.json` and the same features are computed in torch: the zero-mean / unit-variance
normalisation of the raw-waveform models (wav2vec 2.0, HuBERT, WavLM, data2vec-audio, ...), the Kaldi filterbank
of the spectrogram transformer (AST), Whisper's log-mel spectrogram or w2v-BERT 2.0's stacked filterbank
(staa.models.hf_front_ends). Nothing is downloaded: transformers runs offline, from the folder only.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from staa.io.atomic import atomic_folder
from staa.io.checkpoint import CheckpointError, check_state_dict
from staa.io.validate import read_json_object
from staa.models.hf_front_ends import FRONT_ENDS, POSITIVE, SETTING_TYPES

MODEL_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json", "pytorch_model.bin.index.json")


def transformers_offline():
    # before the first import: the hub client reads these once, and no call may reach the network
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    return transformers


class HFClassifier(nn.Module):
    """An AutoModelForAudioClassification behind its front end. `net` is the transformers model itself, so
    `net.save_pretrained` writes a folder plain transformers loads."""

    def __init__(self, net: nn.Module, extractor: dict):
        super().__init__()
        self.net, self.extractor = net, dict(extractor)
        built = getattr(transformers_offline(), extractor["feature_extractor_type"]).from_dict(self.extractor)
        self.front_end = FRONT_ENDS[extractor["feature_extractor_type"]](built)
        self.config = {"model": net.config.to_dict(), "extractor": self.extractor}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(**self.front_end(x)).logits


def _read_json(path: Path, what: str) -> dict:
    return read_json_object(path, CheckpointError, missing=f"not found; a Hugging Face {what} needs it")


def hf_classes(path, config: dict) -> list[str]:
    """The class names in output order, from the config's `id2label`."""
    labels = config.get("id2label")
    if not isinstance(labels, dict) or not labels:
        raise CheckpointError(f"{path}: the config has no id2label, so the model's classes are unknown; add them")
    try:
        order = sorted(labels, key=int)
    except (TypeError, ValueError):
        raise CheckpointError(f"{path}: id2label keys must be class indices, got {list(labels)[:4]}") from None
    if [int(k) for k in order] != list(range(len(order))):
        raise CheckpointError(f"{path}: id2label must number the classes 0..{len(order) - 1}, got {order}")
    return [str(labels[k]) for k in order]


def _typed(value, kind: str) -> bool:
    if kind == "bool":
        return isinstance(value, bool)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return isinstance(value, int) or (kind == "number" and value == value and abs(value) != float("inf"))


def extractor_settings(path, settings: dict) -> dict:
    kind = settings.get("feature_extractor_type")
    if kind not in FRONT_ENDS:
        raise CheckpointError(
            f"{path}: feature extractor {str(kind)[:60]!r} has no torch front end here "
            f"(supported: {', '.join(FRONT_ENDS)}); wrap the model as python:module:function instead"
        )
    for key, want in SETTING_TYPES.items():
        if key in settings and not _typed(settings[key], want):
            raise CheckpointError(
                f"{path}: {key} must be {'a' if want != 'int' else 'an'} {want}, got {settings[key]!r:.60}"
            )
    for key in POSITIVE:
        if key in settings and settings[key] <= 0:
            raise CheckpointError(f"{path}: {key} must be positive, got {settings[key]}")
    return settings


def _no_custom_code(path, config: dict, transformers) -> None:
    """Refuse a config that asks for code of its own: `auto_map` (custom classes in the folder) or a model_type
    transformers does not know. Only transformers' own classes are ever built; nothing in a folder runs."""
    if "auto_map" in config:
        raise CheckpointError(
            f"{path}: asks to run custom code from the folder (auto_map); staa-ser loads only transformers' own "
            "model classes: wrap the model as python:module:function if you trust that code"
        )
    model_type = config.get("model_type")
    if not isinstance(model_type, str) or model_type not in transformers.CONFIG_MAPPING:
        raise CheckpointError(f"{path}: model_type {str(model_type)[:60]!r} is not one transformers knows")


def load_hf(folder: str | os.PathLike) -> tuple[HFClassifier, list[str], int]:
    """(model in eval mode, classes, sampling rate) from a saved audio-classification folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(
            f"{folder}: is not a folder; hf: victims load from a local save_pretrained folder (no downloads)"
        )
    config = _read_json(folder / "config.json", "model folder")
    if "model_type" not in config:
        raise CheckpointError(f"{folder / 'config.json'}: is not a Hugging Face model config (no model_type)")
    classes = hf_classes(folder / "config.json", config)
    settings = extractor_settings(
        folder / "preprocessor_config.json", _read_json(folder / "preprocessor_config.json", "audio model")
    )
    if not any((folder / f).is_file() for f in MODEL_FILES):
        raise CheckpointError(f"{folder}: holds no weights (none of {', '.join(MODEL_FILES)})")
    transformers = transformers_offline()
    _no_custom_code(folder / "config.json", config, transformers)
    if not any((folder / f).is_file() for f in MODEL_FILES if "safetensors" in f):
        raise CheckpointError(
            f"{folder}: holds its weights as a pickle (pytorch_model.bin), which is never unpickled here; "
            "save them as safetensors (save_pretrained's default)"
        )
    try:
        net, info = transformers.AutoModelForAudioClassification.from_pretrained(
            folder, local_files_only=True, trust_remote_code=False, use_safetensors=True, output_loading_info=True
        )
    except Exception as err:  # noqa: BLE001 - truncated files, bad config values: any of transformers' errors
        raise CheckpointError(f"{folder}: transformers cannot load it as an audio classifier: {_first(err)}") from None
    # a missing head is initialised at random by transformers: a victim whose logits mean nothing
    for what in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        keys = [str(k) for k in info.get(what) or []]
        if keys:
            raise CheckpointError(
                f"{folder}: its weights do not fit its config ({what.replace('_', ' ')}: {', '.join(keys[:3])}"
                f"{', ...' if len(keys) > 3 else ''})"
            )
    check_state_dict(folder, net.state_dict())  # NaN or infinite weights give NaN logits and "fooling 0.000"
    return HFClassifier(net, settings).eval(), classes, int(settings.get("sampling_rate", 16_000))


def hf_from_config(path, config: dict) -> HFClassifier:
    """The architecture of a staa-ser checkpoint of an hf victim, from its saved configs (weights loaded after)."""
    transformers = transformers_offline()
    model, extractor = config.get("model"), config.get("extractor")
    if not isinstance(model, dict) or not isinstance(extractor, dict):
        raise CheckpointError(f"{path}: an hf victim checkpoint needs the model's and the extractor's configs")
    _no_custom_code(path, model, transformers)
    try:
        cfg = transformers.AutoConfig.for_model(**model)
        net = transformers.AutoModelForAudioClassification.from_config(cfg, trust_remote_code=False)
    except Exception as err:  # noqa: BLE001 - any bad value in a stored config
        raise CheckpointError(f"{path}: its model config does not build an audio classifier: {_first(err)}") from None
    return HFClassifier(net, extractor_settings(path, extractor))


def save_hf(model: HFClassifier, folder: str | os.PathLike) -> Path:
    """`folder` as plain transformers writes it: config, weights (safetensors) and the extractor's settings."""
    transformers = transformers_offline()
    extractor = getattr(transformers, model.extractor["feature_extractor_type"]).from_dict(model.extractor)
    with atomic_folder(folder) as tmp:
        model.net.save_pretrained(tmp)
        extractor.save_pretrained(tmp)
    return Path(folder)


def _first(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]
