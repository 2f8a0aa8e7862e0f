"""The README's own-model example, run as written on tiny made-up folders (only the sizes made small)."""

import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[1]
transformers = pytest.importorskip("transformers")
LABELS = ["angry", "happy", "neutral", "sad"]


def _commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"Evaluate your model on your data.*?```bash\n(.*?)```", text, re.S).group(1)
    return [re.sub(r"\s+#.*$", "", c).strip() for c in block.replace("\\\n", " ").splitlines() if c.strip()]


def _made_up(tmp_path) -> None:
    """my/manifest.csv (four tones per class and split) and my-model (a tiny random wav2vec2 classifier)."""
    my = tmp_path / "my"
    (my / "audio").mkdir(parents=True)
    lines = ["path,label,speaker,split"]
    rng = np.random.default_rng(0)
    for split in ("train", "val", "test"):
        for i in range(16):
            t = np.arange(8000) / 16_000
            clip = 0.2 * np.sin(2 * np.pi * (150 * 2 ** (i % 4)) * t) + 0.01 * rng.normal(size=t.size)
            sf.write(str(my / "audio" / f"{split}{i}.wav"), clip.astype("float32"), 16_000)
            lines.append(f"audio/{split}{i}.wav,{LABELS[i % 4]},s{i % 3},{split}")
    (my / "manifest.csv").write_text("\n".join(lines) + "\n")
    torch.manual_seed(0)
    config = transformers.Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, conv_dim=(16, 16),
        conv_stride=(5, 4), conv_kernel=(10, 4), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
        classifier_proj_size=16, id2label=dict(enumerate(LABELS)), label2id={k: i for i, k in enumerate(LABELS)},
    )  # fmt: skip
    transformers.Wav2Vec2ForSequenceClassification(config).eval().save_pretrained(tmp_path / "my-model")
    transformers.Wav2Vec2FeatureExtractor(sampling_rate=16_000).save_pretrained(tmp_path / "my-model")


def test_the_readme_evaluate_harden_evaluate_example_runs(tmp_path, monkeypatch):
    from staa.cli import main

    commands = _commands()
    assert [c.split()[:2] for c in commands] == [["staa", "evaluate"], ["staa", "adv-train"], ["staa", "evaluate"]]
    _made_up(tmp_path)
    monkeypatch.chdir(tmp_path)
    small = {
        "evaluate": ["--max-clips", "4", "--clip-seconds", "0.5", "--no-perceptual", "--quiet"],
        "adv-train": ["--epochs", "1", "--batch-size", "16", "--clip-seconds", "0.5", "--quiet"],
    }
    for command in commands:
        args = shlex.split(command.replace("std=standard", "std=standard:steps=2:queries=5"))[1:]
        assert main(args + small[args[0]]) == 0, command
    after = json.loads((tmp_path / "runs" / "after" / "results.json").read_text())
    assert set(after["victims"]) == {"mine", "hardened"}
    assert {(c["victim"], c["defense"]) for c in after["cells"]} == {
        (v, d) for v in ("mine", "hardened") for d in ("none", "mp3:32")
    }
    assert (tmp_path / "runs" / "after" / "report.html").is_file()
    hardened = transformers.AutoModelForAudioClassification.from_pretrained(tmp_path / "runs" / "hardened" / "hf")
    assert hardened.config.id2label == dict(enumerate(LABELS))
