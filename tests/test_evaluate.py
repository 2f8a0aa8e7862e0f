import csv
import json
import shutil
import subprocess
from html.parser import HTMLParser

import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF

from eval.config import EvalConfig, load_config
from eval.harness import run_grid
from eval.report import build_report, fmt
from staa.cli import main
from staa.datasets import load_records
from staa.datasets.synthetic.corpus import EMOTIONS
from staa.generator.training import AttackTrainConfig, train_generator
from staa.training.victim import TrainConfig, train_victim


@pytest.fixture(scope="module")
def setup(corpus, tmp_path_factory):
    """A tiny victim and a tiny generator on the shared corpus: enough for every code path of the grid."""
    manifest, _ = corpus
    recs = load_records("manifest", manifest)
    train = [r for r in recs if r.split == "train"][:32] + [r for r in recs if r.split == "val"][:8]
    root = tmp_path_factory.mktemp("grid")
    # a tiny transformer: no batch norm, so after two epochs it already tells clips apart (a constant classifier can't be fooled)
    tiny = {"d_model": 16, "layers": 1, "heads": 2, "n_mels": 32}
    train_victim(
        TrainConfig(
            arch="mel_transformer", classes=list(EMOTIONS), epochs=2, batch_size=16, clip_seconds=1.0, model=tiny
        ),
        train,
        root / "victim",
        progress=False,
    )
    gen_cfg = AttackTrainConfig(
        generator={"channels": 4, "levels": 3}, epochs=1, batch_size=16, clip_seconds=0.5, eval_clip_seconds=1.0
    )
    train_generator(gen_cfg, [root / "victim" / "best.pt"], train, root / "gen", progress=False)
    return manifest, root


