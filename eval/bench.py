"""The evaluation benchmark: a whole grid in one process, its throughput, and where the time goes."""
from __future__ import annotations

import tempfile
import time

import torch

from eval.config import EvalConfig
from eval.harness import TIMES, run_grid

DEFENSES = ["none", "mp3:32", "resample:8000", "lowpass:4000", "median:3", "wiener:5", "quantize:8", "torch_gate:1", "noise:30", "shift:0.1"]


def bench_eval(data: str, victim: str, generator: str, *, clips: int = 1000, split: str = "train", threads: int = 2,
               attacks: dict | None = None, defenses: list | None = None, workers: int | None = None, progress: bool = True) -> dict:
    from staa.bench import machine

    torch.set_num_threads(threads)
    attacks = attacks or {"staa": f"staa:generator={generator}", "fgsm": "fgsm", "pgd10": "pgd:steps=10", "sparse_pgd": "sparse_pgd:steps=10"}
    cfg = EvalConfig(data=data, victims={"victim": victim}, attacks=attacks, defenses=defenses or DEFENSES, split=split,
                     max_clips=clips, workers=workers or threads, examples=0)
    TIMES.clear()
    with tempfile.TemporaryDirectory(prefix="staa-bench-eval-") as out:
        t0 = time.perf_counter()
        results = run_grid(cfg, out, progress=progress)
        wall = time.perf_counter() - t0
    n = results["cells"][0]["n"]
    cells = n * len(cfg.attacks) * len(cfg.defenses)
    shares = {k: v / wall for k, v in TIMES.items()}
    shares["other (loading audio, scores, files)"] = max(0.0, 1 - sum(shares.values()))
    return {"machine": machine(), "clips": n, "attacks": list(cfg.attacks), "defenses": cfg.defenses, "wall_seconds": wall,
            "clip_cells": cells, "clip_cells_per_second": cells / wall, "seconds": dict(TIMES), "share_of_time": shares}
