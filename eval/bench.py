"""The evaluation benchmark: a whole grid in one process, its throughput, and where the time goes."""
from __future__ import annotations

import tempfile
import time

import torch

from eval.config import EvalConfig
from eval.harness import run_grid

DEFENSES = ["none", "mp3:32", "resample:8000", "lowpass:4000", "median:3", "wiener:5", "quantize:8", "torch_gate:1", "noise:30", "shift:0.1"]


def bench_eval(data: str, victim: str, generator: str, *, clips: int = 1000, split: str = "train", threads: int = 2,
               attacks: dict | None = None, defenses: list | None = None, workers: int | None = None,
               perceptual_clips: int | None = None, progress: bool = True) -> dict:
    from staa.provenance import machine

    torch.set_num_threads(threads)
    attacks = attacks or {"staa": f"staa:generator={generator}", "fgsm": "fgsm", "pgd10": "pgd:steps=10", "sparse_pgd": "sparse_pgd:steps=10"}
    cfg = EvalConfig(data=data, victims={"victim": victim}, attacks=attacks, defenses=defenses or DEFENSES, split=split,
                     max_clips=clips, workers=workers or threads, examples=0, perceptual_clips=perceptual_clips)
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
    return {"machine": machine(), "clips": n, "attacks": list(cfg.attacks), "defenses": cfg.defenses, "wall_seconds": wall,
            "clip_cells": cells, "clip_cells_per_second": cells / wall, "seconds": dict(times), "share_of_time": shares,
            "perceptual_clips": cfg.perceptual_clips, "traced_over_eager_forward_speed": speedup}


def _inference_speedup(victim_path: str, clip_seconds: float, batch: int = 16, repeats: int = 5) -> float:
    """How many times faster the grid's traced victim predicts than the eager model (same process, same batch)."""
    from staa.inference import InferenceModel
    from staa.victim import load_victim

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
