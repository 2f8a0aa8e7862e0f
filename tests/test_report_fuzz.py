"""`staa report` on a results.json changed one field at a time, as a careless hand or a broken tool would: every
mutation either makes a report or is refused in one line (exit 2), never a traceback."""

import copy
import json
import random
import shutil

import pytest

from eval.config import EvalConfig
from eval.harness import run_grid
from staa.cli import main

ODD = [
    None,
    True,
    False,
    0,
    -1,
    2,
    1.5,
    -0.5,
    10**30,
    1e308,
    float("nan"),
    float("inf"),
    "",
    "x",
    "<b>bold</b>",
    "\x1b[31mred",
    "\udcff",
    [],
    {},
    [1, "a"],
    {"a": 1},
    [[[[[[[[[[[]]]]]]]]]]],
]


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*prefix, i))


def mutate(results: dict, rng: random.Random) -> dict:
    """One change: a field replaced by an odd value, deleted, or a list given an odd item."""
    out = copy.deepcopy(results)
    paths = [p for p in _paths(out) if p]
    path = rng.choice(paths)
    parent = out
    for key in path[:-1]:
        parent = parent[key]
    op = rng.random()
    if op < 0.15 and isinstance(parent, dict):
        del parent[path[-1]]
    elif op < 0.2 and isinstance(parent, list):
        parent.append(rng.choice(ODD))
    else:
        parent[path[-1]] = copy.deepcopy(rng.choice(ODD))
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from tests.test_evaluate import _tones

    root = tmp_path_factory.mktemp("fuzz")
    _tones(root)
    cfg = EvalConfig(
        data=str(root / "tones.csv"),
        victims={"tones": str(root / "tones.pt")},
        attacks={"fgsm": "fgsm", "bpda": "adaptive_pgd:steps=2"},
        defenses=["none", "quantize:8"],
        eps=[0.001, 0.002],
        clip_seconds=0.5,
        perceptual=False,
        workers=1,
    )
    run_grid(cfg, root / "run", progress=False)
    return root / "run"


def _fuzz(run, tmp_path, capsys, count: int, seed: int, *, render: bool, monkeypatch):
    if not render:  # the drawing calls all run; only the PNG encoding, the slow part, is skipped
        import matplotlib.pyplot as plt

        import eval.plots

        monkeypatch.setattr(eval.plots, "_png", lambda fig: (plt.close(fig), "")[1])
    results = json.loads((run / "results.json").read_text())
    rng = random.Random(seed)
    target = tmp_path / "run"
    shutil.copytree(run, target)
    outcomes = {0: 0, 2: 0}
    for i in range(count):
        mutated = mutate(results, rng)
        try:
            text = json.dumps(mutated)
        except (ValueError, UnicodeEncodeError):  # not writable as JSON: nothing a file could hold
            continue
        (target / "results.json").write_text(text, encoding="utf-8", errors="surrogateescape")
        code = main(["report", str(target), "--quiet"])
        err = capsys.readouterr().err
        assert code in outcomes, (i, code, err)
        assert "Traceback" not in err and len(err.strip().splitlines()) <= 1, (i, err)
        assert code == 0 or err.startswith("staa report: error: "), (i, err)
        outcomes[code] += 1
    assert outcomes[0] and outcomes[2]  # the mutations reach both outcomes: the test covers both paths
    return outcomes


def test_one_field_changes_make_a_report_or_one_line(run, tmp_path, capsys, monkeypatch):
    _fuzz(run, tmp_path, capsys, 150, seed=0, render=False, monkeypatch=monkeypatch)


@pytest.mark.slow
def test_six_hundred_one_field_changes_rendered(run, tmp_path, capsys, monkeypatch):
    _fuzz(run, tmp_path, capsys, 600, seed=1, render=True, monkeypatch=monkeypatch)
