"""`staa report RUN_DIR`: `report.html` (one self-contained file: plots and audio inline) and `report.json`.

report.json schema ("staa-ser/report/1"):
    schema        "staa-ser/report/1"
    summary       list of plain-language sentences (the top of the page)
    cells         one object per victim x attack x defense, the harness's numbers (see eval.harness):
                  victim, attack, attack_type (its registry name), attack_kind, norm, gradient (what the attack is:
                  `staa.attacks.Attack`), defense, n, clean_accuracy, defended_clean_accuracy, success_rate,
                  adversarial_accuracy, defended_adversarial_accuracy, robust_accuracy, defended_robust_accuracy
                  (correct before and after the attack: never above clean accuracy), defended_fooling_rate,
                  survival, n_success, n_silent (near-silent clips left out), adaptive,
                  l0_ratio, linf, distortion_db, snr_db, seg_snr_db, pesq, stoi, estoi, perceptual_n (clips
                  scored for PESQ/STOI), pesq_failures,
                  seconds_per_clip (null where undefined, e.g. survival with no success)
    transfer      {"rows": attacks, "columns": victims, "success_rate": {attack: {victim: rate}}} (undefended)
    defense_cost  {victim: {defense: clean accuracy after the defense}}
    robust_accuracy  {victim: {"clean": clean accuracy, attack: robust accuracy under that attack}} (undefended): hardened
                  victims (e.g. after `staa adv-train`) next to the originals read as before/after
    config, machine   as in results.json
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path

import numpy as np
import soundfile as sf

from staa.io.atomic import atomic_open, safe_name, write_json
from staa.models.checks import INFORMATIVE

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


def fmt(v) -> str:
    return "–" if v is None else f"{v:.3f}"


def _undefended(cells):
    return [c for c in cells if c["defense"] == "none"] or [c for c in cells if c["defense"] == cells[0]["defense"]]


def transfer_table(cells) -> dict:
    rows = list(dict.fromkeys(c["attack"] for c in cells))
    cols = list(dict.fromkeys(c["victim"] for c in cells))
    rate = {a: {v: None for v in cols} for a in rows}
    for c in _undefended(cells):
        rate[c["attack"]][c["victim"]] = c["success_rate"]
    return {"rows": rows, "columns": cols, "success_rate": rate}


def defense_cost(cells) -> dict:
    out: dict = {}
    for c in cells:
        out.setdefault(c["victim"], {})[c["defense"]] = c["defended_clean_accuracy"]
    return out


def robust_accuracy(cells) -> dict:
    out: dict = {}
    for c in _undefended(cells):
        out.setdefault(c["victim"], {"clean": c["clean_accuracy"]})[c["attack"]] = c["robust_accuracy"]
    return out


def verdict(cells) -> list[dict]:
    """Per victim x defense x budget: what the defense costs on clean clips and the worst-case robust accuracy over
    every attack at that eps (adaptive ones included), with its n and 95% interval: the one number a defense's
    robustness is. A defense that no adaptive attack went through gets none (`verified` false)."""
    out = []
    groups: dict = {}
    for c in cells:
        groups.setdefault((c["victim"], c["defense"], c.get("eps")), []).append(c)
    for (victim, defense, eps), group in sorted(groups.items(), key=lambda kv: _verdict_order(kv[0], cells)):
        worst = min(group, key=lambda c: c["defended_robust_accuracy"])
        ci = (worst.get("intervals") or {}).get("defended_robust_accuracy")
        verified = defense == "none" or any(c.get("adaptive") for c in group)
        out.append(
            {
                "victim": victim,
                "defense": defense,
                "eps": eps,
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
    victim, defense, eps = key
    return victims.index(victim), defenses.index(defense), float("inf") if eps is None else eps


def security_curves(cells) -> list[dict]:
    """Per victim x defense x attack family run at two or more budgets: accuracy of the defended victim, and the
    perturbation's SNR and PESQ / STOI, at each eps (the data of a security curve)."""
    groups: dict = {}
    for c in cells:
        if c.get("eps") is not None and c.get("family"):
            groups.setdefault((c["victim"], c["defense"], c["family"]), []).append(c)
    out = []
    for (victim, defense, family), group in groups.items():
        if len({c["eps"] for c in group}) < 2:
            continue
        group.sort(key=lambda c: c["eps"])
        out.append(
            {
                "victim": victim,
                "defense": defense,
                "attack": group[0]["attack"].rsplit("@", 1)[0],
                "family": family,
                "points": [
                    {
                        "eps": c["eps"],
                        "accuracy": c["defended_robust_accuracy"],
                        "interval": (c.get("intervals") or {}).get("defended_robust_accuracy"),
                        **{k: c[k] for k in ("snr_db", "pesq", "stoi")},
                    }
                    for c in group
                ],
            }
        )
    return out


