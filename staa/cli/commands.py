"""The `staa` command line: one subcommand per step of the pipeline, and `demo` for all of them."""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import sys
from pathlib import Path

from staa import specs
from staa.cli.run_dir import RunDir, RunDirError, check_inputs, check_output_file
from staa.datasets import LOADERS, DatasetError
from staa.io.audio import AudioError
from staa.io.checkpoint import CheckpointError
from staa.io.lock import LockError
from staa.training.adversarial import METHODS as ADV_METHODS

log = logging.getLogger("staa")
MAX_SEED = 2**63 - 1


class Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (`staa CMD: error: ...`), not a usage block."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def integer(lo: int, hi: int | None = None):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < lo or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(
                f"{value} is not within {lo}-{hi}" if hi is not None else f"{value} is not >= {lo}"
            )
        return value

    return parse


def number(lo: float, hi: float | None = None, *, above: bool = False):
    """A finite float within [lo, hi] (`above`: strictly greater than lo)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value) or value < lo or (above and value == lo) or (hi is not None and value > hi):
            low = f"> {lo:g}" if above else f">= {lo:g}"
            raise argparse.ArgumentTypeError(f"{text} is not {low}" + (f" and <= {hi:g}" if hi is not None else ""))
        return value

    return parse


def device(text: str) -> str:
    import torch

    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a torch device (cpu, cuda, cuda:1, ...)") from None
    if dev.type == "cuda" and (not torch.cuda.is_available() or (dev.index or 0) >= torch.cuda.device_count()):
        raise argparse.ArgumentTypeError(f"{text}: no such CUDA device here ({torch.cuda.device_count()} visible)")
    if dev.type not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"{text}: only cpu and cuda devices are supported")
    return text


def class_list(text: str) -> list[str]:
    names = [c.strip() for c in text.split(",")]
    if len(names) < 2 or not all(names) or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"{text!r}: give two or more distinct class names, comma-separated")
    return names


VICTIM = "a staa-ser victim checkpoint, or a user's model: hf:DIR, torchscript:FILE, python:module:function"
SEED = integer(0, MAX_SEED)
EPS = number(0, 1, above=True)
SECONDS = number(0, 600, above=True)


def budget_list(parse):
    """`parse` over a comma-separated list: one budget (`0.03`), or a security curve's (`0.002,0.01,0.03`)."""

    def read(text: str):
        values = [parse(part.strip()) for part in text.split(",")]
        if len(set(values)) != len(values):
            raise argparse.ArgumentTypeError(f"{text!r}: a budget is listed twice")
        return values[0] if len(values) == 1 else values

    return read


eps_list = budget_list(EPS)


SNR = number(-20, 120)
SNR_HELP = (
    "budget per clip as an SNR in dB instead of --eps: eps = RMS(clip) * 10^(-SNR/20), as speech toolkits state it "
    "(robust_speech's --snr); for every l-inf attack that sets no budget of its own"
)

snr_list = budget_list(SNR)


EVAL_SECONDS = number(0, 600)
EVAL_SECONDS_HELP = "crop or pad each clip to this many seconds (default: 3; 0: each clip at its own length)"
STRICT_RATE_HELP = "refuse audio at another sample rate than the model's (default: resample it, and say so)"


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bars, warnings only")
    p.add_argument("--device", default="cpu", type=device, help="torch device, e.g. cpu or cuda (default: cpu)")


def _data_dirs(data, records) -> list[Path]:
    """The folders a command reads audio from: the dataset root (or the manifest's folder) and every audio file's
    folder, both as named and where a symlinked file really lies."""
    data = Path(data)
    files = [Path(r.path) for r in records]
    return sorted(
        {data if data.is_dir() else data.parent} | {f.parent for f in files} | {f.resolve().parent for f in files}
    )


def _check_out_file(a, inputs, dataset=None) -> None:
    """`--out FILE` of a command that writes one file: never a folder, an input, or a file in a data folder."""
    if a.out:
        records = dataset.records if dataset is not None else ()
        check_output_file(a.out, [*inputs, *(r.path for r in records)], _data_dirs(a.data, records))


def _claim(a, records=(), inputs: dict | None = None):
    """Check that --out holds none of the inputs and lies in no data folder, then claim it for this command (lock,
    --resume / --force rules; see staa.cli.run_dir). Under torchrun only rank 0 claims: the others never write."""
    from staa.models.victim import split_spec

    inputs = {k: str(v) for k, v in (inputs or {}).items() if v}
    data = getattr(a, "data", None)
    # a user's model folder is theirs like a data folder: nothing goes inside it
    folders = [Path(target) for kind, target in map(split_spec, inputs.values()) if kind == "hf"]
    check_inputs(
        a.out, [*inputs.values(), *(r.path for r in records)], [*(_data_dirs(data, records) if data else ()), *folders]
    )
    if os.environ.get("RANK", "0") != "0":
        return contextlib.nullcontext()
    audio = [r.path for r in records]
    return RunDir.claim(a.out, a.command, resume=a.resume, force=a.force, inputs=inputs, audio=audio)


def cmd_corpus(a) -> None:
    from staa.datasets.synthetic.corpus import CorpusConfig, build_corpus

    cfg = CorpusConfig(n_clips=a.clips, seed=a.seed, clip_seconds=a.clip_seconds or None)
    manifest = build_corpus(a.out, cfg, workers=a.workers, progress=not a.quiet)
    print(manifest)


def _records(a):
    """The dataset's records, every file decoded and checked before any work (bad ones skipped with --skip-bad)."""
    from staa.datasets import load_records

    options = {"classes": a.classes} if a.classes else {}
    records = load_records(
        a.dataset, a.data, folds=a.folds, fold=a.fold, on_error="skip" if a.skip_bad else "raise", **options
    )
    missing = [c for c in a.classes or [] if c not in {r.label for r in records}]
    if missing:
        raise DatasetError(
            f"{a.data}: no clips of class(es) {', '.join(missing)} (found: {', '.join(sorted({r.label for r in records}))})"
        )
    return records


def _json_option(text: str | None, flag: str) -> dict:
    import json

    try:
        value = json.loads(text) if text else {}
    except (json.JSONDecodeError, RecursionError) as err:
        raise ValueError(f"{flag} is not valid JSON: {err}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{flag} must be a JSON object, got {text!r}")
    return value


def cmd_train_victim(a) -> None:
    import torch

    from staa.training.victim import TrainConfig, train_victim

    torch.set_num_threads(a.threads) if a.threads else None
    records = _records(a)
    classes = a.classes or sorted({r.label for r in records})
    cfg = TrainConfig(
        arch=a.arch,
        classes=classes,
        epochs=a.epochs,
        batch_size=a.batch_size,
        lr=a.lr,
        seed=a.seed,
        clip_seconds=a.clip_seconds,
        model=_json_option(a.model_options, "--model-options"),
    )
    with _claim(a, records, {"data": a.data}):
        report = train_victim(cfg, records, a.out, device=a.device, progress=not a.quiet)
    if not report:  # a torchrun rank other than 0: rank 0 reports
        return
    test = report.get("test")
    print(
        f"{a.arch}: best val UA {report['best_val_ua']:.3f}"
        + (f", test UA {test['ua']:.3f} WA {test['wa']:.3f}" if test else "")
    )
    print(Path(a.out) / "best.pt")


