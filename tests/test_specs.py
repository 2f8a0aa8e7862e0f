"""The one spec grammar and the attack registry: every command names attacks the same way, errors name the spec and
the allowed keys, and a recipe is the training settings a command gets with no flags."""

import pytest
import torch
from torch import nn

from defenses import parse_defense
from staa import specs
from staa.attacks import ALIASES, ATTACKS, CW, PGD, AdaptivePGD, SparsePGD, parse_attack
from staa.cli import build_parser
from staa.cli.commands import _recipe
from staa.generator import RECIPES, AttackTrainConfig, recipe


def test_the_grammar_splits_binds_and_types_by_the_signature():
    assert specs.split("noise:20:seed=3", "defense") == ("noise", ["20"], {"seed": "3"})

    def f(model, a: int, b: float = 1.0, c: bool = False, d: str | None = None):
        pass

    assert specs.bind("f:2:c=true:d=x.pt", "thing", f, ["2"], {"c": "true", "d": "x.pt"}, skip=("model",)) == {
        "a": 2,
        "c": True,
        "d": "x.pt",
    }
    assert specs.bind("f", "thing", f, [], {"a": 3, "b": 2}, skip=("model",)) == {
        "a": 3,
        "b": 2.0,
    }  # a TOML table's values
    for bad, message in [
        (({}, {}), "needs a=..."),
        ((["1"], {"e": "1"}), r"unknown parameter 'e' \(allowed: a, b, c, d\)"),
        (([], {"a": "1.5"}), "a must be an integer"),
        ((["1"], {"b": "nan"}), "b must be a finite number"),
        ((["1"], {"c": "maybe"}), "c must be true or false"),
        ((["1"], {"a": "2"}), "a is given twice"),
    ]:
        with pytest.raises(ValueError, match=message):
            specs.bind("f:...", "thing", f, list(bad[0]), bad[1], skip=("model",))
    assert specs.pairs(["a=pgd:steps=10", "b=staa:generator=x=y.pt"], "--attack") == {
        "a": "pgd:steps=10",
        "b": "staa:generator=x=y.pt",
    }
    with pytest.raises(ValueError, match="must look like NAME=VALUE"):
        specs.pairs(["pgd"], "--attack")
    assert [specs.text(v) for v in (4000.0, 0.1, 1 / 3, 32, True)] == ["4000", "0.1", repr(1 / 3), "32", "true"]


def test_every_attack_spec_and_alias_builds_the_attack_it_names():
    model = nn.Sequential(nn.Linear(160, 4)).eval()
    built = parse_attack("pgd:steps=7:eps=0.01:seed=3").build(model)
    assert isinstance(built, PGD) and (built.steps, built.eps, built.seed) == (7, 0.01, 3)
    assert parse_attack("pgd10") == parse_attack("pgd:steps=10") and parse_attack("pgd100").params == {"steps": 100}
    assert parse_attack({"type": "sparse_pgd", "l0_ratio": 0.2}).build(model).l0_ratio == 0.2  # a TOML table
    assert isinstance(parse_attack("cw:steps=5").build(model), CW) and isinstance(
        parse_attack("sparse_pgd").build(model), SparsePGD
    )
    # the grid's eps and seed are defaults: a spec's own value wins
    assert (
        parse_attack("fgsm").build(model, eps=0.002).eps == 0.002
        and parse_attack("fgsm:eps=0.01").build(model, eps=0.002).eps == 0.01
    )
    adaptive = parse_attack("adaptive_pgd:steps=2:eot=3")
    assert adaptive.adaptive and not parse_attack("pgd").adaptive
    through = adaptive.build(model, defense=parse_defense("noise:30"), sample_rate=16000, seed=5)
    assert isinstance(through, AdaptivePGD) and (through.eot, through.seed) == (3, 5)
    x = 0.1 * torch.randn(2, 160, generator=torch.Generator().manual_seed(0))
    assert through(x).shape == x.shape
    assert set(ALIASES) == {"pgd10", "pgd100"} and set(ATTACKS) == {
        "staa",
        "fgsm",
        "pgd",
        "cw",
        "sparse_pgd",
        "apgd",
        "apgd_t",
        "square",
        "standard",
        "adaptive_pgd",
        "fresh_staa",
        "mifgsm",
        "universal",
    }


