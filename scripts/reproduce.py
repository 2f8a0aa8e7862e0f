"""Reproduce docs/results.json and docs/results.md on the built-in corpus: every table, over seeds.

    python scripts/reproduce.py --size quick|full [--seeds 3] [--work runs/reproduce] [--out docs] [--threads 2]
    python scripts/reproduce.py --size quick --seed 1 --threads 1   # one seed's stages only: a part to run apart

Per seed it trains what it needs, each seed its own: the six zoo victims, STAA generators against the surrogate
(mel_cnn) at eps 0.03 and 0.002, models hardened from the surrogate by every adversarial-training method, and a fresh
generator against each hardened model. Then it measures the white-box table of every attack at both budgets (with
their speed against STAA), the transfer matrix, survival through the defenses with the standard suite through each,
and the adversarial-training comparison. Every stage writes its numbers to WORK/seedN/STAGE.json when it finishes
and the trainers resume from their last checkpoint, so a killed run started again picks up where it stopped, and
seeds can run as separate parts (`--seed K`, one process each) that a last run without `--seed` gathers. The
corpus is one for all seeds (as a real dataset would be); the seed changes every training and attack draw.

Writes OUT/results.json (each number's per-seed values, mean and std) and OUT/results.md, made from it, with the
date, commit, machine, threads and command. `--size smoke` is for the test suite: seconds, numbers of no meaning.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch.utils.data import DataLoader

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from staa.attacks.registry import build_attack  # noqa: E402
from staa.attacks.runner import transfer_matrix  # noqa: E402
from staa.datasets import AudioDataset, load_records  # noqa: E402
from staa.datasets.synthetic.corpus import EMOTIONS, CorpusConfig, build_corpus  # noqa: E402
from staa.generator import AttackTrainConfig, recipe, train_generator  # noqa: E402
from staa.io.atomic import write_json  # noqa: E402
from staa.io.provenance import machine  # noqa: E402
from staa.metrics.classification import classification_scores  # noqa: E402
from staa.models import MODELS  # noqa: E402
from staa.models.inference import predict  # noqa: E402
from staa.models.victim import load_victim  # noqa: E402
from staa.training.adversarial import AdvTrainConfig, adv_train  # noqa: E402
from staa.training.victim import TrainConfig, train_victim  # noqa: E402

EPS = (0.03, 0.002)  # the paper's budget and the realistic one of `staa evaluate`
AT_METHODS = ("generator", "pgd", "fgsm", "trades")
DEFENSES = ("none", "mp3:32", "resample:8000", "quantize:8", "lowpass:4000", "noise:30")
TABLES = (  # what results.json holds, in the order results.md shows them
    "victims",
    "white_box@0.03",
    "white_box@0.002",
    "speed",
    "transfer",
    "survival",
    "defended_accuracy",
    "adversarial_training",
    "wall_time",
)


@dataclass(frozen=True)
class Size:
    n_clips: int
    victim_epochs: int
    generator_epochs: int
    at_epochs: int
    bench_clips: int  # white-box table and speed
    eval_clips: int  # defenses and adversarial training
    victims: tuple = tuple(MODELS)
    transfer_sources: tuple = ("mel_cnn",)  # a generator per source architecture, each one a row of the matrix
    attacks: dict = field(
        default_factory=lambda: {
            "fgsm": "fgsm",
            "pgd10": "pgd:steps=10",
            "pgd100": "pgd:steps=100",
            "cw": "cw",
            "sparse_pgd": "sparse_pgd",
            "apgd_ce": "apgd:steps=50",
            "apgd_t": "apgd_t:steps=50",
            "square": "square:queries=1000",
        }
    )
    standard: str = "standard:steps=50:queries=500"
    robust: dict = field(default_factory=lambda: {"apgd": "apgd:steps=50", "square": "square:queries=1000"})


SURROGATE = "mel_cnn"
SIZES = {
    "smoke": Size(
        n_clips=60,
        victim_epochs=1,
        generator_epochs=1,
        at_epochs=1,
        bench_clips=4,
        eval_clips=4,
        victims=("mel_cnn", "emo18"),
        attacks={"fgsm": "fgsm", "pgd10": "pgd:steps=2", "pgd100": "pgd:steps=3", "square": "square:queries=5"},
        standard="standard:steps=2:queries=5",
        robust={"apgd": "apgd:steps=2", "square": "square:queries=5"},
    ),
    "quick": Size(
        n_clips=600,
        victim_epochs=4,
        generator_epochs=6,
        at_epochs=1,
        bench_clips=32,
        eval_clips=40,
        standard="standard:steps=20:queries=200",  # run through each of the six defenses: the stage's largest share
    ),
    "full": Size(
        n_clips=1200,
        victim_epochs=8,
        generator_epochs=12,
        at_epochs=3,
        bench_clips=64,
        eval_clips=100,
        transfer_sources=tuple(MODELS),
    ),
}


def _stage(path: Path, fn, commit: str):
    """The stage's numbers from its file, or computed and written (atomically) when it has not finished before."""
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    started = time.perf_counter()
    value = {"result": fn()}
    value["seconds"] = time.perf_counter() - started
    value["commit"] = commit  # a resumed run may span commits: the page names each one its numbers came from
    write_json(path, value)
    return value


