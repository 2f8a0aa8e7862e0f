"""Benchmarks run by `scripts/` and `staa bench`: every attack side by side on the same clips (`bench_attacks`), and a
whole evaluation grid in one process, its throughput and where the time goes (`bench_eval`)."""

from __future__ import annotations

import tempfile
import time

import torch

from eval.config import EvalConfig
from eval.harness import run_grid
from staa.io.provenance import machine

DEFENSES = [
    "none",
    "mp3:32",
    "resample:8000",
    "lowpass:4000",
    "median:3",
    "wiener:5",
    "quantize:8",
    "torch_gate:1",
    "noise:30",
    "shift:0.1",
]


def default_attacks(generator: str) -> dict:
    return {
        "staa": f"staa:generator={generator}",
        "fgsm": "fgsm",
        "pgd10": "pgd:steps=10",
        "sparse_pgd": "sparse_pgd:steps=10",
    }


def bench_eval(
    data: str,
    victim: str,
    generator: str,
    *,
    clips: int = 1000,
    split: str = "train",
    threads: int = 2,
    attacks: dict | None = None,
    defenses: list | None = None,
    workers: int | None = None,
    perceptual_clips: int | None = None,
    eps: float = 0.03,
    progress: bool = True,
) -> dict:
    torch.set_num_threads(threads)
    attacks = attacks or default_attacks(generator)
    cfg = EvalConfig(
        data=data,
        victims={"victim": victim},
        attacks=attacks,
        defenses=defenses or DEFENSES,
        split=split,
        max_clips=clips,
        workers=workers or threads,
        eps=eps,
        examples=0,
        perceptual_clips=perceptual_clips,
    )
    times: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="staa-bench-eval-") as out:
        t0 = time.perf_counter()
        results = run_grid(cfg, out, progress=progress, times=times)
        wall = time.perf_counter() - t0
    n = results["cells"][0]["n"]
    speedup = _inference_speedup(victim, results["config"]["clip_seconds"])
    cells = n * len(cfg.attacks) * len(cfg.defenses)
    shares = {k: v / wall for k, v in times.items()}
    shares["other (loading audio, scores, files)"] = max(0.0, 1 - sum(shares.values()))
    return {
        "machine": machine(),
        "clips": n,
        "attacks": list(cfg.attacks),
        "defenses": cfg.defenses,
        "wall_seconds": wall,
        "clip_cells": cells,
        "clip_cells_per_second": cells / wall,
        "seconds": dict(times),
        "share_of_time": shares,
        "perceptual_clips": cfg.perceptual_clips,
        "traced_over_eager_forward_speed": speedup,
    }


def _inference_speedup(victim_path: str, clip_seconds: float, batch: int = 16, repeats: int = 5) -> float:
    """How many times faster the grid's traced victim predicts than the eager model (same process, same batch)."""
    from staa.models.inference import InferenceModel
    from staa.models.victim import load_victim

    victim = load_victim(victim_path)
    model = victim.model
    x = 0.1 * torch.randn(batch, int(clip_seconds * victim.sample_rate), generator=torch.Generator().manual_seed(0))
    seconds = {}
    for name, f in (("eager", model), ("traced", InferenceModel(model))):
        with torch.inference_mode():
            f(x)
            t0 = time.perf_counter()
            for _ in range(repeats):
                f(x)
        seconds[name] = time.perf_counter() - t0
    return seconds["eager"] / seconds["traced"]


BENCH_ATTACKS = {
    **{n: n for n in ("fgsm", "pgd10", "pgd100", "cw", "sparse_pgd")},
    "apgd_ce": "apgd:steps=50",
    "apgd_t": "apgd_t:steps=50",
    "square": "square:queries=1000",
}


def bench_attacks(
    victim_path,
    generator,
    make_dataset,
    *,
    threads: int = 2,
    batch_size: int = 16,
    device: str = "cpu",
    eps: float | None = None,
    attacks: dict | None = None,
    out=None,
    progress: bool = True,
) -> dict:
    """`make_dataset(classes, sample_rate)` gives the clips to attack, once the victim says what it needs. `eps`: the
    l-inf budget of every attack (default: each one's own, 0.03); `attacks`: names to specs (default: BENCH_ATTACKS)."""
    from staa.attacks.registry import build_attack
    from staa.attacks.runner import run_attack
    from staa.io.atomic import write_json
    from staa.models.victim import load_victim

    torch.set_num_threads(threads)
    victim = load_victim(victim_path, device=device)
    dataset = make_dataset(victim.classes, victim.sample_rate)
    attacks = {"staa": {"type": "staa", "generator": str(generator)}, **(attacks or BENCH_ATTACKS)}
    results = {}
    # one untimed batch per attack: the first call at a batch shape pays for allocator and oneDNN kernel set-up
    # (and STAA's traced copies), once per run, not per clip
    warm_up = torch.stack([dataset[i][0] for i in range(min(batch_size, len(dataset)))]).to(device)
    for name, spec in attacks.items():
        attack = build_attack(spec, victim.model, device=device, sample_rate=victim.sample_rate, eps=eps)
        attack(warm_up)
        results[name] = run_attack(
            attack, victim.model, dataset, batch_size=batch_size, device=device, progress=progress
        )
    base = results["staa"]["seconds_per_clip"]
    info = machine()
    seconds = f"{dataset.length / dataset.sample_rate:.1f} s" if dataset.length else "their own lengths"
    print(
        f"{len(dataset)} clips of {seconds}, victim {victim.arch}, batch {batch_size}, eps {eps or 'per attack'}, "
        f"{info['threads']} threads on {info['processor']} ({info['cpu_count']} cores), device {info['device']}"
    )
    print(f"{'attack':<14}{'ms/clip':>10}{'x STAA':>9}{'passes':>8}{'fooling':>9}{'l0 ratio':>10}{'dist dB':>9}")
    for name, r in results.items():
        dist = f"{r['distortion_db']:.1f}" if r["distortion_db"] is not None else "n/a"
        print(
            f"{name:<14}{r['seconds_per_clip'] * 1000:>10.1f}{r['seconds_per_clip'] / base:>9.1f}"
            f"{r['victim_passes_per_clip']:>8.1f}{r['fooling_rate']:>9.3f}{r['l0_ratio']:>10.3f}{dist:>9}"
        )
    report = {
        "machine": info,
        "eps": eps,
        "victim": victim.arch,
        "n": len(dataset),
        "results": results,
        "slowdown_vs_staa": {n: r["seconds_per_clip"] / base for n, r in results.items()},
    }
    if out:
        write_json(out, report)
    return report
