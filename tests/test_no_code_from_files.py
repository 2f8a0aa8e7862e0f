"""A checkpoint or a model folder is data: nothing in one makes staa-ser import or run code. Each test plants code
that would write a marker file, and asserts the marker is not there."""

import json
import shutil
import sys

import pytest
import torch

from staa.io.checkpoint import CheckpointError
from staa.models import build_model
from staa.models.victim import fingerprint, load_victim, save_victim

transformers = pytest.importorskip("transformers")
CLASSES = ["angry", "happy", "neutral", "sad"]


def _evil(folder, name="evilmod"):
    """A module whose import and whose build() each leave a marker file."""
    marker = folder / f"{name}.ran"
    (folder / f"{name}.py").write_text(
        "from pathlib import Path\n"
        f"Path({str(marker)!r}).write_text('imported')\n"
        "def build():\n"
        f"    Path({str(marker)!r}).write_text('built')\n"
    )
    return marker


def _evil_package(folder, monkeypatch):
    """`pkg/mod.py` under the current folder, whose package's own import also leaves a marker (`pkg.ran`)."""
    pkg = folder / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(f"open({str(folder / 'pkg.ran')!r}, 'w').write('imported')\n")
    monkeypatch.chdir(folder)
    return pkg, _evil(pkg, "mod")


@pytest.fixture
def victim_pt(tmp_path):
    torch.manual_seed(0)
    save_victim(tmp_path / "v.pt", build_model("mel_cnn", 4, width=4), "mel_cnn", CLASSES, 16_000)
    return tmp_path / "v.pt"


@pytest.mark.parametrize("arch", ["python:evilmod:build", "python:{dir}/evilmod.py:build", "python:builtins:exit"])
def test_a_victim_checkpoint_naming_code_is_refused_and_nothing_runs(arch, victim_pt, tmp_path, monkeypatch):
    marker = _evil(tmp_path)
    monkeypatch.chdir(tmp_path)
    ckpt = torch.load(victim_pt, weights_only=True)
    ckpt["arch"] = arch.format(dir=tmp_path)
    torch.save(ckpt, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match=r"x.pt: names code to run .* a checkpoint never runs code"):
        load_victim(tmp_path / "x.pt")
    assert not marker.exists() and "evilmod" not in sys.modules


