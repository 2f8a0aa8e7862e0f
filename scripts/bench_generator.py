"""Benchmark the generator presets: milliseconds per clip of one forward pass (eval mode, the attack's hard
mask) for each preset on the same batch, in one process, eager and as the traced copy the STAA attack runs
(`staa.models.inference.InferenceModel`), as ratios to the first preset's eager pass. The variants are timed in turns,
round after round, and each one's median round is kept, so a slow spell of a shared machine falls on all of
them alike. Weights are freshly initialised (seeded).

    python scripts/bench_generator.py [--presets cpu,cpu-fold,cpu-fine,paper] [--batch-size 16] [--seconds 3]
"""

import argparse
import statistics
import sys
import time
from dataclasses import replace

import torch


def main(argv=None) -> int:
    from staa.generator.network import PRESETS, STAAGenerator
    from staa.io.atomic import write_json
    from staa.io.provenance import machine
    from staa.models.inference import InferenceModel

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", default="cpu,cpu-fold,cpu-fine", help="comma-separated; the first is the baseline")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seconds", type=float, default=3.0, help="clip length")
    p.add_argument("--sample-rate", type=int, default=16_000)
    p.add_argument(
        "--classes", type=int, default=4, help="class-conditional generators with this many classes (0: unconditional)"
    )
    p.add_argument("--rounds", type=int, default=20, help="timed rounds per preset (after one warm-up pass)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None, help="write the numbers as JSON here")
    a = p.parse_args(argv)
    names = a.presets.split(",")
    unknown = [n for n in names if n not in PRESETS]
    if unknown:
        p.error(f"unknown preset(s) {', '.join(unknown)}; choose from {', '.join(PRESETS)}")
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    x = 0.1 * torch.randn(a.batch_size, int(a.seconds * a.sample_rate))
    inputs = (x, torch.randint(0, a.classes, (a.batch_size,))) if a.classes else (x,)
    gens = {n: STAAGenerator(replace(PRESETS[n], num_classes=a.classes)).eval() for n in names}
    variants = {}
    for n, gen in gens.items():
        variants[f"{n} eager"] = gen
        variants[f"{n} traced"] = InferenceModel(gen)
    rounds = {v: [] for v in variants}
    with torch.inference_mode():
        for f in variants.values():
            f(*inputs)  # warm-up: allocator, oneDNN kernel selection, tracing
        for _ in range(a.rounds):
            for v, f in variants.items():
                t0 = time.perf_counter()
                f(*inputs)
                rounds[v].append((time.perf_counter() - t0) / a.batch_size)
    ms = {v: 1000 * statistics.median(r) for v, r in rounds.items()}
    base = ms[f"{names[0]} eager"]
    info = machine()
    print(
        f"batch {a.batch_size} x {a.seconds:g} s at {a.sample_rate} Hz, {a.rounds} rounds, {info['threads']} threads on "
        f"{info['processor']} ({info['cpu_count']} cores)"
    )
    print(f"{'generator':<18}{'params':>9}{'ms/clip':>9}{'x ' + names[0]:>10}")
    for v in variants:
        params = sum(t.numel() for t in gens[v.split()[0]].parameters())
        print(f"{v:<18}{params:>9,}{ms[v]:>9.2f}{ms[v] / base:>10.2f}")
    if a.out:
        write_json(
            a.out,
            {
                "machine": info,
                "batch_size": a.batch_size,
                "seconds": a.seconds,
                "ms_per_clip": ms,
                "ratio": {v: ms[v] / base for v in variants},
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
