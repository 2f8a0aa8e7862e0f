"""`staa evaluate`: every victim x attack x defense of an `EvalConfig` on one dataset split.

For each cell: clean accuracy, clean accuracy after the defense (what the defense costs), attack success before
the defense, adversarial accuracy after it, survival, and the perceptual scores of the adversarial clip.

Definitions (per clip; "defended" = the defense, then the victim):
- success: the adversarial clip changes the undefended victim's prediction (the paper's fooling);
- defended fooling: the defended victim's prediction on the adversarial clip differs from its prediction on
  the clean clip, i.e. the attack still changes what the defended system says;
- survival: the share of successful clips that still fool the defended system;
- robust accuracy (RobustBench / AutoAttack): the clip is classified correctly and stays so under the attack.
  For a correct clip the attack, run against the prediction, is run against the true label; a wrong clip is never
  robust. So it never exceeds clean accuracy, unlike the accuracy on the adversarial clips ("adversarial
  accuracy"), which an attack can raise by moving a wrong clip onto its label (a sanity flag fires when it does).

Near-silent clips (RMS below `staa.metrics.perturbation.SILENCE_DBFS`) are left out of every cell and counted
(`n_silent`): a perturbation within eps is louder than such a clip, and its success would measure nothing.

Work is saved per victim x attack (`cells/VICTIM/ATTACK.{csv,json}`, the JSON written last), so a rerun skips
what is finished. `results.json` and `clips.csv` gather all cells at the end.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import random
import time
from dataclasses import replace
from pathlib import Path

import torch
from tqdm import tqdm

from defenses import parse_defense
from eval.config import EvalConfig
from eval.config import defaults as config_defaults
from eval.results import cell_context, gather, make_cell, nan_to_none
from staa.attacks.registry import AttackSpec
from staa.datasets import AudioDataset, length_batches, load_records
from staa.datasets.records import with_known_labels
from staa.generator.training import collapsed, train_fresh
from staa.io.atomic import safe_name, write_csv, write_json
from staa.io.audio import save_audio
from staa.metrics.classification import fooled
from staa.metrics.perceptual import perceptual_scores
from staa.metrics.perturbation import near_silent, perturbation_scores
from staa.models.checks import flags
from staa.models.inference import InferenceModel
from staa.models.victim import Victim, fingerprint, load_victim

CLIP_FIELDS = [
    "victim",
    "attack",
    "defense",
    "clip",
    "path",
    "label",
    "clean_pred",
    "adv_pred",
    "defended_clean_pred",
    "defended_adv_pred",
    "success",
    "defended_fooled",
    "l0_ratio",
    "linf",
    "distortion_db",
    "snr_db",
    "seg_snr_db",
    "pesq",
    "stoi",
    "estoi",
    "pesq_error",
    "seconds",
]


@contextlib.contextmanager
def timed(kind: str, into: dict):
    """Add the block's wall time to `into[kind]` (seconds per kind of work: attack, defense, model, perceptual)."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        into[kind] = into.get(kind, 0.0) + time.perf_counter() - t0


def select_clips(records, victim: Victim, cfg: EvalConfig) -> AudioDataset:
    split = [r for r in records if r.split == cfg.split]
    chosen = with_known_labels(split, victim.classes, f"{cfg.data} ({cfg.split})", skip=cfg.skip_bad)
    if not chosen:
        raise ValueError(f"no clips of split {cfg.split!r} with the victim's classes {victim.classes}")
    if cfg.max_clips and len(chosen) > cfg.max_clips:  # a seeded sample, kept in manifest order
        keep = set(random.Random(cfg.seed).sample(range(len(chosen)), cfg.max_clips))
        chosen = [r for i, r in enumerate(chosen) if i in keep]
    return _dataset(chosen, victim, cfg)


def _dataset(chosen, victim: Victim, cfg: EvalConfig) -> AudioDataset:
    return AudioDataset(
        chosen,
        victim.classes,
        sample_rate=victim.sample_rate,
        clip_seconds=cfg.clip_seconds or None,
        strict_rate=cfg.strict_rate,
    )


def build_grid_attack(
    spec: AttackSpec, victim: Victim, cfg: EvalConfig, defense=None, device="cpu", victim_name: str = ""
):
    """The attack of a grid cell: the grid's eps and seed unless its spec sets them."""
    return spec.build(
        victim.model,
        eps=cfg.budgets[0],
        seed=cfg.seed,
        defense=defense,
        sample_rate=victim.sample_rate,
        device=device,
        victim=victim_name,
    )


