"""Benchmark adversarial training: time per training step of each method (every one by default, variants as
METHOD:key=value) on the same model, data and batches, in one process, one step of each in turn, as ratios to clean
training (an epoch is a fixed number of steps, so the per-step ratio is the per-epoch ratio).

    python scripts/bench_adv_training.py --data data/corpus/manifest.csv --arch mel_cnn [--steps 10] [--batch-size 16]
"""

import argparse
import sys
import time

import torch


def main(argv=None) -> int:
    from staa.datasets import AudioDataset, load_records
    from staa.datasets.synthetic.corpus import EMOTIONS
    from staa.io.atomic import write_json
    from staa.io.provenance import machine
    from staa.models.victim import load_victim
    from staa.training.adversarial import METHODS, AdvTrainConfig, Step, _build, method_variant

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="manifest CSV")
    p.add_argument("--arch", default="mel_cnn")
    p.add_argument("--init-victim", default=None, help="a trained victim (the timing barely depends on it)")
    p.add_argument("--steps", type=int, default=10, help="timed steps per method (after one warm-up step)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--clip-seconds", type=float, default=3.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--methods",
        default=",".join(METHODS),
        help="comma-separated; a variant is METHOD:key=value... (AdvTrainConfig fields, e.g. generator:gen_noise=1)",
    )
    p.add_argument(
        "--gen-crop-seconds", type=float, default=None, help="the generator's training crops (0: whole clips)"
    )
    p.add_argument("--out", default=None, help="write the numbers as JSON here")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    records = [r for r in load_records("manifest", a.data) if r.split == "train"]
    # a victim to fine-tune keeps its own class order
    classes = load_victim(a.init_victim).classes if a.init_victim else list(EMOTIONS)
    data = AudioDataset(records[: a.batch_size * (a.steps + 1)], classes, clip_seconds=a.clip_seconds)
    batches = [
        (
            torch.stack([data[i][0] for i in range(s * a.batch_size, (s + 1) * a.batch_size)]),
            torch.tensor([data[i][1] for i in range(s * a.batch_size, (s + 1) * a.batch_size)]),
        )
        for s in range(a.steps + 1)
    ]
    crop = {} if a.gen_crop_seconds is None else {"gen_crop_seconds": a.gen_crop_seconds}
    steps = {}
    for method in a.methods.split(","):
        name, over = method_variant(method)
        cfg = AdvTrainConfig(
            arch=a.arch,
            classes=classes,
            method=name,
            batch_size=a.batch_size,
            clip_seconds=a.clip_seconds,
            init_victim=a.init_victim,
            **crop,
            **over,
        )
        model, opt, gen, gen_opt = _build(cfg, "cpu")
        steps[method] = Step(cfg, model, model, opt, gen, gen_opt)
        steps[method](*batches[0], 0, 0)  # warm-up: allocator and kernel selection
    # round robin, one step of each method per batch: a load that drifts during the run weighs on every method alike
    seconds = dict.fromkeys(steps, 0.0)
    for s, (x, y) in enumerate(batches[1:], start=1):
        for method, step in steps.items():
            t0 = time.perf_counter()
            step(x, y, 0, s)
            seconds[method] += (time.perf_counter() - t0) / a.steps
    info = machine()
    print(
        f"{a.arch}, batch {a.batch_size} x {a.clip_seconds:g} s, {a.steps} steps per method, {info['threads']} threads on "
        f"{info['processor']} ({info['cpu_count']} cores)"
    )
    print(f"{'method':<36}{'s/step':>9}{'x clean':>9}")
    for method, s in seconds.items():
        print(f"{method:<36}{s:>9.3f}{s / seconds['clean']:>9.2f}" if "clean" in seconds else f"{method:<36}{s:>9.3f}")
    if a.out:
        write_json(
            a.out,
            {
                "machine": info,
                "arch": a.arch,
                "batch_size": a.batch_size,
                "steps": a.steps,
                "seconds_per_step": seconds,
                "ratio_to_clean": {m: s / seconds["clean"] for m, s in seconds.items()},
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