def _generator_cfg(size: Size, seed: int, eps: float) -> AttackTrainConfig:
    return AttackTrainConfig(
        **{**recipe("default"), "eps_schedule": [[0, eps]]},
        epochs=size.generator_epochs,
        seed=seed,
    )


def _accuracy_under(model, attack, test, batch: int = 16) -> float:
    right = 0
    for x, y in DataLoader(test, batch_size=batch, shuffle=False):
        x_adv = attack(x, y)
        with torch.no_grad():
            right += int((model(x_adv).argmax(1) == y).sum())
    return right / len(test)


class Seed:
    """One seed's run folder and its stages, in order; each returns the stage's numbers."""

    def __init__(self, size: Size, seed: int, work: Path, records, manifest: Path, progress: bool, commit: str):
        self.size, self.seed, self.dir, self.records, self.manifest = (
            size,
            seed,
            work / f"seed{seed}",
            records,
            manifest,
        )
        self.progress, self.commit = progress, commit
        self.victim = lambda arch: self.dir / "victims" / arch / "best.pt"
        self.generator = lambda name: self.dir / "generators" / name / "best.pt"

    def run(self) -> dict:
        stages = ("victims", "generators", "white_box", "transfer", "defenses", "adversarial_training")
        return {name: _stage(self.dir / f"{name}.json", getattr(self, name), self.commit) for name in stages}

    def victims(self) -> dict:
        out = {}
        for arch in self.size.victims:
            cfg = TrainConfig(arch=arch, classes=list(EMOTIONS), epochs=self.size.victim_epochs, seed=self.seed)
            report = train_victim(cfg, self.records, self.victim(arch).parent, progress=self.progress)
            out[arch] = {"val_ua": report["best_val_ua"], "test_ua": report["test"]["ua"]}
        return out

    def _train_generator(self, name: str, surrogate: Path, eps: float) -> dict:
        cfg = _generator_cfg(self.size, self.seed, eps)
        report = train_generator(cfg, [surrogate], self.records, self.generator(name).parent, progress=self.progress)
        return {"best_val_fooling_rate": report["best_val_fooling_rate"], "epochs": len(report["history"])}

    def generators(self) -> dict:
        out = {
            f"{SURROGATE}@{eps:g}": self._train_generator(f"{SURROGATE}@{eps:g}", self.victim(SURROGATE), eps)
            for eps in EPS
        }
        for arch in self.size.transfer_sources:
            if arch != SURROGATE:
                out[f"{arch}@0.03"] = self._train_generator(f"{arch}@0.03", self.victim(arch), 0.03)
        return out

    def white_box(self) -> dict:
        from eval.bench import bench_attacks

        def dataset(classes, rate):
            chosen = [r for r in self.records if r.split == "test"][: self.size.bench_clips]
            return AudioDataset(chosen, classes, sample_rate=rate, crop="center")

        out = {}
        for eps in EPS:
            report = bench_attacks(
                self.victim(SURROGATE),
                self.generator(f"{SURROGATE}@{eps:g}"),
                dataset,
                threads=torch.get_num_threads(),
                eps=eps,
                attacks=self.size.attacks,
                progress=self.progress,
            )
            out[f"{eps:g}"] = report["results"]
        return out

    def transfer(self) -> dict:
        from staa.attacks import STAA

        victims = {arch: load_victim(self.victim(arch)).model for arch in self.size.victims}
        test = AudioDataset([r for r in self.records if r.split == "test"][: self.size.bench_clips * 4], list(EMOTIONS))
        sources = {arch: STAA.from_checkpoint(self.generator(f"{arch}@0.03")) for arch in self.size.transfer_sources}
        return transfer_matrix(sources, victims, test, progress=self.progress)

    def defenses(self) -> dict:
        from eval.config import EvalConfig
        from eval.harness import run_grid

        attacks = {f"staa@{eps:g}": f"staa:generator={self.generator(f'{SURROGATE}@{eps:g}')}" for eps in EPS}
        attacks |= {"fgsm": "fgsm", "pgd10": "pgd:steps=10", "standard": self.size.standard}
        cfg = EvalConfig(
            data=str(self.manifest),
            victims={SURROGATE: str(self.victim(SURROGATE))},
            attacks=attacks,
            defenses=list(DEFENSES),
            max_clips=self.size.eval_clips,
            perceptual=False,
            seed=self.seed,
        )
        results = run_grid(cfg, self.dir / "eval", progress=self.progress)
        keys = ("success_rate", "survival", "defended_adversarial_accuracy", "defended_clean_accuracy")
        return {"cells": [{k: c[k] for k in ("attack", "defense", *keys)} for c in results["cells"]]}

    def adversarial_training(self) -> dict:
        test = AudioDataset(
            [r for r in self.records if r.split == "test"][: self.size.eval_clips], list(EMOTIONS), crop="center"
        )
        start = self.victim(SURROGATE)
        models, epoch_seconds = {"none": start}, {}
        for method in ("clean", *AT_METHODS):
            cfg = AdvTrainConfig(
                arch=SURROGATE,
                classes=list(EMOTIONS),
                method=method,
                epochs=self.size.at_epochs,
                seed=self.seed,
                init_victim=str(start),
                init_generator=str(self.generator(f"{SURROGATE}@0.03")) if method == "generator" else None,
                generator=recipe("default"),
                gen_crop_seconds=0,
            )
            report = adv_train(cfg, self.records, self.dir / "hardened" / method, progress=self.progress)
            epoch_seconds[method] = statistics.mean(h["seconds"] for h in report["history"])
            if method != "clean":
                models[method] = self.dir / "hardened" / method / "victim.pt"
        out = {}
        for name, path in models.items():
            # a fresh generator against each model: the attack an adversary would train once it is deployed
            fresh = self.generator(f"{SURROGATE}@0.03") if name == "none" else self.generator(f"fresh_{name}")
            if name != "none":
                self._train_generator(f"fresh_{name}", path, 0.03)
            model = load_victim(path).model.eval()
            row = {"clean_ua": classification_scores(*predict(model, test), len(EMOTIONS))["ua"]}
            for key, spec in {"staa": f"staa:generator={fresh}", **self.size.robust}.items():
                attack = build_attack(spec, model, sample_rate=16_000, eps=0.03)
                row[f"{key}_accuracy"] = _accuracy_under(model, attack, test)
            row["epoch_cost"] = epoch_seconds[name] / epoch_seconds["clean"] if name in epoch_seconds else None
            out[name] = row
        return out


