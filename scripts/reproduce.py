"""Reproduce docs/results.json and docs/results.md on the built-in corpus, one seed per command, in parts that land.

    python scripts/reproduce.py --size full --seed 0      # one seed (29 minutes on 2 cores, two lanes); its parts
    python scripts/reproduce.py --size full --gather      # docs/results.json and .md from the parts present
    python scripts/reproduce.py --size quick --seeds 1    # seeds 0..N-1 in one command, then the gather

A seed trains what it needs, each seed its own: the victims (a log-mel CNN and a raw-waveform CNN, trained to their
plateau), STAA generators against the surrogate (the first victim) at eps 0.002 and 0.03, one per other victim and
one against the ensemble of all of them at 0.03, and the surrogate hardened from scratch by each adversarial-training
method at eps 0.002. Then it measures the white-box table at the realistic budget 0.002 (every attack) and at the
paper's 0.03 (STAA against FGSM and PGD), the transfer matrix, the defenses at 0.002 (the standard suite through each
one, adaptive), and the hardening judged by the standard suite at 0.002.

Each stage, once finished, writes its numbers (with commit, date, machine, threads and seconds) to a small file
PARTS/SIZE/seedK/STAGE.json (default PARTS: docs/results/parts), which is meant to be committed; the models stay in
WORK. A stage whose part exists is not run again and the trainers resume from their checkpoints, so a killed seed
started again picks up where it stopped. The gather builds the tables from whatever parts are present and says how
many seeds each holds. A victim under `min_ua` test UA on a seed is marked undertrained and left out of every other
table's mean for that seed. `--size smoke` is for the test suite: seconds, numbers of no meaning.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from staa.datasets import AudioDataset, load_records  # noqa: E402
from staa.datasets.synthetic.corpus import EMOTIONS, CorpusConfig, build_corpus  # noqa: E402
from staa.generator import AttackTrainConfig, recipe, train_generator  # noqa: E402
from staa.io.atomic import write_json  # noqa: E402
from staa.io.lock import LockError  # noqa: E402
from staa.io.provenance import machine  # noqa: E402

EPS = (0.002, 0.03)  # the realistic budget first, then the paper's
AT_EPS = 0.002
DEFENSES = ("none", "mp3:32", "resample:8000", "quantize:8", "lowpass:4000", "noise:30")
STAGES = ("victims", "generators", "white_box", "transfer", "defenses", "hardening")
NEEDS = {"generators": "victims", "white_box": "generators", "transfer": "generators", "defenses": "generators"}
NEEDS["hardening"] = "victims"
# with two lanes, the second runs these while the first trains the generators and measures white-box and transfer
SECOND_LANE = ("hardening", "defenses")
TABLES = (  # what results.json holds, in the order results.md shows them
    "victims",
    "white_box@0.002",
    "white_box@0.03",
    "speed",
    "transfer",
    "survival",
    "defended_accuracy",
    "hardening",
    "wall_time",
)
NAMES = {
    "staa": "STAA",
    "fgsm": "FGSM",
    "pgd10": "PGD-10",
    "pgd100": "PGD-100",
    "sparse_pgd": "sparse PGD",
    "apgd_ce": "APGD-CE",
    "apgd_t": "APGD-T",
    "cw": "C&W",
    "square": "Square",
    "standard": "standard suite",
}


@dataclass(frozen=True)
class Size:
    n_clips: int
    victim_epochs: int
    generator_epochs: int  # the surrogate's generators, at each eps
    transfer_epochs: int  # the other victims' generators and the ensemble's
    at_epochs: int  # adversarial training from scratch
    clips: int  # test clips behind every rate the README quotes
    subset_clips: int  # the fixed subset (the first test clips) of the costliest attacks
    # the first is the surrogate; a log-mel and a raw-waveform family, both >= 0.85 test UA at the full size (the
    # transformer and wav2vec2 stay near chance on this corpus: weak victims make every table mean less)
    victims: tuple = ("mel_cnn", "zhao19")
    min_ua: float = 0.85
    attacks: dict = field(  # on `clips`, at eps 0.002; `paper_attacks` of them at 0.03 too
        default_factory=lambda: {
            "fgsm": "fgsm",
            "pgd10": "pgd:steps=10",
            "sparse_pgd": "sparse_pgd",
            "apgd_ce": "apgd:steps=50",
            "apgd_t": "apgd_t:steps=50",
        }
    )
    costly: dict = field(  # on the subset
        default_factory=lambda: {"pgd100": "pgd:steps=100", "cw": "cw", "square": "square:queries=1000"}
    )
    paper_attacks: tuple = ("fgsm", "pgd10", "pgd100")
    standard: str = "standard:steps=20:queries=200"
    at_methods: tuple = ("generator", "pgd")


SIZES = {
    "smoke": Size(
        n_clips=60,
        victim_epochs=1,
        generator_epochs=1,
        transfer_epochs=1,
        at_epochs=1,
        clips=4,
        subset_clips=2,
        victims=("mel_cnn", "emo18"),
        attacks={"fgsm": "fgsm", "pgd10": "pgd:steps=2"},
        costly={"pgd100": "pgd:steps=3", "square": "square:queries=5"},
        standard="standard:steps=2:queries=5",
        min_ua=0.0,  # the test suite's pipeline check: no model here trains
    ),
    "quick": Size(
        n_clips=240,
        victim_epochs=2,
        generator_epochs=1,
        transfer_epochs=1,
        at_epochs=1,
        clips=24,
        subset_clips=8,
        attacks={"fgsm": "fgsm", "pgd10": "pgd:steps=10", "apgd_ce": "apgd:steps=10"},
        costly={"pgd100": "pgd:steps=100", "square": "square:queries=100"},
        standard="standard:steps=5:queries=20",
        min_ua=0.0,  # minutes, to see every table written: its victims are far from their plateau
    ),
    "full": Size(
        n_clips=1200,
        victim_epochs=6,
        generator_epochs=4,
        transfer_epochs=3,
        at_epochs=4,
        clips=100,
        subset_clips=32,
    ),
}


def _commit() -> str:
    git = lambda *args: subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    sha = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = [line for line in git("status", "--porcelain").splitlines() if "docs/results" not in line]
    return sha + ("-dirty" if dirty else "")


class SettingsError(ValueError):
    pass


def _read_part(path: Path, settings: dict) -> dict | None:
    """A finished stage's part, None when there is none; one of other settings is refused, not mixed in."""
    if not path.is_file():
        return None
    try:
        part = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise SettingsError(f"{path}: not a readable part ({e})") from None
    # min_ua is how the gather judges the victims, not how the part was made
    if {k: v for k, v in part.get("settings", {}).items() if k != "min_ua"} != {
        k: v for k, v in settings.items() if k != "min_ua"
    }:
        raise SettingsError(f"{path}: a part of other settings; move it away or use another --parts folder")
    return part


