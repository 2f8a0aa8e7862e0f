"""Benchmark every attack against STAA on the same clips and victim, in one process.

    python scripts/bench_attacks.py --data data/corpus/manifest.csv --victim runs/victims/mel_cnn/best.pt \
        --generator runs/attacks/mel_cnn/best.pt [--limit 32] [--threads 2] [--eps 0.002] [--attack apgd=apgd] [--out bench.json]

Prints ms per clip, the slowdown of each attack relative to STAA, its forward passes of the victim per clip, and
each one's fooling rate, l0 ratio and distortion (the same as `staa bench`). STAA keeps its generator's budget.
"""

import argparse

from eval.bench import bench_attacks
from staa import specs
from staa.datasets import AudioDataset, load_records


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="dataset root, or a manifest CSV")
    p.add_argument("--dataset", default="manifest", help="dataset layout (default: manifest)")
    p.add_argument("--victim", required=True, help="victim checkpoint")
    p.add_argument("--generator", required=True, help="STAA generator checkpoint")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--limit", type=int, default=32, help="clips to attack (default: 32)")
    p.add_argument("--clip-seconds", type=float, default=3.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default="cpu")
    p.add_argument("--eps", type=float, default=None, help="l-inf budget of every attack but STAA (default: 0.03)")
    p.add_argument("--attack", action="append", help="NAME=SPEC to bench instead of the default list; repeat")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args()
    records = load_records(a.dataset, a.data)

    def dataset(classes, rate):
        chosen = [r for r in records if r.split == a.split and r.label in classes][: a.limit]
        return AudioDataset(chosen, classes, sample_rate=rate, clip_seconds=a.clip_seconds)

    bench_attacks(
        a.victim,
        a.generator,
        dataset,
        threads=a.threads,
        batch_size=a.batch_size,
        device=a.device,
        eps=a.eps,
        attacks=specs.pairs(a.attack, "--attack") if a.attack else None,
        out=a.out,
        progress=not a.quiet,
    )


if __name__ == "__main__":
    main()
