"""One output rule for every command that writes: the resolved --out is never an input and never inside a data
folder (symlinked audio resolved), a run folder's writer never follows a symlink out of it, and a corpus is built
only into a new, empty or staa-ser corpus folder."""

import csv
import shutil

import pytest

from staa.cli import main
from tests.conftest import write_wav
from tests.test_run_folders import conditional_generator, err_line, evaluate_args, victim_file


@pytest.fixture
def inputs(corpus, tmp_path):
    manifest, _ = corpus
    v = victim_file(tmp_path / "v" / "best.pt")
    g = conditional_generator(tmp_path / "g" / "best.pt", v)
    return manifest, v, g


def _snapshot(*paths):
    return {p: p.read_bytes() for p in paths}


@pytest.mark.parametrize("which", ["manifest", "victim", "generator", "wav"])
def test_transfer_never_writes_over_an_input(which, inputs, capsys):
    manifest, v, g = inputs
    wav = manifest.parent / "test" / next(p.name for p in (manifest.parent / "test").glob("*.wav"))
    target = {"manifest": manifest, "victim": v, "generator": g, "wav": wav}[which]
    before = _snapshot(manifest, v, g, wav)
    args = ["transfer", "--generators", str(g), "--victims", str(v), "--data", str(manifest), "--limit", "2"]
    assert main([*args, "--out", str(target), "--quiet"]) == 2
    line = err_line(capsys)
    assert str(target) in line and ("input" in line or "data folder" in line)
    assert _snapshot(manifest, v, g, wav) == before


def test_transfer_out_naming_a_folder_is_one_line(inputs, tmp_path, capsys):
    manifest, v, g = inputs
    (tmp_path / "existing").mkdir()
    args = ["transfer", "--generators", str(g), "--victims", str(v), "--data", str(manifest), "--limit", "2"]
    assert main([*args, "--out", str(tmp_path / "existing"), "--quiet"]) == 2
    assert "is a folder; --out names the JSON file" in err_line(capsys)


def test_bench_never_replaces_the_victim_it_measures(inputs, capsys):
    manifest, v, g = inputs
    before = v.read_bytes()
    args = ["bench", "attacks", "--victim", str(v), "--generator", str(g), "--data", str(manifest), "--limit", "2"]
    assert main([*args, "--out", str(v), "--quiet"]) == 2
    assert "is the input" in err_line(capsys) and v.read_bytes() == before


def test_a_symlinked_examples_folder_is_never_written_through(inputs, tmp_path, capsys):
    manifest, v, _ = inputs
    run = tmp_path / "run"
    assert main(evaluate_args(manifest, v, run)) == 0
    examples = run / "examples"
    assert any(p.suffix == ".wav" for p in examples.rglob("*"))
    user = tmp_path / "user"
    user.mkdir()
    (user / "mine.txt").write_text("mine")
    shutil.rmtree(examples)
    examples.symlink_to(user, target_is_directory=True)
    assert main(evaluate_args(manifest, v, run, "--force")) == 2
    assert "leads out of it; staa-ser never writes through one" in err_line(capsys)
    assert [p.name for p in user.iterdir()] == ["mine.txt"] and (user / "mine.txt").read_text() == "mine"


def test_out_inside_the_real_folder_of_symlinked_audio_is_refused(tmp_path, capsys):
    real, links = tmp_path / "audio", tmp_path / "links"
    links.mkdir()
    rows = []
    for i, label in enumerate(["angry", "happy", "neutral", "sad"] * 2):
        wav = write_wav(real / f"{i}.wav", rate=16_000)
        (links / wav.name).symlink_to(wav)
        rows.append({"path": str(links / wav.name), "label": label, "split": "test"})
    with open(tmp_path / "m.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["path", "label", "split"])
        writer.writeheader()
        writer.writerows(rows)
    v = victim_file(tmp_path / "v.pt")
    args = ["attack", "--data", str(tmp_path / "m.csv"), "--victim", str(v), "--attack", "fgsm"]
    assert main([*args, "--out", str(real / "out"), "--quiet"]) == 2
    assert "data folder" in err_line(capsys) and not (real / "out").exists()


def test_corpus_refuses_a_users_non_empty_folder(tmp_path, capsys):
    folder = tmp_path / "mine"
    (folder / "train").mkdir(parents=True)
    (folder / "train" / "000001_angry.wav").write_text("my notes, not a clip")
    assert main(["corpus", "--out", str(folder), "--clips", "12", "--quiet"]) == 2
    assert "is not empty and holds no staa-ser corpus" in err_line(capsys)
    assert sorted(p.name for p in folder.rglob("*")) == ["000001_angry.wav", "train"]


def test_a_partial_corpus_of_another_seed_is_refused_not_mixed(tmp_path, capsys, monkeypatch):
    from staa.datasets.synthetic import corpus as corpus_module

    calls = []
    real = corpus_module._render_shard

    def killed_after_one_shard(*args):  # in-process rendering: the first shard lands, then the run "dies"
        if calls:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(corpus_module, "worker_pool", lambda n: _Inline())
    monkeypatch.setattr(corpus_module, "_render_shard", killed_after_one_shard)
    folder = tmp_path / "c"
    assert main(["corpus", "--out", str(folder), "--clips", "120", "--seed", "1", "--quiet"]) != 0
    capsys.readouterr()
    assert any(folder.rglob("*.wav")) and not (folder / "manifest.csv").exists()
    assert main(["corpus", "--out", str(folder), "--clips", "120", "--seed", "2", "--quiet"]) == 2
    assert "holds a corpus built with other settings" in err_line(capsys)


class _Inline:
    """A worker pool that runs each job at submit time, in this process."""

    def submit(self, fn, *args):
        class Done:
            def __init__(self, value):
                self.value = value

            def result(self):
                return self.value

        return Done(fn(*args))

    def shutdown(self, *a, **k):
        pass


def test_transfer_rows_compare_generators_with_baselines_made_on_the_surrogate_ensemble(inputs, tmp_path, capsys):
    import json

    from tests.test_run_folders import victim_file

    manifest, v, g = inputs
    w = victim_file(tmp_path / "w" / "best.pt", seed=1)
    args = ["transfer", "--generators", str(g), "--victims", str(v), str(w), "--data", str(manifest), "--limit", "4"]
    base = [*args, "--baseline", "fgsm", "--baseline", "mifgsm:steps=2:diversity=0.5", "--eps", "0.05"]
    out = tmp_path / "m.json"
    assert main([*base, "--surrogate", str(v), str(w), "--out", str(out), "--quiet"]) == 0
    table = json.loads(out.read_text())
    assert table["rows"] == ["g", "fgsm (v+w)", "mifgsm:steps=2:diversity=0.5 (v+w)"] and table["n"] == 4
    for row in table["rows"]:
        for col in ("v", "w"):
            lo, hi = table["interval"][row][col]
            assert lo <= table["fooling_rate"][row][col] <= hi
    assert main([*base, "--quiet"]) == 2 and "--surrogate" in err_line(capsys)
    assert main([*args, "--baseline", "square", "--surrogate", str(v), "--quiet"]) == 2
    assert "a gradient attack on the surrogates" in err_line(capsys)
