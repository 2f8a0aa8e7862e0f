"""`staa demo`: the pipeline on the built-in corpus, each step resuming from what is already on disk."""
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
    victims = {arch: load_victim(p, device=device).model for arch, p in victim_paths.items()}
    test = AudioDataset([r for r in records if r.split == "test"], list(EMOTIONS))
    staa = STAA.from_checkpoint(out / "attacks" / surrogate / "best.pt", device=device)
    white = run_attack(staa, victims[surrogate], test, out / "attacks" / surrogate / "test", device=device, progress=progress)
    matrix = transfer_matrix({surrogate: staa}, victims, test, device=device, progress=progress)
    dist = f"{white['distortion_db']:.1f} dB" if white["distortion_db"] is not None else "n/a (no success)"
    print(f"\nSTAA trained against {surrogate} (eps {attack_cfg.eps_at(0)}): mean l0 ratio {white['l0_ratio']:.3f}, "
          f"distortion {dist}, {white['seconds_per_clip'] * 1000:.1f} ms per clip")
    for arch, rate in matrix["fooling_rate"][surrogate].items():
        kind = "white-box" if arch == surrogate else "transfer"
        print(f"  fooling rate on {arch:<16}{rate:.3f}  ({kind}, {matrix['n']} test clips)")
    results["white_box"], results["transfer"] = white, matrix
    return results