def _split_dataset(a, classes, sample_rate):
    from staa.datasets import AudioDataset
    from staa.datasets.records import with_known_labels

    split = [r for r in _records(a) if r.split == a.split]
    records = with_known_labels(split, classes, f"{a.data} ({a.split})", skip=a.skip_bad)
    if not records:
        raise DatasetError(f"{a.data}: no clips of split {a.split!r} with the classes {', '.join(classes)}")
    if a.limit:
        records = records[: a.limit]
    return AudioDataset(
        records, classes, sample_rate=sample_rate, clip_seconds=a.clip_seconds or None, strict_rate=a.strict_rate
    )


# train-attack flags a recipe sets, and the AttackTrainConfig field each one overrides
RECIPE_FLAGS = {
    "recipe_preset": "preset",
    "recipe_lr": "lr",
    "recipe_lr_halving": "lr_halving_epochs",
    "recipe_w_mag": "w_mag",
    "recipe_w_spa": "w_spa",
    "recipe_spa_target": "spa_target",
    "recipe_max_l0": "max_l0_ratio",
    "recipe_conditional": "conditional",
    "recipe_crop_seconds": "clip_seconds",
}


def _recipe(a) -> dict:
    """The recipe's settings, with every recipe flag given on the command line in its place."""
    from staa.generator.recipes import recipe

    settings = recipe(a.recipe)
    settings |= {field: getattr(a, flag) for flag, field in RECIPE_FLAGS.items() if getattr(a, flag, None) is not None}
    mask = getattr(a, "recipe_train_mask", None)
    if mask is not None:
        # the paper's mask stays implicit, so runs started before the option existed still resume
        settings["generator"] = {k: v for k, v in settings["generator"].items() if k != "train_mask"}
        if mask != "stochastic":
            settings["generator"]["train_mask"] = mask
    return settings


def cmd_train_attack(a) -> None:
    from staa.generator.training import AttackTrainConfig, parse_eps_schedule, train_generator

    cfg = AttackTrainConfig(
        epochs=a.epochs,
        batch_size=a.batch_size,
        eps_schedule=parse_eps_schedule(a.eps),
        kappa=a.kappa,
        w_qua=a.w_qua,
        targeted=a.target is not None,
        target=a.target,
        seed=a.seed,
        spa_warmup_epochs=a.spa_warmup,
        defenses=a.defense or [],
        diversity=a.diversity,
        w_feat=a.w_feat,
        feature_layer=a.feature_layer,
        init=a.init,
        **_recipe(a),
    )
    records = _records(a)
    inputs = {"data": a.data, "init": a.init, **{f"surrogate {i + 1}": p for i, p in enumerate(a.surrogate)}}
    with _claim(a, records, inputs):
        report = train_generator(cfg, a.surrogate, records, a.out, device=a.device, progress=not a.quiet)
    kept = report["history"][report["best_epoch"] - 1]  # what best.pt holds, not the last epoch
    print(
        f"generator (epoch {report['best_epoch']} of {len(report['history'])} kept): val fooling "
        f"{kept['val_mean_fooling_rate']:.3f}, l0 ratio {kept['val_l0_ratio']:.3f}"
    )
    print(Path(a.out) / "best.pt")


def _eval_config(a):
    from eval.config import DEFAULT_EPS, EvalConfig, load_config

    if a.config:
        flags = a.data or a.victim or a.attack or a.defense or a.skip_bad or a.strict_rate or a.detector
        flags = flags or a.smoothing_sigma
        if flags or a.clip_seconds is not None or a.eps is not None or a.snr is not None:
            raise ValueError(
                "give either --config or --data/--victim/--attack/--defense/--eps/--snr/--skip-bad/--clip-seconds/"
                "--strict-rate/--detector/--smoothing-sigma, not both"
            )
        return load_config(a.config)
    if not (a.data and a.victim and a.attack):
        raise ValueError("without --config, --data, --victim and --attack are required")
    return EvalConfig(
        data=a.data,
        dataset=a.dataset,
        folds=a.folds,
        fold=a.fold,
        victims=specs.pairs(a.victim, "--victim"),
        attacks=specs.pairs(a.attack, "--attack"),
        defenses=a.defense or ["none"],
        split=a.split,
        max_clips=a.max_clips or None,
        eps=list(DEFAULT_EPS) if a.eps is None else a.eps,
        snr=a.snr,
        perceptual=not a.no_perceptual,
        perceptual_clips=a.perceptual_clips,
        seed=a.seed,
        skip_bad=a.skip_bad,
        clip_seconds=EvalConfig.clip_seconds if a.clip_seconds is None else a.clip_seconds,
        strict_rate=a.strict_rate,
        detectors=a.detector or [],
        detector_fpr=a.detector_fpr,
        detector_steps=a.detector_steps,
        smoothing_sigmas=a.smoothing_sigma or [],
        smoothing_n=a.smoothing_n,
    )


def _run_dir_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--resume", action="store_true", help="continue the run in OUT from its last checkpoint (finished work is kept)"
    )
    p.add_argument("--force", action="store_true", help="discard this command's outputs in OUT and start over")


def cmd_evaluate(a) -> None:
    import datetime

    from eval.harness import load_grid_records, run_grid
    from eval.report import build_report
    from staa.training import distributed

    cfg = _eval_config(a)
    out = Path(a.out)
    a.data = cfg.data
    records = load_grid_records(cfg)
    generators = {
        f"{k} of {n} for {v}": spec.params[k].replace("{victim}", v)
        for n, spec in cfg.attack_specs.items()
        for v in cfg.victims
        for k in ("generator", "surrogate")
        if k in spec.params
    }
    inputs = {"data": cfg.data, "config": a.config, **{f"victim {k}": v for k, v in cfg.victims.items()}, **generators}
    # under torchrun each rank computes its share of the victim x attack cells, then rank 0 gathers and reports;
    # a cell can take hours, so the ranks wait for each other that long
    d = distributed.init(a.device, timeout=datetime.timedelta(hours=48))
    try:
        with _claim(a, records, inputs):
            d.barrier()  # rank 0's claim (and what --force removes) comes before any rank writes a cell
            if d.world > 1:
                run_grid(
                    cfg, out, device=d.device, progress=not a.quiet and d.main, records=records, shard=(d.rank, d.world)
                )
                d.barrier()
            if d.main:
                results = run_grid(cfg, out, device=d.device, progress=not a.quiet, records=records)
                if cfg.detectors:
                    from eval.detection import run_grid_detection

                    detection = run_grid_detection(cfg, out, records=records, device=d.device, progress=not a.quiet)
                if cfg.smoothing_sigmas:
                    from eval.certification import run_grid_certification

                    certification = run_grid_certification(
                        cfg, out, records=records, device=d.device, progress=not a.quiet
                    )
                if not a.no_report:
                    build_report(out)
    finally:
        distributed.shutdown(d)
    if not d.main:
        return
    print(f"{'victim':<12}{'attack':<16}{'defense':<20}{'success':>8}{'survival':>9}{'robust':>8}{'pesq':>7}")
    for c in results["cells"]:
        f = lambda v: "  –" if v is None else f"{v:.3f}"
        robust = "failed" if c.get("failed_attack") else f(c["defended_robust_accuracy"])
        print(
            f"{c['victim']:<12}{c['attack']:<16}{c['defense']:<20}{f(c['success_rate']):>8}{f(c['survival']):>9}"
            f"{robust:>8}{f(c['pesq']):>7}"
        )
    for c in results["cells"]:
        if c.get("failed_attack"):
            print(f"FLAG {c['victim']} {c['attack']}: {c['failed_attack']}; a failed attack, not robustness")
    if cfg.detectors:
        _print_detection(detection["victims"], cfg.detector_fpr)
    if cfg.smoothing_sigmas:
        for victim, got in certification["victims"].items():
            print(f"certified accuracy, {victim} smoothed (l2 radius: accuracy)")
            for row in got["results"]:
                acc = ", ".join(f"r={r} {v:.3f}" for r, v in row["certified_accuracy"].items())
                print(f"  sigma {row['sigma']:g}: {acc}")
    print(out / ("results.json" if a.no_report else "report.html"))


