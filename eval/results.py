"""What a grid run records: one cell per victim x attack x defense, summarised from its per-clip rows, with what the
attack is (as its class declares it) and the sanity flags of `eval.sanity`; `results.json` is `gather`'s output.
The definitions of each rate are in `eval.harness`."""

from __future__ import annotations

import math

from defenses import parse_defense
from eval.config import EvalConfig
from eval.sanity import sanity_flags
from staa.attacks.registry import AttackSpec
from staa.io.provenance import machine
from staa.metrics.intervals import wilson

SCHEMA = "staa-ser/results/3"  # 2: robust accuracy, n_silent and adaptive per cell; 3: attack_kind, norm, gradient
SCORE_KEYS = ["l0_ratio", "linf", "distortion_db", "snr_db", "seg_snr_db", "pesq", "stoi", "estoi"]
NOT_SCORED = ("not computed", "not sampled")  # a PESQ/STOI left out on purpose, not a clip PESQ refused


def nan_to_none(v):
    return None if isinstance(v, float) and (math.isnan(v) or math.isinf(v)) else v


def _mean(values):
    vals = [v for v in map(nan_to_none, values) if v is not None]
    return sum(vals) / len(vals) if vals else None


RATES = (  # each rate of a cell, and the count it is a share of
    ("clean_accuracy", "n"),
    ("defended_clean_accuracy", "n"),
    ("success_rate", "n"),
    ("adversarial_accuracy", "n"),
    ("defended_adversarial_accuracy", "n"),
    ("robust_accuracy", "n"),
    ("defended_robust_accuracy", "n"),
    ("defended_fooling_rate", "n"),
    ("survival", "n_success"),
)


def summarise_cell(rows: list[dict]) -> dict:
    """The aggregate numbers of one victim x attack x defense cell from its per-clip rows."""
    n = len(rows)
    ok = [r for r in rows if r["success"]]
    frac = lambda rs, key: sum(bool(r[key]) for r in rs) / len(rs) if rs else None
    acc = lambda key: sum(r[key] == r["label"] for r in rows) / n
    robust = lambda clean, adv: sum(r[clean] == r["label"] == r[adv] for r in rows) / n
    cell = {
        "n": n,
        "clean_accuracy": acc("clean_pred"),
        "defended_clean_accuracy": acc("defended_clean_pred"),
        "success_rate": frac(rows, "success"),
        "adversarial_accuracy": acc("adv_pred"),
        "defended_adversarial_accuracy": acc("defended_adv_pred"),
        "robust_accuracy": robust("clean_pred", "adv_pred"),
        "defended_robust_accuracy": robust("defended_clean_pred", "defended_adv_pred"),
        "defended_fooling_rate": frac(rows, "defended_fooled"),
        "survival": frac(ok, "defended_fooled"),
        "n_success": len(ok),
        "seconds_per_clip": _mean(r["seconds"] for r in rows),
        "perceptual_n": sum(r["pesq_error"] not in NOT_SCORED for r in rows),
        "pesq_failures": sum(bool(r["pesq_error"]) and r["pesq_error"] not in NOT_SCORED for r in rows),
    }
    for key in SCORE_KEYS:  # scores of the adversarial clip vs the clean one (PESQ/STOI: the scored clips; distortion: successes, as in the paper)
        cell[key] = _mean(r[key] for r in (ok if key == "distortion_db" else rows))
    cell["intervals"] = {  # 95% Wilson intervals; None where the count is 0
        key: list(wilson(round(cell[key] * cell[of]), cell[of])) if cell[key] is not None else None for key, of in RATES
    }
    return cell


