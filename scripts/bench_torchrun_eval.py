"""Time `staa evaluate` in one process against `torchrun --nproc_per_node=N`, the same grid, and check the results.

    python scripts/bench_torchrun_eval.py --nproc 2 --threads 2 -- --data data/corpus/manifest.csv \
        --victim a=runs/victims/mel_cnn/best.pt --victim b=runs/victims/wav2vec2/best.pt --attack pgd10=pgd10 \
        --attack fgsm=fgsm --defense none --defense mp3:32 --max-clips 40 --no-perceptual

Everything after `--` goes to `staa evaluate`. The single process gets `--threads` threads; each of the N processes
gets threads / N, so both use the same cores. The times are what a user waits for (start-up and model loading
included). Prints both, the speed-up, and the largest difference between the two results.json (timings aside).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from staa.io.atomic import write_json
from staa.io.provenance import machine


def _run(cmd, threads: int) -> float:
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None, help="write the numbers as JSON here")
    p.add_argument("evaluate", nargs=argparse.REMAINDER, help="-- then the arguments of staa evaluate")
    a = p.parse_args()
    args = [x for x in a.evaluate if x != "--"] + ["--quiet", "--no-report"]
    with tempfile.TemporaryDirectory(prefix="staa-bench-torchrun-") as tmp:
        one = _run([sys.executable, "-m", "staa", "evaluate", *args, "--out", f"{tmp}/one"], a.threads)
        launcher = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={a.nproc}", "--master_port=29591"]
        many = _run([*launcher, "-m", "staa", "evaluate", *args, "--out", f"{tmp}/many"], max(1, a.threads // a.nproc))
        cells = [json.loads((Path(tmp) / r / "results.json").read_text())["cells"] for r in ("one", "many")]
    diff = _largest_difference(*cells)
    print(
        f"1 process ({a.threads} threads): {one:.1f} s; {a.nproc} processes: {many:.1f} s; speed-up {one / many:.2f}x"
    )
    print(f"{len(cells[0])} cells; largest difference between the two results: {diff:.2e}")
    if a.out:
        write_json(
            a.out,
            {
                "machine": machine(),
                "args": args,
                "nproc": a.nproc,
                "threads": a.threads,
                "one_process_s": one,
                "torchrun_s": many,
                "speedup": one / many,
                "largest_difference": diff,
            },
        )


if __name__ == "__main__":
    main()