def _stat(values: list) -> dict | None:
    """Mean +- std over seeds, with every seed's value (None where a seed has none)."""
    got = [v for v in values if v is not None]
    if not got:
        return None
    return {
        "mean": statistics.mean(got),
        "std": statistics.stdev(got) if len(got) > 1 else None,
        "seeds": values,
    }


def _table(title: str, columns: list, rows: dict, note: str = "", order=()) -> dict:
    """`rows`: label -> column -> the per-seed values; `order`: the labels to show first, in this order."""
    rows = {label: rows[label] for label in [*(o for o in order if o in rows), *(r for r in rows if r not in order)]}
    return {
        "title": title,
        "columns": columns,
        "rows": {label: {c: _stat(vals.get(c, [])) for c in columns} for label, vals in rows.items()},
        "row_order": list(rows),  # json keys come back sorted
        "note": note,
    }


def _collect(runs: list[dict], pick) -> dict:
    """label -> column -> per-seed values, from `pick(run)` = {label: {column: value}} of each seed's run."""
    rows: dict = {}
    for i, run in enumerate(runs):
        for label, cols in pick(run).items():
            for col, value in cols.items():
                rows.setdefault(label, {}).setdefault(col, [None] * len(runs))[i] = value
    return rows


def build_tables(runs: list[dict], size: Size) -> dict:
    res = lambda run, stage: run[stage]["result"]
    tables = {
        "victims": _table(
            "Victims (clean accuracy)",
            ["val UA", "test UA"],
            _collect(
                runs,
                lambda r: {a: {"val UA": v["val_ua"], "test UA": v["test_ua"]} for a, v in res(r, "victims").items()},
            ),
            "Unweighted accuracy on the speaker- and sentence-held-out splits; chance is 0.25.",
            order=size.victims,
        )
    }
    names = {"staa": "STAA", "fgsm": "FGSM", "pgd10": "PGD-10", "pgd100": "PGD-100"}
    for eps in EPS:
        key = f"{eps:g}"

        def pick(run, key=key):
            out = {}
            results = res(run, "white_box")[key]
            base = results["staa"]["seconds_per_clip"]
            for name, r in results.items():
                out[names.get(name, name)] = {
                    "fooling": r["fooling_rate"],
                    "l0 ratio": r["l0_ratio"],
                    "distortion dB": r["distortion_db"],
                    "ms/clip": 1000 * r["seconds_per_clip"],
                    "x STAA": r["seconds_per_clip"] / base,
                    "victim passes": r["victim_passes_per_clip"],
                }
            return out

        tables[f"white_box@{key}"] = _table(
            f"White-box attacks on {SURROGATE}, eps {key}",
            ["fooling", "l0 ratio", "distortion dB", "ms/clip", "x STAA", "victim passes"],
            _collect(runs, pick),
            f"{size.bench_clips} test clips; STAA is the generator trained at this eps (default recipe, "
            f"{size.generator_epochs} epochs). Distortion over successful clips; ms per clip after one warm-up batch.",
            order=["STAA", *(names.get(a, a) for a in size.attacks)],
        )

    def speed(run):
        out = {}
        for eps in EPS:
            r = res(run, "white_box")[f"{eps:g}"]
            ms = {n: r[n]["seconds_per_clip"] for n in ("staa", "fgsm", "pgd10", "pgd100") if n in r}
            out[f"eps {eps:g}"] = {
                "STAA ms/clip": 1000 * ms["staa"],
                "FGSM / STAA": ms["fgsm"] / ms["staa"],
                "PGD-10 / STAA": ms["pgd10"] / ms["staa"],
                "PGD-100 / STAA": ms["pgd100"] / ms["staa"],
                "STAA fooling": r["staa"]["fooling_rate"],
                "FGSM fooling": r["fgsm"]["fooling_rate"],
                "PGD-10 fooling": r["pgd10"]["fooling_rate"],
            }
        return out

    tables["speed"] = _table(
        "Attack speed: time per clip relative to STAA",
        [
            "STAA ms/clip",
            "FGSM / STAA",
            "PGD-10 / STAA",
            "PGD-100 / STAA",
            "STAA fooling",
            "FGSM fooling",
            "PGD-10 fooling",
        ],
        _collect(runs, speed),
        f"The same {size.bench_clips} clips, victim and process; {torch.get_num_threads()} threads.",
    )
    targets = list(size.victims)
    tables["transfer"] = _table(
        "Transfer: fooling rate of STAA generators (eps 0.03) on every architecture",
        targets,
        _collect(runs, lambda r: {f"from {s}": row for s, row in res(r, "transfer")["fooling_rate"].items()}),
        "Rows: the generator's surrogate; the diagonal is white-box.",
        order=[f"from {a}" for a in size.transfer_sources],
    )

    def survival(run):  # undefended: the success rate; defended: the share of those successes that survive
        out: dict = {}
        for c in res(run, "defenses")["cells"]:
            out.setdefault(c["attack"], {})[c["defense"]] = c["success_rate" if c["defense"] == "none" else "survival"]
        return out

    def defended(run):
        out: dict = {}
        for c in res(run, "defenses")["cells"]:
            out.setdefault("no attack", {})[c["defense"]] = c["defended_clean_accuracy"]
            out.setdefault(c["attack"], {})[c["defense"]] = c["defended_adversarial_accuracy"]
        return out

    tables["survival"] = _table(
        f"Defenses: success of each attack on {SURROGATE} (none) and the share of successes that survive each defense",
        list(DEFENSES),
        _collect(runs, survival),
        f"{size.eval_clips} test clips; the `none` column is the undefended success rate. The standard suite "
        f"({size.standard}) attacks through each defense (BPDA, EOT for random ones).",
    )
    tables["defended_accuracy"] = _table(
        f"Defenses: accuracy of the defended {SURROGATE} under each attack",
        list(DEFENSES),
        _collect(runs, defended),
        "Row `no attack`: the defense's clean accuracy (what it costs).",
    )
    at_cols = ["clean UA", "fresh STAA", *(k.upper() if k == "apgd" else k.title() for k in size.robust), "epoch cost"]

    def at(run):
        out = {}
        for name, row in res(run, "adversarial_training").items():
            out[name] = {
                "clean UA": row["clean_ua"],
                "fresh STAA": row["staa_accuracy"],
                "epoch cost": row["epoch_cost"],
            }
            out[name] |= {(k.upper() if k == "apgd" else k.title()): row[f"{k}_accuracy"] for k in size.robust}
        return out

    tables["adversarial_training"] = _table(
        f"Adversarial training of {SURROGATE}: {size.at_epochs} epoch(s) of fine-tuning by each method",
        at_cols,
        _collect(runs, at),
        f"Test UA and accuracy under attack at eps 0.03 on {size.eval_clips} test clips. Fresh STAA: a generator "
        f"trained ({size.generator_epochs} epochs) against that model; epoch cost: seconds per epoch over a clean "
        "fine-tune's. The kept epoch keeps clean val UA within 5 points of the start where one does.",
        order=["none", *AT_METHODS],
    )

    def wall(run):
        out = {stage: {"seconds": v["seconds"]} for stage, v in run.items()}
        return out | {"seed (all stages)": {"seconds": sum(v["seconds"] for v in run.values())}}

    tables["wall_time"] = _table(
        "Wall time per stage (seconds)",
        ["seconds"],
        _collect(runs, wall),
        "The corpus, shared by the seeds, is not counted. A stage resumed after a kill counts only its time after the "
        "restart (its trainers pick up from their checkpoints).",
    )
    return tables


