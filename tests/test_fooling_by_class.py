"""scripts/fooling_by_class.py: the per-class count of fooled clips and where they went."""

import importlib.util
from pathlib import Path

import pytest
import torch

spec = importlib.util.spec_from_file_location(
    "fooling_by_class", Path(__file__).parents[1] / "scripts" / "fooling_by_class.py"
)
fbc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fbc)


def test_each_clean_class_counts_its_fooled_clips_and_their_new_classes():
    clean = torch.tensor([0, 0, 1, 1, 2, 2, 2])
    adv = torch.tensor([1, 0, 1, 0, 0, 3, 2])
    table = fbc.by_class(clean, adv, ["neutral", "angry", "happy", "sad"])
    assert table == {
        "neutral": {"clips": 2, "fooled": 1, "to": {"angry": 1}},
        "angry": {"clips": 2, "fooled": 1, "to": {"neutral": 1}},
        "happy": {"clips": 3, "fooled": 2, "to": {"neutral": 1, "sad": 1}},
    }  # no clip called sad: no row


def test_a_missing_victim_is_one_line_and_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        fbc.main(["--victim", str(tmp_path / "none.pt"), "--corpus", str(tmp_path / "m.csv"), "--attack", "a=fgsm"])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and "none.pt" in err and len(err.splitlines()) == 1
