"""Detectors judged as Tramer et al. (2020) ask: ROC-AUC and the detection rate at a fixed false-positive rate, per
attack, then again under an attacker who knows the detector. Thresholds are calibrated on clean clips of their own."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from torch.utils.data import DataLoader


def roc_auc(clean: torch.Tensor, adversarial: torch.Tensor) -> float | None:
    """P(score of an adversarial clip > score of a clean one), ties counting a half (the Mann-Whitney statistic)."""
    if not len(clean) or not len(adversarial):
        return None
    greater = (adversarial[:, None] > clean[None, :]).float().mean()
    ties = (adversarial[:, None] == clean[None, :]).float().mean()
    return float(greater + ties / 2)


def threshold_at(clean: torch.Tensor, fpr: float) -> float:
    """The score above which at most `fpr` of the clean calibration clips lie."""
    return float(torch.quantile(clean.double(), 1 - fpr))


@torch.no_grad()
def _scores(detector, model, batches, sample_rate) -> torch.Tensor:
    return torch.cat([detector.score(model, x, sample_rate) for x in batches]) if batches else torch.zeros(0)


def _batches(dataset, batch_size=16):
    return [(x, y) for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=False)]


def evaluate_detection(
    model,
    sample_rate,
    attacks: dict,
    detectors: dict,
    test,
    calibration,
    *,
    fpr=0.05,
    eps=0.002,
    steps=50,
    progress=True,
) -> dict:
    """Per detector: its threshold at `fpr` on the `calibration` clips, its false-positive rate on the clean `test`
    clips, and per attack (on the test clips it fooled) ROC-AUC and the detection rate, then the detector-aware PGD
    (`staa.attacks.detector_aware`): its success (fooled and not flagged) next to plain PGD's at the same budget."""
    from tqdm import tqdm

    from staa.attacks import PGD
    from staa.attacks.detector_aware import DetectorAwarePGD

    model.eval()
    test_batches, cal = _batches(test), [x for x, _ in _batches(calibration)]
    with torch.no_grad():
        preds = [model(x).argmax(1) for x, _ in test_batches]
    clean_pred, right = torch.cat(preds), [p == y for p, (_, y) in zip(preds, test_batches)]
    adversarial = {}
    for name, attack in tqdm(attacks.items(), desc="attacks", disable=not progress):
        adversarial[name] = [attack(x, y) for x, y in test_batches]
    # plain PGD knows no detector: one run serves every detector
    plain = [PGD(model, eps=eps, steps=steps)(x, y) for x, y in test_batches]

    @torch.no_grad()
    def evades(x_advs, det, threshold) -> float:
        """The share of test clips right before, wrong after and not flagged."""
        hits = 0
        for (_, y), ok, x_adv in zip(test_batches, right, x_advs):
            flipped = ok & (model(x_adv).argmax(1) != y)
            hits += int((flipped & (det.score(model, x_adv, sample_rate) <= threshold)).sum())
        return hits / len(test)

    out = {"fpr": fpr, "n_test": len(test), "n_calibration": len(calibration), "detectors": {}}
    for dname, det in tqdm(detectors.items(), desc="detectors", disable=not progress):
        threshold = threshold_at(_scores(det, model, cal, sample_rate), fpr)
        clean = _scores(det, model, [x for x, _ in test_batches], sample_rate)
        row = {"threshold": threshold, "test_fpr": float((clean > threshold).float().mean()), "attacks": {}}
        for name, xs in adversarial.items():
            x_adv = torch.cat(xs)
            with torch.no_grad():
                fooled = model(x_adv).argmax(1) != clean_pred
            scores = _scores(det, model, [x_adv], sample_rate)[fooled]
            row["attacks"][name] = {
                "fooled": int(fooled.sum()),
                "roc_auc": roc_auc(clean, scores),
                "detected": float((scores > threshold).float().mean()) if len(scores) else None,
            }
        aware = DetectorAwarePGD(model, det, threshold, sample_rate, eps=eps, steps=steps)
        row["pgd_evades"] = evades(plain, det, threshold)
        row["adaptive_evades"] = evades([aware(x, y) for x, y in test_batches], det, threshold)
        out["detectors"][dname] = row
    return out


def run_grid_detection(cfg, out_dir, *, records=None, device="cpu", progress: bool = True) -> dict:
    """The grid's detectors (`cfg.detectors`) against each of its victims and attacks on the grid's clips, thresholds
    calibrated on clean clips of `cfg.detector_split`: `evaluate_detection` per victim, into `OUT/detection.json`,
    rewritten after each victim so that a rerun continues with the next one."""
    from defenses.detection import parse_detector
    from eval.harness import build_grid_attack, held_per_victim, load_grid_records, select_clips
    from staa.io.atomic import write_json
    from staa.models.victim import load_victim

    path = Path(out_dir) / "detection.json"
    records = records if records is not None else load_grid_records(cfg)
    settings = {
        k: getattr(cfg, k) for k in ("detectors", "detector_fpr", "detector_split", "detector_steps", "attacks")
    } | {"eps": cfg.budgets[0]}
    result = held_per_victim(path, settings)
    detectors = {spec: parse_detector(spec) for spec in cfg.detectors}
    calibration_cfg = replace(cfg, split=cfg.detector_split, detectors=[])
    for name, victim_path in cfg.victims.items():
        if name in result["victims"]:
            continue
        victim = load_victim(victim_path, device=device)
        attacks = {
            attack: build_grid_attack(spec, victim, cfg, device=device, victim_name=name)
            for attack, spec in cfg.attack_specs.items()
        }
        result["victims"][name] = evaluate_detection(
            victim.model,
            victim.sample_rate,
            attacks,
            detectors,
            select_clips(records, victim, cfg),
            select_clips(records, victim, calibration_cfg),
            fpr=cfg.detector_fpr,
            eps=cfg.budgets[0],
            steps=cfg.detector_steps,
            progress=progress,
        )
        write_json(path, result)
    return result