def _test_records(records, n: int) -> list:
    """The first n test clips: every stage scores the same ones (the costliest attacks the first of them)."""
    return [r for r in records if r.split == "test"][:n]


def _test_set(records, n: int) -> AudioDataset:
    return AudioDataset(_test_records(records, n), list(EMOTIONS), crop="center")


class Seed:
    """One seed: its stages in order, each returning its numbers; models under WORK/seedK, parts under PARTS/seedK."""

    def __init__(self, size: Size, seed: int, work: Path, parts: Path, records, manifest: Path, progress: bool):
        self.size, self.seed, self.records, self.manifest, self.progress = size, seed, records, manifest, progress
        self.dir, self.parts = work / f"seed{seed}", parts / f"seed{seed}"
        self.settings = json.loads(json.dumps(asdict(size)))
        self.surrogate = size.victims[0]
        self.victim = lambda arch: self.dir / "victims" / arch / "best.pt"
        self.generator = lambda name: self.dir / "generators" / name / "best.pt"

    def run(self, commit: str, stages=STAGES) -> dict:
        out = {}
        for name in stages:
            path = self.parts / f"{name}.json"
            part = _read_part(path, self.settings)
            if part is None:
                self._wait_for(NEEDS.get(name))
                started = time.perf_counter()
                result = getattr(self, name)()
                part = {
                    "stage": name,
                    "seed": self.seed,
                    "result": result,
                    "seconds": time.perf_counter() - started,
                    "commit": commit,
                    "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                    "machine": machine(),
                    "settings": self.settings,
                }
                write_json(path, part)
                print(f"seed {self.seed}: {name} in {part['seconds']:.0f} s", flush=True)
            out[name] = part
        return out

    def _wait_for(self, stage: str | None) -> None:
        """Until the other lane has written `stage`'s part (the first lane ends with an error if it fails, which
        ends this one too: its parent is gone)."""
        parent = os.getppid()
        while stage is not None and not (self.parts / f"{stage}.json").is_file():
            if os.getppid() != parent:
                raise SettingsError(f"the lane that runs {stage} has stopped; run the seed again to resume")
            time.sleep(5)

    def victims(self) -> dict:
        from staa.training.victim import TrainConfig, train_victim

        out = {}
        for arch in self.size.victims:
            cfg = TrainConfig(arch=arch, classes=list(EMOTIONS), epochs=self.size.victim_epochs, seed=self.seed)
            report = train_victim(cfg, self.records, self.victim(arch).parent, progress=self.progress)
            out[arch] = {"val_ua": report["best_val_ua"], "test_ua": report["test"]["ua"]}
        return out

    def _train_generator(self, name: str, surrogates: list, eps: float, epochs: int) -> dict:
        cfg = AttackTrainConfig(**{**recipe("default"), "eps_schedule": [[0, eps]]}, epochs=epochs, seed=self.seed)
        report = train_generator(cfg, surrogates, self.records, self.generator(name).parent, progress=self.progress)
        return {"best_val_fooling_rate": report["best_val_fooling_rate"], "epochs": len(report["history"])}

    def generators(self) -> dict:
        s, size = self.surrogate, self.size
        out = {
            f"{s}@{eps:g}": self._train_generator(f"{s}@{eps:g}", [self.victim(s)], eps, size.generator_epochs)
            for eps in EPS
        }
        for arch in size.victims[1:]:
            out[f"{arch}@0.03"] = self._train_generator(f"{arch}@0.03", [self.victim(arch)], 0.03, size.transfer_epochs)
        everyone = [self.victim(a) for a in size.victims]
        out["ensemble@0.03"] = self._train_generator("ensemble@0.03", everyone, 0.03, size.transfer_epochs)
        return out

    def white_box(self) -> dict:
        from eval.bench import bench_attacks

        out = {}
        for eps in EPS:
            keep = lambda specs: {k: v for k, v in specs.items() if eps == AT_EPS or k in self.size.paper_attacks}
            row = {}
            # the costliest attacks on the fixed subset, each timed beside STAA on the same clips
            for part, n, specs in (
                ("main", self.size.clips, self.size.attacks),
                ("subset", self.size.subset_clips, self.size.costly),
            ):
                report = bench_attacks(
                    self.victim(self.surrogate),
                    self.generator(f"{self.surrogate}@{eps:g}"),
                    lambda classes, rate, n=n: AudioDataset(
                        _test_records(self.records, n), classes, sample_rate=rate, crop="center"
                    ),
                    threads=torch.get_num_threads(),
                    eps=eps,
                    attacks=keep(specs),
                    progress=self.progress,
                )
                row[part] = {"n": report["n"], "results": report["results"]}
            out[f"{eps:g}"] = row
        return out

    def transfer(self) -> dict:
        from staa.attacks import STAA
        from staa.attacks.runner import transfer_matrix
        from staa.models.victim import load_victim

        victims = {arch: load_victim(self.victim(arch)).model for arch in self.size.victims}
        sources = {name: f"{name}@0.03" for name in [*self.size.victims, "ensemble"]}
        sources = {name: STAA.from_checkpoint(self.generator(g)) for name, g in sources.items()}
        test = _test_set(self.records, self.size.clips)
        matrix = transfer_matrix(sources, victims, test, progress=self.progress)
        return {k: matrix[k] for k in ("fooling_rate", "n")}

    def defenses(self) -> dict:
        from eval.config import EvalConfig
        from eval.harness import run_grid

        cells = []
        s = self.surrogate
        grids = {  # the standard suite, adaptive through each defense, on the subset
            "cheap": (
                {
                    "staa": f"staa:generator={self.generator(f'{s}@{AT_EPS:g}')}",
                    "fgsm": "fgsm",
                    "pgd10": "pgd:steps=10",
                },
                self.size.clips,
            ),
            "standard": ({"standard": self.size.standard}, self.size.subset_clips),
        }
        for name, (attacks, n) in grids.items():
            cfg = EvalConfig(
                data=str(self.manifest),
                victims={s: str(self.victim(s))},
                attacks=attacks,
                defenses=list(DEFENSES),
                max_clips=n,
                eps=AT_EPS,
                perceptual=False,
                seed=self.seed,
            )
            results = run_grid(cfg, self.dir / "eval" / name, progress=self.progress)
            keys = ("n", "success_rate", "survival", "defended_adversarial_accuracy", "defended_clean_accuracy")
            cells += [{k: c[k] for k in ("attack", "defense", *keys)} for c in results["cells"]]
        return {"cells": cells}

    def hardening(self) -> dict:
        """The surrogate trained from scratch by each method at eps 0.002 and judged by the standard suite there, per
        clip the worst of APGD-CE, APGD-T and Square (robust accuracy: right before and after)."""
        from staa.attacks.registry import build_attack
        from staa.attacks.runner import robust_correct
        from staa.metrics.classification import classification_scores
        from staa.models.inference import predict
        from staa.models.victim import load_victim
        from staa.training.adversarial import AdvTrainConfig, adv_train

        s = self.surrogate

        def train(method: str, epochs: int) -> dict:
            cfg = AdvTrainConfig(
                arch=s,
                classes=list(EMOTIONS),
                method=method,
                epochs=epochs,
                eps=AT_EPS,
                seed=self.seed,
                init_generator=str(self.generator(f"{s}@{AT_EPS:g}")) if method == "generator" else None,
                generator=recipe("default"),
                gen_crop_seconds=0,
            )
            report = adv_train(cfg, self.records, self.dir / "hardened" / method, progress=self.progress)
            return {"epoch_seconds": statistics.mean(h["seconds"] for h in report["history"]), "flags": report["flags"]}

        clean = train("clean", 1)["epoch_seconds"]  # a clean epoch timed in the same process: the cost's unit
        models, out = {"none": self.victim(s)}, {}
        for method in self.size.at_methods:
            trained = train(method, self.size.at_epochs)
            models[method] = self.dir / "hardened" / method / "victim.pt"
            out[method] = {"epoch_cost": trained["epoch_seconds"] / clean, "flags": trained["flags"]}
        test = _test_set(self.records, self.size.clips)
        for name, path in models.items():
            model = load_victim(path).model.eval()
            attack = build_attack(self.size.standard, model, sample_rate=16_000, eps=AT_EPS)
            row = out.setdefault(name, {})
            row["clean_ua"] = classification_scores(*predict(model, test), len(EMOTIONS))["ua"]
            row["standard_accuracy"] = float(robust_correct(attack, model, test).float().mean())
        return out