def _verdict_table(rows: list[dict]) -> str:
    head = (
        "<tr><th>victim</th><th>defense</th><th>eps</th><th>n</th><th>clean accuracy, defended</th>"
        "<th>cost of the defense</th>"
        "<th>worst-case robust accuracy [95%]</th><th>by</th></tr>"
    )
    body = []
    for r in rows:
        mark = ' class="unreliable"' if r["flagged"] else ""
        ci = r["worst_case_interval"]
        body.append(
            f"<tr{mark}><td>{html.escape(r['victim'])}</td><td>{html.escape(r['defense'])}</td>"
            f"<td>{'' if r['eps'] is None else format(r['eps'], 'g')}</td><td>{r['n']}</td>"
            f"<td>{fmt(r['defended_clean_accuracy'])}</td><td>{100 * r['clean_cost']:+.1f} pts</td>"
            + (
                f"<td>{fmt(r['worst_case_accuracy'])}"
                + (f'<span class="ci"> [{ci[0]:.2f}, {ci[1]:.2f}]</span>' if ci else "")
                + f"</td><td>{html.escape(r['worst_attack'])}</td></tr>"
                if r["verified"]
                else "<td>no verdict</td><td>no adaptive attack ran</td></tr>"
            )
        )
    return f'<table class="verdict">{head}{"".join(body)}</table>'


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


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _heat(ax, matrix, rows, cols, title, cmap="magma_r"):
    data = np.array([[np.nan if v is None else v for v in r] for r in matrix], dtype=float)
    im = ax.imshow(data, vmin=0, vmax=1, cmap=cmap, aspect="auto")
    ax.set_xticks(range(len(cols)), cols, rotation=40, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    for i in range(len(rows)):
        for j in range(len(cols)):
            if not np.isnan(data[i, j]):
                r, g, b, _ = im.cmap(
                    im.norm(data[i, j])
                )  # the text in whichever of black and white contrasts with the cell
                ax.text(
                    j,
                    i,
                    f"{data[i, j]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if 0.299 * r + 0.587 * g + 0.114 * b < 0.5 else "black",
                )
    ax.set_title(title)
    return im


def plots(cells, run: Path) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figs = {}
    defenses = [d for d in dict.fromkeys(c["defense"] for c in cells) if d != "none"]
    pairs = list(dict.fromkeys((c["victim"], c["attack"]) for c in cells))
    lookup = {(c["victim"], c["attack"], c["defense"]): c for c in cells}
    if defenses:
        fig, ax = plt.subplots(figsize=(1.2 + 0.75 * len(defenses), 0.9 + 0.4 * len(pairs)))
        _heat(
            ax,
            [[lookup[(v, a, d)]["survival"] for d in defenses] for v, a in pairs],
            [f"{v} / {a}" for v, a in pairs],
            defenses,
            "Survival: share of successful attacks that still fool the defended model",
        )
        figs["survival"] = _png(fig)

    fig = _success_vs_pesq(plt, cells)
    figs["success_vs_pesq"] = _png(fig)

    t = transfer_table(cells)
    fig, ax = plt.subplots(figsize=(1.5 + 0.9 * len(t["columns"]), 0.9 + 0.45 * len(t["rows"])))
    _heat(
        ax,
        [[t["success_rate"][a][v] for v in t["columns"]] for a in t["rows"]],
        t["rows"],
        t["columns"],
        "Success rate of each attack on each victim (no defense)",
        cmap="viridis",
    )
    figs["transfer"] = _png(fig)

    robust = robust_accuracy(cells)
    cols = list(next(iter(robust.values())))
    fig, ax = plt.subplots(figsize=(1.5 + 0.9 * len(cols), 0.9 + 0.45 * len(robust)))
    _heat(
        ax,
        [[row.get(k) for k in cols] for row in robust.values()],
        list(robust),
        cols,
        "Accuracy, clean and under each attack (no defense)",
        cmap="viridis",
    )
    figs["robust_accuracy"] = _png(fig)

    cost = defense_cost(cells)
    all_defs = list(dict.fromkeys(c["defense"] for c in cells))
    fig, ax = plt.subplots(figsize=(1.5 + 0.7 * len(all_defs), 3.5))
    width = 0.8 / len(cost)
    for k, (v, accs) in enumerate(cost.items()):
        ax.bar(np.arange(len(all_defs)) + k * width, [accs[d] for d in all_defs], width, label=v)
    ax.set_xticks(np.arange(len(all_defs)) + 0.4 - width / 2, all_defs, rotation=40, ha="right")
    ax.set(ylabel="clean accuracy", ylim=(0, 1), title="Clean accuracy under each defense")
    ax.legend(fontsize=7)
    figs["defense_accuracy"] = _png(fig)

    example = _example_files(run, cells)
    if example:
        figs["perturbation"] = _perturbation_figure(plt, *example[:2])
    return figs


MARKERS = "osD^vP*Xp<>h"


def _success_vs_pesq(plt, cells):
    """Colour is the victim, the marker the attack, both keyed in one legend beside the plot: text labels next to the
    points would overlap wherever two attacks score alike."""
    points = [c for c in _undefended(cells) if c["pesq"] is not None]
    victims = list(dict.fromkeys(c["victim"] for c in points))
    attacks = list(dict.fromkeys(c["attack"] for c in points))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for c in points:
        ax.scatter(
            c["pesq"],
            c["success_rate"],
            s=40,
            color=colours[victims.index(c["victim"]) % len(colours)],
            marker=MARKERS[attacks.index(c["attack"]) % len(MARKERS)],
        )
    ax.set(
        xlabel="PESQ-wb of adversarial vs clean (higher = less audible)",
        ylabel="success rate",
        ylim=(-0.05, 1.05),
        title="Success vs quality",
    )
    from matplotlib.lines import Line2D

    def key(label, **style):
        return Line2D([], [], linestyle="none", label=label, **style)

    handles = [key(v, marker="o", color=colours[i % len(colours)]) for i, v in enumerate(victims)]
    handles += [key(a, marker=MARKERS[i % len(MARKERS)], color="0.4") for i, a in enumerate(attacks)]
    ax.legend(
        handles=handles,
        title="colour: victim; marker: attack",
        fontsize=7,
        title_fontsize=7,
        loc="upper left",
        bbox_to_anchor=(1.01, 1),
    )
    return fig


def _security_figure(curves) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (by_eps, by_snr) = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for curve in curves:
        pts = curve["points"]
        label = f"{curve['victim']} / {curve['defense']} / {curve['attack']}"
        line = by_eps.plot([p["eps"] for p in pts], [p["accuracy"] for p in pts], marker="o", label=label)[0]
        snr = [(p["snr_db"], p["accuracy"]) for p in pts if p["snr_db"] is not None]
        if snr:
            by_snr.plot(*zip(*snr), marker="o", color=line.get_color())
    by_eps.set_xscale("log")
    by_eps.set(xlabel="eps (l-inf)", ylabel="accuracy of the defended victim", ylim=(-0.02, 1.02))
    by_snr.set(xlabel="SNR of the perturbation (dB)")
    by_snr.invert_xaxis()  # louder perturbations to the right, as larger eps on the left plot
    by_eps.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return _png(fig)


def _example_files(run: Path, cells):
    """(clean, adversarial, label) of the first example of the first generator attack (else the first attack)."""
    order = sorted(
        dict.fromkeys((c["victim"], c["attack"], c["attack_kind"]) for c in cells), key=lambda t: t[2] != "generator"
    )
    for victim, attack, _ in order:
        folder = run / "examples" / safe_name(victim) / safe_name(attack)
        if (folder / "0_clean.wav").is_file() and (folder / "0_adv.wav").is_file():
            return folder / "0_clean.wav", folder / "0_adv.wav", f"{attack} on {victim}"
    return None


def _perturbation_figure(plt, clean_path, adv_path):
    clean, rate = sf.read(clean_path, dtype="float32")
    adv, _ = sf.read(adv_path, dtype="float32")
    delta = adv - clean
    t = np.arange(len(clean)) / rate
    fig, axes = plt.subplots(4, 1, figsize=(9, 7), sharex=True)
    axes[0].plot(t, clean, lw=0.4)
    axes[0].set_ylabel("clean")
    axes[1].plot(t, delta, lw=0.4, color="tab:red")
    axes[1].set_ylabel("perturbation")
    axes[2].fill_between(t, (delta != 0).astype(float), step="mid", lw=0, color="black")
    axes[2].set_ylabel("mask")
    axes[2].set_yticks([0, 1])
    axes[3].specgram(
        delta + 1e-7 * np.random.default_rng(0).standard_normal(len(delta)),
        Fs=rate,
        NFFT=512,
        noverlap=384,
        cmap="magma",
    )  # a noise floor: log of exact zeros
    axes[3].set(ylabel="Hz (perturbation)", xlabel="seconds")
    axes[0].set_title(
        f"Example perturbation: {100 * (delta != 0).mean():.1f}% of samples changed, max |delta| {np.abs(delta).max():.4f}"
    )
    return _png(fig)


def _audio_tag(path: Path) -> str:
    data, rate = sf.read(path, dtype="float32")
    buf = io.BytesIO()
    sf.write(buf, np.clip(data, -1, 1), rate, format="WAV", subtype="PCM_16")
    return f'<audio controls preload="none" src="data:audio/wav;base64,{base64.b64encode(buf.getvalue()).decode()}"></audio>'


def _audio_section(run: Path, cells, max_defenses: int = 3) -> str:
    example = _example_files(run, cells)
    if not example:
        return "<p>No audio examples in this run.</p>"
    clean, adv, label = example
    rows = [("clean", clean), ("adversarial", adv)]
    for d in [d for d in dict.fromkeys(c["defense"] for c in cells) if d != "none"][:max_defenses]:
        f = clean.parent / f"0_defended_{safe_name(d)}.wav"
        if f.is_file():
            rows.append((f"adversarial after {d}", f))
    items = "".join(f"<tr><td>{html.escape(n)}</td><td>{_audio_tag(p)}</td></tr>" for n, p in rows)
    return f"<p>{html.escape(label)}, first clip:</p><table class='audio'>{items}</table>"


def _interval(c, key) -> str:
    ci = (c.get("intervals") or {}).get(key)
    return f'<span class="ci"> [{ci[0]:.2f}, {ci[1]:.2f}]</span>' if ci else ""


def _cells_table(cells) -> str:
    keys = ["victim", "attack", "defense", "n", *NUMBER_KEYS, "flags"]
    head = "".join(f"<th>{k.replace('_', ' ')}</th>" for k in keys)
    body = []
    for c in cells:
        ident = f'data-victim="{html.escape(c["victim"])}" data-attack="{html.escape(c["attack"])}" data-defense="{html.escape(c["defense"])}"'
        tds = "".join(f'<td data-key="{k}">{fmt(c[k])}{_interval(c, k)}</td>' for k in NUMBER_KEYS)
        flags = c.get("flags") or []
        mark = ' class="unreliable"' if flags else ""
        body.append(
            f"<tr {ident}{mark}><td>{html.escape(c['victim'])}</td><td>{html.escape(c['attack'])}</td>"
            f"<td>{html.escape(c['defense'])}</td><td>{c['n']}</td>{tds}"
            f"<td class='flags'>{html.escape('; '.join(flags))}</td></tr>"
        )
    return f"<table class='cells'><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}
.summary li{margin:.3em 0}table{border-collapse:collapse;font-size:.8em}td,th{border:1px solid #ddd;padding:3px 6px;text-align:right}
td:nth-child(-n+3){text-align:left}img{max-width:100%}.muted{color:#777;font-size:.85em}
.ci{color:#777;font-size:.85em}tr.unreliable{background:#fff3cd}td.flags{text-align:left;color:#8a5a00}
.flags li{color:#8a5a00}"""


# the cell's shares: numbers in [0, 1], or null where their count is 0 (the others are dB, PESQ or seconds)
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
    if "family" in c and not isinstance(c["family"], str):
        return "family must be text"
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


def _flags_section(victims: dict[str, list[str]], sanity: list[dict]) -> str:
    """The first thing a reader sees when anything is off: which numbers not to trust, and why. A victim's
    informative checks (padding: staa-ser never pads) are notes, not flags."""
    notes = {v: [f for f in fs if f.split(":")[0] in INFORMATIVE] for v, fs in victims.items()}
    faults = {v: [f for f in fs if f.split(":")[0] not in INFORMATIVE] for v, fs in victims.items()}
    grouped: dict = {}  # one line per victim x defense x flag, naming the attacks
    for f in sanity:
        grouped.setdefault((f["victim"], f["defense"], f["flag"]), []).append(f)
    items = "".join(f"<li><b>{html.escape(v)}</b>: {html.escape(f)}</li>" for v, fs in faults.items() for f in fs)
    items += "".join(
        f"<li><b>{html.escape(v)} / {html.escape(d)}</b>: {html.escape(fs[0]['reason'])}; "
        f"{html.escape(', '.join(f['attack'] for f in fs))}</li>"
        for (v, d, _), fs in grouped.items()
    )
    n = len({(f["victim"], f["attack"], f["defense"]) for f in sanity}) + sum(map(len, faults.values()))
    out = (
        f'<h2>Flags: {n} numbers to distrust</h2><ul class="flags">{items}</ul>'
        '<p class="muted">Flagged cells are marked in the table of all numbers; their robust accuracy overstates '
        "robustness.</p>"
        if n
        else '<p class="ok">Sanity checks: no flags (eval/sanity.py lists what is checked).</p>'
    )
    note_items = "".join(f"<li><b>{html.escape(v)}</b>: {html.escape(f)}</li>" for v, fs in notes.items() for f in fs)
    return out + (
        f'<p class="muted">Notes on the victims:</p><ul class="notes muted">{note_items}</ul>' if note_items else ""
    )


def _short(err) -> str:
    return repr(str(err)[:80])


def build_report(run_dir, *, out_dir=None) -> dict:
    run = Path(run_dir)
    results_path = run / "results.json"
    if not results_path.is_file():
        raise ValueError(f"{run}: no results.json here; run `staa evaluate` first")
    try:
        results = json.loads(results_path.read_text(encoding="utf-8"))
        cells = results["cells"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, RecursionError) as err:
        raise ValueError(f"{results_path}: not a results file of staa evaluate ({_short(err)})") from None
    from eval.harness import SCHEMA

    if results.get("schema") != SCHEMA:
        raise ValueError(
            f"{results_path}: schema {str(results.get('schema'))[:40]!r} is not {SCHEMA!r}, the one this staa-ser "
            "reads; rerun staa evaluate"
        )
    check_cells(results_path, cells)
    flagged = victim_flags(results_path, results)
    sanity = sanity_flags_of(results_path, results)
    out = Path(out_dir) if out_dir else run
    report = {
        "schema": "staa-ser/report/1",
        "summary": summary_sentences(cells),
        "cells": cells,
        "transfer": transfer_table(cells),
        "defense_cost": defense_cost(cells),
        "robust_accuracy": robust_accuracy(cells),
        "verdict": verdict(cells),
        "security_curves": security_curves(cells),
        "victim_flags": flagged,
        "sanity_flags": sanity,
        "config": results.get("config"),
        "machine": results.get("machine"),
    }
    figs = plots(cells, run)
    if report["security_curves"]:
        figs["security"] = _security_figure(report["security_curves"])
    img = lambda key, alt: f'<img alt="{alt}" src="data:image/png;base64,{figs[key]}">' if key in figs else ""
    m = results.get("machine") if isinstance(results.get("machine"), dict) else {}
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>staa-ser robustness report</title><style>{CSS}</style></head><body>
<h1>Robustness report</h1>
{_flags_section(flagged, sanity)}
<h2>Verdict per defense</h2>{_verdict_table(report["verdict"])}
<p class="muted">Worst case: the lowest accuracy of the defended victim over every attack in the grid; a cost below zero
means the defense raised clean accuracy. Rows with a flagged cell are marked.</p>
<ul class="summary">{"".join(f"<li>{html.escape(s)}</li>" for s in report["summary"])}</ul>
<p class="muted">Success: the attack changes the undefended victim's prediction. Survival: share of successes that still change the
defended victim's prediction (defense applied to clean and adversarial clip alike). Machine: {html.escape(str(m.get("processor", "?")))},
{html.escape(str(m.get("threads", "?")))} threads, torch {html.escape(str(m.get("torch", "?")))}.</p>
{"<h2>Security curves</h2>" + img("security", "accuracy against eps and against SNR") if "security" in figs else ""}
<h2>Survival under each defense</h2>{img("survival", "survival heatmap")}
<h2>Success vs perceptual quality</h2>{img("success_vs_pesq", "success vs PESQ")}
<h2>Accuracy under attack</h2>{img("robust_accuracy", "accuracy under each attack")}
<p class="muted">A hardened victim (adversarial training) next to its original shows the before and after.</p>
<h2>Transfer matrix</h2>{img("transfer", "transfer matrix")}
<h2>What each defense costs</h2>{img("defense_accuracy", "clean accuracy under each defense")}
<h2>An example perturbation</h2>{img("perturbation", "waveform, perturbation, mask and spectrogram")}
<h2>Listen</h2>{_audio_section(run, cells)}
<h2>All numbers</h2>{_cells_table(cells)}
<p class="muted">Generated by staa-ser from {html.escape(str(results_path))}; report.json holds the same numbers.</p>
</body></html>"""
    with atomic_open(out / "report.html") as fh:
        fh.write(page)
    write_json(out / "report.json", report)
    return report
