"""Adversarial training of a victim (`staa adv-train`): the STAA generator on the fly, or the PGD / fast FGSM /
N-FGSM / TRADES baselines, or clean training, all in one loop so that they differ only in how a batch is attacked.

`generator` (the default; after FGSM-SDI, Jia et al. 2022): the generator's sparse perturbation is the starting
point of one signed-gradient step, projected onto the eps-ball; the victim trains on the result, and the generator
is trained, against the current victim, to maximise the victim's loss *after* that step. `generator_only`: the
generator's own output is the training example (robustness to generators only). Either way each step first
updates the generator (`gen_updates` Adam steps), then replaces `adv_ratio` of the batch and updates the victim.

The kept epoch is the one most accurate under PGD-10 at the training eps on a fixed val subset, among those that
keep clean val UA within `max_clean_drop` of the start; FGSM accuracy alone hides catastrophic overfitting (Wong et
al. 2020), which is flagged when PGD val accuracy collapses while FGSM val accuracy holds.

`OUT/last.pt` (weights, optimisers, RNG, position in the epoch) is rewritten every `checkpoint_every` steps
and at each epoch's end, so a killed run continues mid-epoch and ends where an uninterrupted one would.
`OUT/victim.pt` is the kept epoch's victim (the most robust on val among the epochs that keep clean accuracy within
`max_clean_drop` of the starting model's; a victim checkpoint; a Hugging Face or TorchScript model fine-tuned from
`init_victim` is also written back as `OUT/hf/` or `OUT/victim.torchscript`), `OUT/generator.pt` the generator it
trained against, `OUT/metrics.json` the history. Under torchrun each rank takes its share of every global batch and
DDP averages the gradients; only rank 0 writes.
"""

from __future__ import annotations

import copy
import logging
import math
import time
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from staa import specs
from staa.attacks import FGSM, PGD
from staa.datasets import AudioDataset, Record
from staa.datasets.splits import split_records
from staa.generator.checkpoint import load_generator, save_generator
from staa.generator.losses import quality_loss, sparsity_loss
from staa.generator.network import STAAGenerator
from staa.generator.training import AttackTrainConfig, generator_loss
from staa.io.atomic import write_json
from staa.io.checkpoint import CheckpointError, check_loop_state, load_checkpoint, resume_guard, save_checkpoint
from staa.io.validate import check_fields, in_range
from staa.metrics.classification import classification_scores
from staa.models import build_model
from staa.models.inference import predict
from staa.models.victim import load_victim, save_victim
from staa.training import distributed

log = logging.getLogger(__name__)
METHODS = ("clean", "generator", "generator_only", "pgd", "fgsm", "nfgsm", "trades", "gaussian")
GENERATOR_METHODS = ("generator", "generator_only")


