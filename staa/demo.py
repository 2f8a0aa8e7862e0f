"""`staa demo`: the pipeline on the built-in corpus, each step resuming from what is already on disk.

corpus -> victims -> STAA generator (plain, and defense-aware in the full demo) -> white-box and transfer
fooling rates -> a grid of attacks x defenses through the evaluation harness -> report.html.
"""
from __future__ import annotations

from pathlib import Path

from staa.attack_runner import run_attack, transfer_matrix
from staa.attacks import STAA
from staa.corpus import EMOTIONS, CorpusConfig, build_corpus
from staa.datasets import AudioDataset, load_records
from staa.generator_training import AttackTrainConfig, train_generator
from staa.train import TrainConfig, train_victim
from staa.victim import load_victim

DEMO_VICTIMS = ("emo18", "mel_cnn")  # the first is the surrogate the generator is trained against
AWARE_OF = ["mp3:32", "resample:8000"]  # what the defense-aware generator trains through


def _grid(out: Path, manifest: Path, victim_paths: dict, generators: dict, quick: bool, progress: bool, device: str) -> dict:
    from eval.config import EvalConfig
    from eval.harness import run_grid
    from eval.report import build_report

    attacks = {name: f"staa:generator={path}" for name, path in generators.items()}
    attacks["fgsm"] = "fgsm"
    defenses = ["none", "mp3:32", "resample:8000", "quantize:8"]
    if not quick:
        attacks |= {"pgd10": "pgd:steps=10", "bpda_pgd10": "adaptive_pgd:steps=10:eot=4"}
        defenses += ["lowpass:4000", "median:3", "torch_gate:1", "noise:30"]
    cfg = EvalConfig(data=str(manifest), victims={k: str(v) for k, v in victim_paths.items()}, attacks=attacks, defenses=defenses,
                     max_clips=40 if quick else 150)
    results = run_grid(cfg, out / "eval", device=device, progress=progress)
    report = build_report(out / "eval")
    print("\n" + "\n".join(report["summary"]))
    return results


def run_demo(out: Path, *, quick: bool = False, progress: bool = True, device: str = "cpu") -> dict:
    corpus_cfg = CorpusConfig(n_clips=600 if quick else 2000)
    manifest = build_corpus(out / "corpus", corpus_cfg, progress=progress)
    records = load_records("manifest", manifest)
    results = {}
    for arch in DEMO_VICTIMS:
        cfg = TrainConfig(arch=arch, classes=list(EMOTIONS), epochs=4 if quick else 12)
        results[arch] = train_victim(cfg, records, out / "victims" / arch, device=device, progress=progress)
    print(f"\n{'victim':<18}{'val UA':>8}{'test UA':>9}{'test WA':>9}")
    for arch, rep in results.items():
        print(f"{arch:<18}{rep['best_val_ua']:>8.3f}{rep['test']['ua']:>9.3f}{rep['test']['wa']:>9.3f}")
    print(f"(synthetic corpus, speaker- and sentence-held-out test split; chance is {1 / len(EMOTIONS):.2f})")

    surrogate = DEMO_VICTIMS[0]
    victim_paths = {arch: out / "victims" / arch / "best.pt" for arch in DEMO_VICTIMS}
    attack_cfg = AttackTrainConfig(epochs=6 if quick else 8, spa_warmup_epochs=1)  # warm-up: short runs otherwise collapse the mask
    train_generator(attack_cfg, [victim_paths[surrogate]], records, out / "attacks" / surrogate, device=device, progress=progress)
    generators = {"staa": out / "attacks" / surrogate / "best.pt"}
    if not quick:
        aware_cfg = AttackTrainConfig(epochs=4, spa_warmup_epochs=1, defenses=AWARE_OF)
        train_generator(aware_cfg, [victim_paths[surrogate]], records, out / "attacks" / f"{surrogate}_aware", device=device, progress=progress)
        generators["staa_aware"] = out / "attacks" / f"{surrogate}_aware" / "best.pt"
    victims = {arch: load_victim(p, device=device).model for arch, p in victim_paths.items()}
    test = AudioDataset([r for r in records if r.split == "test"], list(EMOTIONS))
    staa = STAA.from_checkpoint(generators["staa"], device=device)
    white = run_attack(staa, victims[surrogate], test, out / "attacks" / surrogate / "test", device=device, progress=progress)
    matrix = transfer_matrix({surrogate: staa}, victims, test, device=device, progress=progress)
    dist = f"{white['distortion_db']:.1f} dB" if white["distortion_db"] is not None else "n/a (no success)"
    print(f"\nSTAA trained against {surrogate} (eps {attack_cfg.eps_at(0)}): mean l0 ratio {white['l0_ratio']:.3f}, "
          f"distortion {dist}, {white['seconds_per_clip'] * 1000:.1f} ms per clip")
    for arch, rate in matrix["fooling_rate"][surrogate].items():
        kind = "white-box" if arch == surrogate else "transfer"
        print(f"  fooling rate on {arch:<16}{rate:.3f}  ({kind}, {matrix['n']} test clips)")
    results["white_box"], results["transfer"] = white, matrix
    results["grid"] = _grid(out, manifest, victim_paths, generators, quick, progress, device)
    print(f"\nreport: {out / 'eval' / 'report.html'}")
    return results
