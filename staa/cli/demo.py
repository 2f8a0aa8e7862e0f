"""`staa demo`: the pipeline on the built-in corpus, each step resuming from what is already on disk.

corpus -> victims -> class-conditional STAA generator (plain, and in the full demo a defense-aware fine-tune of
it) -> white-box and transfer fooling rates -> generator adversarial training of the surrogate -> a grid of attacks
x defenses over every victim (the hardened one included, for before/after) through the evaluation harness ->
report.html.

Every step writes its results atomically and is skipped when they are already there, and every random draw
is seeded (`--seed` changes every training and attack draw; the corpus stays the same), so a run killed at any
moment and started again ends with the numbers of an uninterrupted run.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from eval.harness import timed
from staa.attacks import STAA
from staa.attacks.runner import run_attack, transfer_matrix
from staa.datasets import AudioDataset, load_records
from staa.datasets.synthetic.corpus import EMOTIONS, CorpusConfig, build_corpus
from staa.generator import AttackTrainConfig, recipe, train_generator
from staa.io.atomic import write_json
from staa.metrics.intervals import wilson
from staa.models.victim import load_victim
from staa.training.adversarial import AdvTrainConfig, adv_train
from staa.training.victim import TrainConfig, train_victim


@dataclass(frozen=True)
class DemoPlan:
    n_clips: int
    # the first is the surrogate: the generator trains against it, AT hardens it. mel_cnn: against emo18 the conditional
    # generator stays dense (l0 0.5-0.7 under the 0.2 budget; docs/experiments.md)
    victims: tuple = ("mel_cnn", "zhao19")
    victim_epochs: int = 8
    generator_epochs: int = 8
    aware_epochs: int = 0  # 0: no defense-aware generator; else epochs of defense-aware fine-tuning of the plain one
    aware_of: tuple = ("mp3:32", "resample:8000")
    at_epochs: int = 3  # generator adversarial training (fine-tuning the surrogate), the best epoch kept; 0: none
    # grid attacks besides the STAA generators; an adaptive one, or every defended cell is flagged
    attacks: dict = field(default_factory=lambda: {"fgsm": "fgsm", "bpda": "adaptive_pgd:steps=10"})
    defenses: tuple = ("none", "mp3:32", "resample:8000", "quantize:8")
    eval_clips: int = 40
    eps: tuple = (0.002, 0.03)  # the grid's budgets for the gradient attacks (the generators keep their own)
    perceptual: bool = True
    perceptual_clips: int | None = None  # PESQ / STOI on a seeded sample of this many clips; None: every clip
    clip_seconds: float = 3.0
    # the standard suite that judges the hardening at its budget: APGD-CE and APGD-T steps, Square queries
    standard_steps: int = 20
    standard_queries: int = 200


# Sized for 2 CPU cores: the full demo 21 minutes alone, --quick under 4 (docs/experiments.md). The full one uses the
# victims of `scripts/reproduce.py --size full` (both reach 0.85 test UA there). Every grid holds an adaptive attack
# (BPDA through each defense) and no random defense, so the sanity check has nothing to flag of the grid's own making;
# the random defenses and the standard suite through each defense are `staa evaluate`'s (and reproduce's).
PLANS = {
    "quick": DemoPlan(
        n_clips=480,
        victims=("mel_cnn", "emo18"),
        victim_epochs=4,
        generator_epochs=5,
        at_epochs=1,
        # one budget, the realistic one, and no single-step attack: at 0.03 or beside FGSM a short BPDA run on 40
        # clips raised flags of the grid's own making (FGSM fooling more clips than it)
        attacks={"bpda": "adaptive_pgd:steps=10"},
        eps=(0.002,),
        defenses=("none", "mp3:32", "quantize:8"),
        eval_clips=32,
        perceptual_clips=10,
        standard_steps=5,
        standard_queries=50,
    ),
    "full": DemoPlan(
        n_clips=1200,
        victims=("mel_cnn", "zhao19"),
        victim_epochs=6,
        generator_epochs=8,
        aware_epochs=4,
        # BPDA PGD-10 is PGD-10 on the undefended victim; PGD-10 made without the defense in its loop fooled fewer
        # clips through resample:8000 and lowpass:4000 than FGSM did, four flags of the grid's own making
        attacks={"fgsm": "fgsm", "bpda": "adaptive_pgd:steps=10"},
        defenses=("none", "mp3:32", "resample:8000", "quantize:8", "lowpass:4000"),
        eval_clips=100,
    ),
}


def _grid_config(plan: DemoPlan, manifest: Path, victim_paths: dict, generators: dict, seed: int):
    from eval.config import EvalConfig

    attacks = {name: f"staa:generator={path}" for name, path in generators.items()} | dict(plan.attacks)
    return EvalConfig(
        data=str(manifest),
        victims={k: str(v) for k, v in victim_paths.items()},
        attacks=attacks,
        defenses=list(plan.defenses),
        max_clips=plan.eval_clips,
        eps=list(plan.eps),
        perceptual=plan.perceptual,
        perceptual_clips=plan.perceptual_clips,
        clip_seconds=plan.clip_seconds,
        seed=seed,
    )


def _grid(out: Path, cfg, progress: bool, device: str) -> dict:
    from eval.harness import run_grid
    from eval.report import build_report

    run_grid(cfg, out / "eval", device=device, progress=progress)
    return build_report(out / "eval")


def _claim_settings(out: Path, settings: dict) -> None:
    """A demo folder holds one plan and seed: resuming it with others would mix two runs' models."""
    path = out / "demo.json"
    settings = json.loads(json.dumps(settings))
    if path.is_file():
        try:
            held = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            held = None
        if held != settings:
            seed = held.get("seed") if isinstance(held, dict) else "?"
            raise ValueError(f"{path}: holds a demo of other settings (seed {seed}); use another --out, or --force")
        return
    write_json(path, settings)


