"""Benchmark the evaluation harness: one grid of CLIPS clips x 10 defenses x 4 attacks in one process, and with
--nproc N the same grid under `torchrun --nproc_per_node=N` against one process.

    python scripts/bench_eval.py --data data/corpus/manifest.csv --victim runs/victims/mel_cnn/best.pt \
        --generator runs/attacks/mel_cnn/best.pt [--clips 1000] [--threads 2] [--nproc 2] [--out bench_eval.json]

Prints the wall time, clip-cells per second (one clip under one attack and one defense) and the share of
the time spent in attacks, defenses, the model, and PESQ/STOI. With --nproc, `staa evaluate` runs the grid twice as a
user would (start-up and model loading included): one process with --threads threads, then N processes with
threads / N each, so both use the same cores; it prints both times, the speed-up and the largest difference between
the two results.json (timings aside).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from eval.bench import DEFENSES, bench_eval, default_attacks
from staa.io.atomic import write_json


def _timed(cmd, threads: int) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd[:6])} ... failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - t0


def _largest_difference(a: list, b: list) -> float:
    worst = 0.0
    for x, y in zip(a, b, strict=True):
        for k, v in x.items():
            if isinstance(v, float) and k != "seconds_per_clip" and y[k] is not None:
                worst = max(worst, abs(v - y[k]))
    return worst


def bench_torchrun(a, attacks: dict, defenses: list) -> dict:
    args = ["evaluate", "--data", a.data, "--victim", f"victim={a.victim}", "--split", a.split]
    args += ["--max-clips", str(a.clips), "--eps", "0.03", "--quiet", "--no-report"]
    args += [x for name, spec in attacks.items() for x in ("--attack", f"{name}={spec}")]
    args += [x for d in defenses for x in ("--defense", d)]
    args += ["--perceptual-clips", str(a.perceptual_clips)] if a.perceptual_clips else []
    with tempfile.TemporaryDirectory(prefix="staa-bench-torchrun-") as tmp:
        one = _timed([sys.executable, "-m", "staa", *args, "--out", f"{tmp}/one"], a.threads)
        launcher = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={a.nproc}", "--master_port=29591"]
        many = _timed([*launcher, "-m", "staa", *args, "--out", f"{tmp}/many"], max(1, a.threads // a.nproc))
        cells = [json.loads((Path(tmp) / r / "results.json").read_text())["cells"] for r in ("one", "many")]
    return {
        "nproc": a.nproc,
        "cells": len(cells[0]),
        "one_process_s": one,
        "torchrun_s": many,
        "speedup": one / many,
        "largest_difference": _largest_difference(*cells),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="manifest CSV")
    p.add_argument("--victim", required=True)
    p.add_argument("--generator", required=True, help="STAA generator checkpoint")
    p.add_argument("--clips", type=int, default=1000)
    p.add_argument("--split", default="train", help="the split to draw the clips from (default train: the largest)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--attack",
        action="append",
        metavar="NAME=SPEC",
        help="replace the default four attacks (staa, fgsm, pgd10, sparse_pgd); repeat, as in `staa evaluate`",
    )
    p.add_argument("--defense", action="append", help="replace the default ten defenses; repeat")
    p.add_argument(
        "--perceptual-clips",
        type=int,
        default=None,
        metavar="N",
        help="PESQ/STOI on a seeded sample of N clips per attack",
    )
    p.add_argument("--nproc", type=int, default=0, help="also time the grid under torchrun with N processes")
    p.add_argument("--out", default=None, help="write the numbers as JSON here")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    attacks = dict(item.split("=", 1) for item in a.attack) if a.attack else default_attacks(a.generator)
    defenses = a.defense or DEFENSES
    r = bench_eval(
        a.data,
        a.victim,
        a.generator,
        clips=a.clips,
        split=a.split,
        threads=a.threads,
        attacks=attacks,
        defenses=defenses,
        perceptual_clips=a.perceptual_clips,
        progress=not a.quiet,
    )
    m = r["machine"]
    print(
        f"{r['clips']} clips x {len(r['defenses'])} defenses x {len(r['attacks'])} attacks on {m['processor']} "
        f"({m['cpu_count']} cores, {m['threads']} torch threads): {r['wall_seconds']:.0f} s, {r['clip_cells_per_second']:.1f} clip-cells/s"
    )
    print(
        f"  traced victim forwards {r['traced_over_eager_forward_speed']:.2f}x the eager model's speed; "
        "PESQ/STOI on "
        + (f"a sample of {a.perceptual_clips} clips" if a.perceptual_clips else "every clip")
        + " per attack"
    )
    for k, share in sorted(r["share_of_time"].items(), key=lambda kv: -kv[1]):
        print(f"  {k:<40}{share:>7.1%}")
    if a.nproc > 1:
        t = r["torchrun"] = bench_torchrun(a, attacks, defenses)
        print(
            f"staa evaluate, 1 process ({a.threads} threads): {t['one_process_s']:.1f} s; torchrun with {a.nproc} "
            f"processes: {t['torchrun_s']:.1f} s; speed-up {t['speedup']:.2f}x; {t['cells']} cells, largest "
            f"difference between the two results {t['largest_difference']:.2e}"
        )
    if a.out:
        write_json(a.out, r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
