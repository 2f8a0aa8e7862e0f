"""The voice and streaming codecs as defenses, side by side: what each costs clean speech and which attacks survive it.

    python scripts/codec_table.py --data runs/base/corpus/manifest.csv --victim runs/base/victims/mel_cnn/best.pt \
        --generator G_AT_0.002.pt [--clips 100] [--standard-clips 32] --work runs/codecs --out docs/codecs/mel_cnn_s0.json
    python scripts/codec_table.py --gather docs/codecs/mel_cnn_s*.json     # mean +- std over victims (seeds)

Per codec: the round trip's length (it must equal the input's), PESQ and STOI of the clean test clips through it
against the clips themselves, and through `eval.harness` the clean-accuracy cost, the survival of STAA's and PGD-10's
successes at eps 0.002 on `--clips` test clips, and the robust accuracy left by BPDA PGD-10 on them and by the
standard suite (both adaptive through the codec) on `--standard-clips` of them. `--main-from` takes the clean costs
and the STAA / PGD-10 / BPDA cells from an earlier run on the same victim, clips and seed, so a run of the standard
suite alone (split by `--codecs` into parts) costs only that.
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CODECS = ["none", "telephone", "mobile", "g711:alaw", "g722", "g726:32", "amr_nb:4.75", "aac:32", "opus:16", "mp3:32"]


def clean_cost(data: str, defenses: list, clips: int) -> dict:
    """Length and the perceptual cost of each codec on clean test clips."""
    from defenses import parse_defense
    from staa.datasets import AudioDataset, load_records
    from staa.metrics.perceptual import perceptual_scores

    records = [r for r in load_records("manifest", data) if r.split == "test"][:clips]
    x = torch.stack([x for x, _ in AudioDataset(records, sorted({r.label for r in records}), crop="center")])
    out = {}
    for spec in defenses:
        t0 = time.perf_counter()
        y = parse_defense(spec)(x, 16_000)
        seconds = (time.perf_counter() - t0) / len(x)
        scores = perceptual_scores(x, y, 16_000, workers=1)
        out[spec] = {
            "same_length": y.shape == x.shape,
            "pesq": statistics.mean(s["pesq"] for s in scores),
            "stoi": statistics.mean(s["stoi"] for s in scores),
            "ms_per_clip": 1000 * seconds,
        }
    return out


def grid(a, defenses: list, attacks: dict, clips: int, folder: str) -> list:
    from eval.config import EvalConfig
    from eval.harness import run_grid

    cfg = EvalConfig(
        data=a.data,
        victims={"victim": a.victim},
        attacks=attacks,
        defenses=defenses,
        max_clips=clips,
        eps=0.002,
        perceptual=False,
        examples=0,
        seed=a.seed,
    )
    keys = ("n", "success_rate", "survival", "defended_clean_accuracy", "defended_adversarial_accuracy")
    keys += ("defended_fooling_rate", "defended_robust_accuracy")
    cells = run_grid(cfg, Path(a.work) / folder, progress=not a.quiet)["cells"]
    return [{k: c[k] for k in ("attack", "defense", *keys)} for c in cells]


def fail(message: str):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def reused(a, codecs: list) -> tuple[dict, list]:
    """The clean costs and main cells of `a.main_from` for `codecs`; exit 2 unless it ran on the same victim and clips."""
    try:
        old = json.loads(Path(a.main_from).read_text())
        same = all(old["settings"][k] == getattr(a, k) for k in ("data", "victim", "generator", "clips", "seed"))
        missing = [c for c in codecs if c not in old["clean"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        fail(f"{a.main_from}: not a codec table ({e})")
    if not same or missing:
        why = f"no codec {', '.join(missing)}" if missing else "another victim, generator, clip count or seed"
        fail(f"{a.main_from}: {why}")
    cells = [c for c in old["cells"] if c["defense"] in codecs and c["attack"] != "standard"]
    return {c: old["clean"][c] for c in codecs}, cells


def gather(paths: list) -> int:
    """One row per codec: each rate's mean +- std over the victims (one per seed) of `paths`, with the per-victim
    values; the parts of one victim are merged, and of two standard-suite cells the one on more clips is kept."""
    cells, clean = {}, {}
    for path in paths:
        try:
            run = json.loads(Path(path).read_text())
            victim = run["settings"]["victim"]
            clean.update({(victim, k): v for k, v in run["clean"].items()})
            for c in run["cells"]:
                key = (victim, c["defense"], c["attack"])
                if key not in cells or c["n"] > cells[key]["n"]:
                    cells[key] = c
        except (OSError, ValueError, KeyError, TypeError) as e:
            fail(f"{path}: not a codec table ({e})")
    victims = sorted({v for v, _, _ in cells})
    codecs = list(dict.fromkeys(d for _, d, _ in cells))
    print(f"{len(victims)} victims: {', '.join(victims)}")
    columns = [
        ("clean acc.", "staa", "defended_clean_accuracy"),
        ("STAA survives", "staa", "survival"),
        ("PGD-10 survives", "pgd10", "survival"),
        ("robust acc., BPDA PGD-10", "bpda", "defended_robust_accuracy"),
        ("robust acc., standard", "standard", "defended_robust_accuracy"),
    ]
    print("| codec | PESQ | " + " | ".join(name for name, _, _ in columns) + " | n (standard) |")
    print("|---|---|" + "---|" * len(columns) + "---|")
    for codec in codecs:
        row = [codec, f"{statistics.mean(clean[v, codec]['pesq'] for v in victims if (v, codec) in clean):.2f}"]
        for _, attack, key in columns:
            if codec == "none" and key == "survival":
                key = "success_rate"  # the bare victim: how many the attack fools
            values = [cells[v, codec, attack][key] for v in victims if (v, codec, attack) in cells]
            spread = f" ± {statistics.stdev(values):.2f}" if len(values) > 1 else ""
            row.append(f"{statistics.mean(values):.2f}{spread} ({' / '.join(f'{x:.2f}' for x in values)})")
        row.append(
            " / ".join(str(cells[v, codec, "standard"]["n"]) for v in victims if (v, codec, "standard") in cells)
        )
        print("| " + " | ".join(row) + " |")
    return 0


def main(argv=None) -> int:
    from staa.io.atomic import write_json
    from staa.io.provenance import machine

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data")
    p.add_argument("--victim")
    p.add_argument("--generator", help="a STAA generator trained at eps 0.002 against the victim")
    p.add_argument("--codecs", default=",".join(CODECS))
    p.add_argument("--clips", type=int, default=100)
    p.add_argument("--standard-clips", type=int, default=32)
    p.add_argument("--standard", default="standard:steps=20:queries=100")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work", default="runs/codecs")
    p.add_argument("--out")
    p.add_argument("--main-from", help="an earlier output JSON: reuse its clean costs and main cells")
    p.add_argument("--quiet", action="store_true")
    p.add_argument(
        "--gather", nargs="+", metavar="JSON", help="earlier outputs (parts and seeds): mean +- std over the victims"
    )
    a = p.parse_args(argv)
    if a.gather:
        return gather(a.gather)
    missing = [f"--{k}" for k in ("data", "victim", "generator", "out") if getattr(a, k) is None]
    if missing:
        p.error(f"the following arguments are required: {', '.join(missing)}")
    torch.set_num_threads(a.threads)
    codecs = a.codecs.split(",")
    t0 = time.perf_counter()
    result = {"machine": machine(), "settings": vars(a)}
    if a.main_from:
        result["clean"], main_cells = reused(a, codecs)
    else:
        attacks = {"staa": f"staa:generator={a.generator}", "pgd10": "pgd:steps=10", "bpda": "adaptive_pgd:steps=10"}
        result["clean"], main_cells = clean_cost(a.data, codecs, a.clips), grid(a, codecs, attacks, a.clips, "main")
    result["cells"] = main_cells + grid(a, codecs, {"standard": a.standard}, a.standard_clips, "standard")
    result["seconds"] = time.perf_counter() - t0
    write_json(a.out, result)
    # attacks made on the bare victim: the share of their successes that survive the codec; adaptive ones (made
    # through it): the defended victim's robust accuracy, right before and after the attack. Not its accuracy on the
    # attacked clips: an attack made away from the defended prediction moves many clips the codec got wrong onto
    # their label, so that accuracy sits near the codec's clean accuracy whatever the attack does
    print(
        "| codec | PESQ | STOI | clean acc. | STAA survives | PGD-10 survives | robust acc., BPDA PGD | robust acc., standard |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for codec in codecs:
        c = result["clean"][codec]
        cell = {x["attack"]: x for x in result["cells"] if x["defense"] == codec}
        rate = lambda name: cell[name][
            "defended_robust_accuracy"
            if name in ("bpda", "standard")
            else "success_rate"
            if codec == "none"
            else "survival"
        ]
        print(
            f"| {codec} | {c['pesq']:.2f} | {c['stoi']:.3f} | {cell['staa']['defended_clean_accuracy']:.3f} | "
            + " | ".join(
                f"{rate(n):.3f}" if rate(n) is not None else "n/a" for n in ("staa", "pgd10", "bpda", "standard")
            )
            + " |"
        )
    print(json.dumps({"seconds": round(result["seconds"])}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