def _print_robust_table(table: dict) -> None:
    attacks = [k for k in next(iter(table.values())) if k != "clean"]
    print("\nrobust accuracy under attack, no defense (" + ", ".join(attacks) + ")")
    print(f"{'victim':<16}{'clean':>8}" + "".join(f"{a[:12]:>13}" for a in attacks))
    for victim, row in table.items():
        print(f"{victim:<16}{row['clean']:>8.3f}" + "".join(f"{row[a]:>13.3f}" for a in attacks))


def run_demo(
    out: Path,
    *,
    quick: bool = False,
    plan: DemoPlan | None = None,
    seed: int = 0,
    progress: bool = True,
    device: str = "cpu",
) -> dict:
    plan = plan or PLANS["quick" if quick else "full"]
    _claim_settings(out, {"plan": asdict(plan), "seed": seed})
    seconds: dict = {}  # wall time per phase of this run (a resumed run counts only what it redid)
    with timed("corpus", seconds):
        manifest = build_corpus(
            out / "corpus", CorpusConfig(n_clips=plan.n_clips, clip_seconds=plan.clip_seconds), progress=progress
        )
    records = load_records("manifest", manifest)
    results = {"seconds": seconds}
    with timed("victims", seconds):
        for arch in plan.victims:
            cfg = TrainConfig(
                arch=arch, classes=list(EMOTIONS), epochs=plan.victim_epochs, clip_seconds=plan.clip_seconds, seed=seed
            )
            results[arch] = train_victim(cfg, records, out / "victims" / arch, device=device, progress=progress)
    print(f"\n{'victim':<18}{'val UA':>8}{'test UA':>9}{'test WA':>9}")
    for arch in plan.victims:
        print(
            f"{arch:<18}{results[arch]['best_val_ua']:>8.3f}{results[arch]['test']['ua']:>9.3f}{results[arch]['test']['wa']:>9.3f}"
        )
    print(f"(synthetic corpus, speaker- and sentence-held-out test split; chance is {1 / len(EMOTIONS):.2f})")

    surrogate = plan.victims[0]
    victim_paths = {arch: out / "victims" / arch / "best.pt" for arch in plan.victims}
    # the default recipe, its budget from the first step: with a sparsity warm-up the mask on this small corpus is fully
    # on by the time the budget starts, and the budget then switches it off almost entirely (docs/design.md)
    attack_cfg = AttackTrainConfig(
        epochs=plan.generator_epochs, eval_clip_seconds=plan.clip_seconds, seed=seed, **recipe("default")
    )
    generators = {"staa": out / "attacks" / surrogate / "best.pt"}
    with timed("generators", seconds):
        train_generator(
            attack_cfg, [victim_paths[surrogate]], records, generators["staa"].parent, device=device, progress=progress
        )
        if plan.aware_epochs:
            # fine-tuned from the plain generator: trained from scratch through the defenses, it never beat it (docs/experiments.md)
            aware_cfg = replace(
                attack_cfg,
                epochs=plan.aware_epochs,
                defenses=list(plan.aware_of),
                init=str(generators["staa"]),
                lr=1e-3,
            )
            generators["staa_aware"] = out / "attacks" / f"{surrogate}_aware" / "best.pt"
            train_generator(
                aware_cfg,
                [victim_paths[surrogate]],
                records,
                generators["staa_aware"].parent,
                device=device,
                progress=progress,
            )
    with timed("white-box and transfer", seconds):
        _white_box_and_transfer(
            out, plan, records, victim_paths, generators["staa"], attack_cfg.eps_at(0), results, device, progress
        )

    if plan.at_epochs:
        at_cfg = AdvTrainConfig(
            arch=surrogate,
            classes=list(EMOTIONS),
            method="generator",
            epochs=plan.at_epochs,
            clip_seconds=plan.clip_seconds,
            init_victim=str(victim_paths[surrogate]),
            init_generator=str(generators["staa"]),
            generator=recipe("default"),
            gen_crop_seconds=0,
            seed=seed,
        )
        with timed("adversarial training", seconds):
            results["adv_train"] = adv_train(
                at_cfg, records, out / "hardened" / surrogate, device=device, progress=progress
            )
        victim_paths[f"{surrogate}_at"] = out / "hardened" / surrogate / "victim.pt"
        _print_hardening(results["adv_train"], surrogate)

    with timed("grid and report", seconds):
        grid = _grid_config(plan, manifest, victim_paths, generators, seed)
        report = _grid(out, grid, progress, device)
    results["report"] = report
    print("\n" + "\n".join(report["summary"]))
    for flag in report["sanity_flags"]:
        print(f"FLAG {flag['victim']} / {flag['attack']} / {flag['defense']}: {flag['reason']}")
    _print_robust_table(report["robust_accuracy"])
    if plan.at_epochs:
        results["hardening"] = _hardening_on_test(report, surrogate, results["adv_train"]["config"]["max_clean_drop"])
        with timed("standard suite at 0.002", seconds):
            results["hardening"]["standard"] = _standard_suite(
                grid, plan, victim_paths, surrogate, results["adv_train"]["config"]["eps"], device
            )
    print(
        "\nwall time: "
        + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items())
        + f"; total {sum(seconds.values()):.0f} s"
    )
    print(f"report: {out / 'eval' / 'report.html'}")
    return results


