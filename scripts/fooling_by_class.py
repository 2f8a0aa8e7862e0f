"""Which clips an attack fools, by the victim's clean prediction, and which class it moves them to: where a fooling
rate falls short, this says whether it falls short on every class or on one.

    python scripts/fooling_by_class.py --victim runs/reproduce/full/seed0/victims/mel_cnn/best.pt \
        --corpus runs/reproduce/full/corpus/manifest.csv --eps 0.002 --test-clips 100 \
        --generator long30=runs/transfer/mel_cnn_s0/GEN/best.pt --attack sparse=sparse_pgd:l0_ratio=0.25 \
        --out docs/whitebox/by_class_s0.json

The first `--test-clips` test clips of the manifest, centre-cropped to 3 s, as `scripts/transfer_families.py` takes
them; each attack runs once on them (seeded by `--seed`).
"""

from __future__ import annotations

import argparse
import sys


def _named(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def by_class(clean, adv, classes: list[str]) -> dict:
    """Per clean class: clips, clips fooled, and the classes the fooled ones went to."""
    out = {}
    for k, name in enumerate(classes):
        mine = clean == k
        if not mine.any():
            continue
        moved = adv[mine & (adv != clean)]
        out[name] = {
            "clips": int(mine.sum()),
            "fooled": int(moved.numel()),
            "to": {classes[j]: int((moved == j).sum()) for j in moved.unique().tolist()},
        }
    return out


def run(a) -> dict:
    import torch

    from staa.attacks import STAA, parse_attack
    from staa.datasets import AudioDataset, load_records
    from staa.io.provenance import machine
    from staa.models.victim import load_victim

    torch.set_num_threads(a.threads)
    victim = load_victim(a.victim)
    model = victim.model.eval()
    test = [r for r in load_records("manifest", a.corpus) if r.split == "test"][: a.test_clips]
    data = AudioDataset(test, victim.classes, sample_rate=victim.sample_rate, clip_seconds=3.0, crop="center")
    x = torch.stack([data[i][0] for i in range(len(data))])
    attacks = {name: STAA.from_checkpoint(path, model=model, eps=a.eps) for name, path in a.generator or []}
    attacks |= {name: parse_attack(spec).build(model, eps=a.eps, seed=a.seed) for name, spec in a.attack or []}
    if not attacks:
        raise SystemExit("name at least one --generator or --attack")
    with torch.no_grad():
        clean = torch.cat([model(b).argmax(1) for b in x.split(a.batch_size)])
    rows = {}
    for name, attack in attacks.items():
        torch.manual_seed(a.seed)
        adv = torch.cat([attack(b) for b in x.split(a.batch_size)])
        with torch.no_grad():
            pred = torch.cat([model(b).argmax(1) for b in adv.split(a.batch_size)])
        rows[name] = {
            "fooling_rate": float((pred != clean).float().mean()),
            "by_class": by_class(clean, pred, victim.classes),
        }
        cells = ", ".join(f"{c} {r['fooled']}/{r['clips']}" for c, r in rows[name]["by_class"].items())
        print(f"{name:<24} {rows[name]['fooling_rate']:.2f}  {cells}", flush=True)
    return {"machine": machine(), "settings": vars(a), "n": len(x), "attacks": rows}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--victim", required=True, help="the victim checkpoint (white-box: the generators' surrogate)")
    p.add_argument("--corpus", required=True, help="a manifest CSV; its first test clips are attacked")
    p.add_argument("--generator", type=_named, action="append", metavar="NAME=PATH", help="a STAA generator")
    p.add_argument("--attack", type=_named, action="append", metavar="NAME=SPEC", help="an attack spec, e.g. pgd10")
    p.add_argument("--eps", type=float, default=0.002, help="the l-inf budget (default: %(default)s)")
    p.add_argument("--test-clips", type=int, default=100, help="how many test clips (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=16, help="clips per batch (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seeds the attacks' random starts (default: %(default)s)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default: %(default)s)")
    p.add_argument("--out", help="write the table as JSON here")
    a = p.parse_args(argv)
    from staa.io.checkpoint import CheckpointError

    try:
        results = run(a)
    except (OSError, ValueError, CheckpointError) as err:  # a missing or bad file, a bad spec: one line
        p.exit(2, f"{p.prog}: error: {err}\n")
    if a.out:
        from staa.io.atomic import write_json

        write_json(a.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
