"""`staa report RUN_DIR`: `report.html` (one self-contained file: plots and audio inline) and `report.json`.

report.json schema ("staa-ser/report/1"):
    schema        "staa-ser/report/1"
    summary       list of plain-language sentences (the top of the page)
    cells         one object per victim x attack x defense, the harness's numbers (see eval.results):
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
from pathlib import Path

import numpy as np
import soundfile as sf

from eval.plots import example_files, plots, security_figure
from eval.results import NUMBER_KEYS, check_cells, sanity_flags_of, victim_flags
from eval.tables import defense_cost, robust_accuracy, security_curves, summary_sentences, transfer_table, verdict
from staa.io.atomic import atomic_open, safe_name, write_json
from staa.models.checks import INFORMATIVE


def fmt(v) -> str:
    return "–" if v is None else f"{v:.3f}"


def _budget(row: dict) -> str:
    if row.get("eps") is not None:
        return f"eps {row['eps']:g}"
    return f"{row['snr_budget']:g} dB SNR" if row.get("snr_budget") is not None else ""


def _verdict_table(rows: list[dict]) -> str:
    head = (
        "<tr><th>victim</th><th>defense</th><th>budget</th><th>n</th><th>clean accuracy, defended</th>"
        "<th>cost of the defense</th>"
        "<th>worst-case robust accuracy [95%]</th><th>by</th></tr>"
    )
    body = []
    for r in rows:
        mark = ' class="unreliable"' if r["flagged"] else ""
        ci = r["worst_case_interval"]
        body.append(
            f"<tr{mark}><td>{html.escape(r['victim'])}</td><td>{html.escape(r['defense'])}</td>"
            f"<td>{_budget(r)}</td><td>{r['n']}</td>"
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


def _audio_tag(path: Path) -> str:
    data, rate = sf.read(path, dtype="float32")
    buf = io.BytesIO()
    sf.write(buf, np.clip(data, -1, 1), rate, format="WAV", subtype="PCM_16")
    return f'<audio controls preload="none" src="data:audio/wav;base64,{base64.b64encode(buf.getvalue()).decode()}"></audio>'


def _audio_section(run: Path, cells, max_defenses: int = 3) -> str:
    example = example_files(run, cells)
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
.flags li{color:#8a5a00}.scroll{overflow-x:auto;max-width:100%}"""


# the cell's shares: numbers in [0, 1], or null where their count is 0 (the others are dB, PESQ or seconds)
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


def _read_extra(path: Path, keys: tuple) -> dict | None:
    """A grid's detection or certification file (`staa evaluate --detector`, `--smoothing-sigma`), None when the
    grid had none."""
    if not path.is_file():
        return None
    try:
        extra = json.loads(path.read_text(encoding="utf-8"))
        [extra["settings"][k] for k in keys], extra["victims"].items()
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"{path}: not a file of staa evaluate ({_short(err)})") from None
    return extra


def _short(err) -> str:
    return repr(str(err)[:80])


def _detection_section(detection: dict | None) -> str:
    """Per victim and detector: the clean false-positive rate, per attack ROC-AUC and detection at the calibrated
    threshold, then the share of clips that end wrong and unflagged under plain and under detector-aware PGD."""
    if not detection:
        return ""
    s = detection["settings"]
    rows = []
    for victim, result in detection["victims"].items():
        for spec, row in result["detectors"].items():
            attacks = "<br>".join(
                f"{html.escape(name)}: AUC {fmt(r['roc_auc'])}, detected {fmt(r['detected'])} ({r['fooled']} fooled)"
                for name, r in row["attacks"].items()
            )
            rows.append(
                f"<tr><td>{html.escape(victim)}</td><td>{html.escape(spec)}</td><td>{fmt(row['test_fpr'])}</td>"
                f"<td>{attacks}</td><td>{fmt(row['pgd_evades'])}</td><td>{fmt(row['adaptive_evades'])}</td></tr>"
            )
    return f"""<h2>Detection</h2><table><tr><th>victim</th><th>detector (transform)</th><th>clean FPR</th>
<th>per attack: ROC-AUC, detected at the threshold</th><th>PGD: wrong, unflagged</th><th>detector-aware PGD: wrong,
unflagged</th></tr>{"".join(rows)}</table>
<p class="muted">A detector flags a clip when the victim's outputs on it and on its transform differ (Jensen-Shannon
divergence) by more than a threshold set at {fmt(s["detector_fpr"])} false positives on clean {html.escape(str(s["detector_split"]))}
clips. The detector-aware PGD ({s["detector_steps"]} steps at eps {s["eps"]:g}) fools the victim while keeping that
divergence under the threshold: what a detector is worth is its last column.</p>"""