@dataclass
class AdvTrainConfig:
    arch: str
    classes: list[str]
    method: str = "generator"
    epochs: int = 5
    batch_size: int = 32  # the global batch: under torchrun each of N ranks takes batch_size / N
    # peak learning rate, decayed by a cosine to lr / 10 over the run; None: 5e-4 from scratch, 1e-4 to fine-tune
    # `init_victim` (5e-4 on a fresh optimiser throws a trained model off: the demo's mel_cnn lost 13-44 points)
    lr: float | None = None
    weight_decay: float = 1e-4
    seed: int = 0
    sample_rate: int = 16_000
    clip_seconds: float = 3.0
    model: dict = field(default_factory=dict)
    eps: float = 0.002  # the realistic audio budget (SpeakerGuard, AudioPure); the attack tables use 0.03 too
    adv_ratio: float = 0.5  # share of each batch replaced by adversarial clips (TRADES uses every clip twice)
    pgd_steps: int = 10
    trades_beta: float = 6.0
    generator: dict = field(default_factory=dict)  # AttackTrainConfig fields for the on-the-fly generator
    gen_updates: int = 1  # generator steps per victim step
    # `generator`: uniform noise of +-gen_noise * eps added to the generator's start, then a signed step of
    # gen_step * eps, neither projected back onto the eps-ball (N-FGSM's rule: the example may lie
    # (1 + gen_noise + gen_step) eps away). The best measured variant: on mel_cnn from scratch it kept twice the
    # standard-suite accuracy of the projected start and step (FGSM-SDI's rule: gen_noise=0, gen_project=true),
    # which the sparse start leaves at x on most samples
    gen_noise: float = 2.0
    gen_step: float = 1.0
    gen_project: bool = False
    gen_crop_seconds: float = 1.0  # the generator learns on crops (it is fully convolutional), then attacks whole clips
    init_victim: str | None = None  # warm start (fine-tune) from a trained victim
    # keep the epoch most robust on val (accuracy under PGD at the training eps on `val_clips` clips) among those
    # whose clean val UA is within this of the starting model's (from scratch: of the best epoch so far); without a val
    # split, the last epoch
    max_clean_drop: float = 0.05
    val_clips: int = 64  # the fixed (seeded) val subset of the PGD reading and the gradient alignment
    val_pgd_steps: int = 10
    # `gaussian`: Gaussian noise of this level on the waveform instead of an attack (Cohen et al. 2019): a base model
    # fit for randomized smoothing (`staa.models.smoothing`) at the same sigma
    noise_sigma: float = 0.002
    nfgsm_noise: float = 2.0  # N-FGSM's noise, U(-k eps, k eps) (de Jorge et al. 2022: k = 2), then one step of eps
    # batch-norm statistics stay those of the clean data the victim was trained on (None: frozen when fine-tuning):
    # adversarial clips in half of every batch would otherwise drag the running mean and variance the clean
    # predictions use
    freeze_bn: bool | None = None
    # fine-tuning: weight of KL(starting model || model) on each batch's clean clips, which anchors the clean
    # predictions to the model being hardened (0: plain cross-entropy)
    clean_kl: float = 1.0
    init_generator: str | None = None  # warm start from a trained generator
    defenses: list = field(default_factory=list)  # augmentation: each batch through one of these, drawn at random
    checkpoint_every: int = 25  # steps

    def __post_init__(self):
        if self.lr is None:
            self.lr = 1e-4 if self.init_victim else 5e-4
        if self.freeze_bn is None:
            self.freeze_bn = self.init_victim is not None
        check_fields(self)
        in_range("max_clean_drop", self.max_clean_drop, 0.0, 1.0)
        in_range("clean_kl", self.clean_kl, 0.0, 1000.0)
        in_range("epochs", self.epochs, 1, 10_000)
        in_range("batch_size", self.batch_size, 1, 4096)
        in_range("pgd_steps", self.pgd_steps, 1, 1000)
        in_range("val_clips", self.val_clips, 1, 100_000)
        in_range("val_pgd_steps", self.val_pgd_steps, 1, 1000)
        in_range("nfgsm_noise", self.nfgsm_noise, 0.0, 100.0)
        in_range("noise_sigma", self.noise_sigma, 0.0, 1.0)
        in_range("gen_updates", self.gen_updates, 1, 100)
        in_range("gen_noise", self.gen_noise, 0, 4)
        in_range("gen_step", self.gen_step, 0.01, 4)
        in_range("eps", self.eps, 1e-6, 1.0)
        in_range("lr", self.lr, 0, 1)
        in_range("clip_seconds", self.clip_seconds, 0.1, 600)
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        if (
            self.epochs < 1
            or self.batch_size < 1
            or self.pgd_steps < 1
            or self.gen_updates < 1
            or self.checkpoint_every < 1
        ):
            raise ValueError("epochs, batch_size, pgd_steps, gen_updates and checkpoint_every must be >= 1")
        if not self.lr > 0 or not self.eps > 0:
            raise ValueError(f"lr and eps must be > 0, got lr {self.lr}, eps {self.eps}")
        if not 0.0 <= self.adv_ratio <= 1.0:
            raise ValueError(f"adv_ratio must be within [0, 1], got {self.adv_ratio}")
        if self.gen_crop_seconds < 0:
            raise ValueError(f"gen_crop_seconds must be >= 0 (0: whole clips), got {self.gen_crop_seconds}")
        if self.trades_beta < 0:
            raise ValueError(f"trades_beta must be >= 0, got {self.trades_beta}")
        self.attack_config()
        from defenses import parse_defense

        for spec in self.defenses:
            parse_defense(spec).check(self.sample_rate)

    def attack_config(self) -> AttackTrainConfig:
        return AttackTrainConfig(**{"eps_schedule": [[0, self.eps]], **self.generator})