def cell_context(name: str, spec: AttackSpec, cfg: EvalConfig, victim_name: str, victim_sha: str) -> dict:
    """What the sanity checks need of a victim x attack besides its rates: what the attack is (its class's kind, norm
    and gradient use), its l-inf budget, its family (type and parameters but eps and seed) and whether it was made on
    another model than the victim (transfer)."""
    cls = spec.cls
    params = {k: v for k, v in spec.params.items() if k not in ("eps", "snr", "seed")}
    if any(
        k in cls.paths for k in params
    ):  # a file's path differs between copies of one run: the attack's name does not
        params = {"name": name}
    return {
        "attack_kind": cls.kind,
        "norm": cls.norm,
        "gradient": cls.gradient,
        "family": spec.type + ":" + ":".join(f"{k}={params[k]}" for k in sorted(params)),
        **spec.describe(eps=cfg.budgets[0], victim=victim_name, victim_sha=victim_sha),
        "eot_param": spec.value("eot", 1) if spec.adaptive else 1,
    }


def make_cell(
    victim_name: str, name: str, spec: AttackSpec, defense: str, rows: list[dict], n_silent: int, context: dict
):
    """The cell of one victim x attack x defense (its spec) from its per-clip rows; `context` is `cell_context`'s."""
    random_defense = parse_defense(defense).random
    return {
        "victim": victim_name,
        "attack": name,
        "attack_type": spec.type,
        "attack_kind": context["attack_kind"],
        "norm": context["norm"],
        "gradient": context["gradient"],
        "defense": defense,
        **{k: nan_to_none(v) for k, v in summarise_cell(rows).items()},
        "n_silent": n_silent,
        "adaptive": spec.adaptive,
        "eps": context["eps"],
        "snr_budget": context.get("snr_budget"),
        "family": context["family"],
        "transfer": context["transfer"],
        "random_defense": random_defense,
        "eot": context["eot_param"] if random_defense else 1,
        "failed_attack": context.get("failed"),  # why the attack itself failed (a collapsed generator), or None
    }


def gather(cfg: EvalConfig, classes: dict, victims: dict, cells: list[dict]) -> dict:
    """`results.json`: the cells, each with the reasons it was flagged, and the flags, config and machine."""
    flagged = sanity_flags(cells, victims)
    for c in cells:
        c["flags"] = [
            f["reason"]
            for f in flagged
            if (f["victim"], f["attack"], f["defense"]) == (c["victim"], c["attack"], c["defense"])
        ]
    return {
        "schema": SCHEMA,
        "config": cfg.to_dict(),
        "machine": machine(),
        "classes": classes,
        "victims": victims,
        "cells": cells,
        "flags": flagged,
    }


NUMBER_KEYS = [
    "clean_accuracy",
    "defended_clean_accuracy",
    "success_rate",
    "adversarial_accuracy",
    "defended_adversarial_accuracy",
    "robust_accuracy",
    "defended_robust_accuracy",
    "defended_fooling_rate",
    "survival",
    "l0_ratio",
    "distortion_db",
    "snr_db",
    "pesq",
    "stoi",
    "estoi",
]


RATE_KEYS = set(NUMBER_KEYS) - {"distortion_db", "snr_db", "pesq"}
COUNT_KEYS = ("n_success", "perceptual_n", "pesq_failures", "n_silent")
FLAG_KEYS = ("transfer", "adaptive", "random_defense")


def _number(v) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    return isinstance(v, int) or math.isfinite(v)


