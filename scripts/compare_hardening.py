"""Adversarial-training methods side by side, judged only by fresh attacks at the training budget.

    python scripts/compare_hardening.py --base runs/base --arch mel_cnn --seed 0 \
        [--methods none,generator,generator_only,nfgsm,pgd] [--eps 0.002] [--epochs 3] [--from-scratch] \
        --out docs/hardening/mel_cnn_s0.json
    python scripts/compare_hardening.py --gather docs/hardening/mel_cnn_s*.json     # mean +- std over the seeds

`--base` is a folder with `corpus/manifest.csv`, `victims/ARCH/best.pt` and `attacks/ARCH/best.pt` (a `staa demo`
run, or the three commands that make them). Per method, one seed per command (each fits 40 minutes on 2 cores at
the default sizes): the victim is fine-tuned (or, with --from-scratch, trained) by `staa.training.adversarial`
and scored on the test clips by robust accuracy (right before and after the attack, against the true label) under
APGD-CE, APGD-T, Square and their per-clip worst case, and under a fresh STAA generator trained against the
hardened model (`--fresh-epochs 0` skips it). A clean epoch is timed in the same process, so each method's epoch
cost is a ratio measured on one machine under one load.
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

SUITE = {"apgd_ce": "apgd:steps={steps}", "apgd_t": "apgd_t:steps={steps}", "square": "square:queries={queries}"}


def score(victim_path, test, a, fresh=None) -> dict:
    from staa.attacks.registry import build_attack
    from staa.attacks.runner import robust_correct
    from staa.metrics.classification import classification_scores
    from staa.models.inference import predict
    from staa.models.victim import load_victim

    victim = load_victim(victim_path)
    model = victim.model.eval()
    truth, pred = predict(model, test)
    out = {"clean_ua": classification_scores(truth, pred, len(victim.classes))["ua"]}
    out["clean_accuracy"] = sum(t == p for t, p in zip(truth, pred)) / len(truth)
    worst = None
    for name, spec in SUITE.items():
        attack = build_attack(spec.format(steps=a.steps, queries=a.queries), model, eps=a.eps, sample_rate=16_000)
        ok = robust_correct(attack, model, test)
        out[name] = float(ok.float().mean())
        worst = ok if worst is None else worst & ok
    out["worst_case"] = float(worst.float().mean())
    if fresh is not None:
        attack = build_attack(f"staa:generator={fresh}", model, sample_rate=16_000)
        out["fresh_staa"] = float(robust_correct(attack, model, test).float().mean())
    return out


def fresh_generator(victim_path, records, work: Path, a) -> Path | None:
    """A new STAA generator trained against the hardened model at the training eps; a collapsed one is flagged."""
    from staa.generator.training import collapsed, train_fresh

    if a.fresh_epochs == 0:
        return None
    report = train_fresh(victim_path, records, work, eps=a.eps, epochs=a.fresh_epochs, seed=a.seed, progress=False)
    if collapsed(report):
        print(f"FLAG the fresh generator against {victim_path} collapsed: a failed attack, not robustness")
        (work / "collapsed").write_text("a failed attack: its accuracy is no evidence of robustness\n")
    return work / "best.pt"


def run(a) -> dict:
    from staa.datasets import AudioDataset, load_records
    from staa.generator.recipes import recipe
    from staa.io.atomic import safe_name
    from staa.io.provenance import machine
    from staa.models.victim import load_victim
    from staa.training.adversarial import AdvTrainConfig, adv_train, method_variant

    torch.set_num_threads(a.threads)
    base, work = Path(a.base), Path(a.work) / f"{a.arch}_s{a.seed}{'_scratch' if a.from_scratch else ''}"
    victim, generator = base / "victims" / a.arch / "best.pt", base / "attacks" / a.arch / "best.pt"
    start = load_victim(victim)
    records = load_records("manifest", base / "corpus" / "manifest.csv")
    test_records = [r for r in records if r.split == "test"][: a.test_clips]
    test = AudioDataset(test_records, start.classes, clip_seconds=3.0, crop="center")

    def config(method, **over):
        return AdvTrainConfig(
            **{
                "arch": start.arch,
                "classes": start.classes,
                "method": method,
                "epochs": a.epochs,
                "eps": a.eps,
                "seed": a.seed,
                "init_victim": None if a.from_scratch else str(victim),
                "init_generator": str(generator) if method in ("generator", "generator_only") else None,
                "generator": recipe("default"),
                "gen_crop_seconds": 0,
                **over,
            }
        )

    results = {"machine": machine(), "n_test": len(test), "settings": vars(a), "methods": {}}
    clean = adv_train(config("clean", epochs=1), records, work / "clean_epoch", progress=False)
    clean_seconds = clean["history"][0]["seconds"]
    results["clean_epoch_seconds"] = clean_seconds
    for method in a.methods.split(","):
        t0 = time.perf_counter()
        # a variant: METHOD:key=value..., AdvTrainConfig fields over the method's defaults (gen_noise=1:gen_step=1.25)
        name, over = method_variant(method)
        folder = work / safe_name(method)
        if method == "none":
            path, row = victim, {}
        else:
            report = adv_train(config(name, **over), records, folder, progress=False)
            path = folder / "victim.pt"
            seconds = statistics.mean(h["seconds"] for h in report["history"])
            row = {
                "best_epoch": report["best_epoch"],
                "epoch_cost": seconds / clean_seconds,
                "flags": report["flags"],
                "history": report["history"],
            }
        fresh = fresh_generator(path, records, folder / "fresh_staa", a)
        row |= score(path, test, a, fresh)
        if fresh is not None:
            row["fresh_staa_collapsed"] = (fresh.parent / "collapsed").is_file()
        row["seconds"] = time.perf_counter() - t0
        results["methods"][method] = row
        print(
            f"{method:<15} clean UA {row['clean_ua']:.3f}  APGD-CE {row['apgd_ce']:.3f}  APGD-T {row['apgd_t']:.3f}  "
            f"Square {row['square']:.3f}  worst {row['worst_case']:.3f}"
            + (f"  fresh STAA {row['fresh_staa']:.3f}" if "fresh_staa" in row else "")
            + (f"  epoch {row['epoch_cost']:.2f}x clean" if "epoch_cost" in row else ""),
            flush=True,
        )
    return results


COLUMNS = ("clean_ua", "apgd_ce", "apgd_t", "square", "worst_case", "fresh_staa", "epoch_cost")


def gather(paths) -> str:
    """A markdown table: per method, mean +- std (ddof 1) over the seeds, with the per-seed values. Files of one
    seed (parts run as separate commands, each with other methods) are merged."""
    parts = [json.loads(Path(p).read_text()) for p in paths]
    by_seed: dict = {}
    for part in parts:
        merged = by_seed.setdefault(part["settings"]["seed"], {**part, "methods": {}})
        merged["methods"] |= part["methods"]
    by_seed = dict(sorted(by_seed.items()))
    runs = list(by_seed.values())
    found = list(dict.fromkeys(m for r in parts for m in r["settings"]["methods"].split(",")))
    order = ["none", "clean", "generator", "generator_only", "nfgsm", "fgsm", "trades", "pgd"]
    methods = sorted(found, key=lambda m: (order.index(m) if m in order else len(order), m))
    lines = [
        f"seeds {', '.join(map(str, sorted(by_seed)))}; {runs[0]['n_test']} test clips; eps {runs[0]['settings']['eps']}",
        "",
        "| method | " + " | ".join(COLUMNS) + " |",
        "|---" * (len(COLUMNS) + 1) + "|",
    ]
    for m in methods:
        cells = []
        for key in COLUMNS:
            found = [(seed, r["methods"][m]) for seed, r in by_seed.items() if key in r["methods"].get(m, {})]
            vals = [row[key] for _, row in found]
            if not vals:
                cells.append("–")
                continue
            sd = f" +- {statistics.stdev(vals):.3f}" if len(vals) > 1 else ""
            failed = key == "fresh_staa" and any(row.get("fresh_staa_collapsed") for _, row in found)
            cells.append(
                f"{statistics.mean(vals):.3f}{sd} ({' / '.join(f's{seed} {row[key]:.3f}' for seed, row in found)})"
                + (" collapsed: no evidence" if failed else "")
            )
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", help="folder with corpus/, victims/ARCH/best.pt and attacks/ARCH/best.pt")
    p.add_argument("--arch", default="mel_cnn")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--methods", default="none,generator,generator_only,nfgsm,pgd")
    p.add_argument("--eps", type=float, default=0.002)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--from-scratch", action="store_true", help="train each method from scratch, not fine-tune")
    p.add_argument("--test-clips", type=int, default=120)
    p.add_argument("--steps", type=int, default=20, help="APGD steps (default: %(default)s)")
    p.add_argument("--queries", type=int, default=200, help="Square queries (default: %(default)s)")
    p.add_argument("--fresh-epochs", type=int, default=2, help="epochs of the fresh STAA generator (0: none)")
    p.add_argument("--work", default="runs/hardening", help="where each method trains (default: %(default)s)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None, help="write the numbers as JSON here")
    p.add_argument("--gather", nargs="+", metavar="JSON", help="print the table of these seeds' files instead")
    a = p.parse_args(argv)
    if a.gather:
        print(gather(a.gather))
        return 0
    if not a.base:
        p.error("--base is required unless --gather")
    results = run(a)
    if a.out:
        from staa.io.atomic import write_json

        write_json(a.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