def _certification_section(cert: dict | None) -> str:
    """Per victim and noise level, the certified accuracy at each l2 radius, with the l-inf eps each radius covers."""
    if not cert:
        return ""
    radii = [f"{r:g}" for r in cert["settings"]["smoothing_radii"]]
    rows = []
    for victim, got in cert["victims"].items():
        for row in got["results"]:
            cells = "".join(f"<td>{fmt(row['certified_accuracy'][r])}</td>" for r in radii)
            rows.append(f"<tr><td>{html.escape(victim)}</td><td>{row['sigma']:g}</td><td>{row['n']}</td>{cells}</tr>")
    first = next(iter(cert["victims"].values()))
    heads = "".join(f"<th>r = {r} (eps {first['linf_equivalent'][r]:.1e})</th>" for r in radii)
    s = cert["settings"]
    return f"""<h2>Certified accuracy (randomized smoothing)</h2><table><tr><th>victim</th><th>sigma</th><th>clips</th>
{heads}</tr>{"".join(rows)}</table>
<p class="muted">The smoothed victim answers the class its base model gives most often under Gaussian noise of level
sigma on the waveform; a clip counts at radius r when that answer is right and certified for every l2 perturbation
up to r (Cohen et al. 2019: {s["n0"]} draws pick the class, {s["smoothing_n"]} bound its probability, the
certificate fails with chance {s["alpha"]:g}). eps: the l-inf budget whose whole ball the radius covers on a clip of
{first["samples"]} samples (r / sqrt(samples)).</p>"""


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
    from eval.results import SCHEMA

    if results.get("schema") != SCHEMA:
        raise ValueError(
            f"{results_path}: schema {str(results.get('schema'))[:40]!r} is not {SCHEMA!r}, the one this staa-ser "
            "reads; rerun staa evaluate"
        )
    check_cells(results_path, cells)
    flagged = victim_flags(results_path, results)
    sanity = sanity_flags_of(results_path, results)
    out = Path(out_dir) if out_dir else run
    detection = _read_extra(run / "detection.json", ("detector_fpr",))
    certification = _read_extra(run / "certification.json", ("smoothing_radii",))
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
    if detection:
        report["detection"] = detection
    if certification:
        report["certification"] = certification
    figs = plots(cells, run)
    if report["security_curves"]:
        figs["security"] = security_figure(report["security_curves"])
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
{"<h2>Security curves</h2>" + img("security", "accuracy of the defended victim against the budget, per victim and defense") if "security" in figs else ""}
<h2>Survival under each defense</h2>{img("survival", "survival heatmap")}
<h2>Success vs perceptual quality</h2>{img("success_vs_pesq", "success vs PESQ")}
<h2>Accuracy under attack</h2>{img("robust_accuracy", "accuracy under each attack")}
<p class="muted">A hardened victim (adversarial training) next to its original shows the before and after.</p>
<h2>Transfer matrix</h2>{img("transfer", "transfer matrix")}
<h2>What each defense costs</h2>{img("defense_accuracy", "clean accuracy under each defense")}
{_detection_section(detection)}
{_certification_section(certification)}
<h2>An example perturbation</h2>{img("perturbation", "waveform, perturbation, mask and spectrogram")}
<h2>Listen</h2>{_audio_section(run, cells)}
<h2>All numbers</h2><div class="scroll">{_cells_table(cells)}</div>
<p class="muted">Generated by staa-ser from {html.escape(str(results_path))}; report.json holds the same numbers.</p>
</body></html>"""
    with atomic_open(out / "report.html") as fh:
        fh.write(page)
    write_json(out / "report.json", report)
    return report