def _stat(values: list) -> dict | None:
    """Mean +- std over seeds, with every seed's value (None where a seed has none)."""
    got = [v for v in values if v is not None]
    if not got:
        return None
    return {"mean": statistics.mean(got), "std": statistics.stdev(got) if len(got) > 1 else None, "seeds": values}


def _undertrained(run: dict, size: Size) -> set:
    return {a for a, v in run["victims"]["result"].items() if v["test_ua"] < size.min_ua}


class Tables:
    """The tables of docs/results.json from the parts of the seeds `runs` (seed -> stage -> part)."""

    def __init__(self, runs: dict, size: Size):
        self.runs, self.size = runs, size
        self.surrogate = size.victims[0]

    def table(self, key: str, title: str, columns: list, stages: tuple, pick, note: str = "", order=()) -> dict:
        """`pick(run)`: {label: {column: value}} for one seed; a seed enters when it has every stage of `stages`
        and its surrogate is not undertrained (then its numbers would say nothing about the attacks)."""
        seeds = [
            k
            for k, run in self.runs.items()
            if all(s in run for s in stages)
            and (key in ("victims", "wall_time") or self.surrogate not in _undertrained(run, self.size))
        ]
        rows: dict = {}
        for i, k in enumerate(seeds):
            for label, cols in pick(self.runs[k]).items():
                for col, value in cols.items():
                    rows.setdefault(label, {}).setdefault(col, [None] * len(seeds))[i] = value
        labels = [*(o for o in order if o in rows), *(r for r in rows if r not in order)]
        commits = sorted({self.runs[k][s]["commit"] for k in seeds for s in stages})
        if len(commits) > 1:
            which = "; ".join(f"seed {k} {s}: {self.runs[k][s]['commit']}" for k in seeds for s in stages)
            note = f"{note} Its parts come from more than one commit ({which}).".strip()
        return {
            "title": title,
            "columns": columns,
            "rows": {label: {c: _stat(rows[label].get(c, [None] * len(seeds))) for c in columns} for label in labels},
            "row_order": labels,  # json keys come back sorted
            "seeds": seeds,
            "note": note,
        }

    def build(self) -> dict:
        tables = {"victims": self.victims()}
        for eps in EPS:
            tables[f"white_box@{eps:g}"] = self.white_box(eps)
        tables |= {"speed": self.speed(), "transfer": self.transfer()}
        tables |= self.defenses()
        tables |= {"hardening": self.hardening(), "wall_time": self.wall_time()}
        return tables

    def victims(self) -> dict:
        notes = [
            f"{a} on seed {k}"
            for k, run in self.runs.items()
            if "victims" in run
            for a in sorted(_undertrained(run, self.size))
        ]
        return self.table(
            "victims",
            "Victims (clean accuracy)",
            ["val UA", "test UA"],
            ("victims",),
            lambda r: {a: {"val UA": v["val_ua"], "test UA": v["test_ua"]} for a, v in r["victims"]["result"].items()},
            f"Unweighted accuracy on the speaker- and sentence-held-out splits; chance is 0.25. {self.size.victim_epochs} "
            f"epochs on {self.size.n_clips} clips. Undertrained (test UA under {self.size.min_ua}, left out of every other "
            f"table for that seed): {', '.join(notes) or 'none'}.",
            order=self.size.victims,
        )

    def white_box(self, eps: float) -> dict:
        key = f"{eps:g}"

        def pick(run):
            out = {}
            for part in ("main", "subset"):
                got = run["white_box"]["result"][key][part]
                for name, r in got["results"].items():
                    if name == "staa" and part == "subset":
                        continue
                    out[f"{NAMES.get(name, name)}" + (f" ({got['n']} clips)" if part == "subset" else "")] = {
                        "fooling": r["fooling_rate"],
                        "l0 ratio": r["l0_ratio"],
                        "distortion dB": r["distortion_db"],
                        "ms/clip": 1000 * r["seconds_per_clip"],
                        "x STAA": r["seconds_per_clip"] / got["results"]["staa"]["seconds_per_clip"],
                    }
            return out

        return self.table(
            f"white_box@{key}",
            f"White-box attacks on {self.surrogate}, eps {key}",
            ["fooling", "l0 ratio", "distortion dB", "ms/clip", "x STAA"],
            ("white_box",),
            pick,
            f"{self.size.clips} test clips; the costliest attacks on the first {self.size.subset_clips} of them, each "
            f"timed beside STAA on those clips (x STAA). STAA: the generator trained at this eps (default recipe, "
            f"{self.size.generator_epochs} epochs). Distortion over successful clips; time per clip after a warm-up batch.",
            order=["STAA"],
        )

    def speed(self) -> dict:
        def pick(run):
            out = {}
            for eps in EPS:
                got = run["white_box"]["result"][f"{eps:g}"]
                main, sub = got["main"]["results"], got["subset"]["results"]
                ratio = lambda r, name: r[name]["seconds_per_clip"] / r["staa"]["seconds_per_clip"]
                out[f"eps {eps:g}"] = {
                    "STAA ms/clip": 1000 * main["staa"]["seconds_per_clip"],
                    "FGSM / STAA": ratio(main, "fgsm"),
                    "PGD-10 / STAA": ratio(main, "pgd10"),
                    "PGD-100 / STAA": ratio(sub, "pgd100"),
                    "STAA fooling": main["staa"]["fooling_rate"],
                    "FGSM fooling": main["fgsm"]["fooling_rate"],
                    "PGD-10 fooling": main["pgd10"]["fooling_rate"],
                }
            return out

        columns = ["STAA ms/clip", "FGSM / STAA", "PGD-10 / STAA", "PGD-100 / STAA", "STAA fooling", "FGSM fooling"]
        return self.table(
            "speed",
            "Attack speed: time per clip relative to STAA",
            [*columns, "PGD-10 fooling"],
            ("white_box",),
            pick,
            f"The same clips, victim and process ({self.size.clips} clips; PGD-100 on {self.size.subset_clips}).",
        )

    def transfer(self) -> dict:
        def pick(run):
            weak = _undertrained(run, self.size)
            rates = run["transfer"]["result"]["fooling_rate"]
            return {
                f"from {s}": {t: (None if t in weak or s in weak else v) for t, v in row.items()}
                for s, row in rates.items()
            }

        return self.table(
            "transfer",
            "Transfer: fooling rate of STAA generators (eps 0.03) on each victim",
            list(self.size.victims),
            ("victims", "transfer"),
            pick,
            f"Rows: the generator's surrogate (`ensemble`: all the victims' mean logits); a surrogate's own column is "
            f"white-box. {self.size.clips} test clips; {self.size.transfer_epochs} epochs for the other victims' and the "
            "ensemble's generators.",
            order=[f"from {a}" for a in [*self.size.victims, "ensemble"]],
        )

    def defenses(self) -> dict:
        def survival(run):  # undefended: the success rate; defended: the share of those successes that survive
            out: dict = {}
            for c in run["defenses"]["result"]["cells"]:
                key = "success_rate" if c["defense"] == "none" else "survival"
                out.setdefault(NAMES.get(c["attack"], c["attack"]), {})[c["defense"]] = c[key]
            return out

        def defended(run):
            out: dict = {}
            for c in run["defenses"]["result"]["cells"]:
                if c["attack"] != "standard":  # its clean row is the subset's
                    out.setdefault("no attack", {})[c["defense"]] = c["defended_clean_accuracy"]
                out.setdefault(NAMES.get(c["attack"], c["attack"]), {})[c["defense"]] = c[
                    "defended_adversarial_accuracy"
                ]
            return out

        sizes = f"{self.size.clips} test clips; the standard suite ({self.size.standard}) on the first {self.size.subset_clips}"
        return {
            "survival": self.table(
                "survival",
                f"Defenses at eps {AT_EPS:g}: success of each attack on {self.surrogate} (none) and the share of "
                "successes that survive each defense",
                list(DEFENSES),
                ("defenses",),
                survival,
                f"{sizes}, attacking through each defense (BPDA, EOT over random ones). The `none` column is the "
                "undefended success rate.",
            ),
            "defended_accuracy": self.table(
                "defended_accuracy",
                f"Defenses at eps {AT_EPS:g}: accuracy of the defended {self.surrogate} under each attack",
                list(DEFENSES),
                ("defenses",),
                defended,
                f"{sizes}. Row `no attack`: the defense's clean accuracy (what it costs).",
                order=["no attack"],
            ),
        }

    def hardening(self) -> dict:
        def pick(run):
            return {
                name: {
                    "clean UA": r["clean_ua"],
                    "standard suite": r["standard_accuracy"],
                    "epoch cost": r.get("epoch_cost"),
                }
                for name, r in run["hardening"]["result"].items()
            }

        return self.table(
            "hardening",
            f"Hardening {self.surrogate} at eps {AT_EPS:g}, judged by the standard suite",
            ["clean UA", "standard suite", "epoch cost"],
            ("hardening",),
            pick,
            f"Trained from scratch for {self.size.at_epochs} epochs by each method (`none`: the victim, "
            f"{self.size.victim_epochs} clean epochs). Standard suite: robust accuracy, per clip the worst of APGD-CE, "
            f"APGD-T and Square ({self.size.standard}) at eps {AT_EPS:g} on {self.size.clips} test clips; "
            "epoch cost: seconds per epoch over a clean epoch's, timed in the same process.",
            order=["none", *self.size.at_methods],
        )

    def wall_time(self) -> dict:
        def pick(run):
            out = {stage: {"seconds": part["seconds"]} for stage, part in run.items()}
            return out | {"seed (all stages)": {"seconds": sum(p["seconds"] for p in run.values())}}

        return self.table(
            "wall_time",
            "Wall time per stage (seconds)",
            ["seconds"],
            STAGES,
            pick,
            "The corpus, shared by the seeds, is not counted. A stage resumed after a kill counts only its time after "
            "the restart (its trainers pick up from their checkpoints).",
            order=STAGES,
        )


