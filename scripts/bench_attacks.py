"""Benchmark every attack against STAA on the same clips and victim, in one process.

    python scripts/bench_attacks.py --data data/corpus/manifest.csv --victim runs/victims/mel_cnn/best.pt \
        --generator runs/attacks/mel_cnn/best.pt [--limit 32] [--threads 2] [--out bench.json]

Same as `staa bench attacks ...`. Prints ms per clip, the slowdown of each attack relative to STAA,
and each one's fooling rate, l0 ratio and distortion.
"""
import sys

from staa.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "attacks", *sys.argv[1:]]))
