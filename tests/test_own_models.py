"""Users' own models as victims: Hugging Face folders, TorchScript files and python: targets."""

import json
import subprocess
import sys

import pytest
import torch
from torch import nn

from staa.io.checkpoint import CheckpointError
from staa.models.victim import fingerprint, load_victim, save_victim
from tests.conftest import subset_manifest

transformers = pytest.importorskip("transformers")
LABELS = {0: "angry", 1: "happy", 2: "neutral", 3: "sad"}
LABEL_ARGS = {"id2label": LABELS, "label2id": {v: k for k, v in LABELS.items()}}
SMALL = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
CONV = dict(
    conv_dim=(16, 16),
    conv_stride=(5, 4),
    conv_kernel=(10, 4),
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=2,
    classifier_proj_size=16,
)


def _save(folder, model, extractor):
    torch.manual_seed(0)
    model.eval().save_pretrained(folder)
    extractor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Tiny random wav2vec2, HuBERT and AST classifiers, saved as plain transformers would."""
    root = tmp_path_factory.mktemp("hf")
    torch.manual_seed(0)
    w2v = transformers.Wav2Vec2ForSequenceClassification(transformers.Wav2Vec2Config(**SMALL, **CONV, **LABEL_ARGS))
    hubert = transformers.HubertForSequenceClassification(transformers.HubertConfig(**SMALL, **CONV, **LABEL_ARGS))
    ast = transformers.ASTForAudioClassification(
        transformers.ASTConfig(**SMALL, num_mel_bins=32, max_length=128, **LABEL_ARGS)
    )
    wave = transformers.Wav2Vec2FeatureExtractor(do_normalize=True, sampling_rate=16_000)
    # Whisper with a 1 s chunk (100 frames, so 50 encoder positions) instead of 30 s, to stay small
    whisper = transformers.WhisperForAudioClassification(
        transformers.WhisperConfig(
            num_mel_bins=80, max_source_positions=50, d_model=32, encoder_layers=1, encoder_attention_heads=2,
            encoder_ffn_dim=64, decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=64,
            classifier_proj_size=16, **LABEL_ARGS,
        )
    )  # fmt: skip
    w2v_bert = transformers.Wav2Vec2BertForSequenceClassification(
        transformers.Wav2Vec2BertConfig(
            hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, output_hidden_size=32,
            conv_depthwise_kernel_size=3, classifier_proj_size=16, **LABEL_ARGS,
        )
    )  # fmt: skip
    whisper_fe = transformers.WhisperFeatureExtractor(feature_size=80, chunk_length=1)
    bert_fe = transformers.SeamlessM4TFeatureExtractor()
    return {
        "whisper": (_save(root / "whisper", whisper, whisper_fe), whisper, whisper_fe),
        "w2v_bert": (_save(root / "w2v_bert", w2v_bert, bert_fe), w2v_bert, bert_fe),
        "wav2vec2": (_save(root / "wav2vec2", w2v, wave), w2v, wave),
        "hubert": (_save(root / "hubert", hubert, wave), hubert, wave),
        "ast": (
            _save(root / "ast", ast, transformers.ASTFeatureExtractor(num_mel_bins=32, max_length=128)),
            ast,
            transformers.ASTFeatureExtractor(num_mel_bins=32, max_length=128),
        ),
    }


def _speech(n=2, seconds=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(16_000 * seconds)) / 16_000
    return (0.2 * torch.sin(2 * torch.pi * 180 * t) + 0.05 * torch.randn(n, t.numel(), generator=g)).float()


@pytest.mark.parametrize("kind", ["wav2vec2", "hubert", "ast", "whisper", "w2v_bert"])
def test_an_hf_folder_gives_the_logits_of_transformers_own_pipeline(kind, folders):
    folder, model, extractor = folders[kind]
    victim = load_victim(f"hf:{folder}", check=True)
    assert victim.classes == ["angry", "happy", "neutral", "sad"] and victim.sample_rate == 16_000
    x = _speech()
    with torch.no_grad():
        features = extractor(list(x.numpy()), sampling_rate=16_000, return_tensors="pt")
        reference = model(**features).logits
        assert torch.allclose(victim.model(x), reference, atol=1e-5)
    assert victim.checks["gradient"]["ok"] and victim.checks["logits"]["ok"] and victim.checks["deterministic"]["ok"]


@pytest.mark.parametrize("seconds", [1.0, 0.75, 1.3101])  # shorter and longer than Whisper's chunk; odd frames
@pytest.mark.parametrize("kind", ["whisper", "w2v_bert"])
def test_the_torch_front_ends_give_the_extractors_features(kind, seconds, folders):
    from staa.models.huggingface import load_hf

    _, _, extractor = folders[kind]
    model, _, _ = load_hf(folders[kind][0])
    x = _speech(3, seconds) * torch.tensor([[1.0], [0.1], [0.01]])  # loud, quiet and very quiet clips
    theirs = extractor(list(x.numpy()), sampling_rate=16_000, return_tensors="pt")
    mine = model.front_end(x)
    assert set(mine) == {k for k in theirs if k != "attention_mask" or kind == "w2v_bert"}
    for key, value in mine.items():
        assert value.shape == theirs[key].shape and float((value - theirs[key]).abs().max()) < 1e-4, key


@pytest.mark.parametrize("kind", ["wav2vec2", "ast", "whisper", "w2v_bert"])
def test_gradients_through_the_adapter_match_a_finite_difference(kind, folders):
    folder, _, _ = folders[kind]
    model = load_victim(f"hf:{folder}").model.double()
    x = _speech(1, 0.5).double().requires_grad_(True)
    loss = lambda w: model(w)[0, 1] - model(w)[0, 2]
    (grad,) = torch.autograd.grad(loss(x), x)
    g = torch.Generator().manual_seed(1)
    for i in torch.randint(0, x.shape[1], (3,), generator=g).tolist():
        h = 1e-4
        up, down = x.detach().clone(), x.detach().clone()
        up[0, i] += h
        down[0, i] -= h
        with torch.no_grad():
            numeric = (loss(up) - loss(down)) / (2 * h)
        assert float(numeric) == pytest.approx(float(grad[0, i]), rel=1e-3, abs=1e-7)


def test_a_staa_checkpoint_of_an_hf_model_rebuilds_it_without_the_folder(folders, tmp_path):
    folder, _, _ = folders["wav2vec2"]
    victim = load_victim(f"hf:{folder}")
    save_victim(tmp_path / "victim.pt", victim.model, victim.arch, victim.classes, victim.sample_rate)
    again = load_victim(tmp_path / "victim.pt")
    x = _speech()
    with torch.no_grad():
        assert again.arch == "hf" and torch.allclose(again.model(x), victim.model(x), atol=1e-6)


def _write_config(folder, **change):
    cfg = json.loads((folder / "config.json").read_text())
    for k, v in change.items():
        if v is None:
            cfg.pop(k)
        else:
            cfg[k] = v
    (folder / "config.json").write_text(json.dumps(cfg))


def test_bad_hf_folders_are_refused_with_the_path_named(folders, tmp_path):
    import shutil

    with pytest.raises(CheckpointError, match="not a folder"):
        load_victim(f"hf:{tmp_path / 'absent'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"empty/config.json: not found"):
        load_victim(f"hf:{tmp_path / 'empty'}")
    bad = shutil.copytree(folders["wav2vec2"][0], tmp_path / "nolabels")
    _write_config(bad, id2label=None, label2id=None)
    with pytest.raises(CheckpointError, match="nolabels/config.json: the config has no id2label"):
        load_victim(f"hf:{bad}")
    noext = shutil.copytree(folders["wav2vec2"][0], tmp_path / "noext")
    (noext / "preprocessor_config.json").unlink()
    with pytest.raises(CheckpointError, match="noext/preprocessor_config.json: not found"):
        load_victim(f"hf:{noext}")


def test_the_cli_says_one_line_for_a_folder_that_is_not_a_model(tmp_path, corpus):
    manifest, _ = corpus
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("hello")
    r = subprocess.run(
        [sys.executable, "-m", "staa", "attack", "--data", str(manifest), "--victim", f"hf:{tmp_path / 'notes'}"]
        + ["--attack", "fgsm", "--out", str(tmp_path / "out"), "--quiet"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "notes/config.json: not found" in r.stderr


class Softmaxed(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Linear(1, 3)

    def forward(self, x):
        return torch.softmax(self.head(x.pow(2).mean(1, keepdim=True)), dim=1)


def test_torchscript_loads_from_its_sidecar_and_is_refused_without_classes(tmp_path):
    scripted = torch.jit.script(Softmaxed())
    scripted.save(str(tmp_path / "m.pt"))
    with pytest.raises(CheckpointError, match=r"m.pt: a TorchScript model does not say its classes and sample_rate"):
        load_victim(f"torchscript:{tmp_path / 'm.pt'}")
    (tmp_path / "m.pt.json").write_text(json.dumps({"classes": ["a", "b", "c"], "sample_rate": 16000}))
    victim = load_victim(f"torchscript:{tmp_path / 'm.pt'}", check=True)
    assert victim.classes == ["a", "b", "c"]
    # a softmax output is flagged, not crashed on
    assert not victim.checks["logits"]["ok"] and "probabilities" in victim.checks["logits"]["detail"]
    assert fingerprint(f"torchscript:{tmp_path / 'm.pt'}") != fingerprint(tmp_path / "m.pt")  # the sidecar counts


def test_python_targets_build_victims_and_bad_ones_are_named(tmp_path, monkeypatch):
    (tmp_path / "mymodels.py").write_text(
        "import torch\n"
        "def build():\n    return torch.nn.Sequential(torch.nn.Linear(16000, 4)), ['a', 'b', 'c', 'd'], 16000\n"
        "def wrong():\n    return 'not a model'\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    victim = load_victim("python:mymodels:build", check=True)
    assert victim.classes == ["a", "b", "c", "d"] and victim.checks["logits"]["ok"]
    assert load_victim(f"python:{tmp_path / 'mymodels.py'}:build").sample_rate == 16000
    with pytest.raises(CheckpointError, match=r"python:mymodels:absent: 'mymodels' has no function 'absent'"):
        load_victim("python:mymodels:absent")
    with pytest.raises(CheckpointError, match=r"python:nowhere_module:build: cannot import"):
        load_victim("python:nowhere_module:build")
    with pytest.raises(CheckpointError, match=r"must return \(nn.Module, classes, sample_rate\), got str"):
        load_victim("python:mymodels:wrong")


class Rounded(nn.Module):
    """Gradient-masked on purpose: rounding the waveform leaves a zero gradient."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(1, 2)

    def forward(self, x):
        return self.head(torch.round(x * 4).mean(1, keepdim=True))