def _elapsed(parts: list[dict]) -> float:
    """Seconds from the first stage's start to the last stage's end, from each part's date (to the minute) and
    seconds: what a user waits for one seed, stages in two lanes or in turn."""
    end = lambda q: datetime.strptime(q["date"], "%Y-%m-%d %H:%M UTC").timestamp()
    return max(map(end, parts)) - min(end(q) - q["seconds"] for q in parts)


def bars(runs: dict, size: Size) -> list[dict]:
    """Each bar the suite claims, with the seeds it was judged on and its verdict on each (True: met)."""
    s = size.victims[0]
    out: list = []

    def bar(text: str, stages: tuple, test) -> None:
        seeds = [k for k, run in runs.items() if all(x in run for x in stages) and s not in _undertrained(run, size)]
        out.append({"bar": text, "seeds": seeds, "met": [bool(test(runs[k])) for k in seeds]})

    wb = lambda run, eps: run["white_box"]["result"][f"{eps:g}"]
    for eps in EPS:
        main = lambda run, eps=eps: wb(run, eps)["main"]["results"]
        sub = lambda run, eps=eps: wb(run, eps)["subset"]["results"]
        bar(
            f"white-box at eps {eps:g}: STAA fooling >= PGD-10's, l0 <= 0.25, distortion >= 20 dB",
            ("white_box",),
            lambda r, m=main: (
                m(r)["staa"]["fooling_rate"] >= m(r)["pgd10"]["fooling_rate"]
                and m(r)["staa"]["l0_ratio"] <= 0.25
                and (m(r)["staa"]["distortion_db"] or 0) >= 20
            ),
        )
        per = lambda res, name: res[name]["seconds_per_clip"] / res["staa"]["seconds_per_clip"]
        bar(
            f"speed at eps {eps:g}: >= 20x PGD-10 and >= 200x PGD-100 per clip",
            ("white_box",),
            lambda r, m=main, u=sub: per(m(r), "pgd10") >= 20 and per(u(r), "pgd100") >= 200,
        )
        bar(
            f"faster than FGSM at a higher fooling rate, eps {eps:g}",
            ("white_box",),
            lambda r, m=main: per(m(r), "fgsm") > 1 and m(r)["staa"]["fooling_rate"] > m(r)["fgsm"]["fooling_rate"],
        )
    rate = lambda run, src, tgt: run["transfer"]["result"]["fooling_rate"][src][tgt]
    bar(
        "transfer at eps 0.03 across families (each victim's generator on every other victim) >= 0.5",
        ("victims", "transfer"),
        lambda r: all(
            rate(r, a, b) >= 0.5
            for a in size.victims
            for b in size.victims
            if a != b and not {a, b} & _undertrained(r, size)
        ),
    )
    h = lambda run: run["hardening"]["result"]
    bar(
        f"generator hardening: standard-suite accuracy at eps {AT_EPS:g} >= 20 points above the undefended model's",
        ("hardening",),
        lambda r: h(r)["generator"]["standard_accuracy"] >= h(r)["none"]["standard_accuracy"] + 0.2,
    )
    if "pgd" in size.at_methods:
        bar(
            "generator hardening: standard-suite accuracy within 3 points of PGD-10 training's",
            ("hardening",),
            lambda r: h(r)["generator"]["standard_accuracy"] >= h(r)["pgd"]["standard_accuracy"] - 0.03,
        )
    bar(
        "generator hardening: clean UA within 3 points of the undefended model's",
        ("hardening",),
        lambda r: h(r)["generator"]["clean_ua"] >= h(r)["none"]["clean_ua"] - 0.03,
    )
    bar(
        "generator hardening: an epoch costs <= 2.5x a clean one",
        ("hardening",),
        lambda r: h(r)["generator"]["epoch_cost"] <= 2.5,
    )
    return out