class Clips:
    """One victim's clips in dataset order (each `[T]`, lengths may differ) and their batches of equal length."""

    def __init__(self, waves: list[torch.Tensor], batch_size: int, batches: list[list[int]] | None = None):
        self.waves = waves
        self.batches = batches if batches is not None else length_batches([len(w) for w in waves], batch_size)

    def __len__(self) -> int:
        return len(self.waves)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.waves[i]

    def stack(self, idx: list[int]) -> torch.Tensor:
        return torch.stack([self.waves[i] for i in idx])

    def map(self, fn) -> list[torch.Tensor]:
        """`fn` on each stacked batch; its rows, back in dataset order."""
        out: list = [None] * len(self)
        for idx in self.batches:
            for i, row in zip(idx, fn(self.stack(idx))):
                out[i] = row
        return out

    def like(self, waves: list[torch.Tensor]) -> Clips:
        return Clips(waves, 0, self.batches)


@torch.inference_mode()
def _predict(model, x: Clips, times: dict, defense=None, rate=None) -> torch.Tensor:
    if defense is not None:
        x = _defend(defense, x, rate, times)
    with timed("model", times):
        return torch.stack(x.map(lambda b: model(b).argmax(1)))


def _is_identity(defense) -> bool:
    return defense.spec == "none"  # the undefended model: its predictions are the ones already made


def _defend(defense, x: Clips, rate, times: dict) -> Clips:
    with timed("defense", times):
        return x.like(x.map(lambda b: defense(b, rate)))


def _attack_all(attack, x: Clips, progress, desc, times: dict) -> tuple[Clips, float]:
    out: list = [None] * len(x)
    seconds = 0.0
    for idx in tqdm(x.batches, desc=desc, leave=False, disable=not progress):
        t0 = time.perf_counter()
        with timed("attack", times):
            adv = attack(x.stack(idx)).detach()
        seconds += time.perf_counter() - t0
        for i, row in zip(idx, adv):
            out[i] = row
    return x.like(out), seconds / len(x)


def perceptual_sample(n: int, cfg: EvalConfig) -> list[int]:
    """The clips that get PESQ/STOI: all, none (`perceptual = false`), or a seeded sample of `perceptual_clips`,
    the same clips for every attack so that their scores compare."""
    if not cfg.perceptual:
        return []
    if cfg.perceptual_clips is None or cfg.perceptual_clips >= n:
        return list(range(n))
    return sorted(random.Random(cfg.seed).sample(range(n), cfg.perceptual_clips))


def _scores(x: Clips, adv: Clips, rate, cfg, times: dict) -> list[dict]:
    """Per clip, on its true length: the perturbation's size and, for the sampled clips, PESQ / STOI / ESTOI."""
    cheap: list = [None] * len(x)
    for idx in x.batches:
        batch = perturbation_scores(x.stack(idx), adv.stack(idx))
        for j, i in enumerate(idx):
            cheap[i] = {k: float(v[j]) for k, v in batch.items() if k != "l0_count"}
    reason = "not sampled" if cfg.perceptual else "not computed"
    unscored = {"pesq": math.nan, "stoi": math.nan, "estoi": math.nan, "pesq_error": reason}
    slow = [unscored] * len(x)
    if chosen := perceptual_sample(len(x), cfg):
        clean, degraded = ([c[i].cpu().numpy() for i in chosen] for c in (x, adv))
        with timed("perceptual", times):
            for i, scores in zip(chosen, perceptual_scores(clean, degraded, rate, workers=cfg.workers)):
                slow[i] = scores
    return [{**cheap[i], **slow[i]} for i in range(len(x))]