def method_variant(spec: str) -> tuple[str, dict]:
    """`METHOD[:key=value...]` in the spec grammar (`generator:gen_noise=1:gen_step=1.25`): the method and AdvTrainConfig
    fields over its defaults, typed by their annotations."""
    name, positional, keyword = specs.split(spec, "method")
    hints = typing.get_type_hints(AdvTrainConfig)
    fields = [k for k in hints if k not in ("arch", "classes", "method")]
    if positional or not set(keyword) <= set(fields):
        raise ValueError(f"method {spec!r}: settings are key=value with keys among {', '.join(fields)}")
    return name, {k: specs.convert(spec, "method", k, v, hints[k]) for k, v in keyword.items()}


def _seed(cfg, epoch, step) -> int:
    return cfg.seed * 1_000_003 + epoch * 10_007 + step


def _n_adversarial(ratio: float, n: int) -> int:
    """How many of a batch's n clips are replaced by adversarial ones (the first ones)."""
    return round(ratio * n)


def _mix(x, x_adv, ratio):
    k = _n_adversarial(ratio, len(x))
    return torch.cat([x_adv[:k], x[k:]])


class Step:
    """One training step of any method on a (rank-local) batch; returns the victim's loss."""

    def __init__(
        self, cfg: AdvTrainConfig, model, ddp_model, opt, gen=None, gen_opt=None, d=distributed.Dist(), anchor=None
    ):
        self.cfg, self.model, self.ddp_model, self.opt, self.gen, self.gen_opt, self.d = (
            cfg,
            model,
            ddp_model,
            opt,
            gen,
            gen_opt,
            d,
        )
        self.attack_cfg = cfg.attack_config()
        self.anchor = anchor  # the frozen starting model of a fine-tune, for clean_kl

    def __call__(self, x, y, epoch: int, step: int) -> float:
        cfg = self.cfg
        x = self._augment(x, epoch, step)
        if cfg.method == "trades":
            loss = self._trades(x, y, _seed(cfg, epoch, step))
        else:
            if cfg.method in GENERATOR_METHODS:
                x = _mix(x, self._generator(x, y, _seed(cfg, epoch, step)), cfg.adv_ratio)
            elif cfg.method == "nfgsm":
                k = _n_adversarial(cfg.adv_ratio, len(x))
                adv = nfgsm(self.model, x[:k], y[:k], cfg.eps, cfg.nfgsm_noise, _seed(cfg, epoch, step))
                x = _mix(x, adv, cfg.adv_ratio)
            elif cfg.method == "gaussian":
                gen = torch.Generator().manual_seed(_seed(cfg, epoch, step))
                noise = torch.randn(x.shape, generator=gen).to(x.device)
                x = _mix(x, x + cfg.noise_sigma * noise, cfg.adv_ratio)
            elif cfg.method in ("pgd", "fgsm"):
                attack = (
                    PGD(self.model, eps=cfg.eps, steps=cfg.pgd_steps, seed=_seed(cfg, epoch, step))
                    if cfg.method == "pgd"
                    else PGD(self.model, eps=cfg.eps, steps=1, alpha=1.25 * cfg.eps, seed=_seed(cfg, epoch, step))
                )  # Wong et al.'s fast AT
                x = _mix(x, attack(x, y), cfg.adv_ratio)
            self._train_mode()
            logits = self.ddp_model(x)
            loss = F.cross_entropy(logits, y)
            k = _n_adversarial(cfg.adv_ratio, len(x)) if cfg.method != "clean" else 0
            if self.anchor is not None and k < len(x):
                with torch.no_grad():
                    ref = F.softmax(self.anchor(x[k:]), dim=1)
                loss = loss + cfg.clean_kl * F.kl_div(F.log_softmax(logits[k:], dim=1), ref, reduction="batchmean")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss.item()

    def _train_mode(self):
        self.model.train()
        if self.cfg.freeze_bn:
            for m in self.model.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.eval()

    def _augment(self, x, epoch, step):
        if not self.cfg.defenses:
            return x
        from defenses import parse_defense

        g = torch.Generator().manual_seed(_seed(self.cfg, epoch, step))
        spec = self.cfg.defenses[int(torch.randint(len(self.cfg.defenses), (1,), generator=g))]
        defense = parse_defense(spec)
        if defense.random:
            defense = parse_defense(f"{spec}:seed={_seed(self.cfg, epoch, step)}")
        with torch.no_grad():
            return defense(x, self.cfg.sample_rate).clamp(-1, 1)

    def _generator(self, x, y, seed):
        """Update the generator against the frozen current victim, then attack with it (`generator`: its output,
        then one signed-gradient step). Only the share of the batch that will be replaced is used, and the update
        runs on a `gen_crop_seconds` crop of those clips (as `train-attack` does): this is what keeps generator-AT
        near the cost of clean training."""
        k = _n_adversarial(self.cfg.adv_ratio, len(x))
        if k == 0:
            return x[:0]
        xs, ys = x[:k], y[:k]
        crop = int(self.cfg.gen_crop_seconds * self.cfg.sample_rate)
        if 0 < crop < xs.shape[-1]:
            start = int(torch.randint(xs.shape[-1] - crop + 1, (1,), generator=torch.Generator().manual_seed(seed)))
            train_on = xs[:, start : start + crop]
        else:
            train_on = xs
        self.model.eval().requires_grad_(False)
        self.gen.train()
        stepped = self.cfg.method == "generator"
        for _ in range(self.cfg.gen_updates):
            if stepped:
                loss, x_adv = self._loss_after_step(train_on, ys, seed)
            else:
                loss, _, x_adv = generator_loss(
                    self.attack_cfg, self.gen, [self.model], train_on, labels=ys, with_adversarial=True
                )
            self.gen_opt.zero_grad(set_to_none=True)
            loss.backward()
            distributed.average_gradients(self.gen, self.d)
            self.gen_opt.step()
        self.model.requires_grad_(True)
        if train_on is not xs or stepped:
            self.gen.eval()
            with torch.no_grad():
                x_adv = self.gen(xs, ys if self.gen.conditional else None)
            if stepped:
                start = xs + self._with_noise(x_adv - xs, seed + 1)
                x_adv = signed_step(
                    self.model, xs, start.clamp(-1, 1), ys, self.cfg.gen_step * self.cfg.eps, self._bound
                )
        return x_adv

    @property
    def _bound(self) -> float | None:
        """Where the generator's example is projected back to: the eps-ball, or nowhere (`gen_project` false)."""
        return self.cfg.eps if self.cfg.gen_project else None

    def _with_noise(self, delta, seed):
        """The generator's perturbation plus uniform noise of +-gen_noise * eps, projected onto the eps-ball unless
        `gen_project` is false."""
        if not self.cfg.gen_noise:
            return delta
        noise = uniform_noise(delta, seed) * self.cfg.gen_noise * self.cfg.eps
        bound = self._bound
        return delta + noise if bound is None else (delta + noise).clamp(-bound, bound)

    def _loss_after_step(self, x, y, seed):
        """FGSM-SDI's generator objective: minus the victim's loss after one signed-gradient step from the
        generator's perturbation (the step's direction held fixed), plus STAA's sparsity terms on its mask."""
        cfg, acfg = self.cfg, self.attack_cfg
        v, m, m_soft = self.gen.perturbation(x, y if self.gen.conditional else None)
        start = (x + self._with_noise(v * m, seed)).clamp(-1, 1)
        x_adv = signed_step(self.model, x, start, y, cfg.gen_step * cfg.eps, self._bound)
        # the step is a constant offset (sign of a detached gradient); the projection passes gradients where inside
        x_adv = start + (x_adv - start).detach()
        if self._bound is not None:
            x_adv = x + (x_adv - x).clamp(-self._bound, self._bound)
        spa = sparsity_loss(m)
        spa = (spa - acfg.spa_target).clamp(min=0) if acfg.spa_target else spa
        loss = (
            -F.cross_entropy(self.model(x_adv.clamp(-1, 1)), y) + acfg.w_spa * spa + acfg.w_qua * quality_loss(m_soft)
        )
        return loss, x_adv.detach().clamp(-1, 1)

    def _trades(self, x, y, seed):
        """TRADES (Zhang et al., 2019): CE on clean + beta * KL(f(x_adv) || f(x)), x_adv maximising the KL by PGD."""
        cfg, model = self.cfg, self.model
        model.eval()
        with torch.no_grad():
            p_clean = F.softmax(model(x), dim=1)
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed)).to(x)
        x_adv = (x + 0.001 * noise).clamp(-1, 1)
        alpha = 2.5 * cfg.eps / cfg.pgd_steps
        for _ in range(cfg.pgd_steps):
            x_adv.requires_grad_(True)
            kl = F.kl_div(F.log_softmax(model(x_adv), dim=1), p_clean, reduction="sum")
            (grad,) = torch.autograd.grad(kl, x_adv)
            x_adv = (x + (x_adv.detach() + alpha * grad.sign() - x).clamp(-cfg.eps, cfg.eps)).clamp(-1, 1)
        self._train_mode()
        logits = self.ddp_model(torch.cat([x, x_adv]))  # one forward for both halves: one DDP gradient sync
        clean, adv = logits[: len(x)], logits[len(x) :]
        return F.cross_entropy(clean, y) + cfg.trades_beta * F.kl_div(
            F.log_softmax(adv, dim=1), F.softmax(clean, dim=1), reduction="batchmean"
        )


