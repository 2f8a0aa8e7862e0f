"""The evaluation checks itself (Carlini et al., "On Evaluating Adversarial Robustness", 2019; AutoAttack's flags):
patterns in a grid's cells that a sound evaluation cannot show, each a sign that an attack did not converge or that
a gradient is masked, so a robust accuracy there overstates robustness.

`sanity_flags(cells, victims)` returns one entry per flagged cell: {victim, attack, defense, flag, reason}. Rates are
compared end to end (the defended system's fooling rate), on the same victim and defense, and differences of one
clip or less are left alone as noise."""

from __future__ import annotations

from collections import defaultdict

FLAGS = {
    "unbounded": "an unbounded attack (eps 1) should fool every clip",
    "single_step_beats_iterative": "a single-step attack fools more clips than this iterative one",
    "eps_not_monotone": "success falls as eps grows",
    "transfer_beats_white_box": "an attack made on another model fools more clips than this white-box one",
    "black_box_beats_white_box": "a gradient-free attack fools more clips than this gradient attack",
    "masked_gradient": "the victim's waveform gradient is zero or not finite",
    "probability_output": "the victim outputs probabilities, not logits: margin and cross-entropy losses misbehave",
    "random_defense_without_eot": "a random defense that no attack averaged over (EOT: adaptive_pgd, standard)",
    "no_adaptive_attack": "no adaptive attack (BPDA/EOT through the defense) ran here, so the defense has no verdict: "
    "an attack that ignores a defense says little about it",
    "failed_attack": "the attack failed to run as one: its accuracy is no evidence of robustness",
    "accuracy_above_clean": "accuracy on the adversarial clips exceeds clean accuracy: the attack moved wrong clips "
    "onto their labels (robust accuracy, which counts only clips right before and after, is the number to read)",
}


def _rate(cell) -> float:
    return cell["defended_fooling_rate"] or 0.0


def _beats(a, b) -> bool:
    """`a` fools more than one clip more than `b` does."""
    return (_rate(a) - _rate(b)) * a["n"] > 1 + 1e-9


def _budget(cell):
    """(kind, size) of the cell's budget, larger size a larger perturbation: ("eps", eps), or ("snr", 10^(-dB/20))
    for a per-clip SNR budget; None without one. Budgets of two kinds are not compared."""
    if cell.get("eps") is not None:
        return "eps", cell["eps"]
    if cell.get("snr_budget") is not None:
        return "snr", 10 ** (-cell["snr_budget"] / 20)
    return None


def _at_most(a, b) -> bool:
    return a is not None and b is not None and a[0] == b[0] and a[1] <= b[1] * (1 + 1e-9)


def _label(cell) -> str:
    return f"{cell['eps']:g}" if cell.get("eps") is not None else f"{cell['snr_budget']:g} dB"


def _iterative(cell) -> bool:
    """An iterative attack within an l-inf ball: the strongest at its budget, the one the others must not beat."""
    return cell["attack_kind"] == "iterative" and cell["norm"] == "Linf"


def sanity_flags(cells: list[dict], victims: dict) -> list[dict]:
    out = []

    def flag(cell, name, detail=""):
        out.append(
            {
                "victim": cell["victim"],
                "attack": cell["attack"],
                "defense": cell["defense"],
                "flag": name,
                "reason": FLAGS[name] + (f" ({detail})" if detail else ""),
            }
        )

    groups = defaultdict(list)
    for c in cells:
        groups[(c["victim"], c["defense"])].append(c)
    for (victim, defense), group in groups.items():
        checks = victims.get(victim, {}).get("checks", {})
        for c in group:
            if c["gradient"] and checks.get("gradient", {}).get("ok") is False:
                flag(c, "masked_gradient")
            if c.get("failed_attack"):
                flag(c, "failed_attack", c["failed_attack"])
            if checks.get("logits", {}).get("ok") is False:
                flag(c, "probability_output")
            if _iterative(c) and (c.get("eps") or 0) >= 1 and _rate(c) < 0.99:
                flag(c, "unbounded", f"{_rate(c):.0%} fooled")
            above = [
                (adv, clean)
                for adv, clean in (
                    ("adversarial_accuracy", "clean_accuracy"),
                    ("defended_adversarial_accuracy", "defended_clean_accuracy"),
                )
                if c.get(adv) is not None and c.get(clean) is not None and c[adv] > c[clean] + 1e-9
            ]
            if above:
                adv, clean = above[0]
                flag(c, "accuracy_above_clean", f"{c[adv]:.0%} vs {c[clean]:.0%}")
        for it in filter(_iterative, group):
            for other, name in (
                *((o, "single_step_beats_iterative") for o in group if o["attack_kind"] == "single_step"),
                *((o, "black_box_beats_white_box") for o in group if o["attack_kind"] == "black_box"),
                *((o, "transfer_beats_white_box") for o in group if o.get("transfer")),
            ):
                if _at_most(_budget(other), _budget(it)) and _beats(other, it):
                    flag(it, name, f"{other['attack']} {_rate(other):.0%} vs {_rate(it):.0%}")
        by_attack = defaultdict(list)
        for c in group:
            if _budget(c) is not None:
                by_attack[(c.get("family", c["attack_type"]), _budget(c)[0])].append(c)
        for family in by_attack.values():
            family.sort(key=lambda c: _budget(c)[1])
            for small, large in zip(family, family[1:]):
                if _budget(large)[1] > _budget(small)[1] and _beats(small, large):
                    flag(
                        large,
                        "eps_not_monotone",
                        f"{_rate(small):.0%} at {_label(small)}, {_rate(large):.0%} at {_label(large)}",
                    )
        if defense != "none" and not any(c.get("adaptive") for c in group):
            for c in group:
                flag(c, "no_adaptive_attack")
        if any(c.get("random_defense") for c in group) and not any(c.get("eot", 1) > 1 for c in group):
            for c in group:
                flag(c, "random_defense_without_eot", defense)
    return out
