"""Benchmark the evaluation harness: one grid of CLIPS clips x 10 defenses x 4 attacks in one process.

    python scripts/bench_eval.py --data data/corpus/manifest.csv --victim runs/victims/mel_cnn/best.pt \
        --generator runs/attacks/mel_cnn/best.pt [--clips 1000] [--threads 2] [--out bench_eval.json]

Prints the wall time, clip-cells per second (one clip under one attack and one defense) and the share of
the time spent in attacks, defenses, the model, and PESQ/STOI.
"""

import argparse
import sys

from eval.bench import bench_eval
from staa.io.atomic import write_json


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="manifest CSV (or a dataset folder with --dataset)")
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
    p.add_argument(
        "--perceptual-clips",
        type=int,
        default=None,
        metavar="N",
        help="PESQ/STOI on a seeded sample of N clips per attack",
    )
    p.add_argument("--out", default=None, help="write the numbers as JSON here")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    attacks = dict(item.split("=", 1) for item in a.attack) if a.attack else None
    r = bench_eval(
        a.data,
        a.victim,
        a.generator,
        clips=a.clips,
        split=a.split,
        threads=a.threads,
        attacks=attacks,
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
    if a.out:
        write_json(a.out, r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
