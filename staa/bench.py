"""`staa bench attacks`: every attack on the same clips and victim in one process, side by side."""
from __future__ import annotations

import os
import platform

import torch


def machine() -> dict:
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"}


def bench_attacks(a) -> dict:
    from staa.atomic import write_json
    from staa.attack_runner import build_attack, run_attack
    from staa.cli import _split_dataset
    from staa.victim import load_victim

    torch.set_num_threads(a.threads)
    victim = load_victim(a.victim, device=a.device)
    a.limit = a.limit or 32
    dataset = _split_dataset(a, victim.classes, victim.sample_rate)
    names = ["staa", "fgsm", "pgd10", "pgd100", "cw", "sparse_pgd"]
    results = {}
    # one untimed batch per attack: the first call at a batch shape pays for allocator and oneDNN kernel set-up
    # (and STAA's traced copies), once per run, not per clip
    warm_up = torch.stack([dataset[i][0] for i in range(min(a.batch_size, len(dataset)))]).to(a.device)
    for name in names:
        attack = build_attack(name, victim.model, generator=a.generator, device=a.device, sample_rate=victim.sample_rate)
        attack(warm_up)
        results[name] = run_attack(attack, victim.model, dataset, batch_size=a.batch_size, device=a.device, progress=not a.quiet)
    base = results["staa"]["seconds_per_clip"]
    info = machine()
    print(f"{len(dataset)} clips of {dataset.length / dataset.sample_rate:.1f} s, victim {victim.arch}, batch {a.batch_size}, "
          f"{info['threads']} threads on {info['processor']} ({info['cpu_count']} cores), device {info['device']}")
    print(f"{'attack':<12}{'ms/clip':>10}{'x STAA':>9}{'fooling':>9}{'l0 ratio':>10}{'dist dB':>9}")
    for name, r in results.items():
        dist = f"{r['distortion_db']:.1f}" if r["distortion_db"] is not None else "n/a"
        print(f"{name:<12}{r['seconds_per_clip'] * 1000:>10.1f}{r['seconds_per_clip'] / base:>9.1f}{r['fooling_rate']:>9.3f}{r['l0_ratio']:>10.3f}{dist:>9}")
    report = {"machine": info, "victim": victim.arch, "n": len(dataset), "results": results,
              "slowdown_vs_staa": {n: r["seconds_per_clip"] / base for n, r in results.items()}}
    if a.out:
        write_json(a.out, report)
    return report
