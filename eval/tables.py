"""The tables a report is made of, derived from a run's cells (`eval.results`): transfer, what each defense costs,
robust accuracy, verdicts per defense, security curves over eps and the plain-language summary."""

from __future__ import annotations

import numpy as np


def undefended(cells):
    return [c for c in cells if c["defense"] == "none"] or [c for c in cells if c["defense"] == cells[0]["defense"]]


def transfer_table(cells) -> dict:
    rows = list(dict.fromkeys(c["attack"] for c in cells))
    cols = list(dict.fromkeys(c["victim"] for c in cells))
    rate = {a: {v: None for v in cols} for a in rows}
    for c in undefended(cells):
        rate[c["attack"]][c["victim"]] = c["success_rate"]
    return {"rows": rows, "columns": cols, "success_rate": rate}


def defense_cost(cells) -> dict:
    out: dict = {}
    for c in cells:
        out.setdefault(c["victim"], {})[c["defense"]] = c["defended_clean_accuracy"]
    return out


def robust_accuracy(cells) -> dict:
    out: dict = {}
    for c in undefended(cells):
        out.setdefault(c["victim"], {"clean": c["clean_accuracy"]})[c["attack"]] = c["robust_accuracy"]
    return out


def verdict(cells) -> list[dict]:
    """Per victim x defense x budget: what the defense costs on clean clips and the worst-case robust accuracy over
    every attack at that eps (adaptive ones included), with its n and 95% interval: the one number a defense's
    robustness is. A defense that no adaptive attack went through gets none (`verified` false); an attack that failed
    to run as one (`failed_attack`) counts for nothing."""
    out = []
    groups: dict = {}
    for c in cells:
        groups.setdefault((c["victim"], c["defense"], c.get("eps"), c.get("snr_budget")), []).append(c)
    for (victim, defense, eps, snr), group in sorted(groups.items(), key=lambda kv: _verdict_order(kv[0], cells)):
        ran = [c for c in group if not c.get("failed_attack")]  # a failed attack is evidence of nothing
        worst = min(ran or group, key=lambda c: c["defended_robust_accuracy"])
        ci = (worst.get("intervals") or {}).get("defended_robust_accuracy")
        verified = bool(ran) and (defense == "none" or any(c.get("adaptive") for c in ran))
        out.append(
            {
                "victim": victim,
                "defense": defense,
                "eps": eps,
                "snr_budget": snr,
                "n": worst["n"],
                "clean_accuracy": worst["clean_accuracy"],
                "defended_clean_accuracy": worst["defended_clean_accuracy"],
                "clean_cost": worst["clean_accuracy"] - worst["defended_clean_accuracy"],
                "worst_case_accuracy": worst["defended_robust_accuracy"] if verified else None,
                "worst_case_interval": ci if verified else None,
                "worst_attack": worst["attack"] if verified else None,
                "verified": verified,
                "flagged": any(c.get("flags") for c in group),
            }
        )
    return out


def _verdict_order(key, cells):
    victims = list(dict.fromkeys(c["victim"] for c in cells))
    defenses = list(dict.fromkeys(c["defense"] for c in cells))
    victim, defense, eps, snr = key
    budget = eps if eps is not None else 10 ** (-snr / 20) if snr is not None else float("inf")
    return victims.index(victim), defenses.index(defense), eps is None, budget


def security_curves(cells) -> list[dict]:
    """Per victim x defense x attack family run at two or more budgets (eps, or SNR budgets): accuracy of the
    defended victim, and the perturbation's SNR and PESQ / STOI, at each budget (the data of a security curve)."""
    groups: dict = {}
    for c in cells:
        kind = "eps" if c.get("eps") is not None else "snr_budget" if c.get("snr_budget") is not None else None
        if kind and c.get("family"):
            groups.setdefault((c["victim"], c["defense"], c["family"], kind), []).append(c)
    out = []
    for (victim, defense, family, kind), group in groups.items():
        if len({c[kind] for c in group}) < 2:
            continue
        group.sort(key=lambda c: c[kind] if kind == "eps" else -c[kind])
        out.append(
            {
                "victim": victim,
                "defense": defense,
                "attack": group[0]["attack"].rsplit("@", 1)[0],
                "family": family,
                "points": [
                    {
                        "eps": c.get("eps"),
                        "snr_budget": c.get("snr_budget"),
                        "accuracy": c["defended_robust_accuracy"],
                        "interval": (c.get("intervals") or {}).get("defended_robust_accuracy"),
                        **{k: c[k] for k in ("snr_db", "pesq", "stoi")},
                    }
                    for c in group
                ],
            }
        )
    return out