def input_gradient(model, x, y) -> torch.Tensor:
    """The gradient of the cross-entropy at `x` with respect to `x`, the model in eval mode (left as it was)."""
    point = x.detach().requires_grad_(True)
    was_training = model.training
    model.eval()
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(F.cross_entropy(model(point), y), point)
    model.train(was_training)
    return grad


def signed_step(model, x, start, y, alpha: float, eps: float | None):
    """One signed-gradient step of cross-entropy from `start`, projected onto the eps-ball around `x` (none where eps
    is None) and [-1, 1]."""
    stepped = start.detach() + alpha * input_gradient(model, start, y).sign()
    return (stepped if eps is None else x + (stepped - x).clamp(-eps, eps)).clamp(-1, 1)


def uniform_noise(like: torch.Tensor, seed: int) -> torch.Tensor:
    """Noise U(-1, 1) shaped like `like`, drawn on the CPU from `seed` (the same on any device)."""
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(like.shape, generator=gen) * 2 - 1).to(like)


def nfgsm(model, x, y, eps: float, k: float = 2.0, seed: int = 0):
    """N-FGSM (de Jorge et al., 2022): noise U(-k eps, k eps), then one signed-gradient step of eps, and no
    projection back to the eps-ball: the example may lie up to (k + 1) eps away (only [-1, 1] is enforced)."""
    noise = uniform_noise(x, seed) * k * eps
    return (x + noise + eps * input_gradient(model, x + noise, y).sign()).clamp(-1, 1).detach()