def test_the_cli_refuses_such_a_checkpoint_in_one_line(victim_pt, tmp_path, monkeypatch, capsys):
    from staa.cli import main

    marker = _evil(tmp_path)
    monkeypatch.chdir(tmp_path)
    ckpt = torch.load(victim_pt, weights_only=True)
    ckpt["arch"] = "python:evilmod:build"
    torch.save(ckpt, tmp_path / "x.pt")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "manifest.csv").write_text("path,label,split\n")
    code = main(["attack", "--data", "d/manifest.csv", "--victim", "x.pt", "--attack", "fgsm", "--out", "o", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "x.pt" in err[0]
    assert not marker.exists()


def test_a_generator_recording_a_python_surrogate_never_runs_it(tmp_path, monkeypatch):
    """The old loophole: a dotted module was fingerprinted as the hash of nothing, so the empty hash matched."""
    import hashlib

    from staa.generator.checkpoint import GeneratorRecord, resolve_surrogate

    pkg, marker = _evil_package(tmp_path, monkeypatch)
    record = GeneratorRecord(surrogates=("python:pkg.mod:build",), surrogate_sha256=(hashlib.sha256(b"").hexdigest(),))
    with pytest.raises(CheckpointError, match=r"g.pt: its surrogate is code to run"):
        resolve_surrogate(tmp_path / "g.pt", record)
    assert not marker.exists() and not (tmp_path / "pkg.ran").exists()


def test_a_dotted_module_is_fingerprinted_by_its_source_without_importing_it(tmp_path, monkeypatch):
    import hashlib

    pkg, marker = _evil_package(tmp_path, monkeypatch)
    first = fingerprint("python:pkg.mod:build")
    assert first == hashlib.sha256((pkg / "mod.py").read_bytes()).hexdigest() != hashlib.sha256(b"").hexdigest()
    (pkg / "mod.py").write_text((pkg / "mod.py").read_text() + "# edited\n")
    assert fingerprint("python:pkg.mod:build") != first  # an edited module is a changed input
    with pytest.raises(CheckpointError, match="cannot be found"):
        fingerprint("python:pkg.absent:build")
    assert not marker.exists() and not (tmp_path / "pkg.ran").exists()


def test_a_python_victim_leaves_sys_path_as_it_was(tmp_path, monkeypatch):
    (tmp_path / "mine.py").write_text(
        "import torch\ndef build():\n    return torch.nn.Linear(16000, 2), ['a', 'b'], 16000\n"
    )
    monkeypatch.chdir(tmp_path)
    before = list(sys.path)
    assert load_victim("python:mine:build").classes == ["a", "b"]
    # a matplotlib.py lying in the current folder must not shadow the library for the rest of the run
    assert sys.path == before


def _hf_folder(folder):
    from tests.test_own_models import CONV, LABEL_ARGS, SMALL

    torch.manual_seed(0)
    config = transformers.Wav2Vec2Config(**SMALL, **CONV, **LABEL_ARGS)
    transformers.Wav2Vec2ForSequenceClassification(config).eval().save_pretrained(folder)
    transformers.Wav2Vec2FeatureExtractor(sampling_rate=16_000).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def hf(tmp_path_factory):
    return _hf_folder(tmp_path_factory.mktemp("hf") / "model")


def _edit(path, **changes):
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def test_an_hf_folder_with_custom_code_is_refused_without_asking(hf, tmp_path):
    folder = shutil.copytree(hf, tmp_path / "custom")
    marker = _evil(folder, "modeling_evil")
    _edit(folder / "config.json", auto_map={"AutoModelForAudioClassification": "modeling_evil.Evil"})
    with pytest.raises(CheckpointError, match=r"config.json: asks to run custom code from the folder \(auto_map\)"):
        load_victim(f"hf:{folder}")
    _edit(folder / "config.json", auto_map=None)
    (folder / "config.json").write_text(
        json.dumps({k: v for k, v in json.loads((folder / "config.json").read_text()).items() if k != "auto_map"})
    )
    _edit(folder / "config.json", model_type="evil")
    with pytest.raises(CheckpointError, match=r"model_type 'evil' is not one transformers knows"):
        load_victim(f"hf:{folder}")
    assert not marker.exists()


def test_a_staa_checkpoint_of_an_hf_model_cannot_point_at_custom_code(hf, tmp_path):
    victim = load_victim(f"hf:{hf}")
    save_victim(tmp_path / "v.pt", victim.model, "hf", victim.classes, 16_000)
    ckpt = torch.load(tmp_path / "v.pt", weights_only=True)
    ckpt["config"]["model"]["auto_map"] = {"AutoModelForAudioClassification": "evil.Evil"}
    torch.save(ckpt, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match=r"x.pt: asks to run custom code"):
        load_victim(tmp_path / "x.pt")


def test_hf_weights_that_do_not_fit_are_refused_not_initialised_at_random(hf, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = shutil.copytree(hf, tmp_path / "headless")
    weights = load_file(folder / "model.safetensors")
    save_file({k: v for k, v in weights.items() if not k.startswith("classifier")}, folder / "model.safetensors")
    with pytest.raises(
        CheckpointError, match=r"headless: its weights do not fit its config \(missing keys: classifier"
    ):
        load_victim(f"hf:{folder}")
    save_file({k: torch.full_like(v, float("nan")) for k, v in weights.items()}, folder / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"headless: weight .* holds NaN or infinite values"):
        load_victim(f"hf:{folder}")
    for content in (b"", b"\x00" * 10):  # empty and truncated files: one line, no traceback from safetensors
        (folder / "model.safetensors").write_bytes(content)
        with pytest.raises(CheckpointError, match=r"headless: transformers cannot load it"):
            load_victim(f"hf:{folder}")


def test_hf_pickled_weights_are_never_unpickled(hf, tmp_path):
    folder = shutil.copytree(hf, tmp_path / "pickled")
    marker = tmp_path / "unpickled.ran"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"x": Evil()}, folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"pickled: holds its weights as a pickle"):
        load_victim(f"hf:{folder}")
    assert not marker.exists()


@pytest.mark.parametrize(
    "setting, value",
    [("sampling_rate", "abc"), ("sampling_rate", 16000.7), ("sampling_rate", True), ("do_normalize", "false")],
)
def test_hf_preprocessor_settings_of_the_wrong_type_are_one_line(setting, value, hf, tmp_path):
    folder = shutil.copytree(hf, tmp_path / "typed")
    _edit(folder / "preprocessor_config.json", **{setting: value})
    with pytest.raises(CheckpointError, match=rf"preprocessor_config.json: {setting} must be a"):
        load_victim(f"hf:{folder}")