@pytest.mark.parametrize(
    "spec, message",
    [
        ("jsma", "unknown type 'jsma'.*choose from staa, fgsm"),
        ("pgd:step=3", r"unknown parameter 'step' \(allowed: eps, alpha, steps"),
        ("pgd:steps=0", "steps must be within 1-10000"),
        ("pgd:steps=99999", "steps must be within 1-10000"),
        ("adaptive_pgd:eot=101", "eot must be within 1-100"),
        ("fgsm:eps=2", "eps must be > 0 and <= 1"),
        ("sparse_pgd:l0_ratio=0", "l0_ratio must be in"),
        ("staa", r"needs generator=\.\.\."),
        ("staa:generator=g.pt:eps=0", "eps must be > 0"),
        ("fresh_staa:generator=g.pt", "trains its own generator"),
        ("fresh_staa:epochs=0", "epochs must be within 1-1000"),
        ("mifgsm:diversity=2", "diversity must be a probability"),
        ("pgd:steps=ten", "steps must be an integer"),
        ("", "the spec is empty"),
    ],
)
def test_bad_attack_specs_name_the_spec_and_what_is_allowed(spec, message):
    with pytest.raises(ValueError, match=message) as err:
        parse_attack(spec, "x")
    assert "attack 'x'" in str(err.value)


def test_a_recipe_is_what_train_attack_gets_with_no_flags_and_a_flag_overrides_it():
    base = ["train-attack", "--data", "d.csv", "--surrogate", "v.pt", "--out", "o"]
    parse = lambda *extra: _recipe(build_parser().parse_args([*base, *extra]))
    assert parse() == RECIPES["default"] and parse("--recipe", "paper") == RECIPES["paper"]
    changed = parse(
        "--recipe", "paper", "--w-spa", "2", "--conditional", "--train-mask", "straight_through", "--crop-seconds", "3"
    )
    assert changed == {
        **RECIPES["paper"],
        "w_spa": 2.0,
        "conditional": True,
        "generator": {"train_mask": "straight_through"},
        "clip_seconds": 3.0,
    }
    assert (
        parse("--no-conditional", "--train-mask", "stochastic")["conditional"] is False
        and parse("--train-mask", "stochastic")["generator"] == {}
    )
    for name in RECIPES:  # every recipe is a valid training config, and a copy: changing it changes no other run
        assert AttackTrainConfig(**recipe(name)).preset == RECIPES[name]["preset"]
    assert AttackTrainConfig(**recipe("default")) == AttackTrainConfig()  # the defaults are the default recipe
    assert AttackTrainConfig(**recipe("paper")).preset == "paper" != AttackTrainConfig().preset
    recipe("default")["generator"]["train_mask"] = "stochastic"
    assert RECIPES["default"]["generator"] == {"train_mask": "straight_through"}
    with pytest.raises(ValueError, match="unknown recipe 'fast'; choose from default, transfer, paper"):
        recipe("fast")
    adv = build_parser().parse_args(["adv-train", "--data", "d.csv", "--arch", "mel_cnn", "--out", "o", "--lr", "0.1"])
    assert _recipe(adv) == RECIPES["default"] and adv.lr == 0.1  # adv-train's --lr is the victim's, not the recipe's


def test_generator_options_are_one_flat_object_over_the_recipe():
    from staa.generator.recipes import recipe
    from staa.generator.training import AttackTrainConfig, with_options

    merged = with_options(recipe("default"), {"kappa": 1.0, "channels": 32, "generator": {"levels": 2}})
    assert merged["kappa"] == 1.0 and merged["generator"] == {
        "train_mask": "straight_through",
        "channels": 32,
        "levels": 2,
    }
    assert AttackTrainConfig(**merged).generator_config(4).channels == 32
    assert recipe("default")["generator"] == {"train_mask": "straight_through"}  # the recipe is untouched
    for bad in ({"depth": 4}, {"eps": 0.1}, {"generator": {"kappa": 1.0}}):
        with pytest.raises(ValueError, match="unknown generator option"):
            with_options(recipe("default"), bad)