def _build(cfg: AdvTrainConfig, device):
    torch.manual_seed(cfg.seed)
    if cfg.init_victim:
        start = load_victim(cfg.init_victim, sample_rate=cfg.sample_rate)
        if start.arch != cfg.arch or start.classes != list(cfg.classes):
            raise CheckpointError(
                f"{cfg.init_victim}: is a {start.arch} over {start.classes}, not a {cfg.arch} over {list(cfg.classes)}"
            )
        model = start.model.to(device)
    else:
        model = build_model(cfg.arch, len(cfg.classes), cfg.sample_rate, **cfg.model).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = gen_opt = None
    if cfg.method in GENERATOR_METHODS:
        acfg = cfg.attack_config()
        gen = (
            load_generator(cfg.init_generator, device=device)
            if cfg.init_generator
            else STAAGenerator(acfg.generator_config(len(cfg.classes))).to(device)
        )
        gen.set_eps(cfg.eps)
        gen_opt = torch.optim.Adam(gen.parameters(), lr=acfg.lr)
    return model, opt, gen, gen_opt


def _save(out: Path, cfg, model, opt, gen, gen_opt, state):
    payload = {
        "train_config": asdict(cfg),
        "state_dict": model.state_dict(),
        "optimizer": opt.state_dict(),
        "rng": torch.get_rng_state(),
        "state": state,
    }
    if gen is not None:
        payload |= {"generator": gen.state_dict(), "generator_optimizer": gen_opt.state_dict()}
    save_checkpoint(out / "last.pt", "adv-train", payload)


