"""The `staa` command line: one subcommand per step of the pipeline, and `demo` for all of them."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from staa.audio import AudioError
from staa.checkpoint import CheckpointError
from staa.datasets import LOADERS, DatasetError

log = logging.getLogger("staa")
EMOTIONS4 = ["neutral", "angry", "happy", "sad"]


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bars, warnings only")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: cpu)")


def _check_out_not_in_data(out: Path, data: Path) -> None:
    data_dir = data if data.is_dir() else data.parent
    if out.resolve().is_relative_to(data_dir.resolve()):
        raise DatasetError(f"{out}: outputs may not go inside the data folder {data_dir}; a data folder is never written to")


def cmd_corpus(a) -> None:
    from staa.corpus import CorpusConfig, build_corpus

    cfg = CorpusConfig(n_clips=a.clips, seed=a.seed, clip_seconds=a.clip_seconds or None)
    manifest = build_corpus(a.out, cfg, workers=a.workers, progress=not a.quiet)
    print(manifest)


def _records(a):
    from staa.datasets import load_records

    options = {"on_error": "skip" if a.skip_bad else "raise"}
    if a.classes:
        options["classes"] = a.classes.split(",")
    return load_records(a.dataset, a.data, **options)


def cmd_train_victim(a) -> None:
    import torch

    from staa.train import TrainConfig, train_victim

    _check_out_not_in_data(Path(a.out), Path(a.data))
    torch.set_num_threads(a.threads) if a.threads else None
    records = _records(a)
    classes = a.classes.split(",") if a.classes else sorted({r.label for r in records})
    cfg = TrainConfig(arch=a.arch, classes=classes, epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, seed=a.seed, clip_seconds=a.clip_seconds)
    report = train_victim(cfg, records, a.out, device=a.device, progress=not a.quiet)
    test = report.get("test")
    print(f"{a.arch}: best val UA {report['best_val_ua']:.3f}" + (f", test UA {test['ua']:.3f} WA {test['wa']:.3f}" if test else ""))
    print(Path(a.out) / "best.pt")


def cmd_demo(a) -> None:
    from staa.demo import run_demo

    run_demo(Path(a.out), quick=a.quick, progress=not a.quiet, device=a.device)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="staa", description="Sparse adversarial attacks, defenses and robustness reports for speech emotion recognition.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("corpus", help="build the synthetic emotional-speech corpus (espeak-ng)",
                       description="Build the built-in synthetic corpus: 4 emotions, held-out voices and sentences, 16 kHz WAV + manifest.csv. Reused if it exists with the same settings.")
    p.add_argument("--out", default="data/corpus", help="corpus folder (default: data/corpus)")
    p.add_argument("--clips", type=int, default=2000, help="number of clips (default: 2000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--clip-seconds", type=float, default=3.0, help="fixed clip length; 0 keeps each utterance's length")
    p.add_argument("--workers", type=int, default=2, help="processes for synthesis (default: 2)")
    _common(p)
    p.set_defaults(func=cmd_corpus)

    p = sub.add_parser("train-victim", help="train a victim SER model from the zoo",
                       description="Train a zoo architecture on a dataset; writes best.pt, last.pt (resume) and metrics.json to --out. Rerunning the same command resumes.")
    p.add_argument("--data", required=True, help="dataset root folder, or the manifest CSV for --dataset manifest")
    p.add_argument("--dataset", default="manifest", choices=sorted(LOADERS), help="dataset layout (default: manifest; the built-in corpus is a manifest)")
    p.add_argument("--arch", required=True, help="zoo architecture: emo18, zhao19, mel_cnn, crnn, mel_transformer")
    p.add_argument("--out", required=True, help="output folder for checkpoints and metrics")
    p.add_argument("--classes", default=None, help="comma-separated class names to keep (default: all in the data)")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--clip-seconds", type=float, default=3.0)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--skip-bad", action="store_true", help="skip and count unreadable files or unknown labels instead of stopping")
    _common(p)
    p.set_defaults(func=cmd_train_victim)

    p = sub.add_parser("demo", help="the whole pipeline on the built-in corpus",
                       description="Build the corpus, train victims and print their accuracies. Rerunning resumes.")
    p.add_argument("--out", default="runs/demo", help="run folder (default: runs/demo)")
    p.add_argument("--quick", action="store_true", help="a smaller corpus and fewer epochs, for a first look")
    _common(p)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        args.func(args)
    except (AudioError, DatasetError, CheckpointError, FileExistsError, ValueError) as err:
        print(f"staa {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"staa {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    return 0