def _print_detection(victims: dict, fpr: float) -> None:
    for victim, result in victims.items():
        print(f"detection, {victim}: {result['n_test']} test clips, thresholds at {fpr:g} FPR")
        for spec, row in result["detectors"].items():
            print(f"  {spec}: threshold {row['threshold']:.4f}, clean test FPR {row['test_fpr']:.3f}")
            for name, r in row["attacks"].items():
                auc = "n/a" if r["roc_auc"] is None else f"{r['roc_auc']:.3f}"
                det = "n/a" if r["detected"] is None else f"{r['detected']:.3f}"
                print(f"    {name:<16} ROC-AUC {auc}  detected {det}  ({r['fooled']} fooled clips)")
            print(
                f"    wrong and not flagged: PGD {row['pgd_evades']:.3f}, "
                f"detector-aware PGD {row['adaptive_evades']:.3f}"
            )


def cmd_report(a) -> None:
    from eval.report import build_report

    if len(a.run_dir) > 1:
        from eval.seeds import combine_runs, write_seed_report

        if not a.out:
            raise ValueError("several run folders: give --out, the folder for seeds.json and seeds.html")
        combined = combine_runs(a.run_dir)
        check_inputs(a.out, [], a.run_dir)  # a run folder holds one run's files; the combination goes elsewhere
        page = write_seed_report(combined, a.out)
        print(f"{'victim':<12}{'attack':<16}{'defense':<16}{'success (mean ± std)':>24}{'robust':>18}")
        for c in combined["cells"]:
            s, d = c["success_rate"], c["defended_robust_accuracy"]
            pm = lambda x: "–" if x["mean"] is None else f"{x['mean']:.3f} ± {x['std'] or 0:.3f}"
            print(f"{c['victim']:<12}{c['attack']:<16}{c['defense']:<16}{pm(s):>24}{pm(d):>18}")
        print(page)
        return
    report = build_report(a.run_dir[0])
    print("\n".join(report["summary"]))
    print(Path(a.run_dir[0]) / "report.html")


def cmd_adv_train(a) -> None:
    from staa.generator.training import with_options
    from staa.training.adversarial import AdvTrainConfig, adv_train

    records = _records(a)
    start = None
    if a.init_victim:  # fine-tuning keeps the victim's architecture, classes (in its order) and sample rate
        from staa.models.victim import load_victim

        start = load_victim(a.init_victim, classes=a.classes)
    elif not a.arch:
        raise ValueError("--arch is required unless --init-victim names the model to fine-tune")
    classes = a.classes or (start.classes if start else sorted({r.label for r in records}))
    # the JSON, for experts, has the last word; its network options add to the recipe's
    try:
        generator = with_options(_recipe(a), _json_option(a.generator_options, "--generator-options"))
    except ValueError as err:
        raise ValueError(f"--generator-options: {err}") from None
    model = _json_option(a.model_options, "--model-options")
    cfg = AdvTrainConfig(
        arch=a.arch or start.arch,
        classes=classes,
        sample_rate=start.sample_rate if start else 16_000,
        method=a.method,
        epochs=a.epochs,
        batch_size=a.batch_size,
        lr=a.lr,
        seed=a.seed,
        clip_seconds=a.clip_seconds,
        model=model,
        eps=a.eps,
        max_clean_drop=a.max_clean_drop,
        adv_ratio=a.adv_ratio,
        pgd_steps=a.pgd_steps,
        trades_beta=a.trades_beta,
        noise_sigma=a.noise_sigma,
        generator=generator,
        gen_updates=a.gen_updates,
        gen_noise=a.gen_noise,
        gen_step=a.gen_step,
        gen_project=a.gen_projected,
        gen_crop_seconds=a.gen_crop_seconds,
        init_victim=a.init_victim,
        init_generator=a.init_generator,
        defenses=a.defense or [],
        checkpoint_every=a.checkpoint_every,
    )
    with _claim(a, records, {"data": a.data, "init-victim": a.init_victim, "init-generator": a.init_generator}):
        report = adv_train(cfg, records, a.out, device=a.device, progress=not a.quiet)
    kept = report["history"][report["best_epoch"] - 1]
    if "val_ua" in kept:
        start = report["start"]
        print(
            f"{a.method} AT: kept epoch {report['best_epoch']}: val UA {kept['val_ua']:.3f}"
            + (f" (from {start['val_ua']:.3f})" if start else "")
            + f", val accuracy under FGSM {kept['val_fgsm_accuracy']:.3f}"
            + (f" (from {start['val_fgsm_accuracy']:.3f})" if start else "")
            + f", under PGD {kept['val_pgd_accuracy']:.3f}"
            + (f" (from {start['val_pgd_accuracy']:.3f})" if start else "")
        )
    for flag in report["flags"]:
        print(f"FLAG {flag}: PGD val accuracy collapsed while FGSM val accuracy held; the kept epoch predates it")
    print(Path(a.out) / "victim.pt")


def _attack_spec(a):
    """--attack SPEC; --generator / --surrogate complete the spec of an attack that reads such files (any path, colons
    included)."""
    from staa.attacks import ATTACKS, parse_attack

    flags = {k: v for k, v in (("generator", a.generator), ("surrogate", a.surrogate)) if v}
    if not flags:
        return parse_attack(a.attack)
    name, positional, keyword = specs.split(a.attack, "attack")
    if positional or name not in ATTACKS or not set(flags) <= set(ATTACKS[name].paths):
        raise ValueError(f"--generator and --surrogate go with --attack staa[:key=value...], not {a.attack!r}")
    return parse_attack({"type": name, **keyword, **flags})


def cmd_attack(a) -> None:
    from staa.attacks.registry import takes_snr
    from staa.attacks.runner import run_attack
    from staa.models.victim import load_victim

    spec = _attack_spec(a)
    victim = load_victim(a.victim, classes=a.classes, device=a.device, check=True)
    dataset = _split_dataset(a, victim.classes, victim.sample_rate)
    if a.snr is not None and not (takes_snr(spec.cls) and "eps" not in spec.params):
        raise ValueError(f"--snr: {a.attack!r} has a budget of its own (a spec's eps, or a generator's trained eps)")
    attack = spec.build(victim.model, eps=a.eps, device=a.device, sample_rate=victim.sample_rate, snr=a.snr)
    paths = {k: spec.params.get(k) for k in spec.cls.paths}
    with _claim(a, dataset.records, {"data": a.data, "victim": a.victim, **paths}):
        s = run_attack(attack, victim.model, dataset, a.out, device=a.device, progress=not a.quiet)
    dist = f"{s['distortion_db']:.1f} dB" if s["distortion_db"] is not None else "n/a"
    print(
        f"{a.attack}: fooling {s['fooling_rate']:.3f} of {s['n']}, l0 ratio {s['l0_ratio']:.3f}, distortion {dist}, {s['seconds_per_clip'] * 1000:.1f} ms/clip"
    )
    print(Path(a.out) / "clips.csv")


