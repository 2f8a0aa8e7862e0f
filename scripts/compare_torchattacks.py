"""Compare staa-ser's APGD-CE, APGD-T and Square with torchattacks' on the same clips and victim, in one process.

    pip install torchattacks   # not a dependency of staa-ser
    python scripts/compare_torchattacks.py --data data/corpus/manifest.csv --victim runs/victims/mel_cnn/best.pt \
        [--limit 16] [--eps 0.0005] [--steps 50] [--queries 1000] [--threads 1] [--out compare.json]

torchattacks works on inputs in [0, 1]; the victim is wrapped as u -> victim(2u - 1) with eps / 2, so both search the
same l-inf ball around each waveform; it gets each clip as a 1 x T image (its Square is written for images). Prints,
per attack and implementation: fooling rate, forward passes of the victim per clip and ms per clip.
"""

import argparse
import time

import torch
from torch import nn

from staa.attacks import APGD, APGDT, Square
from staa.datasets import AudioDataset, load_records
from staa.io.atomic import write_json
from staa.io.provenance import machine
from staa.models.victim import load_victim


class FromUnit(nn.Module):
    """The victim on [0, 1] inputs of any shape ending in samples, as torchattacks expects."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, u):
        return self.model(2 * u.reshape(len(u), -1) - 1)


def _count(model) -> list:
    seen = []
    model.register_forward_pre_hook(lambda _, args: seen.append(len(args[0])))
    return seen


def main() -> None:
    import torchattacks

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--victim", required=True)
    p.add_argument("--limit", type=int, default=16)
    p.add_argument("--eps", type=float, default=0.0005)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    victim = load_victim(a.victim)
    model = victim.model.eval()
    records = [r for r in load_records("manifest", a.data) if r.split == "test" and r.label in victim.classes]
    data = AudioDataset(records[: a.limit], victim.classes, sample_rate=victim.sample_rate)
    x = torch.stack([data[i][0] for i in range(len(data))])
    with torch.no_grad():
        y = model(x).argmax(1)
    unit = FromUnit(model).eval()
    n_classes = len(victim.classes)
    ours = {
        "apgd_ce": lambda: APGD(model, eps=a.eps, steps=a.steps)(x, y),
        "apgd_t": lambda: APGDT(model, eps=a.eps, steps=a.steps)(x, y),
        "square": lambda: Square(model, eps=a.eps, queries=a.queries)(x, y),
    }
    u = ((x + 1) / 2).reshape(len(x), 1, 1, -1)  # as a batch of 1 x T images
    theirs = {
        "apgd_ce": lambda: torchattacks.APGD(unit, eps=a.eps / 2, steps=a.steps, loss="ce")(u, y),
        "apgd_t": lambda: torchattacks.APGDT(unit, eps=a.eps / 2, steps=a.steps, n_classes=n_classes)(u, y),
        "square": lambda: torchattacks.Square(unit, eps=a.eps / 2, n_queries=a.queries)(u, y),
    }
    seen = _count(model)
    rows = []
    for name in ours:
        for impl, run in (("staa-ser", ours[name]), ("torchattacks", theirs[name])):
            seen.clear()
            t0 = time.perf_counter()
            adv = run()
            seconds = (time.perf_counter() - t0) / len(x)
            adv = (adv if impl == "staa-ser" else 2 * adv.reshape(len(x), -1) - 1).detach()
            passes = sum(seen) / len(x)
            with torch.no_grad():
                rate = float((model(adv).argmax(1) != y).float().mean())
            linf = float((adv - x).abs().max())
            rows.append(
                {
                    "attack": name,
                    "implementation": impl,
                    "fooling_rate": rate,
                    "victim_passes": passes,
                    "ms_per_clip": 1000 * seconds,
                    "linf": linf,
                }
            )
            print(
                f"{name:<9}{impl:<14}fooling {rate:.3f}  passes {passes:7.1f}  {1000 * seconds:8.1f} ms/clip  linf {linf:.5f}"
            )
    if a.out:
        write_json(a.out, {"machine": machine(), "victim": victim.arch, "n": len(x), "eps": a.eps, "rows": rows})


if __name__ == "__main__":
    main()
