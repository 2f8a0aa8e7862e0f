"""Running an attack over a dataset split: adversarial WAVs, a per-clip CSV, a summary; and transfer matrices."""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from staa.attacks.base import Attack
from staa.datasets import AudioDataset, LengthBatchSampler
from staa.io.atomic import safe_name, write_csv, write_json
from staa.io.audio import save_audio
from staa.metrics.classification import fooled
from staa.metrics.intervals import wilson
from staa.metrics.perturbation import distortion_db, l0_count, l0_ratio, linf, near_silent, snr_db

CSV_FIELDS = [
    "path",
    "label",
    "clean_pred",
    "adv_pred",
    "success",
    "l0_count",
    "l0_ratio",
    "distortion_db",
    "snr_db",
    "linf",
    "seconds",
    "victim_passes",
]


def run_attack(
    attack: Attack,
    model,
    dataset: AudioDataset,
    out_dir=None,
    *,
    batch_size: int = 16,
    device="cpu",
    progress: bool = True,
) -> dict:
    """Attack every clip of `dataset` but the near-silent ones (left out and counted: `n_silent`); with `out_dir`,
    write `adv/*.wav` and `clips.csv` (inputs are only read)."""
    rows = {}  # by dataset index: the length batches may run in another order
    n_silent = 0
    model.eval()
    sampler = LengthBatchSampler(dataset.lengths(), batch_size)
    loader = DataLoader(dataset, batch_sampler=sampler)
    for idx, (x, y) in zip(sampler, tqdm(loader, desc=f"attack {attack.name}", leave=False, disable=not progress)):
        keep = ~near_silent(x)
        n_silent += int((~keep).sum())
        if not keep.any():
            continue
        idx, x = [k for k, kept in zip(idx, keep.tolist()) if kept], x[keep].to(device)
        with torch.no_grad():
            clean_pred = model(x).argmax(1)
        t0 = time.perf_counter()
        x_adv = attack(x)
        per_clip = (time.perf_counter() - t0) / len(x)
        with torch.no_grad():
            adv_pred = model(x_adv).argmax(1)
        success = fooled(clean_pred, adv_pred)
        metrics = {
            "l0_count": l0_count(x, x_adv),
            "l0_ratio": l0_ratio(x, x_adv),
            "distortion_db": distortion_db(x, x_adv),
            "snr_db": snr_db(x, x_adv),
            "linf": linf(x, x_adv),
        }
        for i, k in enumerate(idx):
            rec = dataset.records[k]
            rows[k] = {
                "path": rec.path,
                "label": rec.label,
                "clean_pred": dataset.classes[clean_pred[i]],
                "adv_pred": dataset.classes[adv_pred[i]],
                "success": bool(success[i]),
                "seconds": per_clip,
                "victim_passes": float(attack.passes),
                **{name: float(v[i]) for name, v in metrics.items()},
            }
            if out_dir is not None:
                save_audio(
                    Path(out_dir) / "adv" / f"{k:06d}_{safe_name(Path(rec.path).stem, 80)}.wav",
                    x_adv[i],
                    dataset.sample_rate,
                    subtype="FLOAT",
                )
    rows = [rows[k] for k in sorted(rows)]
    if not rows:
        raise ValueError(f"all {n_silent} clips are near-silent: there is nothing to attack")
    summary = {**summarise(rows), "n_silent": n_silent}
    if out_dir is not None:
        write_csv(Path(out_dir) / "clips.csv", CSV_FIELDS, rows)
        write_json(Path(out_dir) / "summary.json", {"attack": attack.name, **summary})
    return summary


def summarise(rows: list[dict]) -> dict:
    """Fooling rate over all clips; l0 and time over all clips; distortion over successful clips (as in the paper)."""
    n = len(rows)
    ok = [r for r in rows if r["success"]]
    finite = [r["distortion_db"] for r in ok if r["distortion_db"] != float("inf")]
    return {
        "n": n,
        "fooling_rate": len(ok) / n if n else 0.0,
        "l0_ratio": sum(r["l0_ratio"] for r in rows) / n if n else 0.0,
        "distortion_db": sum(finite) / len(finite) if finite else None,
        "snr_db": sum(r["snr_db"] for r in ok) / len(ok) if ok else None,
        "seconds_per_clip": sum(r["seconds"] for r in rows) / n if n else 0.0,
        "victim_passes_per_clip": sum(r["victim_passes"] for r in rows) / n if n else 0.0,
    }


def robust_correct(attack: Attack, model, dataset: AudioDataset, *, batch_size: int = 16, device="cpu") -> torch.Tensor:
    """Per clip of `dataset`: classified right, and still right after `attack` run against its true label (robust
    accuracy, RobustBench's definition; its mean never exceeds clean accuracy)."""
    out = {}
    sampler = LengthBatchSampler(dataset.lengths(), batch_size)
    for idx, (x, y) in zip(sampler, DataLoader(dataset, batch_sampler=sampler)):
        x, y = x.to(device), y.to(device)
        with torch.no_grad():
            right = model(x).argmax(1) == y
        x_adv = attack(x, y)
        with torch.no_grad():
            right &= model(x_adv).argmax(1) == y
        out.update(zip(idx, right.cpu()))
    return torch.stack([out[k] for k in sorted(out)])


@torch.no_grad()
def transfer_matrix(
    attacks: dict[str, Attack],
    victims: dict,
    dataset: AudioDataset,
    *,
    batch_size: int = 16,
    device="cpu",
    progress: bool = True,
) -> dict:
    """Fooling rate of the examples made by each attack (rows: its surrogate) on every victim (columns), with 95%
    Wilson intervals, and per attack its seconds per clip, the mean l0 ratio of its perturbations and their mean SNR
    over the clips it changed."""
    count = {a: {v: 0 for v in victims} for a in attacks}
    sums = {a: {"seconds": 0.0, "l0_ratio": 0.0, "snr_db": 0.0, "perturbed": 0} for a in attacks}
    n = 0
    loader = DataLoader(dataset, batch_sampler=LengthBatchSampler(dataset.lengths(), batch_size))
    for x, _ in tqdm(loader, desc="transfer", leave=False, disable=not progress):
        x = x.to(device)
        clean = {v: m(x).argmax(1) for v, m in victims.items()}
        for a, attack in attacks.items():
            t0 = time.perf_counter()
            with torch.enable_grad():
                x_adv = attack(x)
            sums[a]["seconds"] += time.perf_counter() - t0
            sums[a]["l0_ratio"] += float(l0_ratio(x, x_adv).sum())
            snr = snr_db(x, x_adv)
            sums[a]["snr_db"] += float(snr[snr.isfinite()].sum())  # over the clips it changed
            sums[a]["perturbed"] += int(snr.isfinite().sum())
            for v, m in victims.items():
                count[a][v] += int(fooled(clean[v], m(x_adv).argmax(1)).sum())
        n += len(x)
    return {
        "rows": list(attacks),
        "columns": list(victims),
        "fooling_rate": {a: {v: c / n for v, c in row.items()} for a, row in count.items()},
        "interval": {a: {v: list(wilson(c, n)) for v, c in row.items()} for a, row in count.items()},
        "seconds_per_clip": {a: row["seconds"] / n for a, row in sums.items()},
        "l0_ratio": {a: row["l0_ratio"] / n for a, row in sums.items()},
        "snr_db": {a: row["snr_db"] / row["perturbed"] if row["perturbed"] else None for a, row in sums.items()},
        "n": n,
    }