def _labels(paths: list[str]) -> dict[str, str]:
    """A short label per checkpoint for the matrix: its folder's name where that tells the files apart, else the path."""
    if len(set(paths)) != len(paths):
        raise ValueError(f"a checkpoint is listed twice in {' '.join(paths)}")
    short = [Path(p).parent.name or p for p in paths]
    return dict(zip(short if len(set(short)) == len(short) else paths, paths))


def _baselines(a, victim) -> dict:
    """The `--baseline` attacks, each made on the `--surrogate` models (the mean of their logits), named by both."""
    from staa.attacks import parse_attack
    from staa.models.ensemble import Ensemble
    from staa.models.victim import load_victim

    if not a.baseline:
        return {}
    if not a.surrogate:
        raise ValueError("--baseline attacks are made on the --surrogate models; give at least one")
    surrogates = {name: load_victim(p, device=a.device) for name, p in _labels(a.surrogate).items()}
    for name, s in surrogates.items():
        if (s.classes, s.sample_rate) != (victim.classes, victim.sample_rate):
            raise ValueError(f"surrogate {name}: its classes and rate differ from the victims' ({victim.classes})")
    models = [s.model.eval() for s in surrogates.values()]
    model = models[0] if len(models) == 1 else Ensemble(models)
    out = {}
    for text in a.baseline:
        spec = parse_attack(text)
        if not spec.cls.gradient or spec.adaptive or spec.cls.kind == "generator":
            raise ValueError(f"--baseline {text}: a gradient attack on the surrogates (fgsm, pgd, mifgsm, apgd, ...)")
        attack = spec.build(model, eps=a.eps, seed=a.seed, sample_rate=victim.sample_rate, device=a.device)
        out[f"{spec.text} ({'+'.join(surrogates)})"] = attack
    return out


def cmd_transfer(a) -> None:
    from staa.attacks import STAA
    from staa.attacks.runner import transfer_matrix
    from staa.io.atomic import write_json
    from staa.models.victim import load_victim

    _check_out_file(a, [*a.generators, *a.victims, a.data])  # before any work, and again once the clips are known
    victims = {name: load_victim(p, device=a.device) for name, p in _labels(a.victims).items()}
    first = next(iter(victims.values()))
    dataset = _split_dataset(a, first.classes, first.sample_rate)
    _check_out_file(a, [*a.generators, *a.victims, a.data], dataset)
    attacks = {name: STAA.from_checkpoint(p, device=a.device) for name, p in _labels(a.generators).items()}
    attacks |= _baselines(a, first)
    result = transfer_matrix(
        attacks, {k: v.model for k, v in victims.items()}, dataset, device=a.device, progress=not a.quiet
    )
    width = max(map(len, result["rows"])) + 2
    print(f"fooling rate on {result['n']} clips: rows = attack (made on its surrogates), columns = victim")
    print(" " * width + "".join(f"{c:>18}" for c in result["columns"]))
    for r in result["rows"]:
        print(f"{r:<{width}}" + "".join(f"{result['fooling_rate'][r][c]:>18.3f}" for c in result["columns"]))
    if a.out:
        write_json(a.out, result)


def cmd_train_universal(a) -> None:
    from staa.attacks.runner import run_attack
    from staa.attacks.universal import Universal
    from staa.datasets import AudioDataset
    from staa.generator.universal import save_universal, train_universal
    from staa.models.ensemble import Ensemble
    from staa.models.victim import load_victim

    _check_out_file(a, [*a.surrogate, a.data])
    surrogates = [load_victim(p, device=a.device) for p in a.surrogate]
    first = surrogates[0]
    records = _records(a)
    _check_out_file(a, [*a.surrogate, a.data], AudioDataset(records, first.classes))
    split = lambda name, seconds: AudioDataset(
        [r for r in records if r.split == name], first.classes, sample_rate=first.sample_rate, clip_seconds=seconds
    )
    delta, history = train_universal(
        [s.model for s in surrogates],
        split("train", a.clip_seconds),
        eps=a.eps,
        samples=round(a.seconds * first.sample_rate),
        epochs=a.epochs,
        l0=a.l0,
        seed=a.seed,
        progress=not a.quiet,
    )
    save_universal(
        a.out, delta, eps=a.eps, sample_rate=first.sample_rate, surrogates=list(a.surrogate), history=history
    )
    val = split("val", a.clip_seconds)
    if len(val):
        model = Ensemble([s.model for s in surrogates]) if len(surrogates) > 1 else first.model
        got = run_attack(Universal(model, a.out), model, val, device=a.device, progress=False)
        print(
            f"universal delta ({a.seconds:g} s, l0 {float((delta != 0).float().mean()):.3f}, eps {a.eps:g}): "
            f"fooling rate {got['fooling_rate']:.3f} on {got['n']} held-out val clips of its surrogates; {a.out}"
        )


def cmd_detect(a) -> None:
    from defenses.detection import parse_detector
    from eval.detection import evaluate_detection
    from staa.attacks import parse_attack
    from staa.io.atomic import write_json
    from staa.models.victim import load_victim

    _check_out_file(a, [a.victim, a.data])
    victim = load_victim(a.victim, device=a.device)
    detectors = {spec: parse_detector(spec) for spec in a.detector}
    attacks = {}
    for item in a.attack or ["pgd10=pgd:steps=10"]:
        name, _, spec = item.partition("=")
        attacks[name] = parse_attack(spec or name).build(victim.model, sample_rate=victim.sample_rate, eps=a.eps)
    test = _split_dataset(a, victim.classes, victim.sample_rate)
    _check_out_file(a, [a.victim, a.data], test)
    calibration = _split_dataset(
        argparse.Namespace(**{**vars(a), "split": a.calibration_split}), victim.classes, victim.sample_rate
    )
    result = evaluate_detection(
        victim.model,
        victim.sample_rate,
        attacks,
        detectors,
        test,
        calibration,
        fpr=a.fpr,
        eps=a.eps,
        steps=a.adaptive_steps,
        progress=not a.quiet,
    )
    print(f"calibrated on {result['n_calibration']} {a.calibration_split} clips")
    _print_detection({Path(a.victim).name: result}, a.fpr)
    if a.out:
        write_json(a.out, result)


def cmd_certify(a) -> None:
    from defenses import parse_defense
    from staa.io.atomic import write_json
    from staa.models.smoothing import certify_levels, linf_equivalent
    from staa.models.victim import load_victim

    _check_out_file(a, [a.victim, a.data])
    victim = load_victim(a.victim, device=a.device)
    dataset = _split_dataset(a, victim.classes, victim.sample_rate)
    _check_out_file(a, [a.victim, a.data], dataset)
    defense = parse_defense(a.defense) if a.defense else None
    results = certify_levels(
        victim.model,
        dataset,
        a.sigma,
        a.radius,
        n0=a.n0,
        n=a.n,
        alpha=a.alpha,
        seed=a.seed,
        defense=defense,
        sample_rate=victim.sample_rate,
    )
    samples = dataset.length or victim.sample_rate * 3
    print(
        f"certified accuracy on {len(dataset)} clips (l2 radius; the l-inf eps whose ball it covers on a clip of {samples} samples)"
    )
    print(f"{'sigma':>8}" + "".join(f"{f'r={r:g} (eps {linf_equivalent(r, samples):.1e})':>24}" for r in a.radius))
    for res in results:
        print(f"{res['sigma']:>8g}" + "".join(f"{res['certified_accuracy'][f'{r:g}']:>24.3f}" for r in a.radius))
    if a.out:
        write_json(
            a.out,
            {
                "victim": a.victim,
                "defense": a.defense,
                "alpha": a.alpha,
                "n": a.n,
                "samples": samples,
                "results": results,
            },
        )