def _save_models(out: Path, cfg, model, gen):
    save_victim(out / "victim.pt", model, cfg.arch, cfg.classes, cfg.sample_rate, adv_train=asdict(cfg))
    # a user's model also goes back in its own format, for their own tools
    if cfg.arch == "hf":
        from staa.models.huggingface import save_hf

        save_hf(model, out / "hf")
    elif cfg.arch == "torchscript":
        from staa.models.torchscript import save_torchscript

        save_torchscript(model, out / "victim.torchscript", cfg.classes, cfg.sample_rate)
    if gen is not None:  # its surrogate is the victim it trained against, saved beside it
        save_generator(
            out / "generator.pt", gen, sample_rate=cfg.sample_rate, classes=cfg.classes, surrogates=[out / "victim.pt"]
        )


def _resume(out: Path, cfg, model, opt, gen, gen_opt, state):
    last = out / "last.pt"
    if not last.is_file():
        return state
    ckpt = load_checkpoint(last, "adv-train", ("train_config", "state_dict", "optimizer", "rng", "state"))
    if ckpt["train_config"] != asdict(cfg):
        raise CheckpointError(f"{last}: was written with other settings; use another output folder")
    return resume_guard(last, lambda: _restore(ckpt, model, opt, gen, gen_opt, state))


def _restore(ckpt, model, opt, gen, gen_opt, fresh):
    model.load_state_dict(ckpt["state_dict"])
    opt.load_state_dict(ckpt["optimizer"])
    if gen is not None:
        gen.load_state_dict(ckpt["generator"])
        gen_opt.load_state_dict(ckpt["generator_optimizer"])
    torch.set_rng_state(ckpt["rng"])
    return check_loop_state(ckpt["state"], fresh)


@torch.no_grad()
def _batch(dataset, indices, device):
    xs, ys = zip(*(dataset[i] for i in indices))
    return torch.stack(xs).to(device), torch.tensor(ys, device=device)