def _standard_suite(cfg, plan: DemoPlan, victim_paths, surrogate, eps, device) -> dict:
    """Robust accuracy of the original and the hardened model under the standard suite (APGD-CE, APGD-T, Square)
    at the training budget, on the grid's test clips (`cfg`, the grid's config): a fresh attack, not the generator
    the training played."""
    from eval.harness import load_grid_records, select_clips
    from staa.attacks.runner import robust_correct
    from staa.attacks.standard import Standard
    from staa.models.victim import load_victim

    records = load_grid_records(cfg)
    print(
        f"\nrobust accuracy under the standard suite at eps {eps:g} (APGD-CE, APGD-T {plan.standard_steps} steps, "
        f"Square {plan.standard_queries} queries):"
    )
    result = {"eps": eps}
    for name in (surrogate, f"{surrogate}_at"):
        victim = load_victim(victim_paths[name], device=device)
        data = select_clips(records, victim, cfg)
        attack = Standard(
            victim.model, eps=eps, steps=plan.standard_steps, queries=plan.standard_queries, seed=cfg.seed
        )
        right = robust_correct(attack, victim.model, data, device=device)
        k, n = int(right.sum()), len(right)
        lo, hi = wilson(k, n)
        print(f"  {name:<18}{k / n:.3f} [{lo:.2f}, {hi:.2f}]  ({n} clips)")
        result[name] = {"robust_accuracy": k / n, "n": n, "interval": [lo, hi]}
    return result


