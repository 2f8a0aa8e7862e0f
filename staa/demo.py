"""`staa demo`: the pipeline on the built-in corpus, each step resuming from what is already on disk."""
from __future__ import annotations

from pathlib import Path

from staa.corpus import EMOTIONS, CorpusConfig, build_corpus
from staa.datasets import load_records
from staa.train import TrainConfig, train_victim

DEMO_VICTIMS = ("mel_cnn", "emo18")


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
    print(f"\n(synthetic corpus, speaker- and sentence-held-out test split; chance is {1 / len(EMOTIONS):.2f})")
    return results
