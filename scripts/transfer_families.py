"""Leave-one-family-out transfer: a STAA generator trained on surrogates of some model families, scored on victims
of a family it never saw, next to gradient baselines made on the same surrogates (the mean of their logits).

    python scripts/transfer_families.py --base runs/base --surrogates mel_cnn,emo18 --held-out wav2vec2,zhao19 \
        --seed 0 --out docs/transfer/mel_cnn+emo18_s0.json
    python scripts/transfer_families.py --gather docs/transfer/mel_cnn+emo18_s*.json     # mean +- std over seeds

`--base` holds `victims/ARCH/best.pt` for every architecture named and, unless `--corpus` says otherwise,
`corpus/manifest.csv`. One seed per command (the seed draws the generator's weights and batches; the corpus and
victims stay): the generator (default recipe with any `--option KEY=VALUE` over it, `--epochs`, trained at
`--train-eps` and run at each `--eps`) and each baseline attack the test clips once per budget, and every victim,
surrogates included (their column is white-box), is scored on them: fooling rate with a 95% Wilson interval, seconds
per clip, l0 ratio and SNR, and PESQ / STOI on the first `--perceptual-clips` clips. `--baselines-from JSON` takes
the baselines' rows from an earlier run of the same clips, victims and seed instead of running them again, so a
generator variant costs its own training only.

    python scripts/transfer_families.py --base runs/base --option w_feat=1 --seed 0 \
        --baselines-from docs/transfer/mel_cnn+emo18_d0_s0.json --out docs/transfer/mel_cnn+emo18_feat1_s0.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

FAMILIES = {  # the model families of the zoo: what "a family it never saw" means
    "mel_cnn": "log-mel",
    "crnn": "log-mel",
    "mel_transformer": "log-mel",
    "emo18": "raw-waveform CNN-LSTM",
    "zhao19": "raw-waveform CNN-LSTM",
    "wav2vec2": "waveform transformer",
}
BASELINES = ("mifgsm:diversity=0.5", "mifgsm", "pgd10", "fgsm")


def _perceptual(attack, test, n: int, rate: int) -> dict:
    """Mean PESQ-wb and STOI of the attack's clips over the first `n` test clips."""
    import torch

    from staa.metrics.perceptual import perceptual_scores

    if n == 0:
        return {}
    x = torch.stack([test[i][0] for i in range(min(n, len(test)))])
    with torch.enable_grad():
        adv = attack(x)
    scores = perceptual_scores(x, adv, rate, workers=1)
    mean = lambda key: statistics.mean(s[key] for s in scores if s[key] == s[key]) if scores else None
    return {"pesq": mean("pesq"), "stoi": mean("stoi"), "perceptual_n": len(scores)}


def _option(text: str) -> tuple[str, object]:
    """KEY=VALUE, the value read as JSON where it parses (numbers, true/false, null), else as text."""
    key, sep, value = text.partition("=")
    if not sep:
        raise SystemExit(f"--option {text!r}: use KEY=VALUE, e.g. w_feat=1")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def _earlier(a, surrogates: list, held_out: list) -> dict:
    """The run whose baseline rows this one reuses; it must have attacked the same clips from the same surrogates."""
    earlier = json.loads(Path(a.baselines_from).read_text())
    same = {k: earlier["settings"].get(k) == getattr(a, k) for k in ("base", "corpus", "seed", "test_clips")}
    same["surrogates"] = earlier["settings"]["surrogates"].split(",") == surrogates
    same["victims"] = set(earlier["families"]) == {*surrogates, *held_out}
    same["eps"] = {str(e) for e in a.eps} <= set(earlier["budgets"])
    if not all(same.values()):
        raise SystemExit(f"{a.baselines_from}: made with other {', '.join(k for k, ok in same.items() if not ok)}")
    return earlier