def adv_train(cfg: AdvTrainConfig, records: list[Record], out_dir, *, device="cpu", progress: bool = True) -> dict:
    d = distributed.init(device)
    device = d.device
    if cfg.batch_size % d.world:
        raise ValueError(f"batch_size {cfg.batch_size} must be divisible by the number of processes {d.world}")
    out = Path(out_dir)
    if d.main:
        out.mkdir(parents=True, exist_ok=True)
    model, opt, gen, gen_opt = _build(cfg, device)
    fresh = {"epoch": 0, "step": 0, "history": [], "start": {}, "best_epoch": 0}
    anchor = None
    if cfg.init_victim and cfg.clean_kl > 0 and cfg.method not in ("clean", "trades"):
        anchor = copy.deepcopy(model).eval().requires_grad_(False)  # before _resume: the starting weights
    state = _resume(out, cfg, model, opt, gen, gen_opt, fresh)
    step_fn = Step(cfg, model, distributed.wrap(model, d), opt, gen, gen_opt, d, anchor)
    train_set, val_set = _splits(cfg, records)
    n_steps = len(train_set) // cfg.batch_size
    if n_steps == 0:
        raise ValueError(f"{len(train_set)} training clips are fewer than one batch of {cfg.batch_size}")
    if val_set is not None and cfg.init_victim and not state["start"] and d.main:
        state["start"] = _validate(model, val_set, cfg, device)
    for epoch in range(state["epoch"], cfg.epochs):
        train_set.set_epoch(epoch)
        order = torch.randperm(
            len(train_set), generator=torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
        ).tolist()
        started, losses = time.perf_counter(), []
        bar = tqdm(
            range(state["step"], n_steps),
            desc=f"{cfg.method} AT epoch {epoch + 1}/{cfg.epochs}",
            leave=False,
            disable=not (progress and d.main),
        )
        for step in bar:
            x, y = _batch(train_set, d.shard(order[step * cfg.batch_size : (step + 1) * cfg.batch_size]), device)
            for group in opt.param_groups:
                group["lr"] = _lr(cfg, (epoch * n_steps + step) / (cfg.epochs * n_steps))
            losses.append(step_fn(x, y, epoch, step))
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
            state["step"] = step + 1
            if state["step"] % cfg.checkpoint_every == 0 and state["step"] < n_steps and d.main:
                _save(out, cfg, model, opt, gen, gen_opt, state)
        record = {
            "epoch": epoch + 1,
            "train_loss": sum(losses) / max(1, len(losses)),
            "seconds": time.perf_counter() - started,
        }
        if val_set is not None and d.main:
            record |= _validate(model, val_set, cfg, device)
        state["history"].append(record)
        record["catastrophic_overfitting"] = catastrophic_overfitting(
            state["history"], state["start"], chance=1 / len(cfg.classes)
        )
        state["epoch"], state["step"] = epoch + 1, 0
        if d.main:
            _say(cfg, record, progress)
            if _better(cfg, state, record):
                state["best_epoch"] = epoch + 1
                _save_models(out, cfg, model, gen)
            _save(out, cfg, model, opt, gen, gen_opt, state)
        d.barrier()
    report = {
        "method": cfg.method,
        "config": asdict(cfg),
        "start": state["start"],
        "best_epoch": state["best_epoch"],
        "history": state["history"],
        "flags": [
            f"catastrophic_overfitting at epoch {r['epoch']}"
            for r in state["history"]
            if r.get("catastrophic_overfitting")
        ],
        "processes": d.world,
    }
    if d.main:
        write_json(out / "metrics.json", report)
    distributed.shutdown(d)
    return report


def _splits(cfg: AdvTrainConfig, records: list[Record]) -> tuple[AudioDataset, AudioDataset | None]:
    """The training clips (random crops, redrawn per epoch) and the validation clips (centre crops), if any."""
    make = lambda split, crop: AudioDataset(
        split_records(records, split),
        cfg.classes,
        sample_rate=cfg.sample_rate,
        clip_seconds=cfg.clip_seconds,
        crop=crop,
        seed=cfg.seed,
    )
    return make("train", "random"), make("val", "center") if any(r.split == "val" for r in records) else None


def _say(cfg: AdvTrainConfig, record: dict, progress: bool) -> None:
    """An epoch's line (with progress on) and its catastrophic-overfitting flag (always)."""
    if progress:
        tqdm.write(
            f"{cfg.method} AT epoch {record['epoch']}: loss {record['train_loss']:.3f}"
            + (
                f", val UA {record['val_ua']:.3f}, val accuracy under FGSM {record['val_fgsm_accuracy']:.3f}, "
                f"PGD-{cfg.val_pgd_steps} {record['val_pgd_accuracy']:.3f}"
                if "val_ua" in record
                else ""
            )
        )
    if record["catastrophic_overfitting"]:
        log.warning(
            "FLAG catastrophic overfitting at epoch %d: PGD val accuracy collapsed to %.3f while FGSM val accuracy "
            "holds at %.3f",
            record["epoch"],
            record["val_pgd_accuracy"],
            record["val_fgsm_accuracy"],
        )


def _lr(cfg, progress: float) -> float:
    """Cosine from cfg.lr down to cfg.lr / 10; a function of the position alone, so a resumed run follows it."""
    return cfg.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * progress)))