def _count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _check_cell(c) -> str | None:
    """What is wrong with one cell, or None."""
    if not isinstance(c, dict):
        return "is not an object"
    for key in ("victim", "attack", "attack_type", "attack_kind", "norm", "defense"):
        if not isinstance(c.get(key), str):
            return f"has no text field {key!r}"
    if not isinstance(c.get("gradient"), bool):
        return "gradient must be true or false"
    if not _count(c.get("n")) or c["n"] < 1:
        return "n must be a positive integer"
    for key in NUMBER_KEYS:
        if key not in c:
            return f"lacks {key!r}"
        v = c[key]
        if v is not None and not _number(v):
            return f"{key} must be a number or null, got {str(v)[:40]!r}"
        if v is not None and key in RATE_KEYS and not 0 <= v <= 1:
            return f"{key} must lie in [0, 1], got {v!r}"
    for key in ("clean_accuracy", "defended_clean_accuracy", "defended_robust_accuracy"):
        if c[key] is None:
            return f"has no {key}"
    for key in COUNT_KEYS:
        if key in c and not _count(c[key]):
            return f"{key} must be a count, got {str(c[key])[:40]!r}"
    for key in FLAG_KEYS:
        if key in c and not isinstance(c[key], bool):
            return f"{key} must be true or false"
    if c.get("eps") is not None and (not _number(c["eps"]) or c["eps"] <= 0):
        return f"eps must be a positive number or null, got {str(c['eps'])[:40]!r}"
    if c.get("snr_budget") is not None and not _number(c["snr_budget"]):
        return f"snr_budget must be a number of dB or null, got {str(c['snr_budget'])[:40]!r}"
    if "family" in c and not isinstance(c["family"], str):
        return "family must be text"
    if c.get("failed_attack") is not None and not isinstance(c["failed_attack"], str):
        return "failed_attack must be text or null"
    if "eot" in c and (not _count(c["eot"]) or c["eot"] < 1):
        return "eot must be a positive integer"
    if c.get("seconds_per_clip") is not None and not _number(c["seconds_per_clip"]):
        return "seconds_per_clip must be a number or null"
    if not isinstance(c.get("flags", []), list) or not all(isinstance(f, str) for f in c.get("flags", [])):
        return "flags must be a list of text"
    intervals = c.get("intervals", {})
    if not isinstance(intervals, dict):
        return "intervals must be an object"
    for key, ci in intervals.items():
        if ci is not None and not (
            isinstance(ci, list) and len(ci) == 2 and all(_number(b) and 0 <= b <= 1 for b in ci) and ci[0] <= ci[1]
        ):
            return f"interval {str(key)[:40]!r} must be [low, high] within [0, 1] or null"
    return None


def check_cells(path, cells) -> None:
    """A results.json edited by hand (or by anyone) reaches the page only if every cell has the harness's shape and
    the cells form its grid: each victim x attack once under every defense."""
    if not isinstance(cells, list) or not cells:
        raise ValueError(f"{path}: holds no cells")
    for i, c in enumerate(cells):
        if (problem := _check_cell(c)) is not None:
            raise ValueError(f"{path}: cell {i} {problem}")
    keys = [(c["victim"], c["attack"], c["defense"]) for c in cells]
    if len(set(keys)) != len(keys):
        raise ValueError(f"{path}: a victim x attack x defense appears twice in its cells")
    defenses: dict = {}
    for victim, attack, defense in keys:
        defenses.setdefault((victim, attack), set()).add(defense)
    if len({frozenset(d) for d in defenses.values()}) > 1:
        raise ValueError(f"{path}: its cells are not a grid (not every victim x attack has every defense)")
    by_attack: dict = {}
    for c in cells:  # one attack, one budget and one kind, whatever the victim or defense
        if by_attack.setdefault(c["attack"], (c.get("eps"), c["attack_type"])) != (c.get("eps"), c["attack_type"]):
            raise ValueError(f"{path}: attack {c['attack'][:40]!r} has two budgets or kinds in its cells")


def victim_flags(path, results: dict) -> dict[str, list[str]]:
    """The failed self-checks of each victim (`staa.models.checks`), from results.json."""
    victims = results.get("victims", {})
    if not isinstance(victims, dict) or not all(
        isinstance(v, dict) and isinstance(v.get("flags", []), list) and all(isinstance(f, str) for f in v["flags"])
        for v in victims.values()
    ):
        raise ValueError(f"{path}: its victims entry is not the harness's (name -> checks and flags)")
    return {name: list(v.get("flags", [])) for name, v in victims.items() if v.get("flags")}


def sanity_flags_of(path, results: dict) -> list[dict]:
    """The harness's sanity flags (`eval.sanity`), from results.json (none in a results file that predates them)."""
    flags = results.get("flags", [])
    keys = ("victim", "attack", "defense", "flag", "reason")
    if not isinstance(flags, list) or not all(
        isinstance(f, dict) and all(isinstance(f.get(k), str) for k in keys) for f in flags
    ):
        raise ValueError(f"{path}: its flags entry is not the harness's (a list of victim, attack, defense, reason)")
    return flags