def cmd_bench(a) -> None:
    from eval.bench import bench_attacks

    a.limit = a.limit or 32
    inputs = [a.victim, a.generator, a.data]
    _check_out_file(a, inputs)

    def dataset(classes, rate):
        clips = _split_dataset(a, classes, rate)
        _check_out_file(a, inputs, clips)
        return clips

    bench_attacks(
        a.victim,
        a.generator,
        dataset,
        threads=a.threads,
        batch_size=a.batch_size,
        device=a.device,
        out=a.out,
        progress=not a.quiet,
    )


def cmd_demo(a) -> None:
    from staa.cli.demo import run_demo

    with _claim(a):
        run_demo(Path(a.out), quick=a.quick, seed=a.seed, progress=not a.quiet, device=a.device)


def _recipe_args(p, flags: bool = True):
    from staa.generator.recipes import RECIPES

    g = p.add_argument_group(
        "generator recipe", "a named recipe sets these; a flag given overrides its value" if flags else None
    )
    g.add_argument(
        "--recipe",
        default="default",
        choices=sorted(RECIPES),
        help="generator training settings. default: the best measured ones (sparse); transfer: dense, for models never "
        "seen; paper: the authors' (see docs/design.md)",
    )
    if not flags:
        return
    g.add_argument(
        "--preset",
        dest="recipe_preset",
        metavar="NAME",
        default=None,
        help="generator size: cpu (lean), cpu-fold (cpu folded by 16: "
        "no full-rate layer, about 3x faster), cpu-fine or paper (the authors' size)",
    )
    g.add_argument(
        "--lr", dest="recipe_lr", metavar="LR", type=number(0, 1, above=True), default=None, help="learning rate"
    )
    g.add_argument(
        "--lr-halving",
        dest="recipe_lr_halving",
        metavar="EPOCHS",
        type=integer(1),
        default=None,
        help="halve the learning rate every this many epochs",
    )
    g.add_argument(
        "--w-mag",
        dest="recipe_w_mag",
        metavar="W",
        type=number(0),
        default=None,
        help="weight of the magnitude loss",
    )
    g.add_argument(
        "--w-spa",
        dest="recipe_w_spa",
        metavar="W",
        type=number(0),
        default=None,
        help="weight of the sparsity loss (share of perturbed samples)",
    )
    g.add_argument(
        "--spa-target",
        dest="recipe_spa_target",
        metavar="SHARE",
        type=number(0, 0.999),
        default=None,
        help="sparsity budget: penalise only the share of perturbed samples above it (0: the paper's plain penalty)",
    )
    g.add_argument(
        "--max-l0",
        dest="recipe_max_l0",
        metavar="SHARE",
        type=number(0, 1),
        default=None,
        help="best.pt is the best epoch whose share of perturbed samples is at most this (1: any)",
    )
    g.add_argument(
        "--train-mask",
        dest="recipe_train_mask",
        default=None,
        choices=["stochastic", "straight_through"],
        help="mask binarisation in training: the paper's stochastic mix, or straight-through (hard forward, soft gradient)",
    )
    g.add_argument(
        "--conditional",
        dest="recipe_conditional",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="tell the generator each clip's class (its surrogate's prediction; the attack loads that surrogate too)",
    )
    g.add_argument(
        "--crop-seconds",
        dest="recipe_crop_seconds",
        metavar="SECONDS",
        type=SECONDS,
        default=None,
        help="length of the training crops",
    )


def _fold_args(p) -> None:
    p.add_argument("--folds", default=None, help="--dataset emobox: the fold set's folder (label_map.json, fold_K/)")
    p.add_argument("--fold", type=integer(1), default=1, help="--dataset emobox: which fold (default 1)")


def _data_args(p, split=True):
    p.add_argument("--data", required=True, help="dataset root folder, or the manifest CSV for --dataset manifest")
    p.add_argument("--dataset", default="manifest", choices=sorted(LOADERS), help="dataset layout (default: manifest)")
    _fold_args(p)
    p.add_argument("--classes", type=class_list, default=None, help="comma-separated class names to keep")
    p.add_argument(
        "--skip-bad",
        action="store_true",
        help="skip and count bad files, rows and unknown labels instead of stopping",
    )
    if split:
        p.add_argument(
            "--split",
            default="test",
            choices=["train", "val", "test"],
            help="which split to attack (default: test)",
        )
        p.add_argument("--limit", type=integer(0), default=0, help="attack at most this many clips (default 0: all)")
        p.add_argument("--clip-seconds", type=EVAL_SECONDS, default=3.0, help=EVAL_SECONDS_HELP)
        p.add_argument("--strict-rate", action="store_true", help=STRICT_RATE_HELP)


def _corpus_parser(sub) -> None:
    p = sub.add_parser(
        "corpus",
        help="build the synthetic emotional-speech corpus (espeak-ng)",
        description="Build the built-in synthetic corpus: 4 emotions, held-out voices and sentences, 16 kHz WAV + manifest.csv. Reused if it exists with the same settings.",
    )
    p.add_argument("--out", default="data/corpus", help="corpus folder (default: data/corpus)")
    p.add_argument(
        "--clips", type=integer(12, 1_000_000), default=2000, help="number of clips, 12-1000000 (default: 2000)"
    )
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument(
        "--clip-seconds",
        type=number(0, 30),
        default=3.0,
        help="fixed clip length, 0.5-30 s; 0 keeps each utterance's length",
    )
    p.add_argument(
        "--workers", type=integer(1), default=2, help="processes for synthesis, at most one per CPU (default: 2)"
    )
    _common(p)
    p.set_defaults(func=cmd_corpus)


def _train_victim_parser(sub) -> None:
    p = sub.add_parser(
        "train-victim",
        help="train a victim SER model from the zoo",
        description="Train a zoo architecture on a dataset; writes best.pt, last.pt (resume with --resume) and metrics.json to --out. "
        "Runs under torchrun --nproc_per_node=N with DDP.",
    )
    p.add_argument("--data", required=True, help="dataset root folder, or the manifest CSV for --dataset manifest")
    p.add_argument(
        "--dataset",
        default="manifest",
        choices=sorted(LOADERS),
        help="dataset layout (default: manifest; the built-in corpus is a manifest)",
    )
    _fold_args(p)
    p.add_argument(
        "--arch", required=True, help="zoo architecture: emo18, zhao19, mel_cnn, crnn, mel_transformer, wav2vec2"
    )
    p.add_argument("--out", required=True, help="output folder for checkpoints and metrics")
    p.add_argument(
        "--classes",
        type=class_list,
        default=None,
        help="comma-separated class names to keep (default: all in the data)",
    )
    p.add_argument("--epochs", type=integer(1, 10_000), default=12)
    p.add_argument("--batch-size", type=integer(1, 4096), default=32)
    p.add_argument("--lr", type=number(0, 1, above=True), default=2e-3)
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--clip-seconds", type=SECONDS, default=3.0)
    p.add_argument(
        "--model-options",
        default=None,
        help='JSON of architecture options, e.g. {"width": 16} (integer sizes 1-4096, dropout 0-0.95)',
    )
    p.add_argument("--threads", type=integer(0, 1024), default=0, help="torch CPU threads (default 0: torch's choice)")
    p.add_argument(
        "--skip-bad", action="store_true", help="skip and count unreadable files or unknown labels instead of stopping"
    )
    _run_dir_flags(p)
    _common(p)
    p.set_defaults(func=cmd_train_victim)