def _cell(stat: dict | None) -> str:
    if stat is None:
        return ""
    digits = 3 if abs(stat["mean"]) < 10 else 1 if abs(stat["mean"]) < 100 else 0
    fmt = lambda v: "–" if v is None else f"{v:.{digits}f}"
    text = fmt(stat["mean"]) + (f" ± {fmt(stat['std'])}" if stat["std"] is not None else "")
    if len(stat["seeds"]) > 1:
        text += " (" + ", ".join(map(fmt, stat["seeds"])) + ")"
    return text


def _seeds(seeds: list, of: int) -> str:
    return f"{len(seeds)} of {of} seed(s): " + (", ".join(map(str, seeds)) or "none")


def render(results: dict) -> str:
    p = results["provenance"]
    n = len(results["seeds"])
    machines = "; ".join(
        f"{m['platform']} ({m['processor']}, {m['cpu_count']} cores), torch {m['torch']}, device {m['device']}"
        for m in p["machines"]
    )
    lines = [
        "# Results",
        "",
        "Made by `scripts/reproduce.py`; do not edit by hand. Every number is on the built-in synthetic corpus "
        "(rule-made emotions, far easier than real speech: never compare them with published SER numbers). "
        "Each cell is the mean ± std over the seeds its table holds, then each seed's value in seed order; a table "
        "of one seed is one sample, not a claim. The measurements behind the design choices are in "
        "[experiments.md](experiments.md).",
        "",
        f"Gathered {p['date']} from {len(p['parts'])} parts of size {results['size']} (seeds "
        f"{', '.join(map(str, results['seeds']))}), commits {', '.join(p['commits'])}, threads "
        f"{', '.join(map(str, p['threads']))}, on {machines}. Each seed: `{p['command']}`; then "
        f"`python scripts/reproduce.py --size {results['size']} --gather`.",
        "",
        "| seed | elapsed | stage time | commit | finished |",
        "|---|---|---|---|---|",
    ]
    for seed in results["seeds"]:
        parts = [q for q in p["parts"] if q["seed"] == seed]
        done = f"{len(parts)} of {len(STAGES)} stages"
        lines.append(
            f"| {seed} | {_elapsed(parts) / 60:.0f} min | {sum(q['seconds'] for q in parts) / 60:.1f} min ({done}) | "
            f"{', '.join(sorted({q['commit'] for q in parts}))} | {max(q['date'] for q in parts)} |"
        )
    lines += [
        "",
        "Elapsed: from the first stage's start to the last one's end, to the minute (the parts' dates); with two lanes "
        "(`--lanes 2`, the default for `--seed`) it is less than the stage time, the sum of every stage's seconds.",
    ]
    lines += ["", "## Bars", "", "| bar | met on | per seed |", "|---|---|---|"]
    for b in results["bars"]:
        verdicts = " ".join(f"{k}: {'yes' if m else 'no'}" for k, m in zip(b["seeds"], b["met"]))
        lines.append(f"| {b['bar']} | {sum(b['met'])} of {len(b['met'])} | {verdicts} |")
    for key in TABLES:  # json keys come back sorted
        t = results["tables"][key]
        lines += ["", f"## {t['title']}", "", f"<!-- table {key} -->", "", f"{_seeds(t['seeds'], n)}.", ""]
        lines.append("| | " + " | ".join(t["columns"]) + " |")
        lines.append("|---|" + "---|" * len(t["columns"]))
        for label in t["row_order"]:
            lines.append(f"| {label} | " + " | ".join(_cell(t["rows"][label][c]) for c in t["columns"]) + " |")
        if t["note"]:
            lines += ["", t["note"]]
    return "\n".join(lines) + "\n"


