"""staa-ser: sparse, transferable adversarial attacks (STAA-Net), defenses and robustness reports for speech emotion
recognition.

    import staa
    victim = staa.load_victim("runs/demo/victims/mel_cnn/best.pt")
    attack = staa.parse_attack("pgd:steps=10").build(victim.model)
    x_adv = attack(x)                                   # x: waveforms [batch, samples] in [-1, 1]

The names below load on first use, so `staa --help` stays fast."""

from __future__ import annotations

import importlib

_API = {
    "load_victim": "staa.models.victim",
    "save_victim": "staa.models.victim",
    "Victim": "staa.models.victim",
    "parse_attack": "staa.attacks",
    "build_attack": "staa.attacks",
    "attacks": "staa.attacks",
    "load_generator": "staa.generator",
    "save_generator": "staa.generator",
    "train_generator": "staa.generator",
    "AttackTrainConfig": "staa.generator",
    "RECIPES": "staa.generator",
    "train_victim": "staa.training.victim",
    "TrainConfig": "staa.training.victim",
    "adv_train": "staa.training.adversarial",
    "AdvTrainConfig": "staa.training.adversarial",
    "parse_defense": "defenses",
    "load_records": "staa.datasets",
    "AudioDataset": "staa.datasets",
}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'staa' has no attribute {name!r}")
    module = importlib.import_module(_API[name])
    value = module if name == "attacks" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_API))