def _train_attack_parser(sub) -> None:
    p = sub.add_parser(
        "train-attack",
        help="train a STAA-Net generator against surrogate victims",
        description="Train the STAA generator against one or more frozen surrogates (repeat --surrogate for an ensemble). Writes best.pt, last.pt (resume) and metrics.json.",
    )
    _data_args(p, split=False)
    p.add_argument(
        "--surrogate", action="append", required=True, help=f"victim to attack ({VICTIM}); repeat for an ensemble"
    )
    p.add_argument("--out", required=True)
    _recipe_args(p)
    p.add_argument("--epochs", type=integer(1, 10_000), default=10)
    p.add_argument("--batch-size", type=integer(1, 4096), default=16)
    p.add_argument(
        "--eps",
        default="0.03",
        help="l-inf budget, or a schedule like 0:0.01,10:0.002 (best.pt is the best epoch at its last budget)",
    )
    p.add_argument("--kappa", type=number(0), default=2.0, help="C&W confidence margin")
    p.add_argument("--w-qua", type=number(0), default=1e-6)
    p.add_argument(
        "--diversity",
        type=number(0, 1),
        default=0.0,
        help="input diversity: the chance per step that the surrogates see the adversarial batch resampled by "
        "0.9-1.1 and shifted, for transfer (default 0)",
    )
    p.add_argument(
        "--w-feat",
        type=number(0),
        default=0.0,
        help="weight of the intermediate-feature loss, for transfer: how alike each surrogate's mid-level features "
        "stay on the clean and the adversarial clip (default 0: off)",
    )
    p.add_argument(
        "--feature-layer",
        default=None,
        help="the surrogates' layer (module name) the feature loss reads (default: each one's middle convolution)",
    )
    p.add_argument(
        "--target", type=integer(0), default=None, help="class index for a targeted attack (default: untargeted)"
    )
    p.add_argument("--spa-warmup", type=integer(0), default=0, help="epochs without the sparsity loss at the start")
    p.add_argument(
        "--defense",
        action="append",
        help="defense-aware STAA: train through this defense spec (e.g. mp3:32, resample:8000); repeat for several",
    )
    p.add_argument(
        "--init",
        help="start from this trained generator's weights (same preset), e.g. to make a plain "
        "generator defense-aware in a few epochs",
    )
    p.add_argument("--seed", type=SEED, default=0)
    _run_dir_flags(p)
    _common(p)
    p.set_defaults(func=cmd_train_attack)


def _attack_parser(sub) -> None:
    p = sub.add_parser(
        "attack",
        help="attack a dataset split; write adversarial WAVs and a per-clip CSV",
        description="Run an attack against a victim on a dataset split. Writes OUT/adv/*.wav, OUT/clips.csv and OUT/summary.json; inputs are only read.",
    )
    _data_args(p)
    p.add_argument("--victim", required=True, help=VICTIM)
    p.add_argument(
        "--attack",
        required=True,
        help="attack spec: fgsm, pgd:steps=10 (alias pgd10), pgd100, cw:steps=100, "
        "sparse_pgd:l0_ratio=0.1, staa:generator=G.pt, ...",
    )
    p.add_argument(
        "--generator", default=None, help="generator checkpoint for --attack staa (the same as staa:generator=PATH)"
    )
    p.add_argument(
        "--surrogate",
        default=None,
        help="a class-conditional generator's surrogate, instead of the one its checkpoint records",
    )
    p.add_argument("--eps", type=EPS, default=0.03, help="l-inf budget of the gradient attacks, in (0, 1]")
    p.add_argument("--snr", type=SNR, default=None, metavar="DB", help=SNR_HELP)
    p.add_argument("--out", required=True)
    _run_dir_flags(p)
    _common(p)
    p.set_defaults(func=cmd_attack)


def _transfer_parser(sub) -> None:
    p = sub.add_parser(
        "transfer",
        help="transfer matrix: generators x victims fooling rates",
        description="Score the examples of each generator on every victim (all pairs).",
    )
    _data_args(p)
    p.add_argument("--generators", nargs="+", required=True, help="generator checkpoints (rows)")
    p.add_argument("--victims", nargs="+", required=True, help=f"victims (columns): {VICTIM}")
    p.add_argument(
        "--baseline",
        action="append",
        help="a gradient attack made on the --surrogate models as a row to compare with, e.g. "
        "mifgsm:diversity=0.5, pgd10, fgsm; repeat",
    )
    p.add_argument(
        "--surrogate", nargs="+", default=[], help="the models the baselines are made on (their mean logits)"
    )
    p.add_argument("--eps", type=number(0, 1, above=True), default=0.03, help="the baselines' budget (default 0.03)")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--out", default=None, help="write the matrix as JSON here")
    _common(p)
    p.set_defaults(func=cmd_transfer)


def _train_universal_parser(sub) -> None:
    p = sub.add_parser(
        "train-universal",
        help="train one sparse perturbation for every clip (a universal attack)",
        description="Learn one sparse delta (magnitude x mask within --eps) that fools the --surrogate models on any "
        "clip, met at a random offset so it works wherever it starts; it is tiled to each clip's length. Use it as "
        "the attack universal:delta=OUT.",
    )
    _data_args(p, split=False)
    p.add_argument("--surrogate", nargs="+", required=True, help=f"the models it is made against: {VICTIM}")
    p.add_argument("--out", required=True, help="the delta's checkpoint (.pt)")
    p.add_argument("--eps", type=EPS, default=0.03, help="l-inf budget (default 0.03)")
    p.add_argument("--seconds", type=number(0.01, 60), default=1.0, help="the delta's length before tiling (default 1)")
    p.add_argument("--l0", type=number(0, 1), default=0.2, help="the mask's density budget (default 0.2)")
    p.add_argument("--epochs", type=integer(1, 1000), default=5)
    p.add_argument("--clip-seconds", type=SECONDS, default=3.0)
    p.add_argument("--seed", type=SEED, default=0)
    _common(p)
    p.set_defaults(func=cmd_train_universal)