def _better(cfg, state, record) -> bool:
    """Whether this epoch replaces the kept one: among epochs within `max_clean_drop` of the start's clean val UA
    (from scratch, the best clean val UA so far), the most accurate under PGD on val; failing that, the cleanest.
    From scratch the bar rises with training: a model that predicts one class is never fooled, and its PGD accuracy
    (a share of chance) must not win over one that learnt the task."""
    if "val_ua" not in record:
        return True
    history = state["history"]
    floor = (state["start"]["val_ua"] if state["start"] else max(r["val_ua"] for r in history)) - cfg.max_clean_drop

    def key(r):
        ok = r["val_ua"] >= floor - 1e-9
        return (ok, r["val_pgd_accuracy"] if ok else r["val_ua"], r["val_ua"])

    best = state["best_epoch"]
    return best == 0 or key(record) > key(history[best - 1])


def catastrophic_overfitting(
    history: list[dict], start: dict | None = None, *, drop: float = 0.5, chance: float = 0.0
) -> bool:
    """The latest epoch's PGD val accuracy fell to at most `1 - drop` of the best reading before it (the start's
    included) while its FGSM val accuracy held (no lower than at that best reading, less 5 points): the model has
    learnt to mask the single-step gradient, not to resist (Wong et al. 2020; de Jorge et al. 2022). Only earlier
    epochs of about the same clean accuracy (within 10 points) and clear of `chance` UA (by 10 points) are compared:
    a model that still predicts one class is never fooled, and its "robustness" is no peak to fall from."""
    now = history[-1] if history else {}
    if "val_pgd_accuracy" not in now:
        return False
    earlier = [
        r
        for r in ([start] if start else []) + history[:-1]
        if r and "val_pgd_accuracy" in r and r.get("val_ua", 0.0) >= max(now.get("val_ua", 0.0), chance + 0.2) - 0.1
    ]
    if not earlier:
        return False
    peak = max(earlier, key=lambda r: r["val_pgd_accuracy"])
    collapsed = peak["val_pgd_accuracy"] >= 0.05 and now["val_pgd_accuracy"] <= (1 - drop) * peak["val_pgd_accuracy"]
    return collapsed and now["val_fgsm_accuracy"] >= peak["val_fgsm_accuracy"] - 0.05


def _subset(val_set, cfg) -> list[int]:
    n = len(val_set)
    if n <= cfg.val_clips:
        return list(range(n))
    return sorted(torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed))[: cfg.val_clips].tolist())


def _validate(model, val_set, cfg, device) -> dict:
    """Clean UA and WA on val; on a fixed val subset, accuracy under FGSM and under PGD at the training eps, and the
    gradient alignment: the mean cosine between the input gradients at a clip and at a random point of its eps-ball
    (Andriushchenko & Flammarion 2020; it falls towards 0 as single-step training overfits). All in eval mode, so
    that no val batch reaches the batch-norm statistics of the model being trained."""
    was_training = model.training
    model.eval()
    scores = classification_scores(*predict(model, val_set, device=device), len(cfg.classes))
    subset = _subset(val_set, cfg)
    fgsm_ok = pgd_ok = 0
    cosines = []
    fgsm = FGSM(model, eps=cfg.eps)
    pgd = PGD(model, eps=cfg.eps, steps=cfg.val_pgd_steps, seed=cfg.seed)
    for i in range(0, len(subset), 32):
        x, y = _batch(val_set, subset[i : i + 32], device)
        x_fgsm, x_pgd = fgsm(x, y), pgd(x, y)
        with torch.no_grad():
            fgsm_ok += int((model(x_fgsm).argmax(1) == y).sum())
            pgd_ok += int((model(x_pgd).argmax(1) == y).sum())
        noise = (torch.rand(x.shape, generator=torch.Generator().manual_seed(cfg.seed + i)) * 2 - 1).to(x) * cfg.eps
        grads = [input_gradient(model, point, y).flatten(1) for point in (x, (x + noise).clamp(-1, 1))]
        cosines += F.cosine_similarity(*grads, dim=1, eps=1e-20).tolist()
    model.train(was_training)
    n = len(subset)
    return {
        "val_ua": scores["ua"],
        "val_wa": scores["wa"],
        "val_fgsm_accuracy": fgsm_ok / n,
        "val_pgd_accuracy": pgd_ok / n,
        "val_grad_alignment": sum(cosines) / len(cosines),
    }
