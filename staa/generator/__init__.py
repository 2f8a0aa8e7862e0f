"""STAA-Net: the generator network, its four losses, its training against surrogate victims, its checkpoint, and the
named training recipes."""

from staa.generator.checkpoint import (
    GeneratorRecord,
    load_generator,
    read_generator,
    read_record,
    resolve_surrogate,
    save_generator,
)
from staa.generator.network import PRESETS, GeneratorConfig, STAAGenerator
from staa.generator.recipes import RECIPES, recipe
from staa.generator.training import AttackTrainConfig, parse_eps_schedule, train_generator

__all__ = [
    "PRESETS",
    "RECIPES",
    "AttackTrainConfig",
    "GeneratorConfig",
    "GeneratorRecord",
    "STAAGenerator",
    "load_generator",
    "parse_eps_schedule",
    "read_generator",
    "read_record",
    "recipe",
    "resolve_surrogate",
    "save_generator",
    "train_generator",
]