def _pct(x) -> str:
    return "n/a" if x is None else f"{x:.0%}"


def summary_sentences(cells) -> list[str]:
    """A few sentences, each with a fact the others lack: clean accuracy, the strongest attack at each budget, the
    defense with the best worst case and what it costs, the attack that survives the defenses best, and whether
    the evaluation doubted itself."""
    victims = list(dict.fromkeys(c["victim"] for c in cells))
    clean = {c["victim"]: c["clean_accuracy"] for c in cells}
    out = [
        f"On {cells[0]['n']} clips the victims' clean accuracy is "
        + ", ".join(f"{v} {_pct(clean[v])}" for v in victims)
        + "."
    ]
    rows = verdict(cells)
    for eps in sorted({r["eps"] for r in rows if r["eps"] is not None}):
        worst = [r for r in rows if r["defense"] == "none" and r["eps"] == eps]
        if worst:
            out.append(
                f"At eps {eps:g} with no defense, the strongest attack leaves "
                + ", ".join(f"{r['victim']} at {_pct(r['worst_case_accuracy'])} ({r['worst_attack']})" for r in worst)
                + "."
            )
    unverified: dict = {}
    for r in rows:
        if not r["verified"]:
            unverified.setdefault(r["eps"], [])
            if r["defense"] not in unverified[r["eps"]]:
                unverified[r["eps"]].append(r["defense"])
    for eps, names in unverified.items():
        one = len(names) == 1
        out.append(
            ("" if eps is None else f"At eps {eps:g}, ")
            + f"{', '.join(names)} {'has' if one else 'have'} no verdict: no adaptive attack (BPDA/EOT) went through "
            + ("it." if one else "them.")
        )
    defended = [r for r in rows if r["defense"] != "none" and r["verified"]]
    if defended:
        budget = min((r["eps"] for r in defended if r["eps"] is not None), default=None)
        at = [r for r in defended if r["eps"] == budget]
        by_def: dict = {}
        for r in at:
            by_def.setdefault(r["defense"], []).append(r)
        best = max(by_def, key=lambda d: np.mean([r["worst_case_accuracy"] for r in by_def[d]]))
        mine = by_def[best]
        cost = np.mean([r["clean_cost"] for r in mine])
        out.append(
            f"The defense with the best worst case{'' if budget is None else f' at eps {budget:g}'} is {best}: "
            + ", ".join(
                f"{r['victim']} keeps {_pct(r['worst_case_accuracy'])} against {r['worst_attack']}" for r in mine
            )
            + (
                f", for {100 * cost:.0f} points of clean accuracy."
                if cost >= 0
                else f", and it gains {-100 * cost:.0f} points of clean accuracy."
            )
        )
        survival: dict = {}
        for c in cells:
            if c["defense"] != "none" and c["survival"] is not None:
                survival.setdefault(c["attack"], []).append(c["survival"])
        if survival:
            top = max(survival, key=lambda k: np.mean(survival[k]))
            out.append(
                f"{top}'s successes survive the defenses best: {_pct(float(np.mean(survival[top])))} of them on average."
            )
    flagged = [c for c in cells if c.get("flags")]
    out.append(
        f"{len(flagged)} of {len(cells)} cells are flagged unreliable; the flags above say why."
        if flagged
        else f"No sanity check fired on the {len(cells)} cells."
    )
    return out


# ---- plots -----------------------------------------------------------------------------------------------