def _detect_parser(sub) -> None:
    p = sub.add_parser(
        "detect",
        help="detectors by transform consistency: ROC-AUC, detection at a fixed FPR, and an adaptive attacker",
        description="Score clips by the divergence of the victim's output on x and on g(x) (WaveGuard), g each "
        "--detector's transform (a defense spec); calibrate each threshold at --fpr on clean clips of another split; "
        "report ROC-AUC and detection per attack, then PGD that knows the detector (BPDA/EOT through g) next to plain PGD.",
    )
    _data_args(p)
    p.add_argument("--victim", required=True, help=f"the victim: {VICTIM}")
    p.add_argument("--detector", action="append", required=True, help="a transform spec, e.g. resample:8000; repeat")
    p.add_argument("--attack", action="append", help="NAME=SPEC; repeat (default: pgd10=pgd:steps=10)")
    p.add_argument("--eps", type=EPS, default=0.002, help="budget of the attacks and the adaptive one (default 0.002)")
    p.add_argument("--fpr", type=number(0, 1, above=True), default=0.05, help="false-positive rate (default 0.05)")
    p.add_argument("--calibration-split", default="val", choices=["train", "val", "test"])
    p.add_argument("--adaptive-steps", type=integer(1, 10_000), default=50)
    p.add_argument("--out", default=None, help="write the results as JSON here")
    _common(p)
    p.set_defaults(func=cmd_detect)


def _certify_parser(sub) -> None:
    p = sub.add_parser(
        "certify",
        help="randomized smoothing: certified accuracy against l2 radius",
        description="Smooth the victim with Gaussian noise on the waveform (Cohen et al. 2019) and certify each clip's "
        "l2 radius (Clopper-Pearson bound, failure probability --alpha); print certified accuracy per radius with the "
        "l-inf eps each radius covers. Train a base model fit for it with `adv-train --method gaussian`.",
    )
    _data_args(p)
    p.add_argument("--victim", required=True, help=f"the base model: {VICTIM}")
    p.add_argument("--sigma", type=number(0, 1, above=True), nargs="+", default=[0.001, 0.002, 0.005])
    p.add_argument("--radius", type=number(0), nargs="+", default=[0.0, 0.01, 0.02], help="l2 radii to report")
    p.add_argument("--n", type=integer(1, 1_000_000), default=1000, help="noise draws that bound the probability")
    p.add_argument("--n0", type=integer(1, 100_000), default=100, help="noise draws that pick the class")
    p.add_argument(
        "--alpha", type=number(0, 1, above=True), default=0.001, help="the certificate's failure probability"
    )
    p.add_argument("--defense", default=None, help="a defense applied after the noise, e.g. a denoiser: wiener:5")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--out", default=None, help="write the certificates as JSON here")
    _common(p)
    p.set_defaults(func=cmd_certify)


def _generator_method_args(p) -> None:
    """adv-train's settings of the generator method's example: noise, step, projection."""
    p.add_argument("--gen-updates", type=integer(1, 100), default=1, help="generator steps per victim step")
    p.add_argument(
        "--gen-noise",
        type=number(0, 4),
        default=2.0,
        help="generator method: uniform noise of +-this x eps added to the generator's start (default 2)",
    )
    p.add_argument(
        "--gen-step", type=number(0.01, 4), default=1.0, help="generator method: the signed step, x eps (default 1)"
    )
    p.add_argument(
        "--gen-projected",
        action="store_true",
        help="generator method: project the noisy start and the step back onto the eps-ball (FGSM-SDI's rule; with "
        "--gen-noise 0 the earlier default); by default they are not, as in N-FGSM",
    )


def _adv_train_parser(sub) -> None:
    p = sub.add_parser(
        "adv-train",
        help="adversarial training: STAA generator on the fly, or PGD / FGSM / N-FGSM / TRADES baselines",
        description="Train (or fine-tune with --init-victim) a zoo victim on adversarial batches, at eps 0.002 by "
        "default. --method generator: the STAA generator's perturbation starts one signed-gradient step, and the "
        "generator learns, against the current victim, to maximise the loss after that step (after FGSM-SDI); "
        "generator_only trains on the generator's output itself; pgd, fgsm (fast AT with random start), nfgsm "
        "(N-FGSM), trades and clean are the baselines. The kept epoch is the most accurate under PGD on val within "
        "--max-clean-drop of the start; a collapse of PGD accuracy while FGSM accuracy holds is flagged as "
        "catastrophic overfitting. Writes OUT/victim.pt, OUT/generator.pt, OUT/last.pt (resumes mid-epoch), "
        "OUT/metrics.json. Runs under torchrun --nproc_per_node=N with DDP.",
    )
    _data_args(p, split=False)
    p.add_argument(
        "--arch",
        default=None,
        help="zoo architecture: emo18, zhao19, mel_cnn, crnn, mel_transformer, wav2vec2 (default: --init-victim's)",
    )
    p.add_argument("--method", default="generator", choices=list(ADV_METHODS))
    p.add_argument("--out", required=True)
    p.add_argument("--epochs", type=integer(1, 10_000), default=5)
    p.add_argument(
        "--batch-size", type=integer(1, 4096), default=32, help="global batch size (split across torchrun processes)"
    )
    p.add_argument(
        "--lr",
        type=number(0, 1, above=True),
        default=None,
        help="peak learning rate, cosine-decayed to a tenth (default: 1e-4 with --init-victim, else 5e-4)",
    )
    p.add_argument("--eps", type=EPS, default=0.002, help="l-inf budget of the training attacks (default 0.002)")
    p.add_argument(
        "--max-clean-drop",
        type=number(0, 1),
        default=0.05,
        help="keep the epoch most accurate under PGD on val among those within this much clean val UA of the start "
        "(default 0.05)",
    )
    p.add_argument(
        "--adv-ratio", type=number(0, 1), default=0.5, help="share of each batch replaced by adversarial clips"
    )
    p.add_argument(
        "--pgd-steps", type=integer(1, 1000), default=10, help="steps of PGD-AT and of TRADES' inner maximisation"
    )
    p.add_argument("--trades-beta", type=number(0), default=6.0)
    p.add_argument(
        "--noise-sigma",
        type=number(0, 1),
        default=0.002,
        help="--method gaussian: the noise level on the waveform, the sigma to smooth with later (default 0.002)",
    )
    _generator_method_args(p)
    p.add_argument(
        "--gen-crop-seconds",
        type=number(0, 600),
        default=1.0,
        help="the generator learns on crops this long (0: whole clips)",
    )
    _recipe_args(p, flags=False)
    p.add_argument(
        "--generator-options",
        default=None,
        help="JSON of generator training options over the recipe, for experts, "
        'one flat object of training and network fields, e.g. {"kappa": 1.0, "channels": 32}',
    )
    p.add_argument("--model-options", default=None, help='JSON of architecture options, e.g. {"width": 16}')
    p.add_argument(
        "--init-victim",
        default=None,
        help="fine-tune this victim: a staa-ser checkpoint, hf:DIR, torchscript:FILE or python:module:function; "
        "hf and torchscript models are also written back in their format (OUT/hf, OUT/victim.torchscript)",
    )
    p.add_argument("--init-generator", default=None, help="start from this trained generator")
    p.add_argument("--defense", action="append", help="augment training batches with this defense spec; repeat")
    p.add_argument("--checkpoint-every", type=integer(1), default=25, help="steps between mid-epoch checkpoints")
    p.add_argument("--clip-seconds", type=SECONDS, default=3.0)
    p.add_argument("--seed", type=SEED, default=0)
    _run_dir_flags(p)
    _common(p)
    p.set_defaults(func=cmd_adv_train)


