"""Training the STAA-Net generator against one or several frozen surrogate victims.

Loss = L_adv + w_mag L_mag + w_spa L_spa + w_qua L_qua (see staa.generator.losses), plus w_feat L_feat for transfer
(staa.generator.feature_loss); with several surrogates
L_adv is their mean, so one generator targets the ensemble. With `defenses` (defense-aware STAA), each
batch also passes through every one of them (BPDA where one has no gradient), and L_adv is the mean of the
undefended loss and the mean defended loss, so the perturbation learns to survive the defenses. `OUT/last.pt` (with optimiser and RNG
state) is rewritten after each epoch, so rerunning continues; `OUT/best.pt` keeps the generator with
the best validation fooling rate among those meeting the sparsity budget, at the last eps of the schedule reached.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from staa.datasets import AudioDataset, Record, epoch_loader
from staa.datasets.augment import resample_shift
from staa.datasets.splits import split_records
from staa.generator.checkpoint import read_generator, save_generator, surrogate_refs
from staa.generator.feature_loss import FeatureTaps, feature_similarity
from staa.generator.losses import adversarial_loss, magnitude_loss, quality_loss, sparsity_loss
from staa.generator.network import PRESETS, GeneratorConfig, STAAGenerator
from staa.io.atomic import write_json
from staa.io.checkpoint import CheckpointError, load_checkpoint, restore_training, training_state
from staa.io.validate import check_fields, check_type, in_range
from staa.metrics.classification import fooled
from staa.metrics.perturbation import distortion_db, l0_ratio
from staa.models.victim import Victim, load_victim

log = logging.getLogger(__name__)


@dataclass
class AttackTrainConfig:
    """How a generator is trained. The defaults are the `default` recipe, the best measured settings; `paper` is the
    authors' (`staa.generator.recipes`)."""

    preset: str = "cpu-fold"  # no layer at the full sample rate
    # overrides of the preset's GeneratorConfig fields; the straight-through mask trains what the attack runs
    generator: dict = field(default_factory=lambda: {"train_mask": "straight_through"})
    epochs: int = 10
    batch_size: int = 16
    lr: float = 2e-3  # the authors use 1e-3; 2e-3 reached the same fooling rate in half the steps here
    lr_halving_epochs: int = 100  # a constant rate, in effect
    eps_schedule: list = field(default_factory=lambda: [[0, 0.03]])  # [[from_epoch, eps], ...]
    kappa: float = 2.0
    w_mag: float = 0.0
    w_spa: float = 5.0  # on the length-normalised L_spa (the authors' 0.1 is on a differently scaled norm)
    w_qua: float = 1e-6
    spa_warmup_epochs: int = 0  # no sparsity loss before this epoch (early on it can collapse the mask to 0)
    # 0: the paper's penalty w_spa * L_spa; > 0: a budget, w_spa * max(0, L_spa - spa_target): the mask is free
    # below it, so the penalty cannot shrink it to nothing before the attack has found where to perturb
    spa_target: float = 0.2
    targeted: bool = False
    target: int | None = None
    max_l0_ratio: float = 0.25  # "best" is chosen among epochs within this sparsity budget
    seed: int = 0
    clip_seconds: float = 3.0  # training crops (the generator is fully convolutional): whole 3 s clips
    eval_clip_seconds: float = 3.0
    defenses: list = field(default_factory=list)  # defense specs to train through (defense-aware STAA)
    # the chance per step that the surrogates see the adversarial batch resampled by 0.9-1.1 and shifted
    # (`staa.datasets.augment`): input diversity, for transfer to models that view the clip otherwise
    diversity: float = 0.0
    # an intermediate-feature loss for transfer (`staa.generator.feature_loss`): w_feat times the cosine similarity
    # of each surrogate's features at `feature_layer` (a module name; None: its middle convolution) on the clean and
    # the adversarial clip; 0 leaves it out
    w_feat: float = 0.0
    feature_layer: str | None = None
    # tell the generator each clip's class (see STAAGenerator.condition); an unconditional generator collapses to
    # one universal target class, and the clips already of that class stay unfooled
    conditional: bool = True
    # start from a trained generator's weights (same shape): e.g. make a plain generator defense-aware in a few
    # epochs instead of training one from scratch; the optimiser starts fresh
    init: str | None = None

    def __post_init__(self):
        check_fields(self)
        in_range("epochs", self.epochs, None, 10_000)
        in_range("batch_size", self.batch_size, None, 4096)
        in_range("clip_seconds", self.clip_seconds, None, 600)
        in_range("eval_clip_seconds", self.eval_clip_seconds, 0.01, 600)
        in_range("lr", self.lr, None, 1)
        in_range("max_l0_ratio", self.max_l0_ratio, 0, 1)
        in_range("diversity", self.diversity, 0, 1)
        for step in self.eps_schedule:
            if not isinstance(step, (list, tuple)) or len(step) != 2:
                raise ValueError(f"eps_schedule entries are [from_epoch, eps] pairs, got {step!r}")
            check_type("eps_schedule epoch", step[0], int)
            check_type("eps", step[1], float)
            if not 0 < step[1] <= 1:
                raise ValueError(f"eps_schedule needs eps > 0 and <= 1 everywhere, got {self.eps_schedule}")
        if self.target is not None and self.target < 0:
            raise ValueError(f"target must be a class index >= 0, got {self.target}")
        if self.preset not in PRESETS:
            raise ValueError(f"unknown generator preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        if not self.clip_seconds > 0:
            raise ValueError(f"training crops must be > 0 s long, got {self.clip_seconds}")
        if min(self.epochs, self.batch_size, self.lr_halving_epochs) < 1 or not self.lr > 0:
            raise ValueError("epochs, batch_size and lr_halving_epochs must be >= 1 and lr > 0")
        if not self.eps_schedule or any(not e > 0 for _, e in self.eps_schedule):
            raise ValueError(f"eps_schedule needs eps > 0 everywhere, got {self.eps_schedule}")
        self.generator_config()  # validates the overrides
        self.parsed_defenses()
        if self.targeted and self.target is None:
            raise ValueError("a targeted attack needs a target class index")
        if not 0.0 <= self.spa_target < 1.0:
            raise ValueError(f"spa_target must be in [0, 1), got {self.spa_target}")
        for name in ("w_mag", "w_spa", "w_qua", "w_feat", "kappa", "spa_warmup_epochs"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    def generator_config(self, num_classes: int = 0) -> GeneratorConfig:
        """`num_classes` (the surrogates') sizes a conditional generator's class embedding."""
        conditional = {"num_classes": num_classes} if self.conditional and num_classes else {}
        try:
            return GeneratorConfig(
                **{**asdict(PRESETS[self.preset]), **self.generator, **conditional, "eps": self.eps_at(0)}
            )
        except TypeError as err:
            raise ValueError(f"bad generator settings {self.generator}: {err}") from None

    def parsed_defenses(self) -> list:
        from defenses import parse_defense

        return [parse_defense(spec) for spec in self.defenses]

    def eps_at(self, epoch: int) -> float:
        steps = sorted(self.eps_schedule)
        return float(max(((s, e) for s, e in steps if s <= epoch), default=steps[0])[1])


def with_options(settings: dict, options: dict) -> dict:
    """`settings` (AttackTrainConfig fields, as a recipe gives them) with `options` over them, one flat mapping: a
    network field (`channels`, `levels`, `train_mask`, ...) joins the preset's overrides, any other field of
    AttackTrainConfig replaces its value. `{"generator": {...}}` is read as the network fields it holds."""
    network = {f.name for f in fields(GeneratorConfig)} - {"eps", "num_classes"}  # set by the budget and the classes
    training = {f.name for f in fields(AttackTrainConfig)} - {"generator"}
    out = {**settings, "generator": dict(settings.get("generator", {}))}
    for key, value in options.items():
        if key == "generator" and isinstance(value, dict) and set(value) <= network:
            out["generator"] |= value
        elif key in network:
            out["generator"][key] = value
        elif key in training:
            out[key] = value
        else:
            raise ValueError(
                f"unknown generator option {key!r}; choose from {', '.join(sorted(training))} (training) or "
                f"{', '.join(sorted(network))} (network)"
            )
    return out


def parse_eps_schedule(text: str) -> list:
    """ "0.03" or "0:0.03,10:0.01" (from epoch 10 on, eps 0.01)."""
    try:
        if ":" not in text:
            return [[0, float(text)]]
        return [[int(a), float(b)] for a, b in (part.split(":") for part in text.split(","))]
    except ValueError:
        raise ValueError(f"bad eps schedule {text!r}; use 0.03 or 0:0.03,10:0.01") from None


def _warm_start(gen: STAAGenerator, path, rate: int, classes: list, device) -> None:
    start, record = read_generator(path, device=device)
    if record.sample_rate != rate or list(record.classes) != list(classes):
        raise CheckpointError(
            f"{path}: cannot start from this generator, it was trained at {record.sample_rate} Hz "
            f"on classes {list(record.classes)}; the surrogates run at {rate} Hz on {list(classes)}"
        )
    try:
        gen.load_state_dict(start.state_dict())
    except RuntimeError:  # layer shapes, or conditional vs not
        raise CheckpointError(
            f"{path}: cannot start from this generator, its shape differs ({start.cfg} vs {gen.cfg})"
        ) from None


def _check_surrogates(victims: list[Victim]) -> None:
    first = victims[0]
    for v in victims[1:]:
        if v.sample_rate != first.sample_rate or v.classes != first.classes:
            raise ValueError("all surrogates must share sample rate and classes")


def _labels(cfg: AttackTrainConfig, model, x) -> torch.Tensor:
    if cfg.targeted:
        return torch.full((x.shape[0],), cfg.target, dtype=torch.long, device=x.device)
    with torch.no_grad():
        return model(x).argmax(dim=1)


def generator_loss(
    cfg: AttackTrainConfig,
    gen: STAAGenerator,
    models,
    x,
    epoch: int | None = None,
    defenses=(),
    sample_rate: int | None = None,
    *,
    labels=None,
    with_adversarial: bool = False,
):
    """(loss, parts) — and with `with_adversarial`, also the hard-mask adversarial clips of this same forward pass
    (what the generator outputs at test time), detached: adversarial training reuses them instead of a second pass.
    `labels` replaces the surrogates' clean predictions as the classes to move away from (the true labels, in AT)."""
    clean = _surrogate_labels(cfg, models, x, labels)
    # a conditional generator is told the class to move away from (the first surrogate's), or the target
    cls = None if not gen.conditional else _labels(cfg, models[0], x) if cfg.targeted else clean[0]
    v, m, m_soft = gen.perturbation(x, cls)
    x_adv = (x + v * m).clamp(-1, 1)
    seen, x_seen = x_adv, x
    if cfg.diversity and float(torch.rand(1)) < cfg.diversity:  # the global generator, seeded by the run's seed
        # one draw for both halves: the feature loss compares the clean and adversarial clip under one view
        seen, x_seen = resample_shift(torch.cat([x_adv, x]), torch.default_generator).chunk(2)
    with FeatureTaps(models, cfg.feature_layer) if cfg.w_feat else nullcontext() as taps:
        if taps:
            with torch.no_grad():
                for mod in models:
                    mod(x_seen)
            clean_features = taps.outputs()
        adv = _adv_loss(cfg, models, seen, clean)
        feat = feature_similarity(clean_features, taps.outputs()) if taps else None
    if defenses:
        defended = []
        for defense in defenses:
            with torch.no_grad():
                x_def = defense(x, sample_rate)
            defended.append(
                _adv_loss(cfg, models, defense.bpda(x_adv, sample_rate), _surrogate_labels(cfg, models, x_def))
            )
        adv = 0.5 * (adv + torch.stack(defended).mean())
    parts = {"adv": adv, "mag": magnitude_loss(v), "spa": sparsity_loss(m), "qua": quality_loss(m_soft)}
    w_spa = cfg.w_spa if epoch is None or epoch >= cfg.spa_warmup_epochs else 0.0
    spa = (parts["spa"] - cfg.spa_target).clamp(min=0) if cfg.spa_target else parts["spa"]
    total = adv + cfg.w_mag * parts["mag"] + w_spa * spa + cfg.w_qua * parts["qua"]
    if feat is not None:
        parts["feat"] = feat
        total = total + cfg.w_feat * feat
    parts = {k: t.item() for k, t in parts.items()}
    if with_adversarial:
        return total, parts, (x + v * (m_soft >= 0.5)).clamp(-1, 1).detach()
    return total, parts


def _surrogate_labels(cfg, models, x, labels=None) -> list:
    """Per surrogate, the classes its adversarial loss moves away from (or the target): `labels` for all when given,
    else each surrogate's prediction on `x`."""
    return [labels] * len(models) if labels is not None else [_labels(cfg, mod, x) for mod in models]


def _adv_loss(cfg, models, x_adv, labels: list):
    """The surrogates' mean adversarial loss, surrogate i against `labels[i]`."""
    return torch.stack(
        [adversarial_loss(mod(x_adv), y, targeted=cfg.targeted, kappa=cfg.kappa) for mod, y in zip(models, labels)]
    ).mean()


@torch.no_grad()
def validate(
    gen: STAAGenerator, models, dataset, *, batch_size: int = 32, device="cpu", target: int | None = None, defenses=()
) -> dict:
    """Fooling (or target) rate per surrogate, mean l0 ratio, mean distortion dB over fooled clips; with
    `defenses`, also the fooling rate of the defended surrogates (defense, then model) per defense."""
    gen.eval()
    hits = [[] for _ in models]
    defended = {d.spec: [] for d in defenses}
    ratios, dists = [], []
    for x, _ in DataLoader(dataset, batch_size=batch_size):
        x = x.to(device)
        clean = [mod(x).argmax(1) for mod in models]
        cls = None if not gen.conditional else torch.full_like(clean[0], target) if target is not None else clean[0]
        x_adv = gen(x, cls)
        ratios += l0_ratio(x, x_adv).tolist()
        dist = distortion_db(x, x_adv)
        for i, mod in enumerate(models):
            ok = fooled(clean[i], mod(x_adv).argmax(1), target)
            hits[i] += ok.tolist()
            if i == 0:
                dists += dist[ok].tolist()
        for d in defenses:  # each defense runs once per batch, whatever the number of surrogates
            x_def, adv_def = d(x, dataset.sample_rate), d(x_adv, dataset.sample_rate)
            defended[d.spec] += (
                torch.stack([fooled(mod(x_def).argmax(1), mod(adv_def).argmax(1), target) for mod in models])
                .float()
                .mean(0)
                .tolist()
            )
    rates = [sum(f) / max(1, len(f)) for f in hits]
    finite = [d for d in dists if d != float("inf")]
    report = {
        "fooling_rate": rates,
        "mean_fooling_rate": sum(rates) / len(rates),
        "l0_ratio": sum(ratios) / max(1, len(ratios)),
        "distortion_db": sum(finite) / len(finite) if finite else None,
        "n": len(ratios),
    }
    if defenses:
        report["defended_fooling_rate"] = {k: sum(v) / max(1, len(v)) for k, v in defended.items()}
        # what "best" ranks by: undefended and defended fooling weigh equally, as in the training loss
        report["score"] = 0.5 * (
            report["mean_fooling_rate"] + sum(report["defended_fooling_rate"].values()) / len(defenses)
        )
    return report


def _train_epoch(cfg, gen, opt, models, train_set, epoch, defenses, rate, device, progress, last) -> dict[str, float]:
    """One epoch of generator updates; returns the epoch's mean of each loss term."""
    gen.set_eps(cfg.eps_at(epoch))
    gen.train()
    loader = epoch_loader(train_set, cfg.batch_size, cfg.seed, epoch)
    sums: dict[str, float] = {}
    bar = tqdm(loader, desc=f"generator epoch {epoch + 1}/{cfg.epochs}", leave=False, disable=not progress)
    for x, _ in bar:
        loss, parts = generator_loss(cfg, gen, models, x.to(device), epoch, defenses, rate)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"generator loss became {loss.item()} in epoch {epoch + 1} ({parts}); lower --lr, or resume from {last}"
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        for k, val in parts.items():
            sums[k] = sums.get(k, 0.0) + val / len(loader)
        bar.set_postfix(adv=f"{parts['adv']:.2f}", spa=f"{parts['spa']:.3f}")
    return sums


def _score(epoch: dict) -> float:
    """What `best.pt` ranks epochs by (a history entry's validation)."""
    return epoch.get("val_score", epoch["val_mean_fooling_rate"])


def best_epoch(history: list[dict], max_l0_ratio: float) -> int:
    """The epoch `best.pt` holds: the first of the top score within the l0 budget among the epochs at the last eps
    (the last run of equal eps in the history), else the last epoch."""
    start = len(history)
    while start and history[start - 1]["eps"] == history[-1]["eps"]:
        start -= 1
    within = [h for h in history[start:] if h["val_l0_ratio"] <= max_l0_ratio]
    if not within:
        return len(history)
    top = max(_score(h) for h in within)
    return next(h["epoch"] for h in within if _score(h) == top)


def train_generator(
    cfg: AttackTrainConfig, surrogate_paths, records: list[Record], out_dir, *, device="cpu", progress: bool = True
) -> dict:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    victims = [load_victim(p, device=device) for p in surrogate_paths]
    _check_surrogates(victims)
    models = [v.model.eval().requires_grad_(False) for v in victims]
    rate, classes = victims[0].sample_rate, victims[0].classes
    if cfg.targeted and not 0 <= cfg.target < len(classes):
        raise ValueError(
            f"target class {cfg.target} is not a class index of the surrogates (0-{len(classes) - 1}: {', '.join(classes)})"
        )
    for d in cfg.parsed_defenses():
        d.check(rate)
    make = lambda split, crop, seconds: AudioDataset(
        split_records(records, split),
        classes,
        sample_rate=rate,
        clip_seconds=seconds,
        crop=crop,
        seed=cfg.seed,
    )
    train_set, val_set = make("train", "random", cfg.clip_seconds), make("val", "center", cfg.eval_clip_seconds)
    if len(train_set) < cfg.batch_size:
        raise ValueError(
            f"{len(train_set)} training clips are fewer than one batch of {cfg.batch_size}: lower --batch-size"
        )
    defenses = cfg.parsed_defenses()
    torch.manual_seed(cfg.seed)
    gen = STAAGenerator(cfg.generator_config(len(classes))).to(device)
    opt = torch.optim.Adam(gen.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.lr_halving_epochs, gamma=0.5)
    extra = {"surrogate_archs": [v.arch for v in victims], "train_config": asdict(cfg)}
    meta = {**surrogate_refs(out / "best.pt", surrogate_paths), **extra, "sample_rate": rate, "classes": classes}
    save = lambda path, **more: save_generator(
        path, gen, sample_rate=rate, classes=classes, surrogates=surrogate_paths, **extra, **more
    )
    state = {"epoch": 0, "history": []}  # best.pt's epoch is derived from the history (best_epoch)
    last = out / "last.pt"
    if last.is_file():
        ckpt = load_checkpoint(last, "generator", ("train_state",))
        if ckpt["train_config"] != asdict(cfg) or ckpt.get("surrogate_sha256") != meta["surrogate_sha256"]:
            raise CheckpointError(f"{last}: was written with other settings or surrogates; use another output folder")
        state = restore_training(last, ckpt, gen, opt, sched, state)
    elif cfg.init:
        _warm_start(gen, cfg.init, rate, classes, device)
    for epoch in range(state["epoch"], cfg.epochs):
        sums = _train_epoch(cfg, gen, opt, models, train_set, epoch, defenses, rate, device, progress, last)
        sched.step()
        val = validate(
            gen, models, val_set, device=device, target=cfg.target if cfg.targeted else None, defenses=defenses
        )
        state["history"].append(
            {
                "epoch": epoch + 1,
                "eps": cfg.eps_at(epoch),
                **{f"train_{k}": v for k, v in sums.items()},
                **{f"val_{k}": v for k, v in val.items()},
            }
        )
        if progress:
            tqdm.write(
                f"generator epoch {epoch + 1}: fooling {val['mean_fooling_rate']:.3f}, l0 ratio {val['l0_ratio']:.3f}, distortion {val['distortion_db'] or float('nan'):.1f} dB"
            )
        state["epoch"] = epoch + 1
        if val["l0_ratio"] <= cfg.max_l0_ratio and best_epoch(state["history"], cfg.max_l0_ratio) == epoch + 1:
            save(out / "best.pt", val=val)
        save(last, train_state=training_state(opt, sched, state))
    best = best_epoch(state["history"], cfg.max_l0_ratio)
    kept = state["history"][best - 1]
    found = kept["val_l0_ratio"] <= cfg.max_l0_ratio  # else no epoch at the last eps met the budget
    if not found:
        log.warning("no epoch met the l0 budget %.2f at the final eps; best.pt is the last epoch", cfg.max_l0_ratio)
        save(out / "best.pt")
    report = {
        **meta,
        "history": state["history"],
        "best_val_fooling_rate": _score(kept) if found else -1.0,
        "best_epoch": best,
    }
    write_json(out / "metrics.json", report)
    return report


def train_fresh(
    victim_path,
    records: list[Record],
    out_dir,
    *,
    eps: float,
    epochs: int = 2,
    seed: int = 0,
    device="cpu",
    progress=True,
) -> dict:
    """A generator of the default recipe trained against `victim_path` alone at budget `eps`, into
    `out_dir/best.pt` (resumed if it is there): the white-box generator attack that judges a hardened model, where a
    generator made on the original may just not transfer. Read its report with `collapsed`."""
    cfg = AttackTrainConfig(epochs=epochs, eps_schedule=[[0, eps]], seed=seed)  # its defaults are the default recipe
    return train_generator(cfg, [str(victim_path)], records, out_dir, device=device, progress=progress)


def collapsed(report: dict, floor: float = 0.02) -> bool:
    """Whether a trained generator failed as an attack: every epoch fooled (almost) nothing on val, or its last
    mask closed (l0 near zero). A hardened model that such a generator cannot fool has not shown robustness."""
    history = report["history"]
    return max(h["val_mean_fooling_rate"] for h in history) < floor or history[-1]["val_l0_ratio"] < 1e-4