def _config(setup, **kw):
    manifest, root = setup
    base = dict(
        data=str(manifest),
        victims={"tiny": str(root / "victim" / "best.pt")},
        attacks={
            "staa": f"staa:generator={root / 'gen' / 'best.pt'}",
            "fgsm": "fgsm:eps=0.01",
            "bpda": "adaptive_pgd:steps=2:eot=2",
        },
        defenses=["none", "quantize:8", "noise:30"],
        max_clips=8,
        clip_seconds=1.0,
        workers=1,
        batch_size=4,
        eps=0.03,
    )
    return EvalConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def grid(setup, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    return run_grid(_config(setup), out, progress=False), out


def _same_numbers(a, b):
    """Equal cells but for timing, and up to the last bits of floating point (BLAS threading)."""
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            if k != "seconds_per_clip":
                assert x[k] == (pytest.approx(y[k], rel=1e-9) if isinstance(y[k], float) else y[k]), k
    return True


def _rows(out):
    with open(out / "clips.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_cells_follow_from_the_per_clip_rows(grid):
    results, out = grid
    cells = results["cells"]
    assert len(cells) == 1 * 3 * 3
    rows = _rows(out)
    for c in cells:
        mine = [r for r in rows if (r["victim"], r["attack"], r["defense"]) == (c["victim"], c["attack"], c["defense"])]
        assert len(mine) == c["n"] == 8
        ok = [r for r in mine if r["success"] == "True"]
        assert c["success_rate"] == pytest.approx(len(ok) / 8)
        survived = sum(r["defended_fooled"] == "True" for r in ok) / len(ok) if ok else None
        assert c["survival"] == (pytest.approx(survived) if ok else None)
        assert c["defended_adversarial_accuracy"] == pytest.approx(
            sum(r["defended_adv_pred"] == r["label"] for r in mine) / 8
        )
        right = lambda clean, adv: sum(r[clean] == r["label"] == r[adv] for r in mine) / 8
        assert c["robust_accuracy"] == pytest.approx(right("clean_pred", "adv_pred"))
        assert c["robust_accuracy"] <= c["clean_accuracy"]
        assert c["defended_robust_accuracy"] == pytest.approx(right("defended_clean_pred", "defended_adv_pred"))
        assert c["defended_robust_accuracy"] <= c["defended_clean_accuracy"]
        if c["defense"] == "none":  # no defense: the defended system is the victim itself
            assert c["defended_clean_accuracy"] == c["clean_accuracy"]
            assert c["survival"] in (None, 1.0)
            assert c["defended_fooling_rate"] == c["success_rate"]
        assert 0.0 <= c["l0_ratio"] <= 1.0 and c["pesq"] is not None
    assert any(c["survival"] is not None and c["defense"] != "none" for c in cells)  # survival was really measured
    fgsm = [c for c in cells if c["attack"] == "fgsm"]
    assert all(c["linf"] == pytest.approx(0.01, abs=1e-6) for c in fgsm)  # the configured budget was used


def test_perceptual_scores_on_a_seeded_sample_of_clips_the_same_for_every_attack(setup, grid, tmp_path):
    results, full_out = grid
    cfg = _config(
        setup,
        attacks={"staa": _config(setup).attacks["staa"], "fgsm": "fgsm:eps=0.01"},
        defenses=["none"],
        perceptual_clips=3,
    )
    sampled = run_grid(cfg, tmp_path / "sampled", progress=False)["cells"]
    rows, full = _rows(tmp_path / "sampled"), _rows(full_out)
    scored = {
        a: [r["clip"] for r in rows if r["attack"] == a and r["pesq_error"] != "not sampled"] for a in ("staa", "fgsm")
    }
    assert len(scored["staa"]) == 3 and scored["staa"] == scored["fgsm"]
    for c in sampled:
        assert c["perceptual_n"] == 3 and c["pesq_failures"] == 0
        same = [
            r for r in full if (r["attack"], r["defense"]) == (c["attack"], "none") and r["clip"] in scored[c["attack"]]
        ]
        assert c["stoi"] == pytest.approx(sum(float(r["stoi"]) for r in same) / 3)  # the mean is over the sample only
    assert all(c["perceptual_n"] == 8 for c in results["cells"])
    skipped = run_grid(
        _config(setup, attacks={"fgsm": "fgsm:eps=0.01"}, defenses=["none"], perceptual=False),
        tmp_path / "off",
        progress=False,
    )
    assert (
        skipped["cells"][0]["perceptual_n"] == 0
        and skipped["cells"][0]["pesq_failures"] == 0
        and skipped["cells"][0]["pesq"] is None
    )


def test_rerun_skips_finished_cells_and_redoes_a_missing_one(grid, setup, monkeypatch):
    results, out = grid
    import eval.harness as harness

    calls = []
    real = harness.evaluate_attack
    monkeypatch.setattr(harness, "evaluate_attack", lambda name, *a, **k: calls.append(name) or real(name, *a, **k))
    again = run_grid(_config(setup), out, progress=False)
    assert calls == [] and again["cells"] == results["cells"]
    (out / "cells" / "tiny" / "fgsm.json").unlink()
    assert _same_numbers(
        run_grid(_config(setup), out, progress=False)["cells"], results["cells"]
    )  # same seed, same numbers
    assert calls == ["fgsm"]
    with pytest.raises(ValueError, match="another config"):
        run_grid(_config(setup, max_clips=4), out, progress=False)


class _Cells(HTMLParser):
    def __init__(self):
        super().__init__()
        self.cells, self.key, self.row, self.images, self.audio = {}, None, None, 0, 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and "data-victim" in a:
            self.row = (a["data-victim"], a["data-attack"], a["data-defense"])
            self.cells[self.row] = {}
        elif tag == "td" and "data-key" in a:
            self.key = a["data-key"]
        self.images += tag == "img" and a.get("src", "").startswith("data:image/png;base64,")
        self.audio += tag == "audio" and a.get("src", "").startswith("data:audio/wav;base64,")

    def handle_data(self, data):
        if self.key:
            self.cells[self.row][self.key] = data
            self.key = None


def test_report_numbers_equal_results_and_it_renders_in_chromium(grid, tmp_path):
    _, out = grid
    results = json.loads((out / "results.json").read_text())  # as rewritten by any rerun above
    report = build_report(out)
    assert report["cells"] == results["cells"] and report["summary"]
    assert json.loads((out / "report.json").read_text())["schema"] == "staa-ser/report/1"
    page = _Cells()
    page.feed((out / "report.html").read_text())
    assert page.images == 6 and page.audio >= 3  # five plots + the perturbation figure; clean, adversarial, defended
    for c in results["cells"]:
        if c["defense"] == "none":
            assert report["robust_accuracy"][c["victim"]][c["attack"]] == c["adversarial_accuracy"]
            assert report["robust_accuracy"][c["victim"]]["clean"] == c["clean_accuracy"]
    for c in results["cells"]:
        shown = page.cells[(c["victim"], c["attack"], c["defense"])]
        assert shown and all(shown[k] == fmt(c[k]) for k in shown)
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser:
        pytest.skip("no chromium on this machine (.ci/run installs it)")
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1200,2400",
            f"--screenshot={shot}",
            (out / "report.html").as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[0] == 2400 and pixels.std() > 0.05  # a page with content, not a blank one


def test_config_file_and_its_errors(setup, tmp_path):
    manifest, root = setup
    good = tmp_path / "grid.toml"
    good.write_text(
        f'data = "{manifest}"\ndefenses = ["none", "mp3:32"]\n[victims]\ntiny = "{root / "victim" / "best.pt"}"\n'
        f'[attacks]\npgd = {{type = "pgd", steps = 3}}\n'
    )
    cfg = load_config(good)
    assert cfg.attack_specs["pgd@0.03"].params == {"steps": 3, "eps": 0.03} and cfg.defenses == ["none", "mp3:32"]
    bad = {
        "unknown keys": 'data = "x"\nvictims = {a = "b"}\nattacks = {f = "fgsm"}\nepsilon = 3\n',
        "unknown type": 'data = "x"\nvictims = {a = "b"}\nattacks = {f = "fgsmm"}\n',
        "eps must be": 'data = "x"\nvictims = {a = "b"}\nattacks = {f = "fgsm:eps=-1"}\n',
        "listed twice": 'data = "x"\nvictims = {a = "b"}\nattacks = {f = "fgsm"}\ndefenses = ["none", "none"]\n',
        "bitrate": 'data = "x"\nvictims = {a = "b"}\nattacks = {f = "fgsm"}\ndefenses = ["mp3:0"]\n',
        "not valid TOML": "data = \n",
        "needs generator": 'data = "x"\nvictims = {a = "b"}\nattacks = {s = "staa"}\n',
    }
    for message, text in bad.items():
        path = tmp_path / "bad.toml"
        path.write_text(text)
        with pytest.raises(ValueError, match=message):
            load_config(path)


def test_cli_refuses_to_reuse_a_run_folder_without_resume_or_force(grid, setup, capsys):
    _, out = grid
    manifest, root = setup
    args = [
        "evaluate",
        "--data",
        str(manifest),
        "--victim",
        f"tiny={root / 'victim' / 'best.pt'}",
        "--attack",
        "f=fgsm",
        "--out",
        str(out),
        "--quiet",
    ]
    assert main(args) == 2
    assert "--resume" in capsys.readouterr().err


def test_kill_9_mid_grid_then_resume_gives_the_uninterrupted_numbers(setup, tmp_path):
    import os
    import signal
    import sys
    import time

    manifest, root = setup
    args = [
        sys.executable,
        "-m",
        "staa",
        "evaluate",
        "--data",
        str(manifest),
        "--victim",
        f"tiny={root / 'victim' / 'best.pt'}",
        "--attack",
        "fgsm=fgsm",
        "--attack",
        "slow=pgd:steps=300",
        "--eps",
        "0.03",
        "--defense",
        "none",
        "--defense",
        "quantize:8",
        "--max-clips",
        "8",
        "--no-perceptual",
        "--quiet",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([*args, "--out", str(tmp_path / "whole")], check=True, env=env, capture_output=True, timeout=300)
    proc = subprocess.Popen(
        [*args, "--out", str(tmp_path / "killed")], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    first = tmp_path / "killed" / "cells" / "tiny" / "fgsm.json"
    deadline = time.time() + 240
    while not first.is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert first.is_file() and not (tmp_path / "killed" / "results.json").exists()  # killed between the two attacks
    for f in (tmp_path / "killed").rglob("*"):
        if f.is_file() and not f.name.startswith("."):  # temp files are hidden; anything under a final name is whole
            if f.suffix == ".json":
                json.loads(f.read_text())
    resumed = subprocess.run(
        [*args, "--out", str(tmp_path / "killed"), "--resume"], env=env, capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr
    whole = json.loads((tmp_path / "whole" / "results.json").read_text())["cells"]
    again = json.loads((tmp_path / "killed" / "results.json").read_text())["cells"]
    assert _same_numbers(again, whole)


def test_the_grid_reports_where_its_time_went_to_the_caller_only(setup, tmp_path):
    times = {}
    run_grid(
        _config(setup, perceptual=False, attacks={"fgsm": "fgsm"}), tmp_path / "timed", progress=False, times=times
    )
    assert set(times) == {"attack", "model", "defense"} and all(v > 0 for v in times.values())
    import eval.harness as harness

    assert not [
        k for k, v in vars(harness).items() if isinstance(v, dict) and not k.startswith("__")
    ]  # no process-wide tally


@pytest.fixture(scope="module")
def varied(setup, tmp_path_factory):
    """Test clips cut to different lengths (two of them stored at 22.05 kHz), as in a real corpus."""
    manifest, _ = setup
    tests = [r for r in load_records("manifest", manifest) if r.split == "test"][:6]
    root = tmp_path_factory.mktemp("varied")
    seconds = [0.9, 0.6, 1.3, 0.6, 1.1, 0.75]
    lines, lengths = ["path,label,split"], []
    for i, (rec, s) in enumerate(zip(tests, seconds)):
        wav, rate = sf.read(rec.path, dtype="float32")
        wav = wav[: int(s * rate)]
        if i in (2, 5):
            wav, rate = AF.resample(torch.from_numpy(wav), 16_000, 22_050).clamp(-1, 1).numpy(), 22_050
        sf.write(str(root / f"{i}.wav"), wav, rate, subtype="FLOAT")
        lines.append(f"{i}.wav,{rec.label},test")
        lengths.append(-(-len(wav) * 16_000 // rate))
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return root / "manifest.csv", lengths


def test_length_batches_group_equal_lengths_in_order():
    from staa.datasets import length_batches

    assert length_batches([5, 3, 5, 5, 3, 7], 2) == [[1, 4], [0, 2], [3], [5]]
    assert length_batches([4] * 5, 2) == [[0, 1], [2, 3], [4]]  # one length: the plain batches, in order


def test_native_length_grid_scores_each_clip_on_its_own_length(setup, varied, tmp_path):
    from staa.metrics.perturbation import snr_db

    manifest, lengths = varied
    cfg = _config(setup, data=str(manifest), clip_seconds=0, max_clips=None, perceptual_clips=2, examples=6)
    results = run_grid(cfg, tmp_path / "native", progress=False)
    assert len(set(lengths)) == 5 and all(c["n"] == 6 for c in results["cells"])
    rows = _rows(tmp_path / "native")
    for attack in ("staa", "fgsm"):
        folder = tmp_path / "native" / "examples" / "tiny" / attack
        for i, n in enumerate(lengths):
            clean, rate = sf.read(folder / f"{i}_clean.wav", dtype="float32")
            adv, _ = sf.read(folder / f"{i}_adv.wav", dtype="float32")
            assert len(clean) == len(adv) == n and rate == 16_000  # its own length, nothing padded or cut
            row = next(r for r in rows if (r["attack"], r["defense"], r["clip"]) == (attack, "none", str(i)))
            expected = float(snr_db(torch.from_numpy(clean)[None], torch.from_numpy(adv)[None])[0])
            assert float(row["snr_db"]) == pytest.approx(expected, rel=1e-4)  # the row is this clip's, scored whole
    assert any(r["pesq"] for r in rows if r["attack"] == "staa") and len({r["path"] for r in rows}) == 6

    # batches of one clip each: the same per-clip rows, so the length batches are put back in dataset order
    single = run_grid(
        _config(
            setup,
            data=str(manifest),
            clip_seconds=0,
            max_clips=None,
            perceptual=False,
            batch_size=1,
            attacks={"fgsm": "fgsm:eps=0.01"},
        ),
        tmp_path / "single",
        progress=False,
    )
    batched = [r for r in rows if r["attack"] == "fgsm"]
    for a, b in zip(batched, _rows(tmp_path / "single")):
        assert (a["clip"], a["defense"], a["adv_pred"], a["defended_adv_pred"]) == (
            b["clip"],
            b["defense"],
            b["adv_pred"],
            b["defended_adv_pred"],
        )
        assert float(a["snr_db"]) == pytest.approx(float(b["snr_db"]), rel=1e-5)
    assert single["cells"][0]["n"] == 6


def test_other_rates_are_resampled_with_one_warning_or_refused_when_strict(setup, varied, caplog, capsys, tmp_path):
    from staa.datasets import AudioDataset, DatasetError

    manifest, lengths = varied
    records = load_records("manifest", manifest)
    with caplog.at_level("WARNING", logger="staa"):
        data = AudioDataset(records, list(EMOTIONS), clip_seconds=None)
    warned = [r.getMessage() for r in caplog.records if "resampling" in r.getMessage()]
    assert warned == ["resampling 2 of 6 clips (22050 Hz) to the model's 16000 Hz"]
    assert data.lengths() == lengths == [len(data[i][0]) for i in range(6)]
    with pytest.raises(DatasetError, match=r"2\.wav: is at 22050 Hz, not the model's 16000 Hz \(2 such file"):
        AudioDataset(records, list(EMOTIONS), clip_seconds=None, strict_rate=True)

    victim = str(setup[1] / "victim" / "best.pt")
    base = ["attack", "--data", str(manifest), "--victim", victim, "--attack", "fgsm", "--clip-seconds", "0"]
    assert main([*base, "--strict-rate", "--out", str(tmp_path / "strict"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "2.wav: is at 22050 Hz" in err[0]
    assert main([*base, "--out", str(tmp_path / "atk"), "--quiet"]) == 0
    saved = sorted((tmp_path / "atk" / "adv").glob("*.wav"))
    assert [sf.info(str(p)).frames for p in saved] == lengths  # every clip attacked at its own length


def test_wilson_intervals_known_values():
    from staa.metrics.intervals import wilson

    assert wilson(5, 10) == pytest.approx((0.236593, 0.763407), abs=1e-6)  # the textbook example
    assert wilson(0, 10) == pytest.approx((0.0, 0.277533), abs=1e-6)
    assert wilson(10, 10) == pytest.approx((0.722467, 1.0), abs=1e-6)
    k, n, z = 81, 263, 1.959964
    center, half = (k + z * z / 2) / (n + z * z), z / (n + z * z) * (k * (n - k) / n + z * z / 4) ** 0.5
    assert wilson(k, n) == pytest.approx((center - half, center + half), abs=1e-6)  # the closed form
    assert wilson(0, 0) is None
    with pytest.raises(ValueError):
        wilson(3, 2)


def test_every_rate_has_its_n_and_interval(grid):
    from staa.metrics.intervals import wilson

    results, _ = grid
    for c in results["cells"]:
        for key, of in (("success_rate", "n"), ("defended_robust_accuracy", "n"), ("survival", "n_success")):
            if c[key] is None:
                assert c["intervals"][key] is None and c[of] == 0
                continue
            lo, hi = c["intervals"][key]
            assert (lo, hi) == pytest.approx(wilson(round(c[key] * c[of]), c[of])) and lo <= c[key] <= hi


def test_the_verdict_is_the_worst_case_over_every_attack_per_defense_and_budget(grid, tmp_path):
    results, out = grid
    report = build_report(out, out_dir=tmp_path)
    key = ("victim", "defense", "eps")
    assert [tuple(r[k] for k in key) for r in report["verdict"]] == [
        ("tiny", d, e) for d in ("none", "quantize:8", "noise:30") for e in (0.01, 0.03)
    ]  # fgsm at its own 0.01; the generator and bpda at 0.03, in the grid's order
    for row in report["verdict"]:
        mine = [c for c in results["cells"] if tuple(c[k] for k in key) == tuple(row[k] for k in key)]
        worst = min(mine, key=lambda c: c["defended_robust_accuracy"])
        assert row["clean_cost"] == pytest.approx(worst["clean_accuracy"] - worst["defended_clean_accuracy"])
        # a defense gets a verdict only at a budget where an adaptive attack (bpda, at 0.03) went through it
        assert row["verified"] == (row["defense"] == "none" or row["eps"] == 0.03)
        if not row["verified"]:
            assert row["worst_case_accuracy"] is None and row["worst_attack"] is None
            continue
        assert row["worst_case_accuracy"] == worst["defended_robust_accuracy"] and row["n"] == 8
        assert row["worst_case_interval"] == worst["intervals"]["defended_robust_accuracy"]
    page = (tmp_path / "report.html").read_text()
    assert page.index('class="verdict"') < page.index('class="summary"')


def test_the_summary_says_a_new_thing_in_each_sentence_and_the_scatter_has_no_labels_to_overlap(grid, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from eval.plots import _success_vs_pesq

    results, out = grid
    report = build_report(out, out_dir=tmp_path)
    summary, rows = report["summary"], report["verdict"]
    # clean, one per budget, the defenses without a verdict at 0.01, best defense, survival, flags
    assert len(summary) == len(set(summary)) == 7
    assert (
        "At eps 0.01, quantize:8, noise:30 have no verdict: no adaptive attack (BPDA/EOT) went through them." in summary
    )
    undefended = {r["eps"]: r for r in rows if r["defense"] == "none"}
    for eps, r in undefended.items():
        (line,) = [s for s in summary if s.startswith(f"At eps {eps:g} ")]
        assert f"tiny at {r['worst_case_accuracy']:.0%} ({r['worst_attack']})" in line
    best = max((r for r in rows if r["defense"] != "none" and r["eps"] == 0.03), key=lambda r: r["worst_case_accuracy"])
    assert any(s.startswith(f"The defense with the best worst case at eps 0.03 is {best['defense']}:") for s in summary)
    fig = _success_vs_pesq(plt, results["cells"])
    (ax,) = fig.axes
    assert not ax.texts  # no label beside a point
    keyed = [t.get_text() for t in ax.get_legend().get_texts()]
    assert keyed == ["tiny", "staa", "fgsm", "bpda"]
    plt.close(fig)


def _cell(attack, kind, rate, eps=0.03, n=20, **kw):
    from staa.attacks import ATTACKS

    cls = ATTACKS[kind]  # what the attack is, as its class declares it
    return {
        "victim": "v",
        "attack": attack,
        "attack_type": kind,
        "attack_kind": cls.kind,
        "norm": cls.norm,
        "gradient": cls.gradient,
        "defense": "none",
        "n": n,
        "defended_fooling_rate": rate,
        "eps": eps,
        "family": kind,
        **kw,
    }


def test_sanity_rules_on_made_up_cells():
    from eval.sanity import sanity_flags

    found = lambda cells: {(f["attack"], f["flag"]) for f in sanity_flags(cells, {})}
    assert found([_cell("fgsm", "fgsm", 0.5), _cell("pgd", "pgd", 0.2)]) == {("pgd", "single_step_beats_iterative")}
    assert found([_cell("fgsm", "fgsm", 0.25), _cell("pgd", "pgd", 0.2)]) == set()  # one clip apart: noise
    assert found([_cell("sq", "square", 0.9), _cell("pgd", "pgd", 0.2)]) == {("pgd", "black_box_beats_white_box")}
    assert found([_cell("sq", "square", 0.9, eps=0.05), _cell("pgd", "pgd", 0.2)]) == set()  # a larger budget
    transfer = _cell("staa", "staa", 0.7, transfer=True)
    assert found([transfer, _cell("pgd", "pgd", 0.2)]) == {("pgd", "transfer_beats_white_box")}
    assert found([_cell("pgd1", "pgd", 0.6, eps=0.01), _cell("pgd3", "pgd", 0.3)]) == {("pgd3", "eps_not_monotone")}
    assert found([_cell("big", "pgd", 0.5, eps=1.0)]) == {("big", "unbounded")}
    assert found([_cell("fresh", "fresh_staa", 0.0, failed_attack="its generator collapsed")]) == {
        ("fresh", "failed_attack")
    }
    random = dict(defense="noise:30", random_defense=True)
    assert found([_cell("pgd", "pgd", 0.5, **random)]) == {
        ("pgd", "random_defense_without_eot"),
        ("pgd", "no_adaptive_attack"),
    }
    adaptive = _cell("b", "adaptive_pgd", 0.9, eot=4, adaptive=True, **random)
    assert found([_cell("pgd", "pgd", 0.5, **random), adaptive]) == set()
    # the old accuracy on adversarial clips above clean accuracy: the attack moved wrong clips onto their labels
    above = dict(clean_accuracy=0.1, adversarial_accuracy=0.9)
    assert found([_cell("pgd", "pgd", 0.9, **above)]) == {("pgd", "accuracy_above_clean")}
    assert found([_cell("pgd", "pgd", 0.9, clean_accuracy=0.5, adversarial_accuracy=0.5)]) == set()
    checks = {"v": {"checks": {"gradient": {"ok": False}, "logits": {"ok": False}}}}
    flags = {
        (f["attack"], f["flag"]) for f in sanity_flags([_cell("pgd", "pgd", 0.1), _cell("sq", "square", 0.1)], checks)
    }
    assert flags == {("pgd", "masked_gradient"), ("pgd", "probability_output"), ("sq", "probability_output")}


def _tones(folder):
    """The tone victim of conftest saved as a checkpoint, and its 16 test tones as a manifest."""
    from staa.models.victim import save_victim
    from tests.conftest import fit_tone_model

    model, x = fit_tone_model()
    classes = ["low", "mid", "high", "top"]
    save_victim(folder / "tones.pt", model, "mel_cnn", classes, 16_000)
    lines = ["path,label,split"]
    for i, clip in enumerate(x):
        sf.write(str(folder / f"{i}.wav"), clip.numpy(), 16_000, subtype="FLOAT")
        lines.append(f"{i}.wav,{classes[i % 4]},test")
    (folder / "tones.csv").write_text("\n".join(lines) + "\n")


def test_an_eps_list_gives_a_monotone_security_curve_for_a_plain_victim(tmp_path):
    _tones(tmp_path)
    cfg = EvalConfig(
        data=str(tmp_path / "tones.csv"),
        victims={"tones": str(tmp_path / "tones.pt")},
        attacks={"pgd": "pgd:steps=5", "fgsm": "fgsm:eps=0.0001"},  # a spec's own eps is not swept
        eps=[5e-5, 1e-4, 2e-4, 1e-3],
        clip_seconds=0.5,
        perceptual=False,
        workers=1,
    )
    assert list(cfg.attack_specs) == ["pgd@5e-05", "pgd@0.0001", "pgd@0.0002", "pgd@0.001", "fgsm"]
    results = run_grid(cfg, tmp_path / "run", progress=False)
    assert not [f for f in results["flags"] if f["flag"] == "eps_not_monotone"]
    (curve,) = build_report(tmp_path / "run")["security_curves"]
    assert (curve["attack"], curve["defense"]) == ("pgd", "none")
    eps = [p["eps"] for p in curve["points"]]
    accuracy = [p["accuracy"] for p in curve["points"]]
    snr = [p["snr_db"] for p in curve["points"]]
    assert eps == sorted(eps) and len(eps) == 4
    assert all(a >= b for a, b in zip(accuracy, accuracy[1:])) and accuracy[0] > accuracy[-1]  # it falls, and really
    assert all(a > b for a, b in zip(snr, snr[1:]))  # a larger budget is a louder perturbation
    assert "Security curves" in (tmp_path / "run" / "report.html").read_text()
    with pytest.raises(ValueError, match="distinct"):
        EvalConfig(data="x", victims={"v": "v.pt"}, attacks={"p": "pgd"}, eps=[0.01, 0.01])
    default = EvalConfig(data="x", victims={"v": "v.pt"}, attacks={"p": "pgd", "f": "fgsm:eps=0.01"})
    assert list(default.attack_specs) == ["p@0.002", "p@0.03", "f"]  # a realistic budget next to the paper's


def test_a_gradient_masked_victim_is_flagged_and_a_plain_one_is_not(tmp_path):
    _tones(tmp_path)
    (tmp_path / "masked.py").write_text(
        "import torch\n"
        "from staa.models.victim import load_victim\n\n\n"
        "class Rounded(torch.nn.Module):\n"
        "    def __init__(self, model):\n"
        "        super().__init__()\n"
        "        self.model = model\n\n"
        "    def forward(self, x):\n"
        "        return self.model(torch.round(x * 32767) / 32767)  # 16-bit rounding: zero gradient everywhere\n\n\n"
        "def build():\n"
        f"    v = load_victim({str(tmp_path / 'tones.pt')!r})\n"
        "    return Rounded(v.model), v.classes, v.sample_rate\n"
    )
    cfg = EvalConfig(
        data=str(tmp_path / "tones.csv"),
        victims={"plain": str(tmp_path / "tones.pt"), "masked": f"python:{tmp_path / 'masked.py'}:build"},
        attacks={"pgd": "pgd:steps=5:random_start=false", "square": "square:queries=200"},
        eps=0.002,
        clip_seconds=0.5,
        perceptual=False,
        workers=1,
    )
    results = run_grid(cfg, tmp_path / "run", progress=False)
    flags = {(f["victim"], f["attack"], f["flag"]) for f in results["flags"]}
    assert not [f for f in flags if f[0] == "plain"]
    assert flags == {("masked", "pgd", "masked_gradient"), ("masked", "pgd", "black_box_beats_white_box")}
    masked_pgd = next(c for c in results["cells"] if (c["victim"], c["attack"]) == ("masked", "pgd"))
    assert len(masked_pgd["flags"]) == 2 and masked_pgd["success_rate"] == 0.0
    report = build_report(tmp_path / "run")
    assert report["sanity_flags"] == results["flags"]
    page = (tmp_path / "run" / "report.html").read_text()
    assert page.index("numbers to distrust") < page.index('class="summary"')  # the flags come first
    assert page.count('class="unreliable"') == 2  # the flagged cell's row, and its victim x defense in the verdict


def test_report_over_seeds_gives_mean_std_and_the_per_seed_values(setup, tmp_path, capsys):
    import statistics

    runs = []
    for seed in (0, 1, 2):
        cfg = _config(setup, seed=seed, perceptual=False, attacks={"pgd": "pgd:steps=2:eps=0.002"}, max_clips=6)
        runs.append((run_grid(cfg, tmp_path / f"s{seed}", progress=False), tmp_path / f"s{seed}"))
    assert main(["report", *(str(r) for _, r in runs), "--out", str(tmp_path / "seeds")]) == 0
    combined = json.loads((tmp_path / "seeds" / "seeds.json").read_text())
    assert combined["seeds"] == [0, 1, 2] and len(combined["cells"]) == 3
    for cell in combined["cells"]:
        per_seed = [
            next(c for c in res["cells"] if (c["attack"], c["defense"]) == (cell["attack"], cell["defense"]))
            for res, _ in runs
        ]
        for key in ("success_rate", "defended_adversarial_accuracy"):
            values = [c[key] for c in per_seed]
            assert cell[key]["values"] == values
            assert cell[key]["mean"] == pytest.approx(statistics.fmean(values))
            assert cell[key]["std"] == pytest.approx(statistics.stdev(values))
    # the seeds drew other clips: the numbers really move from seed to seed
    assert any(len(set(c["defended_adversarial_accuracy"]["values"])) > 1 for c in combined["cells"])
    assert "± " in (tmp_path / "seeds" / "seeds.html").read_text()
    capsys.readouterr()

    other = _config(
        setup, seed=3, perceptual=False, attacks={"pgd": "pgd:steps=2:eps=0.002"}, max_clips=6, defenses=["none"]
    )
    run_grid(other, tmp_path / "other", progress=False)
    assert main(["report", str(runs[0][1]), str(tmp_path / "other"), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "other: is not a run of the grid" in err[0]
    assert main(["report", str(runs[0][1]), str(runs[0][1]), "--out", str(tmp_path / "y")]) == 2
    assert "same seed" in capsys.readouterr().err


def test_evaluate_under_torchrun_on_one_node_or_two_gives_the_one_process_results(setup, tmp_path):
    import os
    import subprocess
    import sys

    manifest, root = setup
    args = ["evaluate", "--data", str(manifest), "--victim", f"tiny={root / 'victim' / 'best.pt'}"]
    args += ["--attack", f"staa=staa:generator={root / 'gen' / 'best.pt'}", "--attack", "fgsm=fgsm:eps=0.01"]
    args += ["--attack", "bpda=adaptive_pgd:steps=2:eot=2", "--defense", "none", "--defense", "noise:30"]
    args += [
        "--eps",
        "0.03",
        "--max-clips",
        "8",
        "--clip-seconds",
        "1",
        "--perceptual-clips",
        "2",
        "--quiet",
        "--no-report",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run(
        [sys.executable, "-m", "staa", *args, "--out", str(tmp_path / "one")], env=env, capture_output=True, text=True
    )
    assert one.returncode == 0, one.stderr[-3000:]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29581"]
    two = subprocess.run(
        [*launcher, "-m", "staa", *args, "--out", str(tmp_path / "two")], env=env, capture_output=True, text=True
    )
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("results.json") == 1  # rank 0 alone gathers and reports
    # two nodes of one process each, meeting by c10d rendezvous as on a cluster, writing to one shared folder
    node = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1", "--rdzv-backend=c10d"]
    node += [
        "--rdzv-endpoint=localhost:29583",
        "--rdzv-id=staa-test",
        "-m",
        "staa",
        *args,
        "--out",
        str(tmp_path / "nodes"),
    ]
    nodes = [subprocess.Popen(node, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in "ab"]
    outs = [n.communicate(timeout=600) for n in nodes]
    assert [n.returncode for n in nodes] == [0, 0], [err[-3000:] for _, err in outs]
    a = json.loads((tmp_path / "one" / "results.json").read_text())["cells"]
    assert len(a) == 6
    for run in ("two", "nodes"):
        ranks = {json.loads(f.read_text())["rank"] for f in (tmp_path / run / "cells").rglob("*.json")}
        assert ranks == {0, 1}, run  # the work was really split
        b = json.loads((tmp_path / run / "results.json").read_text())["cells"]
        assert len(b) == len(a)
        for x, y in zip(a, b):
            for k in x:
                if k == "seconds_per_clip":
                    continue
                if isinstance(x[k], float):
                    assert y[k] == pytest.approx(x[k], abs=1e-6), (run, k)
                else:
                    assert y[k] == x[k], (run, k)


def test_on_a_victim_wrong_on_most_clips_robust_accuracy_stays_below_clean_and_the_old_number_is_flagged(tmp_path):
    """Placeholder labels: the 2-class victim is right on 2 of 8 clips. An untargeted attack moves every clip off its
    prediction, so the 6 wrong ones land on their labels: accuracy on the adversarial clips rises to 6/8, above clean
    accuracy, while robust accuracy (right before and after) cannot. Near-silent clips are left out and counted."""
    from staa.models.victim import save_victim
    from tests.conftest import fit_tone_model

    model, x = fit_tone_model(2)
    classes = ["low", "high"]
    save_victim(tmp_path / "v.pt", model, "mel_cnn", classes, 16_000)
    lines = ["path,label,split"]
    for i, clip in enumerate(x):
        sf.write(str(tmp_path / f"{i}.wav"), clip.numpy(), 16_000, subtype="FLOAT")
        truth = i % 2
        lines.append(f"{i}.wav,{classes[truth if i >= 6 else 1 - truth]},test")
    for name, clip in (("quiet", 1e-6 * x[0]), ("silence", 0 * x[0])):
        sf.write(str(tmp_path / f"{name}.wav"), clip.numpy(), 16_000, subtype="FLOAT")
        lines.append(f"{name}.wav,low,test")
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    cfg = EvalConfig(
        data=str(tmp_path / "m.csv"),
        victims={"v": str(tmp_path / "v.pt")},
        attacks={"pgd": "pgd:steps=10:random_start=false"},  # 5x the budget that flips every clip: no luck involved
        eps=1e-3,
        clip_seconds=0.5,
        perceptual=False,
        workers=1,
    )
    results = run_grid(cfg, tmp_path / "run", progress=False)
    (cell,) = results["cells"]
    assert (cell["n"], cell["n_silent"]) == (8, 2) and cell["clean_accuracy"] == 0.25
    assert cell["success_rate"] == 1.0 and cell["adversarial_accuracy"] == 0.75  # the old number
    assert cell["robust_accuracy"] == 0.0 <= cell["clean_accuracy"]
    assert [f["flag"] for f in results["flags"]] == ["accuracy_above_clean"]
    with open(tmp_path / "run" / "clips.csv", newline="") as fh:
        assert not any("quiet" in r["path"] or "silence" in r["path"] for r in csv.DictReader(fh))
    report = build_report(tmp_path / "run")
    assert report["robust_accuracy"]["v"] == {"clean": 0.25, "pgd": 0.0}
    assert report["verdict"][0]["worst_case_accuracy"] == 0.0


def test_a_fresh_generator_that_collapsed_is_a_failed_attack_never_robustness(tmp_path, capsys):
    """A victim that says one class whatever it hears cannot be fooled, so the generator trained against it fools
    nothing: that is a failed attack, flagged, and the verdict rests on the attacks that ran."""
    from staa.models.victim import save_victim
    from tests.conftest import TONE_FREQS, fit_tone_model, tone

    model, _ = fit_tone_model()
    with torch.no_grad():
        [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1].weight.zero_()
    classes = ["low", "mid", "high", "top"]
    data = tmp_path / "data"
    data.mkdir()
    save_victim(tmp_path / "constant.pt", model, "mel_cnn", classes, 16_000)
    lines = ["path,label,split"]
    for split, n in (("train", 16), ("val", 8), ("test", 8)):
        for i in range(n):
            name = f"{split}{i}.wav"
            sf.write(str(data / name), tone(seconds=0.5, freq=TONE_FREQS[i % 4], seed=i), 16_000)
            lines.append(f"{name},{classes[i % 4]},{split}")
    (data / "tones.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "run"
    args = ["evaluate", "--data", str(data / "tones.csv"), "--victim", f"c={tmp_path / 'constant.pt'}"]
    args += ["--attack", "fresh=fresh_staa:epochs=1", "--attack", "pgd=pgd:steps=2", "--eps", "0.002"]
    assert main([*args, "--clip-seconds", "0.5", "--no-perceptual", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "FLAG c fresh: its fresh generator collapsed" in printed and " failed " in printed
    results = json.loads((out / "results.json").read_text())
    fresh = next(c for c in results["cells"] if c["attack"] == "fresh")
    assert fresh["failed_attack"].startswith("its fresh generator collapsed: val fooling 0.000")
    assert fresh["success_rate"] == 0 and fresh["eps"] == 0.002 and not fresh["transfer"]
    assert {(f["attack"], f["flag"]) for f in results["flags"]} >= {("fresh", "failed_attack")}
    assert (out / "generators" / "c" / "fresh" / "best.pt").is_file()
    [row] = build_report(out)["verdict"]
    assert row["worst_attack"] == "pgd"  # the failed attack counts for nothing, even where it ties


def test_security_curves_of_many_attacks_stay_readable_where_they_coincide():
    import warnings

    import matplotlib.pyplot as plt

    from eval.plots import security_plot

    attacks = ["pgd", "apgd", "fgsm", "mifgsm", "bpda"]
    curves = [
        {
            "victim": v,
            "defense": d,
            "attack": a,
            "points": [{"eps": e, "accuracy": 0.0, "snr_db": 30.0} for e in (0.001, 0.002, 0.01, 0.03)],
        }
        for v in ("a", "b")
        for d in ("none", "mp3:32", "resample:8000", "quantize:8", "lowpass:4000", "noise:30")
        for a in attacks
    ]  # 60 curves, every one at accuracy 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a layout that does not fit warns
        fig = security_plot(curves)
        fig.canvas.draw()
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == 12 and [t.get_text() for t in fig.legends[0].get_texts()] == attacks
    for ax in panels:
        lines = ax.get_lines()
        assert len({line.get_marker() for line in lines}) == 5  # told apart by marker ...
        assert len({tuple(line.get_xdata()) for line in lines}) == 5  # ... and drawn apart
        assert [float(t) for t in ax.get_xticks()] == [0.001, 0.002, 0.01, 0.03]
    plt.close(fig)


def test_evaluate_with_detectors_and_smoothing_reports_them_per_victim(setup, tmp_path, capsys, monkeypatch):
    manifest, root = setup
    out = tmp_path / "run"
    victim = "<b>tiny</b>"  # a user's name: escaped in the page
    args = ["evaluate", "--data", str(manifest), "--victim", f"{victim}={root / 'victim' / 'best.pt'}"]
    args += ["--attack", "f=fgsm:eps=0.05", "--eps", "0.05", "--max-clips", "8", "--clip-seconds", "1"]
    args += [
        "--no-perceptual",
        "--quiet",
        "--out",
        str(out),
        "--detector",
        "quantize:4",
        "--detector",
        "resample:8000",
        "--detector-steps",
        "3",
    ]
    args += ["--smoothing-sigma", "0.01", "0.05", "--smoothing-n", "20"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "wrong and not flagged" in printed and "quantize:4" in printed
    detection = json.loads((out / "detection.json").read_text())
    assert detection["settings"]["detector_split"] == "val" and detection["settings"]["eps"] == 0.05
    result = detection["victims"][victim]
    assert result["n_test"] == 8 and result["n_calibration"] > 0
    for row in result["detectors"].values():
        assert set(row["attacks"]) == {"f"} and 0 <= row["test_fpr"] <= 1
        assert 0 <= row["pgd_evades"] <= 1 and 0 <= row["adaptive_evades"] <= 1
    cert = json.loads((out / "certification.json").read_text())["victims"][victim]
    assert [r["sigma"] for r in cert["results"]] == [0.01, 0.05] and cert["samples"] == 16_000
    assert cert["linf_equivalent"]["0.002"] == pytest.approx(0.002 / 16_000**0.5)
    # the grid's certificate is the one `Smoothed` gives on the grid's clips
    from eval.harness import load_grid_records, select_clips
    from staa.models.smoothing import Smoothed, certified_accuracy
    from staa.models.victim import load_victim

    cfg = _config(setup, max_clips=8, clip_seconds=1.0)
    model = load_victim(root / "victim" / "best.pt")
    clips = select_clips(load_grid_records(cfg), model, cfg)
    direct = certified_accuracy(Smoothed(model.model, 0.05, n0=20, n=20), clips, [0.0, 0.001, 0.002, 0.005])
    assert cert["results"][1]["certified_accuracy"] == direct["certified_accuracy"]
    report = json.loads((out / "report.json").read_text())
    assert report["detection"] == detection and report["certification"]["victims"][victim] == cert
    page = (out / "report.html").read_text()
    assert "<h2>Detection</h2>" in page and "&lt;b&gt;tiny&lt;/b&gt;" in page and "<b>tiny</b>" not in page
    assert "Certified accuracy" in page
    # a rerun finds each victim's detection and certificates done and computes nothing again
    import eval.detection
    import staa.models.smoothing

    monkeypatch.setattr(eval.detection, "evaluate_detection", lambda *a, **k: pytest.fail("recomputed"))
    monkeypatch.setattr(staa.models.smoothing, "certified_accuracy", lambda *a, **k: pytest.fail("recomputed"))
    assert main([*args, "--resume"]) == 0
    # the detectors are judged on clips their thresholds were not calibrated on
    with pytest.raises(ValueError, match="detector_split must be another split"):
        _config(setup, detectors=["quantize:4"], detector_split="test")
    with pytest.raises(ValueError, match="unknown defense|nope"):
        _config(setup, detectors=["nope:3"])


def test_a_run_folder_written_before_a_config_field_existed_still_resumes(grid, setup):
    _, out = grid
    saved = json.loads((out / "config.json").read_text())
    for key in [k for k in saved if k.startswith(("detector", "smoothing"))]:
        saved.pop(key)
    (out / "config.json").write_text(json.dumps(saved))
    assert run_grid(_config(setup), out, progress=False)["cells"]
    with pytest.raises(ValueError, match="another config"):
        run_grid(_config(setup, detectors=["quantize:4"]), out, progress=False)
