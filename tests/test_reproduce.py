"""scripts/reproduce.py: a seed's stage parts, a gather that builds every table from the parts present, a rerun
that resumes, and the committed results."""

import dataclasses
import importlib.util
import json
import os
import random
import shutil
import statistics
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def reproduce():
    spec = importlib.util.spec_from_file_location("reproduce", ROOT / "scripts" / "reproduce.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["reproduce"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def smoke(reproduce, tmp_path_factory):
    """One smoke seed run as its own command: (work folder, parts folder)."""
    root = tmp_path_factory.mktemp("smoke")
    work, parts = root / "work", root / "parts"
    args = ["--size", "smoke", "--seed", "0", "--work", str(work), "--parts", str(parts), "--quiet", "--threads", "1"]
    assert reproduce.main(args) == 0
    return work, parts


def _check_tables(results: dict, reproduce) -> None:
    """Every table is there, with rows, and each cell's mean and std are those of its per-seed values."""
    assert set(results["tables"]) == set(reproduce.TABLES)
    size = reproduce.SIZES[results["size"]]
    tables = results["tables"]
    assert set(tables["victims"]["rows"]) == set(size.victims)
    assert set(tables["transfer"]["rows"]) == {f"from {a}" for a in [*size.victims, "ensemble"]}
    assert set(tables["hardening"]["rows"]) == {"none", *size.at_methods}
    assert tables["survival"]["columns"] == list(reproduce.DEFENSES)
    for eps in reproduce.EPS:
        rows = tables[f"white_box@{eps:g}"]["rows"]
        assert "STAA" in rows and "PGD-10" in rows and any(r.startswith("PGD-100") for r in rows)
    for key, table in tables.items():
        assert table["rows"], key
        assert sorted(table["row_order"]) == sorted(table["rows"]), key
        assert table["seeds"] and set(table["seeds"]) <= set(results["seeds"]), key
        for label, row in table["rows"].items():
            for col, stat in row.items():
                if stat is None:
                    continue
                assert len(stat["seeds"]) == len(table["seeds"]), (key, label, col)
                got = [v for v in stat["seeds"] if v is not None]
                assert stat["mean"] == pytest.approx(statistics.mean(got)), (key, label, col)
                assert stat["std"] == (pytest.approx(statistics.stdev(got)) if len(got) > 1 else None)
    for bar in results["bars"]:
        assert len(bar["met"]) == len(bar["seeds"]) and set(bar["seeds"]) <= set(results["seeds"])
    p = results["provenance"]
    assert p["date"] and p["commits"] and p["parts"] and all(t >= 1 for t in p["threads"])


def test_a_seed_writes_small_parts_with_their_provenance_and_the_gather_writes_every_table(smoke, reproduce, tmp_path):
    work, parts = smoke
    seed = parts / "smoke" / "seed0"
    assert sorted(f.stem for f in seed.glob("*.json")) == sorted(reproduce.STAGES)
    for f in seed.glob("*.json"):
        part = json.loads(f.read_text())
        assert part["commit"] and part["date"] and part["seconds"] > 0 and part["machine"]["threads"] == 1
        assert f.stat().st_size < 20_000  # the models stay in the work folder
    assert not list(parts.rglob("*.pt")) and list(work.rglob("*.pt"))
    out = tmp_path / "docs"
    assert reproduce.main(["--size", "smoke", "--gather", "--parts", str(parts), "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["seeds"] == [0]
    _check_tables(results, reproduce)
    assert (out / "results.md").read_text() == reproduce.render(results)


def _jiggle(obj, rng):
    """Every number of a part's result moved a little: another seed's numbers, in the same shape."""
    if isinstance(obj, dict):
        return {k: _jiggle(v, rng) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_jiggle(v, rng) for v in obj]
    if isinstance(obj, float):
        return obj * rng.uniform(0.5, 1.5) + rng.uniform(0, 0.1)
    return obj


def test_the_gather_builds_each_table_from_the_seeds_that_hold_it(smoke, reproduce, tmp_path, monkeypatch):
    _, parts = smoke
    folder = tmp_path / "parts" / "smoke"
    shutil.copytree(parts / "smoke" / "seed0", folder / "seed0")
    rng = random.Random(0)
    for k in (1, 2):
        (folder / f"seed{k}").mkdir()
        for f in (folder / "seed0").glob("*.json"):
            part = json.loads(f.read_text())
            part |= {"seed": k, "result": _jiggle(part["result"], rng)}
            part["commit"] = "abc1234" if k == 2 else part["commit"]
            (folder / f"seed{k}" / f.name).write_text(json.dumps(part))
    (folder / "seed2" / "hardening.json").unlink()  # seed 2 stopped during its last stage
    out = tmp_path / "docs"
    results = reproduce.gather(folder, "smoke", out)
    _check_tables(results, reproduce)
    tables = results["tables"]
    assert results["seeds"] == [0, 1, 2] and tables["hardening"]["seeds"] == [0, 1]
    assert tables["victims"]["seeds"] == [0, 1, 2] and tables["wall_time"]["seeds"] == [0, 1]
    part = lambda k, stage: json.loads((folder / f"seed{k}" / f"{stage}.json").read_text())["result"]
    for k in (0, 1, 2):
        for arch, v in part(k, "victims").items():
            assert tables["victims"]["rows"][arch]["test UA"]["seeds"][k] == v["test_ua"]
        for src, row in part(k, "transfer")["fooling_rate"].items():
            assert [tables["transfer"]["rows"][f"from {src}"][t]["seeds"][k] for t in row] == list(row.values())
    for k in (0, 1):
        for method, v in part(k, "hardening").items():
            assert tables["hardening"]["rows"][method]["standard suite"]["seeds"][k] == v["standard_accuracy"]
    assert "abc1234" in tables["victims"]["note"] and "abc1234" not in tables["hardening"]["note"]
    hardening_bars = [b for b in results["bars"] if b["bar"].startswith("generator hardening")]
    assert hardening_bars and all(b["seeds"] == [0, 1] for b in hardening_bars)
    md = (out / "results.md").read_text()
    assert md == reproduce.render(results) and "2 of 3 seed(s): 0, 1." in md
    stat = tables["victims"]["rows"]["mel_cnn"]["test UA"]
    assert f"{stat['mean']:.3f} ± {stat['std']:.3f}" in md

    # a victim under the bar on a seed: marked, and that seed leaves every table of its numbers
    weak = part(1, "victims")["mel_cnn"]["test_ua"] + 1e-6
    size = dataclasses.replace(reproduce.SIZES["smoke"], min_ua=weak)
    monkeypatch.setitem(reproduce.SIZES, "smoke", size)
    strong = {k for k in (0, 1, 2) if part(k, "victims")["mel_cnn"]["test_ua"] >= weak}
    results = reproduce.gather(folder, "smoke", out)
    assert "mel_cnn on seed 1" in results["tables"]["victims"]["note"]
    assert 1 not in results["tables"]["transfer"]["seeds"] and set(results["tables"]["transfer"]["seeds"]) == strong
    assert len(results["tables"]["victims"]["seeds"]) == 3


def test_a_part_of_other_settings_is_refused_in_one_line(smoke, reproduce, tmp_path, capsys):
    _, parts = smoke
    folder = tmp_path / "parts"
    shutil.copytree(parts, folder)
    f = folder / "smoke" / "seed0" / "victims.json"
    part = json.loads(f.read_text())
    part["settings"]["n_clips"] += 1
    f.write_text(json.dumps(part))
    out = tmp_path / "docs"
    assert reproduce.main(["--size", "smoke", "--gather", "--parts", str(folder), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "victims.json" in err and not out.exists()
    assert reproduce.main(["--size", "smoke", "--gather", "--parts", str(tmp_path / "none"), "--out", str(out)]) == 2


@pytest.mark.slow  # a stage retrained: half a minute
@pytest.mark.filterwarnings("ignore")
def test_a_rerun_reads_the_finished_stages_and_redoes_the_killed_one_from_its_checkpoints(smoke, reproduce, tmp_path):
    work, parts = smoke
    work2, parts2 = tmp_path / "work", tmp_path / "parts"
    shutil.copytree(work, work2)
    shutil.copytree(parts, parts2)
    seed = parts2 / "smoke" / "seed0"
    kept = {f.name: os.stat(f).st_mtime_ns for f in seed.glob("*.json") if f.name != "hardening.json"}
    before = json.loads((seed / "hardening.json").read_text())["result"]
    (seed / "hardening.json").unlink()
    args = ["--size", "smoke", "--seed", "0", "--work", str(work2), "--parts", str(parts2), "--quiet", "--threads", "1"]
    assert reproduce.main(args) == 0
    assert {f.name: os.stat(f).st_mtime_ns for f in seed.glob("*.json") if f.name in kept} == kept
    after = json.loads((seed / "hardening.json").read_text())["result"]
    assert {k: v["standard_accuracy"] for k, v in after.items()} == {
        k: v["standard_accuracy"] for k, v in before.items()
    }


@pytest.mark.slow  # minutes: the quick size, as a new user would run it
@pytest.mark.filterwarnings("ignore")
def test_the_quick_size_writes_every_table(reproduce, tmp_path):
    out = tmp_path / "docs"
    args = ["--size", "quick", "--seeds", "1", "--work", str(tmp_path / "w"), "--parts", str(tmp_path / "p")]
    assert reproduce.main([*args, "--out", str(out), "--quiet"]) == 0
    _check_tables(json.loads((out / "results.json").read_text()), reproduce)


def test_the_committed_results_are_the_full_size_and_the_page_is_made_from_them(reproduce):
    results = json.loads((ROOT / "docs" / "results.json").read_text())
    assert results["size"] == "full" and results["settings"]["clips"] >= 100
    _check_tables(results, reproduce)
    assert (ROOT / "docs" / "results.md").read_text() == reproduce.render(results)
    # the page is what the committed parts gather to
    parts = reproduce.read_parts(ROOT / "docs" / "results" / "parts" / "full", reproduce.SIZES["full"])
    assert sorted(parts) == results["seeds"]
    assert len(results["provenance"]["parts"]) == sum(len(run) for run in parts.values())
