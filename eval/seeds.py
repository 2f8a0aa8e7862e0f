"""One grid run over several seeds: `staa report RUN RUN ... --out DIR` gives each cell's rates as mean, std (over
seeds, ddof 1) and the per-seed values, so a headline number comes with how much it moves from run to run."""

from __future__ import annotations

import html
import json
import statistics
from pathlib import Path

from eval.results import RATES as RATE_COUNTS
from staa.io.atomic import atomic_open, write_json

RATES = tuple(rate for rate, _ in RATE_COUNTS)  # the rates of a cell, as the harness defines them


def _results(run: Path) -> dict:
    path = run / "results.json"
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{run}: no results.json here; run `staa evaluate` first") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a results file of staa evaluate ({err})") from None
    if not (
        isinstance(results, dict) and isinstance(results.get("cells"), list) and isinstance(results.get("config"), dict)
    ):
        raise ValueError(f"{path}: not a results file of staa evaluate (no cells and config)")
    from eval.results import SCHEMA, check_cells

    if results.get("schema") != SCHEMA:
        raise ValueError(f"{path}: schema {str(results.get('schema'))[:40]!r} is not {SCHEMA!r}; rerun staa evaluate")
    check_cells(path, results["cells"])  # every rate a number in [0, 1] or null, as the harness writes them
    return results


def combine_runs(runs) -> dict:
    """The runs must be one grid: the same config but for its seed and its paths (data, victims and generators may
    lie elsewhere, each seed with its own); victims and attacks are matched by name."""
    runs = [Path(r) for r in runs]
    if len(runs) < 2:
        raise ValueError("give two or more run folders of one grid, each with another seed")
    results = [_results(r) for r in runs]
    same = lambda cfg: {k: v for k, v in cfg.items() if k not in ("seed", "data", "victims", "attacks")}
    first = results[0]
    for run, res in zip(runs[1:], results[1:]):
        names = lambda cfg: (set(cfg.get("victims", {})), set(cfg.get("attacks", {})))
        if same(res["config"]) != same(first["config"]) or names(res["config"]) != names(first["config"]):
            raise ValueError(f"{run}: is not a run of the grid in {runs[0]} (its config differs beyond the seed)")
    seeds = [res["config"]["seed"] for res in results]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"two runs have the same seed ({seeds}): that is one sample twice")
    keyed = [{(c["victim"], c["attack"], c["defense"]): c for c in res["cells"]} for res in results]
    common = [k for k in keyed[0] if all(k in cells for cells in keyed[1:])]
    cells = []
    for key in common:
        cell = {"victim": key[0], "attack": key[1], "defense": key[2], "n": [cells[key]["n"] for cells in keyed]}
        for rate in RATES:
            values = [cells[key][rate] for cells in keyed]
            known = [v for v in values if v is not None]
            cell[rate] = {
                "mean": statistics.fmean(known) if known else None,
                "std": statistics.stdev(known) if len(known) > 1 else None,
                "values": values,
            }
        cell["flagged_in"] = [s for s, cells in zip(seeds, keyed) if cells[key].get("flags")]
        cells.append(cell)
    return {"schema": "staa-ser/seeds/1", "runs": [str(r) for r in runs], "seeds": seeds, "cells": cells}


def _pm(stat) -> str:
    if stat["mean"] is None:
        return "–"
    std = f" ± {stat['std']:.3f}" if stat["std"] is not None else ""
    values = ", ".join("–" if v is None else f"{v:.3f}" for v in stat["values"])
    return f"{stat['mean']:.3f}{std} <span class='ci'>({values})</span>"


def write_seed_report(combined: dict, out) -> Path:
    out = Path(out)
    write_json(out / "seeds.json", combined)
    keys = ("success_rate", "defended_robust_accuracy", "defended_clean_accuracy", "survival")
    head = "".join(
        f"<th>{k.replace('_', ' ')}</th>" for k in ("victim", "attack", "defense", *keys, "flagged in seeds")
    )
    rows = "".join(
        f"<tr><td>{html.escape(c['victim'])}</td><td>{html.escape(c['attack'])}</td><td>{html.escape(c['defense'])}</td>"
        + "".join(f"<td>{_pm(c[k])}</td>" for k in keys)
        + f"<td>{html.escape(', '.join(map(str, c['flagged_in'])))}</td></tr>"
        for c in combined["cells"]
    )
    seeds = ", ".join(map(str, combined["seeds"]))
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>staa-ser over seeds</title><style>
body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}}table{{border-collapse:collapse;font-size:.8em}}
td,th{{border:1px solid #ddd;padding:3px 6px;text-align:right}}td:nth-child(-n+3){{text-align:left}}.ci{{color:#777}}</style></head><body>
<h1>One grid over {len(combined["seeds"])} seeds ({html.escape(seeds)})</h1>
<p>Each rate: mean ± standard deviation over the seeds, then the per-seed values.</p>
<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></body></html>"""
    with atomic_open(out / "seeds.html") as fh:
        fh.write(page)
    return out / "seeds.html"
