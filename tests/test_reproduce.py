"""scripts/reproduce.py: every table of docs/results.json, from a run that resumes, and the committed results."""

import importlib.util
import json
import os
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


def _check_tables(results: dict, reproduce, n_seeds: int) -> None:
    assert set(results["tables"]) == set(reproduce.TABLES)
    size = reproduce.Size(**{k: tuple(v) if isinstance(v, list) else v for k, v in results["settings"].items()})
    tables = results["tables"]
    for eps in reproduce.EPS:
        rows = set(tables[f"white_box@{eps:g}"]["rows"])
        assert rows == {"STAA", "FGSM", "PGD-10", "PGD-100"} | set(size.attacks) - {"fgsm", "pgd10", "pgd100"}
    assert tables["transfer"]["columns"] == list(size.victims)
    assert set(tables["transfer"]["rows"]) == {f"from {a}" for a in size.transfer_sources}
    assert set(tables["adversarial_training"]["rows"]) == {"none", *reproduce.AT_METHODS}
    assert tables["survival"]["columns"] == list(reproduce.DEFENSES)
    for key, table in tables.items():
        assert sorted(table["row_order"]) == sorted(table["rows"]), key
        for label, row in table["rows"].items():
            for col, stat in row.items():
                if stat is not None:
                    assert len(stat["seeds"]) == n_seeds, (key, label, col)
    # the numbers the tables summarise are really there: every victim and every attack at each budget
    assert all(tables["victims"]["rows"][a]["test UA"] for a in size.victims)
    assert all(len(bar["met"]) == n_seeds for bar in results["bars"]) and len(results["bars"]) == 9
    p = results["provenance"]
    assert p["date"] and p["commit"] and p["command"].startswith("python scripts/reproduce.py")
    assert p["machine"]["threads"] >= 1


@pytest.mark.slow  # minutes: it trains every model of a seed
@pytest.mark.filterwarnings("ignore")
def test_a_smoke_run_in_parts_writes_every_table_and_a_rerun_resumes_from_its_stages(tmp_path, reproduce):
    work, out = tmp_path / "work", tmp_path / "docs"
    common = ["--size", "smoke", "--work", str(work), "--out", str(out), "--quiet"]
    # a seed run as a part of its own writes its stages and no results; the run without --seed gathers them
    assert reproduce.main([*common, "--seed", "0"]) == 0
    seed = work / "smoke" / "seed0"
    parted = {f.name: os.stat(f).st_mtime_ns for f in seed.glob("*.json")}
    assert len(parted) == 6 and not out.exists()
    args = [*common, "--seeds", "1"]
    assert reproduce.main(args) == 0
    assert {f.name: os.stat(f).st_mtime_ns for f in seed.glob("*.json")} == parted
    results = json.loads((out / "results.json").read_text())
    _check_tables(results, reproduce, 1)
    assert (out / "results.md").read_text() == reproduce.render(results)

    # a run killed during its last stage: the stages before it are read back, not recomputed, and the stage
    # redone from its trainers' checkpoints gives the same numbers
    kept = {f.name: os.stat(f).st_mtime_ns for f in seed.glob("*.json") if f.name != "adversarial_training.json"}
    before = json.loads((seed / "adversarial_training.json").read_text())["result"]
    (seed / "adversarial_training.json").unlink()
    (out / "results.json").unlink()
    assert reproduce.main(args) == 0
    assert {f.name: os.stat(f).st_mtime_ns for f in seed.glob("*.json") if f.name in kept} == kept
    assert json.loads((seed / "adversarial_training.json").read_text())["result"] == before


def test_a_work_folder_of_other_settings_is_refused(tmp_path, reproduce, capsys):
    (tmp_path / "smoke").mkdir()
    (tmp_path / "smoke" / "plan.json").write_text('{"n_clips": 5}')
    assert reproduce.main(["--size", "smoke", "--work", str(tmp_path), "--out", str(tmp_path / "docs")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "plan.json" in err and not (tmp_path / "docs").exists()


def test_the_committed_results_have_every_table_and_the_page_is_made_from_them(reproduce):
    results = json.loads((ROOT / "docs" / "results.json").read_text())
    assert results["size"] in ("quick", "full")
    _check_tables(results, reproduce, len(results["seeds"]))
    assert len(results["seeds"]) >= 3  # a headline is a mean over seeds
    assert (ROOT / "docs" / "results.md").read_text() == reproduce.render(results)