def bars(runs: list[dict]) -> dict:
    """Each bar the suite claims, per seed (True: met)."""
    res = lambda run, stage: run[stage]["result"]
    out: dict = {}
    for eps in EPS:
        key = f"{eps:g}"
        staa = [res(r, "white_box")[key]["staa"] for r in runs]
        out[f"white-box at eps {key}: fooling >= 0.90, l0 <= 0.25, distortion >= 20 dB"] = [
            s["fooling_rate"] >= 0.9 and s["l0_ratio"] <= 0.25 and (s["distortion_db"] or 0) >= 20 for s in staa
        ]
    for eps in EPS:
        wb = [res(r, "white_box")[f"{eps:g}"] for r in runs]
        out[
            f"speed at eps {eps:g}: >= 20x PGD-10 and >= 200x PGD-100 per clip, fooling within 5 points of PGD-10's"
        ] = [
            w["pgd10"]["seconds_per_clip"] >= 20 * w["staa"]["seconds_per_clip"]
            and w["pgd100"]["seconds_per_clip"] >= 200 * w["staa"]["seconds_per_clip"]
            and w["staa"]["fooling_rate"] >= w["pgd10"]["fooling_rate"] - 0.05
            for w in wb
        ]
        out[f"faster than FGSM at a higher fooling rate, eps {eps:g}"] = [
            w["fgsm"]["seconds_per_clip"] > w["staa"]["seconds_per_clip"]
            and w["staa"]["fooling_rate"] > w["fgsm"]["fooling_rate"]
            for w in wb
        ]
    at = [res(r, "adversarial_training") for r in runs]
    out["generator-AT keeps clean UA within 5 points"] = [
        a["none"]["clean_ua"] - a["generator"]["clean_ua"] <= 0.05 for a in at
    ]
    gains = [a["generator"]["staa_accuracy"] - a["none"]["staa_accuracy"] for a in at]
    out["generator-AT raises accuracy under a fresh STAA by >= 20 points (on average)"] = [
        statistics.mean(gains) >= 0.2
    ] * len(at)
    out["a generator-AT epoch costs <= 2x a clean one"] = [a["generator"]["epoch_cost"] <= 2 for a in at]
    return out