def _take_baselines(table: dict, earlier: dict) -> None:
    """The earlier run's rows other than its generator's, after this run's generator row."""
    rows = [r for r in earlier["rows"] if r != "staa"]
    for key, values in table.items():
        if isinstance(values, dict) and "staa" in values:
            values |= {r: earlier[key][r] for r in rows if r in earlier.get(key, {})}
    table["rows"] = ["staa", *rows]
    table["baselines_from"] = "earlier run"


def run(a) -> dict:
    import torch

    from staa.attacks import STAA, parse_attack
    from staa.attacks.runner import transfer_matrix
    from staa.datasets import AudioDataset, load_records
    from staa.generator.recipes import recipe
    from staa.generator.training import AttackTrainConfig, parse_eps_schedule, train_generator, with_options
    from staa.io.atomic import safe_name
    from staa.io.provenance import machine
    from staa.models.ensemble import Ensemble
    from staa.models.victim import load_victim

    torch.set_num_threads(a.threads)
    surrogates, held_out = a.surrogates.split(","), a.held_out.split(",")
    shared = {FAMILIES.get(h) for h in held_out} & {FAMILIES.get(s) for s in surrogates}
    if shared:
        print(f"note: {sorted(shared)} is a family of both the surrogates and the held-out victims", file=sys.stderr)
    base = Path(a.base)
    paths = {arch: base / "victims" / arch / "best.pt" for arch in [*surrogates, *held_out]}
    victims = {arch: load_victim(p) for arch, p in paths.items()}
    first = victims[surrogates[0]]
    records = load_records("manifest", a.corpus or base / "corpus" / "manifest.csv")
    test = [r for r in records if r.split == "test"][: a.test_clips]
    test = AudioDataset(test, first.classes, sample_rate=first.sample_rate, clip_seconds=3.0, crop="center")
    options = {"diversity": a.diversity, **dict(_option(o) for o in a.option or [])}
    name = ",".join(f"{k}={v}" for k, v in sorted(options.items()))
    work = Path(a.work) / f"{'+'.join(surrogates)}_s{a.seed}" / safe_name(f"{name}_eps{a.train_eps}_epochs{a.epochs}")
    settings = with_options(recipe("default"), options)
    t0 = time.perf_counter()
    report = train_generator(
        AttackTrainConfig(**settings, epochs=a.epochs, seed=a.seed, eps_schedule=parse_eps_schedule(a.train_eps)),
        [paths[s] for s in surrogates],
        records,
        work,
        progress=not a.quiet,
    )
    models = [victims[s].model.eval() for s in surrogates]
    ensemble = models[0] if len(models) == 1 else Ensemble(models)
    out = {
        "machine": machine(),
        "settings": vars(a),
        "families": {arch: FAMILIES.get(arch, "other") for arch in paths},
        "generator": {"seconds": time.perf_counter() - t0, "val": report["history"][-1]},
        "budgets": {},
    }
    earlier = _earlier(a, surrogates, held_out) if a.baselines_from else None
    for eps in a.eps:
        attacks = {"staa": STAA.from_checkpoint(work / "best.pt", eps=eps)}
        for text in [] if earlier else a.baselines:
            attacks[text] = parse_attack(text).build(ensemble, eps=eps, seed=a.seed)
        table = transfer_matrix(attacks, {k: v.model.eval() for k, v in victims.items()}, test, progress=not a.quiet)
        table["perceptual"] = {
            k: _perceptual(att, test, a.perceptual_clips, first.sample_rate) for k, att in attacks.items()
        }
        if earlier:
            _take_baselines(table, earlier["budgets"][str(eps)])
        out["budgets"][str(eps)] = table
        print(f"eps {eps:g}, {table['n']} test clips: fooling rate (surrogates {'+'.join(surrogates)}: white-box)")
        print(f"{'attack':<24}" + "".join(f"{c:>12}" for c in table["columns"]) + f"{'s/clip':>9}{'l0':>7}{'SNR':>7}")
        for r in table["rows"]:
            snr = table["snr_db"][r]
            print(
                f"{r:<24}"
                + "".join(f"{table['fooling_rate'][r][c]:>12.3f}" for c in table["columns"])
                + f"{table['seconds_per_clip'][r]:>9.3f}{table['l0_ratio'][r]:>7.3f}"
                + (f"{snr:>7.1f}" if snr is not None else f"{'–':>7}"),
                flush=True,
            )
    return out


