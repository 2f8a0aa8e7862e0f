"""`staa bench attacks`: every attack on the same clips and victim in one process, side by side."""
from __future__ import annotations

import torch

from staa.provenance import machine


def bench_attacks(victim_path, generator, make_dataset, *, threads: int = 2, batch_size: int = 16, device: str = "cpu", out=None,
                  progress: bool = True) -> dict:
    """`make_dataset(classes, sample_rate)` gives the clips to attack, once the victim says what it needs."""
    from staa.atomic import write_json
    from staa.attack_runner import build_attack, run_attack
    from staa.victim import load_victim

    torch.set_num_threads(threads)
    victim = load_victim(victim_path, device=device)
    dataset = make_dataset(victim.classes, victim.sample_rate)
    names = ["staa", "fgsm", "pgd10", "pgd100", "cw", "sparse_pgd"]
    results = {}
    # one untimed batch per attack: the first call at a batch shape pays for allocator and oneDNN kernel set-up
    # (and STAA's traced copies), once per run, not per clip
    warm_up = torch.stack([dataset[i][0] for i in range(min(batch_size, len(dataset)))]).to(device)
    for name in names:
        attack = build_attack(name, victim.model, generator=generator, device=device, sample_rate=victim.sample_rate)
        attack(warm_up)
        results[name] = run_attack(attack, victim.model, dataset, batch_size=batch_size, device=device, progress=progress)
    base = results["staa"]["seconds_per_clip"]
    info = machine()
    print(f"{len(dataset)} clips of {dataset.length / dataset.sample_rate:.1f} s, victim {victim.arch}, batch {batch_size}, "
          f"{info['threads']} threads on {info['processor']} ({info['cpu_count']} cores), device {info['device']}")
    print(f"{'attack':<12}{'ms/clip':>10}{'x STAA':>9}{'fooling':>9}{'l0 ratio':>10}{'dist dB':>9}")
    for name, r in results.items():
        dist = f"{r['distortion_db']:.1f}" if r["distortion_db"] is not None else "n/a"
        print(f"{name:<12}{r['seconds_per_clip'] * 1000:>10.1f}{r['seconds_per_clip'] / base:>9.1f}{r['fooling_rate']:>9.3f}{r['l0_ratio']:>10.3f}{dist:>9}")
    report = {"machine": info, "victim": victim.arch, "n": len(dataset), "results": results,
              "slowdown_vs_staa": {n: r["seconds_per_clip"] / base for n, r in results.items()}}
    if out:
        write_json(out, report)
    return report