def _commit() -> str:
    git = lambda *args: subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    sha = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = [line for line in git("status", "--porcelain").splitlines() if "docs/results." not in line]
    return sha + ("-dirty" if dirty else "")


def _cell(stat: dict | None, per_seed: bool) -> str:
    if stat is None:
        return ""
    digits = 3 if abs(stat["mean"]) < 10 else 1 if abs(stat["mean"]) < 100 else 0
    fmt = lambda v: "–" if v is None else f"{v:.{digits}f}"
    text = fmt(stat["mean"]) + (f" ± {fmt(stat['std'])}" if stat["std"] is not None else "")
    if per_seed and len(stat["seeds"]) > 1:
        text += " (" + ", ".join(map(fmt, stat["seeds"])) + ")"
    return text


def render(results: dict) -> str:
    p = results["provenance"]
    m = p["machine"]
    n = len(results["seeds"])
    lines = [
        "# Results",
        "",
        "Made by `scripts/reproduce.py`; do not edit by hand. Every number is on the built-in synthetic corpus "
        "(rule-made emotions, far easier than real speech: never compare them with published SER numbers). "
        f"Each cell is the mean ± std over {n} seed(s)"
        + (", then each seed's value in seed order" if n > 1 else "; one seed is one sample, not a claim")
        + ". The measurements behind the design choices are in [experiments.md](experiments.md).",
        "",
        f"Run: {p['date']}, commit {p['commit']}, {m['platform']} ({m['processor']}, {m['cpu_count']} cores), "
        f"torch {m['torch']} with {m['threads']} threads, device {m['device']}. Command: `{p['command']}` "
        f"(size {results['size']}, seeds {', '.join(map(str, results['seeds']))}).",
        "",
        "## Bars",
        "",
        "| bar | met on | per seed |",
        "|---|---|---|",
    ]
    for bar in results["bars"]:
        met = bar["met"]
        lines.append(f"| {bar['bar']} | {sum(met)} of {len(met)} | {' '.join('yes' if b else 'no' for b in met)} |")
    for key in TABLES:  # json keys come back sorted
        t = results["tables"][key]
        lines += ["", f"## {t['title']}", "", f"<!-- table {key} -->", ""]
        lines.append("| | " + " | ".join(t["columns"]) + " |")
        lines.append("|---|" + "---|" * len(t["columns"]))
        for label in t["row_order"]:
            row = t["rows"][label]
            lines.append(f"| {label} | " + " | ".join(_cell(row[c], per_seed=True) for c in t["columns"]) + " |")
        if t["note"]:
            lines += ["", t["note"]]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    from staa.io.atomic import atomic_open

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=list(SIZES), default="quick")
    p.add_argument("--seeds", type=int, default=3, help="seeds 0 to N-1 (default: 3)")
    p.add_argument("--work", default="runs/reproduce", help="where the trained models and stage numbers go")
    p.add_argument("--out", default="docs", help="folder for results.json and results.md (default: docs)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--seed", type=int, help="run only this seed's stages and write no results (a part of the run)")
    a = p.parse_args(argv)
    if a.seeds < 1:
        p.error("--seeds must be at least 1")
    if a.seed is not None and a.seed < 0:
        p.error("--seed must be 0 or more")
    torch.set_num_threads(a.threads)
    size = SIZES[a.size]
    work = Path(a.work) / a.size
    plan = work / "plan.json"
    if plan.is_file() and json.loads(plan.read_text(encoding="utf-8")) != json.loads(json.dumps(asdict(size))):
        print(f"error: {plan}: holds a run of other settings; use another --work folder", file=sys.stderr)
        return 2
    work.mkdir(parents=True, exist_ok=True)
    write_json(plan, asdict(size))
    manifest = build_corpus(work / "corpus", CorpusConfig(n_clips=size.n_clips), progress=not a.quiet)
    records = load_records("manifest", manifest)
    runs, commit = [], _commit()
    for seed in range(a.seeds) if a.seed is None else [a.seed]:
        print(f"seed {seed}: {work / f'seed{seed}'}", flush=True)
        runs.append(Seed(size, seed, work, records, manifest, progress=not a.quiet, commit=commit).run())
    if a.seed is not None:  # a part: its stages are written; the run without --seed gathers them
        return 0
    results = {
        "schema": "staa-ser/reproduce/1",
        "size": a.size,
        "settings": asdict(size),
        "seeds": list(range(a.seeds)),
        "provenance": {
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "commit": ", ".join(sorted({stage.get("commit", "unknown") for run in runs for stage in run.values()})),
            "machine": machine(),
            "command": "python scripts/reproduce.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        },
        "bars": [{"bar": bar, "met": met} for bar, met in bars(runs).items()],  # a list: json objects come back sorted
        "tables": build_tables(runs, size),
    }
    out = Path(a.out)
    write_json(out / "results.json", results)
    with atomic_open(out / "results.md") as f:
        f.write(render(results))
    print(render(results).split("## Bars")[1].split("\n## ")[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