def evaluate_attack(
    name: str,
    spec: AttackSpec,
    victim_name: str,
    victim: Victim,
    data: AudioDataset,
    x: Clips,
    clean_pred: torch.Tensor,
    defended_clean_pred: dict,
    cfg: EvalConfig,
    out: Path,
    *,
    device="cpu",
    progress=True,
    predictor=None,
    times: dict | None = None,
) -> list[dict]:
    """Per-clip rows of one victim x attack over every defense; writes a few WAV examples. `predictor` makes
    the gradient-free predictions (default: the victim's model)."""
    rate, predictor = victim.sample_rate, predictor or victim.model
    times = {} if times is None else times
    labels = torch.tensor([data.classes.index(r.label) for r in data.records])
    rows, shared = [], None
    for spec_text in cfg.defenses:
        defense = parse_defense(spec_text)
        if spec.adaptive or shared is None:
            attack = build_grid_attack(spec, victim, cfg, defense=defense, device=device, victim_name=victim_name)
            adv, seconds = _attack_all(
                attack,
                x,
                progress,
                f"{victim_name} {name}" + (f" [{spec_text}]" if spec.adaptive else ""),
                times,
            )
            adv_pred = _predict(predictor, adv, times)
            scores = _scores(x, adv, rate, cfg, times)
            if not spec.adaptive:
                shared = (adv, seconds, adv_pred, scores)
        else:
            adv, seconds, adv_pred, scores = shared
        defense.reseed()  # the adaptive attack may have drawn from it: the evaluation's draws start at its seed
        def_adv = _defend(defense, adv, rate, times)
        def_adv_pred = adv_pred if _is_identity(defense) else _predict(predictor, def_adv, times)
        def_clean = defended_clean_pred[spec_text]
        success, defended_fooled = fooled(clean_pred, adv_pred), fooled(def_clean, def_adv_pred)
        for i, rec in enumerate(data.records):
            rows.append(
                {
                    "victim": victim_name,
                    "attack": name,
                    "defense": spec_text,
                    "clip": i,
                    "path": rec.path,
                    "label": int(labels[i]),
                    "clean_pred": int(clean_pred[i]),
                    "adv_pred": int(adv_pred[i]),
                    "defended_clean_pred": int(def_clean[i]),
                    "defended_adv_pred": int(def_adv_pred[i]),
                    "success": bool(success[i]),
                    "defended_fooled": bool(defended_fooled[i]),
                    "seconds": seconds,
                    **scores[i],
                }
            )
        _save_examples(
            out / "examples" / safe_name(victim_name) / safe_name(name),
            x,
            adv,
            def_adv,
            spec_text,
            rate,
            cfg.examples,
            spec.adaptive,
        )
    return rows


def _save_examples(folder: Path, x, adv, def_adv, spec_text, rate, k, adaptive):
    """`I_clean.wav`, `I_adv.wav` (`I_adv_DEFENSE.wav` for adaptive attacks, made per defense), `I_defended_DEFENSE.wav`."""
    tag = safe_name(spec_text)
    for i in range(min(k, len(x))):
        save_audio(folder / f"{i}_clean.wav", x[i], rate, subtype="FLOAT")
        save_audio(folder / (f"{i}_adv_{tag}.wav" if adaptive else f"{i}_adv.wav"), adv[i], rate, subtype="FLOAT")
        save_audio(folder / f"{i}_defended_{tag}.wav", def_adv[i].clamp(-1, 1), rate, subtype="FLOAT")


def _write_rows(path: Path, rows: list[dict], *, safe: bool = False) -> None:
    """`safe`: the user-facing clips.csv, its text cells neutralised for spreadsheets; the per-cell files are read
    back on resume and keep their text as it is."""
    write_csv(path, CLIP_FIELDS, ({k: nan_to_none(v) for k, v in r.items()} for r in rows), safe=safe)


def _read_rows(path: Path) -> list[dict]:
    def cast(key, val):
        if key in ("victim", "attack", "defense", "path", "pesq_error"):
            return val
        if key in ("success", "defended_fooled"):
            return val == "True"
        if key in ("clip", "label", "clean_pred", "adv_pred", "defended_clean_pred", "defended_adv_pred"):
            return int(val)
        return float(val) if val != "" else None

    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return [{k: cast(k, v) for k, v in row.items()} for row in csv.DictReader(fh)]
    except (OSError, ValueError, TypeError, KeyError) as err:
        raise ValueError(f"{path}: cannot be read back ({err}); use another output folder or --force") from None


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: is damaged ({err}); use another output folder or --force") from None
    return value if isinstance(value, dict) else {}


def held_per_victim(path: Path, settings: dict) -> dict:
    """A grid's per-victim result file (detection, certification) to continue: what `path` holds when it was made
    with `settings`, else an empty one."""
    if path.is_file():
        held = _read_json(path)
        if held.get("settings") == json.loads(json.dumps(settings)):  # as JSON holds them (tuples as lists)
            return held
    return {"settings": settings, "victims": {}}


