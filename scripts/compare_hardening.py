"""Generator adversarial training over seeds: the default recipe against other settings, from one trained victim and
generator (a `staa demo` run folder), with clean test UA and test accuracy under FGSM and under that generator.

    python scripts/compare_hardening.py --demo run [--arch mel_cnn] [--seeds 0,1,2] \
        [--variant NAME=JSON ...] [--out hardening.json]

A variant is AdvTrainConfig fields as JSON over the default (e.g. `before={"lr": 5e-4, "epochs": 1, "freeze_bn":
false}`, the recipe the demo used before batch-norm freezing and the kept-epoch guard). Each variant x seed trains
into OUT_DIR/NAME_sSEED (kept, so a rerun skips what is done). Prints per-seed values and mean +- std.
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch


def _accuracies(victim_path, generator_path, x, y, classes) -> dict:
    from staa.attacks.registry import build_attack
    from staa.metrics.classification import classification_scores
    from staa.models.victim import load_victim

    model = load_victim(victim_path).model.eval()
    out = {}
    with torch.no_grad():
        pred = torch.cat([model(x[i : i + 32]).argmax(1) for i in range(0, len(x), 32)])
    out["clean_ua"] = classification_scores(y.tolist(), pred.tolist(), len(classes))["ua"]
    for name, spec in (("fgsm", "fgsm"), ("staa", f"staa:generator={generator_path}")):
        attack = build_attack(spec, model, sample_rate=16_000)
        right = 0
        for i in range(0, len(x), 32):
            x_adv = attack(x[i : i + 32], y[i : i + 32])
            with torch.no_grad():
                right += int((model(x_adv).argmax(1) == y[i : i + 32]).sum())
        out[f"{name}_accuracy"] = right / len(x)
    return out


def main(argv=None) -> int:
    from staa.datasets import AudioDataset, load_records
    from staa.generator.recipes import recipe
    from staa.io.atomic import write_json
    from staa.io.provenance import machine
    from staa.models.victim import load_victim
    from staa.training.adversarial import AdvTrainConfig, adv_train

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--demo", required=True, help="a `staa demo` run folder (corpus/, victims/, attacks/)")
    p.add_argument("--arch", default="mel_cnn")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--variant", action="append", default=[], metavar="NAME=JSON")
    p.add_argument("--work", default="hardening_runs", help="where each variant x seed trains (default: %(default)s)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None, help="write the numbers as JSON here")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    run = Path(a.demo)
    victim, generator = run / "victims" / a.arch / "best.pt", run / "attacks" / a.arch / "best.pt"
    start = load_victim(victim)
    records = load_records("manifest", run / "corpus" / "manifest.csv")
    test = AudioDataset([r for r in records if r.split == "test"], start.classes, clip_seconds=3.0, crop="center")
    x = torch.stack([test[i][0] for i in range(len(test))])
    y = torch.tensor([test[i][1] for i in range(len(test))])
    variants = {"default": {}} | {k: json.loads(v) for k, v in (item.split("=", 1) for item in a.variant)}
    seeds = [int(s) for s in a.seeds.split(",")]
    results = {
        "machine": machine(),
        "n_test": len(test),
        "original": _accuracies(victim, generator, x, y, start.classes),
    }
    for name, over in variants.items():
        rows = []
        for seed in seeds:
            cfg = AdvTrainConfig(
                **{
                    "arch": start.arch,
                    "classes": start.classes,
                    "method": "generator",
                    "epochs": a.epochs,
                    "init_victim": str(victim),
                    "init_generator": str(generator),
                    "generator": recipe("default"),
                    "gen_crop_seconds": 0,
                    "seed": seed,
                    **over,
                }
            )
            t0 = time.perf_counter()
            report = adv_train(cfg, records, Path(a.work) / f"{name}_s{seed}", progress=False)
            row = {"seed": seed, "seconds": time.perf_counter() - t0, "best_epoch": report["best_epoch"]}
            row |= _accuracies(Path(a.work) / f"{name}_s{seed}" / "victim.pt", generator, x, y, start.classes)
            rows.append(row)
        results[name] = {"overrides": over, "seeds": rows}
    o = results["original"]
    print(
        f"{len(test)} test clips; original: UA {o['clean_ua']:.3f}, FGSM {o['fgsm_accuracy']:.3f}, STAA {o['staa_accuracy']:.3f}"
    )
    for name in variants:
        rows = results[name]["seeds"]
        cells = []
        for key in ("clean_ua", "fgsm_accuracy", "staa_accuracy"):
            vals = [r[key] for r in rows]
            sd = statistics.stdev(vals) if len(vals) > 1 else float("nan")
            cells.append(f"{key} {statistics.mean(vals):.3f} +- {sd:.3f} ({', '.join(f'{v:.3f}' for v in vals)})")
        print(f"{name:<10}" + "; ".join(cells))
    if a.out:
        write_json(a.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