def _print_hardening(report: dict, surrogate: str) -> None:
    start, kept = report["start"], report["history"][report["best_epoch"] - 1]
    if not start or "val_ua" not in kept:
        return
    drop = start["val_ua"] - kept["val_ua"]
    print(
        f"\n{surrogate} hardened by the generator (epoch {report['best_epoch']} of {len(report['history'])} kept): "
        f"val UA {kept['val_ua']:.3f} (from {start['val_ua']:.3f}), val accuracy under FGSM "
        f"{kept['val_fgsm_accuracy']:.3f} (from {start['val_fgsm_accuracy']:.3f}), under PGD "
        f"{kept['val_pgd_accuracy']:.3f} (from {start['val_pgd_accuracy']:.3f})"
    )
    if drop > report["config"]["max_clean_drop"]:
        print(f"  FLAG: the hardened model lost {100 * drop:.1f} points of clean accuracy")
    for flag in report.get("flags", []):
        print(f"  FLAG {flag}: PGD val accuracy collapsed while FGSM val accuracy held")


def _hardening_on_test(report: dict, surrogate: str, max_drop: float) -> dict:
    """The hardened model against the original on the grid's test clips: the check that matters, since the kept
    epoch was chosen on val."""
    undefended = {c["victim"]: c for c in report["cells"] if c["defense"] == "none" and c["attack"] == "staa"}
    before, after = undefended[surrogate], undefended[f"{surrogate}_at"]
    n = after["n"]
    out = {"n": n, "max_drop": max_drop}
    print(f"\n{surrogate} before and after generator adversarial training ({n} test clips, 95% intervals):")
    for key, what in (("clean_accuracy", "clean accuracy"), ("robust_accuracy", "robust accuracy under its STAA")):
        a, b = before[key], after[key]
        lo, hi = wilson(round(b * n), n)
        print(f"  {what:<32}{a:.3f} -> {b:.3f} [{lo:.2f}, {hi:.2f}]  ({100 * (b - a):+.1f} points)")
        out[key] = {"before": a, "after": b}
    drop = before["clean_accuracy"] - after["clean_accuracy"]
    out["flag"] = drop > max_drop + 1e-9
    if out["flag"]:
        print(
            f"FLAG {surrogate}_at: lost {100 * drop:.1f} points of clean accuracy on the test clips (more than {100 * max_drop:.0f})"
        )
    return out


def _white_box_and_transfer(out, plan, records, victim_paths, generator, eps, results, device, progress) -> None:
    surrogate = plan.victims[0]
    victims = {arch: load_victim(p, device=device).model for arch, p in victim_paths.items()}
    test = AudioDataset([r for r in records if r.split == "test"], list(EMOTIONS), clip_seconds=plan.clip_seconds)
    staa = STAA.from_checkpoint(generator, device=device)
    white = run_attack(
        staa, victims[surrogate], test, out / "attacks" / surrogate / "test", device=device, progress=progress
    )
    matrix = transfer_matrix({surrogate: staa}, victims, test, device=device, progress=progress)
    dist = f"{white['distortion_db']:.1f} dB" if white["distortion_db"] is not None else "n/a (no success)"
    print(
        f"\nSTAA trained against {surrogate} (eps {eps}): mean l0 ratio {white['l0_ratio']:.3f}, "
        f"distortion {dist}, {white['seconds_per_clip'] * 1000:.1f} ms per clip"
    )
    for arch, rate in matrix["fooling_rate"][surrogate].items():
        kind = "white-box" if arch == surrogate else "transfer"
        lo, hi = wilson(round(rate * matrix["n"]), matrix["n"])
        print(f"  fooling rate on {arch:<16}{rate:.3f} [95% {lo:.2f}, {hi:.2f}]  ({kind}, {matrix['n']} test clips)")
    results["white_box"], results["transfer"] = white, matrix