def _evaluate_parser(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="grid of victims x attacks x defenses: success, survival, perceptual scores",
        description="Evaluate every victim x attack x defense on a dataset split (from --config FILE.toml, or from flags). "
        "Writes OUT/results.json, OUT/clips.csv, OUT/cells/ (per victim x attack, for resuming) and the report.",
    )
    p.add_argument("--config", default=None, help="TOML grid config (see eval/config.py for the keys)")
    p.add_argument("--data", default=None, help="dataset root folder, or a manifest CSV")
    p.add_argument("--dataset", default="manifest", choices=sorted(LOADERS))
    _fold_args(p)
    p.add_argument("--victim", action="append", help=f"NAME=VICTIM ({VICTIM}); repeat")
    p.add_argument(
        "--attack",
        action="append",
        help="NAME=SPEC, e.g. pgd10=pgd:steps=10, staa=staa:generator=G.pt, bpda=adaptive_pgd:steps=10:eot=4, "
        "fresh=fresh_staa:epochs=2 (a generator trained against each victim); repeat",
    )
    p.add_argument(
        "--defense",
        action="append",
        help="defense spec (mp3:32, resample:8000, lowpass:4000, a+b chains); repeat; none = no defense",
    )
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--max-clips", type=integer(0), default=200, help="clips per victim (default: 200; 0: all)")
    p.add_argument("--clip-seconds", type=EVAL_SECONDS, default=None, help=EVAL_SECONDS_HELP)
    p.add_argument("--strict-rate", action="store_true", help=STRICT_RATE_HELP)
    p.add_argument(
        "--eps",
        type=eps_list,
        default=None,
        help="l-inf budget of the gradient attacks, or a list like 0.002,0.01,0.03: each attack at every budget, named "
        "NAME@EPS, and the report draws security curves (default 0.002,0.03: a realistic budget and the paper's)",
    )
    p.add_argument("--snr", type=snr_list, default=None, metavar="DB", help=SNR_HELP + "; a list like 40,30,20 a curve")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument(
        "--skip-bad", action="store_true", help="skip and count bad files, rows and unknown labels instead of stopping"
    )
    p.add_argument("--no-perceptual", action="store_true", help="skip PESQ / STOI (the slow part)")
    p.add_argument(
        "--perceptual-clips",
        type=integer(1),
        default=None,
        metavar="N",
        help="score PESQ / STOI on a seeded sample of N clips per victim x attack (default: every clip)",
    )
    p.add_argument(
        "--detector",
        action="append",
        metavar="TRANSFORM",
        help="also judge a detector by transform consistency (its transform as a defense spec, e.g. quantize:8): "
        "ROC-AUC, detection at --detector-fpr and a detector-aware PGD per victim, in the report; repeat",
    )
    p.add_argument(
        "--detector-fpr",
        type=number(0, 1),
        default=0.05,
        help="false-positive rate the detectors' thresholds are set at, on clean val clips (default 0.05)",
    )
    p.add_argument(
        "--detector-steps",
        type=integer(1, 10_000),
        default=50,
        help="steps of the detector-aware PGD and of the plain PGD beside it (default 50)",
    )
    p.add_argument(
        "--smoothing-sigma",
        type=number(1e-6, 1),
        nargs="+",
        metavar="SIGMA",
        help="also certify each victim smoothed at these noise levels (randomized smoothing): certified accuracy at "
        "l2 radii 0, 0.001, 0.002 and 0.005 in the report",
    )
    p.add_argument(
        "--smoothing-n", type=integer(1, 1_000_000), default=200, help="noise draws per certificate (default 200)"
    )
    p.add_argument("--no-report", action="store_true", help="write results.json only")
    p.add_argument("--out", required=True)
    _run_dir_flags(p)
    _common(p)
    p.set_defaults(func=cmd_evaluate)


def _report_parser(sub) -> None:
    p = sub.add_parser(
        "report",
        help="write report.html and report.json for an evaluation run",
        description="Build the self-contained HTML report (plots, audio examples, all numbers) and report.json from "
        "RUN_DIR/results.json. With several run folders of one grid (other seeds), write OUT/seeds.json and "
        "OUT/seeds.html: each rate's mean, std and per-seed values.",
    )
    p.add_argument("run_dir", nargs="+")
    p.add_argument("--out", default=None, help="with several run folders: where seeds.json and seeds.html go")
    _common(p)
    p.set_defaults(func=cmd_report)


def _bench_parser(sub) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmarks (attacks: speed and strength of every attack side by side)",
        description="Benchmark the attacks on the same clips and victim in one process: time per clip, fooling rate, l0 ratio, distortion, and each one's slowdown relative to STAA.",
    )
    p.add_argument("what", choices=["attacks"])
    _data_args(p)
    p.add_argument("--victim", required=True, help=VICTIM)
    p.add_argument("--generator", required=True)
    p.add_argument("--threads", type=integer(1, 1024), default=2)
    p.add_argument("--batch-size", type=integer(1, 4096), default=16)
    p.add_argument("--out", default=None, help="write the results as JSON here")
    _common(p)
    p.set_defaults(func=cmd_bench)


def _demo_parser(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="the whole pipeline on the built-in corpus",
        description="The whole pipeline on the built-in corpus: corpus, victims (4 architectures), STAA (plain and defense-aware), white-box and transfer rates, generator adversarial training, a grid of attacks x defenses, report.html. --quick: a smaller first look. Interrupted runs continue with --resume.",
    )
    p.add_argument("--out", default="runs/demo", help="run folder (default: runs/demo)")
    p.add_argument("--quick", action="store_true", help="a smaller corpus and fewer epochs, for a first look")
    p.add_argument(
        "--seed", type=int, default=0, help="seed of every training and attack draw; the corpus stays (default: 0)"
    )
    _run_dir_flags(p)
    _common(p)
    p.set_defaults(func=cmd_demo)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("staa-ser")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="staa",
        description="Sparse adversarial attacks, defenses and robustness reports for speech emotion recognition.",
    )
    parser.add_argument("--version", action="version", version=f"staa-ser {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    _corpus_parser(sub)
    _train_victim_parser(sub)
    _train_attack_parser(sub)
    _train_universal_parser(sub)
    _attack_parser(sub)
    _transfer_parser(sub)
    _adv_train_parser(sub)
    _evaluate_parser(sub)
    _report_parser(sub)
    _bench_parser(sub)
    _certify_parser(sub)
    _detect_parser(sub)
    _demo_parser(sub)
    return parser


def _one_line(err: BaseException) -> str:
    if isinstance(err, OSError) and err.strerror:  # "PATH: Permission denied", not "[Errno 13] ..."
        text = f"{err.filename}: {err.strerror}" if err.filename else err.strerror
    else:
        text = str(err) or type(err).__name__
    # names come from users' files: control characters (ANSI escapes) are shown, never sent to the terminal
    text = "".join(ch if ch.isprintable() or ch.isspace() else ascii(ch)[1:-1] for ch in text)
    return " ".join(text.split())[:2000]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        if getattr(args, "out", None):  # before any work: a name no report could print fails only at the end
            from staa.cli.run_dir import check_name

            check_name(args.out)
        args.func(args)
    except (
        AudioError,
        DatasetError,
        CheckpointError,
        RunDirError,
        LockError,
        FileExistsError,
        ValueError,
        OSError,
        ArithmeticError,
    ) as err:
        print(f"staa {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = (
            "; rerun the same command with --resume to continue"
            if hasattr(args, "resume")
            else "; rerun the same command to continue (finished clips are kept)"
            if args.command == "corpus"
            else ""
        )
        print(f"staa {args.command}: interrupted{hint}", file=sys.stderr)
        return 130
    return 0
