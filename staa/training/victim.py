"""Training a victim SER model: per-epoch validation, best checkpoint, resume after an interruption.

`OUT/last.pt` is rewritten atomically after every epoch with the optimiser and RNG state, so a
rerun with the same settings continues from the last finished epoch; `OUT/best.pt` holds the
weights with the best validation UA, and `OUT/metrics.json` the history and final test scores.
Under `torchrun --nproc_per_node=N` each rank takes every N-th clip of each global batch and DDP averages
the gradients, so N processes take the single-process steps; rank 0 alone validates and writes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.optim.swa_utils import update_bn
from torch.utils.data import DataLoader
from tqdm import tqdm

from staa.datasets import AudioDataset, Record, epoch_loader
from staa.datasets.splits import split_records
from staa.io.atomic import write_json
from staa.io.checkpoint import CheckpointError, load_checkpoint, restore_training, training_state
from staa.io.validate import check_fields, in_range
from staa.metrics.classification import classification_scores
from staa.models import build_model
from staa.models.inference import predict
from staa.models.victim import save_victim
from staa.training import distributed

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    arch: str
    classes: list[str]
    epochs: int = 20
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    sample_rate: int = 16_000
    clip_seconds: float = 3.0
    model: dict = field(default_factory=dict)

    def __post_init__(self):
        check_fields(self)
        in_range("epochs", self.epochs, 1, 10_000)
        in_range("batch_size", self.batch_size, 1, 4096)
        in_range("clip_seconds", self.clip_seconds, 0.1, 600)
        in_range("weight_decay", self.weight_decay, 0, 1)
        if not 0 < self.lr <= 1:
            raise ValueError(f"lr must be within (0, 1], got {self.lr}")
        if len(self.classes) < 2:
            raise ValueError(f"need at least 2 classes, got {self.classes}")


def _split(records: list[Record], name: str) -> list[Record]:
    return split_records(records, name)


def _train_epoch(cfg, model, ddp_model, opt, train_set, epoch, d, device, progress) -> tuple[DataLoader, float]:
    """One epoch of updates on this rank's share of each batch; returns the loader and the summed loss."""
    loader = epoch_loader(train_set, cfg.batch_size, cfg.seed, epoch)
    model.train()
    total, loss_fn = 0.0, nn.CrossEntropyLoss()
    bar = tqdm(
        loader, desc=f"{cfg.arch} epoch {epoch + 1}/{cfg.epochs}", leave=False, disable=not (progress and d.main)
    )
    for x, y in bar:
        x, y = x[d.rank :: d.world], y[d.rank :: d.world]  # this rank's share of the global batch
        loss = loss_fn(ddp_model(x.to(device)), y.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += loss.item()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    return loader, total


def train_victim(cfg: TrainConfig, records: list[Record], out_dir, *, device="cpu", progress: bool = True) -> dict:
    """Train `cfg.arch` on the train split of `records`, validate on val, score the best model on test."""
    d = distributed.init(device)
    device = d.device
    if cfg.batch_size % d.world:
        raise ValueError(f"batch_size {cfg.batch_size} must be divisible by the number of processes {d.world}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.arch, len(cfg.classes), cfg.sample_rate, **cfg.model).to(device)
    ddp_model = distributed.wrap(model, d)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs, pct_start=0.15)
    make = lambda recs, crop: AudioDataset(
        recs, cfg.classes, sample_rate=cfg.sample_rate, clip_seconds=cfg.clip_seconds, crop=crop, seed=cfg.seed
    )
    train_set, val_set = make(_split(records, "train"), "random"), make(_split(records, "val"), "center")
    if len(train_set) < cfg.batch_size:
        raise ValueError(
            f"{len(train_set)} training clips are fewer than one batch of {cfg.batch_size}: lower --batch-size"
        )
    state = {"epoch": 0, "best_ua": -1.0, "history": []}
    last = out / "last.pt"
    if last.is_file():
        ckpt = load_checkpoint(last, "victim", ("train_state", "train_config"))
        if ckpt["train_config"] != asdict(cfg):
            raise CheckpointError(f"{last}: was written with other settings; use another output folder")
        state = restore_training(last, ckpt, model, opt, sched, state)
        log.info("resuming %s from epoch %d", cfg.arch, state["epoch"])
    for epoch in range(state["epoch"], cfg.epochs):
        started = time.perf_counter()
        loader, total = _train_epoch(cfg, model, ddp_model, opt, train_set, epoch, d, device, progress)
        sched.step()
        state["epoch"] = epoch + 1
        if not d.main:
            d.barrier()  # rank 0 validates and writes the checkpoints meanwhile (DDP broadcasts its buffers)
            continue
        # Running batch-norm statistics trail weights that moved fast; with few steps they can leave the model in
        # eval mode near chance while it is right in train mode. Recompute them with the epoch's final weights.
        update_bn(loader, model, device)
        val = classification_scores(*predict(model, val_set, device=device), len(cfg.classes))
        state["history"].append(
            {
                "epoch": epoch + 1,
                "train_loss": total / max(1, len(loader)),
                "val_ua": val["ua"],
                "val_wa": val["wa"],
                "seconds": time.perf_counter() - started,
            }
        )
        if progress:
            tqdm.write(
                f"{cfg.arch} epoch {epoch + 1}: loss {total / max(1, len(loader)):.3f}, val UA {val['ua']:.3f}, WA {val['wa']:.3f}"
            )
        if val["ua"] > state["best_ua"]:
            state["best_ua"] = val["ua"]
            save_victim(out / "best.pt", model, cfg.arch, cfg.classes, cfg.sample_rate, val=val)
        save_victim(
            last,
            model,
            cfg.arch,
            cfg.classes,
            cfg.sample_rate,
            train_config=asdict(cfg),
            train_state=training_state(opt, sched, state),
        )
        d.barrier()
    report = _final_report(cfg, records, out, make, device, state) if d.main else {}
    distributed.shutdown(d)
    return report


def _final_report(cfg, records, out: Path, make, device, state) -> dict:
    from staa.models.victim import load_victim

    best = load_victim(out / "best.pt", device=device).model
    report = {
        "arch": cfg.arch,
        "classes": cfg.classes,
        "config": asdict(cfg),
        "history": state["history"],
        "best_val_ua": state["best_ua"],
    }
    for split in ("val", "test"):  # a dataset without a test split is scored on val alone
        recs = [r for r in records if r.split == split]
        if recs:
            report[split] = classification_scores(*predict(best, make(recs, "center"), device=device), len(cfg.classes))
    write_json(out / "metrics.json", report)
    return report