def load_grid_records(cfg: EvalConfig) -> list:
    """The grid's dataset, every file checked (bad ones skipped with `skip_bad`)."""
    options = {"classes": cfg.classes} if cfg.classes else {}
    return load_records(
        cfg.dataset, cfg.data, folds=cfg.folds, fold=cfg.fold, on_error="skip" if cfg.skip_bad else "raise", **options
    )


def _prepare(victim: Victim, records, cfg: EvalConfig, device, times: dict):
    """A victim's clips (the near-silent ones left out), its faster predictor, its clean predictions with and without
    each defense, and how many clips were left out."""
    data = select_clips(records, victim, cfg)
    waves = [data[i][0] for i in range(len(data))]
    silent = {i for i, w in enumerate(waves) if near_silent(w[None])[0]}
    if len(silent) == len(waves):
        raise ValueError(f"all {len(waves)} clips of split {cfg.split!r} are near-silent: there is nothing to attack")
    if silent:
        data = _dataset([r for i, r in enumerate(data.records) if i not in silent], victim, cfg)
        waves = [w for i, w in enumerate(waves) if i not in silent]
    x = Clips([w.to(device) for w in waves], cfg.batch_size)
    predictor = InferenceModel(victim.model)
    clean_pred = _predict(predictor, x, times)
    defended_clean = {}
    for spec_text in cfg.defenses:
        defense = parse_defense(spec_text)
        defended_clean[spec_text] = (
            clean_pred if _is_identity(defense) else _predict(predictor, x, times, defense, victim.sample_rate)
        )
    return data, x, predictor, clean_pred, defended_clean, len(silent)


def fresh_generator(
    spec: AttackSpec,
    name: str,
    victim_name: str,
    victim_path,
    victim: Victim,
    records,
    cfg: EvalConfig,
    out: Path,
    **kw,
) -> tuple[AttackSpec, str | None]:
    """A `fresh_staa` cell's generator, trained against the victim at the cell's budget on the dataset's train and val
    splits into `out/generators/VICTIM/ATTACK/`: the spec that attacks with it, and why the attack failed (None
    when the generator did not collapse). `kw`: device and progress."""
    eps = spec.params.get("eps", cfg.budgets[0])
    folder = out / "generators" / safe_name(victim_name) / safe_name(name)
    known = [r for r in records if r.label in victim.classes]
    try:
        report = train_fresh(victim_path, known, folder, eps=eps, epochs=spec.value("epochs"), seed=cfg.seed, **kw)
    except ValueError as err:
        raise ValueError(f"attack {name!r} trains a generator on the dataset's train split: {err}") from None
    history, failed = report["history"], None
    if collapsed(report):
        best = max(h["val_mean_fooling_rate"] for h in history)
        failed = (
            f"its fresh generator collapsed: val fooling {best:.3f}, last l0 ratio {history[-1]['val_l0_ratio']:.4f}"
        )
    return replace(spec, params={**spec.params, "eps": eps, "generator": str(folder / "best.pt")}), failed


def _compute_cell(
    name,
    spec,
    victim,
    prepared,
    records,
    cfg,
    out,
    *,
    victim_name,
    victim_path,
    victim_sha,
    done,
    rank,
    device,
    progress,
    times,
):
    """One victim x attack over every defense, into `done` (its per-clip CSV, then its JSON, written last); a
    `fresh_staa` attack first trains its generator."""
    data, x, predictor, clean_pred, defended_clean, n_silent = prepared
    run_spec, failed = spec, None
    if spec.type == "fresh_staa":
        run_spec, failed = fresh_generator(
            spec, name, victim_name, victim_path, victim, records, cfg, out, device=device, progress=progress
        )
    rows = evaluate_attack(
        name,
        run_spec,
        victim_name,
        victim,
        data,
        x,
        clean_pred,
        defended_clean,
        cfg,
        out,
        device=device,
        progress=progress,
        predictor=predictor,
        times=times,
    )
    _write_rows(done.with_suffix(".csv"), rows)
    meta = {"victim": victim_name, "attack": name, "type": spec.type, "complete": True, "victim_sha256": victim_sha}
    # rank: which torchrun process computed it (0 in a single process)
    write_json(done, meta | {"n_silent": n_silent, "rank": rank, "failed": failed})


