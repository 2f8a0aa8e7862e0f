"""Detection by transform consistency: the metrics, a detector that tells attacked tones from clean ones, and the
adaptive attacker that it must face."""

import math

import pytest
import torch

from defenses.detection import ConsistencyDetector, js_divergence, parse_detector
from eval.detection import evaluate_detection, roc_auc, threshold_at
from staa.attacks import PGD
from tests.conftest import TONE_FREQS, fit_tone_model, tone


def test_roc_auc_and_the_calibrated_threshold():
    clean = torch.arange(100.0)
    assert roc_auc(clean, clean + 1000) == 1.0 and roc_auc(clean, clean - 1000) == 0.0
    assert roc_auc(clean, clean) == pytest.approx(0.5)  # ties count a half
    assert roc_auc(torch.tensor([0.0, 2.0]), torch.tensor([1.0])) == 0.5
    t = threshold_at(clean, 0.05)
    assert (clean > t).float().mean() <= 0.05 < (clean >= t - 1).float().mean()


def test_js_divergence_is_zero_for_one_answer_and_at_most_ln2():
    a = torch.tensor([[5.0, 0.0], [0.0, 1.0]])
    assert torch.allclose(js_divergence(a, a), torch.zeros(2), atol=1e-7)
    far = js_divergence(torch.tensor([[50.0, -50.0]]), torch.tensor([[-50.0, 50.0]]))
    assert float(far) == pytest.approx(math.log(2), rel=1e-4)


def test_a_consistency_detector_flags_attacks_and_the_adaptive_attacker_evades_it_more():
    model, test = fit_tone_model()
    labels = torch.arange(4).repeat(4)
    calibration = torch.stack([torch.from_numpy(tone(0.5, freq=f, seed=700 + j)) for j in range(8) for f in TONE_FREQS])
    detector = parse_detector("quantize:4")  # coarse steps: the clean tones keep their class, the attacks lose it
    assert isinstance(detector, ConsistencyDetector) and detector.spec == "quantize:4"
    attacks = {"pgd": PGD(model, eps=0.01, steps=20)}
    result = evaluate_detection(
        model,
        16_000,
        attacks,
        {"quantize": detector},
        list(zip(test, labels)),
        list(zip(calibration, torch.arange(4).repeat(8))),
        fpr=0.05,
        eps=0.01,
        steps=15,
        progress=False,
    )
    row = result["detectors"]["quantize"]
    assert 0 <= row["test_fpr"] <= 1 and row["threshold"] > 0
    got = row["attacks"]["pgd"]
    assert got["fooled"] >= 4 and got["roc_auc"] >= 0.8 and got["detected"] >= 0.5
    assert row["adaptive_evades"] > row["pgd_evades"]  # knowing the detector buys the attacker clips