def read_parts(folder: Path, size: Size) -> dict:
    """seed -> stage -> part, from every PARTS/SIZE/seedK/STAGE.json present."""
    settings = json.loads(json.dumps(asdict(size)))
    runs: dict = {}
    for d in sorted(folder.glob("seed*"), key=lambda d: (len(d.name), d.name)):
        if not d.name[4:].isdigit():
            continue
        stages = {s: _read_part(d / f"{s}.json", settings) for s in STAGES}
        stages = {s: part for s, part in stages.items() if part is not None}
        if stages:
            runs[int(d.name[4:])] = stages
    return runs


def gather(folder: Path, size_name: str, out: Path) -> dict:
    from staa.io.atomic import atomic_open

    size = SIZES[size_name]
    runs = read_parts(folder, size)
    if not runs or not any("victims" in r for r in runs.values()):
        raise SettingsError(f"{folder}: no parts of size {size_name} to gather (run --seed K first)")
    parts = [
        {k: part[k] for k in ("seed", "stage", "commit", "date", "seconds")} | {"threads": part["machine"]["threads"]}
        for run in runs.values()
        for part in run.values()
    ]
    machines = []
    for run in runs.values():
        for part in run.values():
            m = {k: v for k, v in part["machine"].items() if k != "threads"}
            if m not in machines:
                machines.append(m)
    results = {
        "schema": "staa-ser/reproduce/2",
        "size": size_name,
        "settings": asdict(size),
        "seeds": list(runs),
        "provenance": {
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "commits": sorted({q["commit"] for q in parts}),
            "machines": machines,
            "threads": sorted({q["threads"] for q in parts}),
            "command": f"python scripts/reproduce.py --size {size_name} --seed K",
            "parts": parts,
        },
        "bars": bars(runs, size),
        "tables": Tables(runs, size).build(),
    }
    write_json(out / "results.json", results)
    with atomic_open(out / "results.md") as f:
        f.write(render(results))
    return results


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=list(SIZES), default="full")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--seed", type=int, help="run this seed's stages only and write its parts (no gather)")
    which.add_argument("--seeds", type=int, help="run seeds 0 to N-1, then gather")
    which.add_argument("--gather", action="store_true", help="build results.json and .md from the parts present")
    p.add_argument("--work", default="runs/reproduce", help="where the trained models go (default: runs/reproduce)")
    p.add_argument(
        "--parts", default="docs/results/parts", help="where the stage parts go (default: docs/results/parts)"
    )
    p.add_argument("--out", default="docs", help="folder for results.json and results.md (default: docs)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--lanes",
        type=int,
        choices=(1, 2),
        default=2,
        help="--seed: after the victims, run the hardening and defense stages in a second process beside the others, "
        "the threads shared between the two (default 2; 1: every stage in turn)",
    )
    p.add_argument("--stages", default=",".join(STAGES), help=argparse.SUPPRESS)  # the second lane's
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    a = p.parse_args(argv)
    if a.seed is None and a.seeds is None and not a.gather:
        p.error("say which: --seed K (one seed's parts), --seeds N (seeds 0..N-1, then gather) or --gather")
    if (a.seed is not None and a.seed < 0) or (a.seeds is not None and a.seeds < 1):
        p.error("--seed must be 0 or more and --seeds at least 1")
    parts = Path(a.parts) / a.size
    try:
        if not a.gather:
            _run_seeds(a, parts)
        if a.seed is None:
            results = gather(parts, a.size, Path(a.out))
            print(render(results).split("## Bars")[1].split("\n## ")[0])
    except (SettingsError, LockError) as e:  # one line: a part of other settings, or a corpus being written
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _run_seeds(a, parts: Path) -> None:
    torch.set_num_threads(a.threads)
    size = SIZES[a.size]
    work = Path(a.work) / a.size
    plan = work / "plan.json"
    if plan.is_file() and json.loads(plan.read_text(encoding="utf-8")) != json.loads(json.dumps(asdict(size))):
        raise SettingsError(f"{plan}: holds a run of other settings; use another --work folder")
    work.mkdir(parents=True, exist_ok=True)
    write_json(plan, asdict(size))
    manifest = build_corpus(work / "corpus", CorpusConfig(n_clips=size.n_clips), progress=not a.quiet)
    records = load_records("manifest", manifest)
    commit = _commit()
    stages = tuple(a.stages.split(","))
    if not set(stages) <= set(STAGES):
        raise SettingsError(f"--stages: choose from {', '.join(STAGES)}")
    for seed in [a.seed] if a.seed is not None else range(a.seeds):
        started = time.perf_counter()
        print(f"seed {seed}: models in {work / f'seed{seed}'}, parts in {parts / f'seed{seed}'}", flush=True)
        run = Seed(size, seed, work, parts, records, manifest, progress=not a.quiet)
        if a.seed is not None and a.lanes == 2 and stages == STAGES:
            _two_lanes(a, run, commit)
        else:
            run.run(commit, stages)
        if stages == STAGES:
            print(f"seed {seed}: {time.perf_counter() - started:.0f} s", flush=True)


def _two_lanes(a, run: "Seed", commit: str) -> None:
    """The victims with every thread, then two processes of half the threads each: this one trains the generators
    and measures white-box and transfer, the other hardens and measures the defenses (once the generators exist)."""
    run.run(commit, ("victims",))
    half = max(1, a.threads // 2)
    torch.set_num_threads(half)
    args = [sys.executable, __file__, "--size", a.size, "--seed", str(a.seed), "--work", a.work, "--parts", a.parts]
    args += ["--threads", str(half), "--stages", ",".join(SECOND_LANE)] + (["--quiet"] if a.quiet else [])
    env = {**os.environ, "OMP_NUM_THREADS": str(half)}
    with subprocess.Popen(args, env=env) as other:
        try:
            run.run(commit, tuple(s for s in STAGES if s not in SECOND_LANE))
        except BaseException:
            other.terminate()
            raise
        if other.wait() != 0:
            raise SettingsError(f"the second lane ({', '.join(SECOND_LANE)}) failed; run the seed again to resume")


if __name__ == "__main__":
    sys.exit(main())