def gather(paths) -> str:
    """Per budget a markdown table: per attack and victim, mean +- std over the seeds with the per-seed values."""
    runs = sorted((json.loads(Path(p).read_text()) for p in paths), key=lambda r: r["settings"]["seed"])
    seeds = [r["settings"]["seed"] for r in runs]
    lines = []
    for eps, first in runs[0]["budgets"].items():
        cols = first["columns"]
        lines += [
            f"eps {eps}; seeds {', '.join(map(str, seeds))}; {first['n']} test clips; surrogates "
            f"{runs[0]['settings']['surrogates']}",
            "",
            "| attack | " + " | ".join(cols) + " | s/clip | l0 | SNR dB | PESQ |",
            "|---" * (len(cols) + 5) + "|",
        ]
        for row in first["rows"]:

            def cell(values):
                sd = f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else ""
                return f"{statistics.mean(values):.3f}{sd} ({' / '.join(f'{v:.2f}' for v in values)})"

            tables = [r["budgets"][eps] for r in runs]
            rates = [cell([t["fooling_rate"][row][c] for t in tables]) for c in cols]
            snrs = [t["snr_db"][row] for t in tables if t["snr_db"][row] is not None]
            pesq = [
                t["perceptual"][row]["pesq"] for t in tables if t["perceptual"].get(row, {}).get("pesq") is not None
            ]
            extra = [
                f"{statistics.mean(t['seconds_per_clip'][row] for t in tables):.3f}",
                f"{statistics.mean(t['l0_ratio'][row] for t in tables):.3f}",
                f"{statistics.mean(snrs):.1f}" if snrs else "–",
                f"{statistics.mean(pesq):.2f}" if pesq else "–",
            ]
            lines.append(f"| {row} | " + " | ".join(rates + extra) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", help="folder with corpus/manifest.csv and victims/ARCH/best.pt")
    p.add_argument("--surrogates", default="mel_cnn,emo18", help="architectures the attacks are made on")
    p.add_argument("--held-out", default="wav2vec2,zhao19", help="architectures they are tested on")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=6, help="generator epochs (default: %(default)s)")
    p.add_argument("--diversity", type=float, default=0.0, help="the generator's input diversity (default: 0)")
    p.add_argument(
        "--option", action="append", metavar="KEY=VALUE", help="a generator setting over the default recipe; repeat"
    )
    p.add_argument(
        "--train-eps",
        default="0.03",
        help="the budget the generator trains at, or a schedule such as 0:0.01,10:0.002 (default: %(default)s)",
    )
    p.add_argument("--eps", type=float, nargs="+", default=[0.03, 0.002])
    p.add_argument("--corpus", default=None, help="the manifest (default: BASE/corpus/manifest.csv)")
    p.add_argument("--baselines", nargs="*", default=list(BASELINES), help="attacks made on the same surrogates")
    p.add_argument("--baselines-from", metavar="JSON", help="take the baselines' rows from this earlier run")
    p.add_argument("--test-clips", type=int, default=100)
    p.add_argument("--perceptual-clips", type=int, default=16)
    p.add_argument("--work", default="runs/transfer", help="where the generator trains (default: %(default)s)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--out", default=None, help="write the numbers as JSON here")
    p.add_argument("--gather", nargs="+", metavar="JSON", help="print the tables of these seeds' files instead")
    a = p.parse_args(argv)
    if a.gather:
        print(gather(a.gather))
        return 0
    if not a.base:
        p.error("--base is required unless --gather")
    from staa.generator.training import parse_eps_schedule

    try:
        parse_eps_schedule(a.train_eps)
    except ValueError as err:
        p.error(f"--train-eps: {err}")
    results = run(a)
    if a.out:
        from staa.io.atomic import write_json

        write_json(a.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