def test_self_checks_flag_a_gradient_masked_model_and_pass_a_plain_one():
    from staa.models import build_model
    from staa.models.checks import check_victim, flags

    masked = check_victim(Rounded(), 16_000, 2)
    assert not masked["gradient"]["ok"] and any(f.startswith("gradient") for f in flags(masked))
    torch.manual_seed(0)
    plain = check_victim(build_model("mel_cnn", 4, width=8), 16_000, 4)
    assert flags(plain, informative=False) == []


@pytest.mark.slow  # subprocesses; in-process, the Whisper / w2v-BERT test and the README example cover the same path
def test_attack_evaluate_and_adv_train_run_on_an_hf_folder(folders, corpus, tmp_path):
    """The CLI end to end on a user's model: an attack, an evaluation with an adaptive attack through a defense,
    a fine-tune written back as a folder plain transformers loads with staa-ser's logits."""
    manifest, _ = corpus
    folder = folders["wav2vec2"][0]
    staa = lambda *args: subprocess.run(
        [sys.executable, "-m", "staa", *args, "--quiet"], capture_output=True, text=True
    )
    r = staa(
        "attack", "--data", str(manifest), "--victim", f"hf:{folder}", "--attack", "pgd:steps=2",
        "--limit", "4", "--clip-seconds", "1", "--out", str(tmp_path / "attack"),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "attack" / "summary.json").read_text())
    assert summary["n"] == 4 and summary["fooling_rate"] > 0
    r = staa(
        "evaluate", "--data", str(manifest), "--victim", f"w2v=hf:{folder}", "--attack", "bpda=adaptive_pgd:steps=2",
        "--defense", "quantize:8", "--max-clips", "4", "--no-perceptual", "--no-report", "--out", str(tmp_path / "eval"),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert results["victims"]["w2v"]["arch"] == "hf" and set(results["victims"]["w2v"]["checks"]) >= {"gradient"}
    r = staa(
        "adv-train", "--data", str(manifest), "--init-victim", f"hf:{folder}", "--method", "pgd", "--pgd-steps", "1",
        "--epochs", "1", "--batch-size", "16", "--clip-seconds", "0.5", "--out", str(tmp_path / "at"),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    mine = load_victim(tmp_path / "at" / "victim.pt")
    plain = transformers.AutoModelForAudioClassification.from_pretrained(tmp_path / "at" / "hf", local_files_only=True)
    extractor = transformers.AutoFeatureExtractor.from_pretrained(tmp_path / "at" / "hf", local_files_only=True)
    x = _speech()
    with torch.no_grad():
        theirs = plain.eval()(**extractor(list(x.numpy()), sampling_rate=16_000, return_tensors="pt")).logits
        assert torch.allclose(mine.model(x), theirs, atol=1e-5)
        before = load_victim(f"hf:{folder}").model(x)
        assert not torch.allclose(before, theirs, atol=1e-6)  # it was fine-tuned, not copied


@pytest.mark.parametrize("kind", ["whisper", "w2v_bert"])
def test_whisper_and_w2v_bert_folders_are_evaluated_through_mp3_and_hardened(kind, folders, corpus, tmp_path):
    from staa.cli import main

    manifest, _ = corpus
    folder = folders[kind][0]
    args = ["evaluate", "--data", str(manifest), "--victim", f"v=hf:{folder}", "--attack", "bpda=adaptive_pgd:steps=2"]
    args += [
        "--eps",
        "0.002",
        "--defense",
        "mp3:32",
        "--max-clips",
        "4",
        "--no-perceptual",
        "--no-report",
        "--out",
        str(tmp_path / "e"),
    ]
    assert main([*args, "--quiet"]) == 0
    results = json.loads((tmp_path / "e" / "results.json").read_text())
    assert results["victims"]["v"]["checks"]["gradient"]["ok"]
    cells = [c for c in results["cells"] if c["defense"] == "mp3:32" and c["attack"].split("@")[0] == "bpda"]
    assert len(cells) == 1 and all(c["n"] == 4 and c["adaptive"] and 0 < c["linf"] <= c["eps"] + 1e-6 for c in cells)
    (tmp_path / "data").mkdir()
    small = subset_manifest(manifest, tmp_path / "data" / "small.csv", n_train=32, n_val=8)
    args = ["adv-train", "--data", str(small), "--init-victim", f"hf:{folder}", "--method", "pgd", "--pgd-steps", "1"]
    args += ["--epochs", "1", "--batch-size", "16", "--clip-seconds", "0.5", "--out", str(tmp_path / "at")]
    assert main([*args, "--quiet"]) == 0
    plain = transformers.AutoModelForAudioClassification.from_pretrained(tmp_path / "at" / "hf", local_files_only=True)
    extractor = transformers.AutoFeatureExtractor.from_pretrained(tmp_path / "at" / "hf", local_files_only=True)
    x = _speech()
    with torch.no_grad():
        theirs = plain.eval()(**extractor(list(x.numpy()), sampling_rate=16_000, return_tensors="pt")).logits
        assert torch.allclose(load_victim(tmp_path / "at" / "victim.pt").model(x), theirs, atol=1e-5)
        assert not torch.allclose(load_victim(f"hf:{folder}").model(x), theirs, atol=1e-6)


def test_a_generator_trains_against_an_hf_surrogate_and_finds_it_after_a_move(folders, corpus, tmp_path):
    import shutil

    from staa.attacks import STAA
    from staa.cli import main

    manifest, _ = corpus
    tree = tmp_path / "run"
    shutil.copytree(folders["wav2vec2"][0], tree / "model")
    # through the CLI, as a user runs it; conditional, so the attack has to find its surrogate again
    args = ["train-attack", "--data", str(manifest), "--surrogate", f"hf:{tree / 'model'}", "--out", str(tree / "gen")]
    args += ["--epochs", "1", "--batch-size", "16", "--crop-seconds", "0.5", "--conditional", "--quiet"]
    assert main(args) == 0
    moved = shutil.move(tree, tmp_path / "moved")
    attack = STAA.from_checkpoint(f"{moved}/gen/best.pt")
    x = _speech(2, 0.5)
    delta = attack(x) - x
    assert 0 < delta.abs().max() <= 0.03 + 1e-6  # the default eps
    # a changed surrogate folder is caught by its SHA-256
    _write_config(moved / "model", id2label={"0": "a", "1": "b", "2": "c", "3": "d"})
    with pytest.raises(CheckpointError, match="SHA-256 differs"):
        STAA.from_checkpoint(f"{moved}/gen/best.pt")