def _claim(out: Path, cfg: EvalConfig) -> Path:
    """The run folder, holding this config: a folder with another run's config is refused."""
    out.mkdir(parents=True, exist_ok=True)
    saved = out / "config.json"
    # a field added since the folder was written holds its default there
    if saved.is_file() and {**config_defaults(), **_read_json(saved)} != cfg.to_dict():
        raise ValueError(f"{out}: holds a run with another config; use another folder or --force")
    write_json(saved, cfg.to_dict())
    return out


def _share(cfg: EvalConfig, rank: int, world: int) -> set[tuple[str, str]]:
    """The (victim, attack) cells of torchrun rank `rank` of `world`: victim i's attack j where i + j = rank (mod
    world), so that one expensive attack is spread over the ranks."""
    return {
        (v, a) for i, v in enumerate(cfg.victims) for j, a in enumerate(cfg.attack_specs) if (i + j) % world == rank
    }


def run_grid(
    cfg: EvalConfig,
    out_dir,
    *,
    device="cpu",
    progress: bool = True,
    resume: bool = True,
    records: list | None = None,
    times: dict | None = None,
    shard: tuple[int, int] = (0, 1),
) -> dict | None:
    """`records`: the grid's dataset already loaded (`load_grid_records`), so the caller's check need not read it twice.
    `times`, if given, collects the seconds spent per kind of work (attack, defense, model, perceptual).
    `shard=(rank, world)` with world > 1 computes only this rank's share of the victim x attack cells into `cells/` and
    returns None; a run without a shard afterwards finds every cell finished and gathers them (`staa evaluate` under
    torchrun). Each cell is seeded by the grid alone, so the split does not change its numbers."""
    times = {} if times is None else times
    out = _claim(Path(out_dir), cfg)
    records = records if records is not None else load_grid_records(cfg)
    torch.manual_seed(cfg.seed)
    rank, world = shard
    own = _share(cfg, rank, world)
    cells, all_rows, classes, victims = [], [], {}, {}
    for victim_name, path in cfg.victims.items():
        if world > 1 and not any(v == victim_name for v, _ in own):
            continue
        victim, victim_sha = load_victim(path, device=device, check=True), fingerprint(path)
        victims[victim_name] = {"source": str(path), "arch": victim.arch, "sample_rate": victim.sample_rate}
        victims[victim_name] |= {"checks": victim.checks, "flags": flags(victim.checks)}
        for spec_text in cfg.defenses:  # before any work: a defense that cannot run at this rate fails now
            parse_defense(spec_text).check(victim.sample_rate)
        classes[victim_name] = victim.classes
        prepared = None  # the clips and clean predictions, made only when a cell is still to compute
        for name, spec in cfg.attack_specs.items():
            done = out / "cells" / safe_name(victim_name) / f"{safe_name(name)}.json"
            if resume and done.is_file() and _read_json(done).get("victim_sha256") != victim_sha:
                raise ValueError(
                    f"{path}: is not the victim file the finished cells in {done.parent} were computed on (its SHA-256 "
                    "differs); use another output folder or --force"
                )
            if world > 1 and (victim_name, name) not in own:
                continue
            if not (resume and done.is_file()):
                prepared = prepared or _prepare(victim, records, cfg, device, times)
                _compute_cell(
                    name,
                    spec,
                    victim,
                    prepared,
                    records,
                    cfg,
                    out,
                    victim_name=victim_name,
                    victim_path=path,
                    victim_sha=victim_sha,
                    done=done,
                    rank=rank,
                    device=device,
                    progress=progress,
                    times=times,
                )
            if world > 1:
                continue
            rows, meta = _read_rows(done.with_suffix(".csv")), _read_json(done)
            all_rows += rows
            context = cell_context(name, spec, cfg, victim_name, victim_sha) | {"failed": meta.get("failed")}
            for spec_text in cfg.defenses:
                cell_rows = [r for r in rows if r["defense"] == spec_text]
                cells.append(make_cell(victim_name, name, spec, spec_text, cell_rows, meta.get("n_silent", 0), context))
    if world > 1:
        return None
    _write_rows(out / "clips.csv", all_rows, safe=True)
    results = gather(cfg, classes, victims, cells)
    write_json(out / "results.json", results)
    return results
