"""Randomized smoothing inside an evaluation grid: per victim and noise level, the certified accuracy at each l2 radius
on the grid's clips (`staa.models.smoothing`), with the l-inf budget each radius covers."""

from __future__ import annotations

from pathlib import Path

from tqdm import tqdm


def run_grid_certification(cfg, out_dir, *, records=None, device="cpu", progress: bool = True) -> dict:
    """Every victim of the grid smoothed at each `cfg.smoothing_sigmas`, certified on the grid's clips, into
    `OUT/certification.json`, rewritten after each victim so that a rerun continues with the next one."""
    from eval.harness import held_per_victim, load_grid_records, select_clips
    from staa.io.atomic import write_json
    from staa.models.smoothing import certify_levels, linf_equivalent
    from staa.models.victim import load_victim

    path = Path(out_dir) / "certification.json"
    records = records if records is not None else load_grid_records(cfg)
    settings = {k: getattr(cfg, k) for k in ("smoothing_sigmas", "smoothing_radii", "smoothing_n", "seed")}
    result = held_per_victim(path, settings | {"n0": cfg.smoothing_n0, "alpha": cfg.smoothing_alpha})
    smoothing = {"n0": cfg.smoothing_n0, "n": cfg.smoothing_n, "alpha": cfg.smoothing_alpha, "seed": cfg.seed}
    for name, victim_path in cfg.victims.items():
        if name in result["victims"]:
            continue
        victim = load_victim(victim_path, device=device)
        clips = select_clips(records, victim, cfg)
        samples = clips.length or victim.sample_rate * 3
        sigmas = tqdm(cfg.smoothing_sigmas, desc=f"smoothing {name}", disable=not progress)
        levels = certify_levels(victim.model, clips, sigmas, cfg.smoothing_radii, **smoothing)
        result["victims"][name] = {
            "samples": samples,
            "linf_equivalent": {f"{r:g}": linf_equivalent(r, samples) for r in cfg.smoothing_radii},
            "results": [{k: got[k] for k in ("n", "sigma", "certified_accuracy")} for got in levels],
        }
        write_json(path, result)
    return result
