"""One attack contract: what an attack is lives in its class, so a new attack is one class and its registration."""

import importlib
import json
import sys
import textwrap

import pytest
import torch

from staa.attacks import ATTACKS, STAA, Attack, parse_attack
from staa.cli.commands import main
from tests.test_run_folders import evaluate_args, victim_file

TOY = '''
from staa.attacks import Attack, register_attack


@register_attack
class Idle(Attack):
    """An iterative attack that never moves: a broken one, for the sanity rules to catch."""

    name = "toy_idle"

    def __init__(self, model, eps: float = 0.03, steps: int = 10):
        super().__init__(model)
        if not 0 < eps <= 1:
            raise ValueError(f"eps must be in (0, 1], got {eps}")
        self.eps, self.steps = eps, steps

    def perturb(self, x, y):
        return x.clone()
'''


@pytest.fixture
def toy_attack(tmp_path, monkeypatch):
    (tmp_path / "toy_attack.py").write_text(textwrap.dedent(TOY))
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("toy_attack")
    yield module.Idle
    ATTACKS.pop("toy_idle", None)
    sys.modules.pop("toy_attack", None)


def test_a_new_attack_runs_through_evaluate_with_a_defense_and_the_sanity_rules(toy_attack, corpus, tmp_path):
    manifest, _ = corpus
    with pytest.raises(ValueError, match=r"eps must be in \(0, 1\]"):
        parse_attack("toy_idle:eps=2")  # its own range, checked when the spec is read
    args = evaluate_args(manifest, victim_file(tmp_path / "v.pt"), tmp_path / "run", "--eps", "1", "--defense", "none")
    args += ["--defense", "quantize:8"]
    args[args.index("f=fgsm:eps=0.03")] = "idle=toy_idle:steps=3"
    assert main(args) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    cells = {c["defense"]: c for c in results["cells"]}
    assert set(cells) == {"none", "quantize:8"}
    for cell in cells.values():
        assert (cell["attack_type"], cell["attack_kind"], cell["norm"], cell["gradient"]) == (
            "toy_idle",
            "iterative",
            "Linf",
            True,
        )
        assert cell["eps"] == 1.0  # the grid's budget, which its spec did not set
        assert cell["robust_accuracy"] == cell["clean_accuracy"]  # it never moved
    flags = {(f["defense"], f["flag"]) for f in results["flags"]}
    # an iterative l-inf attack at eps 1 that fools nothing, and a defense no adaptive attack ran through
    assert ("none", "unbounded") in flags and ("quantize:8", "no_adaptive_attack") in flags


def test_each_registered_attack_declares_what_it_is():
    kinds = {name: (cls.kind, cls.norm, cls.gradient, cls.adaptive, cls.grid_eps) for name, cls in ATTACKS.items()}
    assert kinds["fgsm"] == ("single_step", "Linf", True, False, True)
    assert kinds["pgd"] == kinds["apgd"] == kinds["apgd_t"] == ("iterative", "Linf", True, False, True)
    assert kinds["adaptive_pgd"] == kinds["standard"] == ("iterative", "Linf", True, True, True)
    assert kinds["square"] == ("black_box", "Linf", False, False, True)
    assert kinds["cw"][1] == "L2" and kinds["sparse_pgd"][1] == "L0"
    assert kinds["staa"] == ("generator", "Linf", False, False, False)
    assert all(name == cls.name for name, cls in ATTACKS.items())


def test_registration_refuses_what_is_not_an_attack_and_a_taken_name():
    from staa.attacks import register_attack

    class NoPerturb(Attack):
        name = "toy_none"

    with pytest.raises(TypeError, match="implements perturb"):
        register_attack(NoPerturb)

    class Clash(Attack):
        name = "pgd"

        def perturb(self, x, y):
            return x

    with pytest.raises(ValueError, match="'pgd' is already registered"):
        register_attack(Clash)
    assert "toy_none" not in ATTACKS and ATTACKS["pgd"].__name__ == "PGD"


def test_staa_is_called_through_the_base_class_and_never_queries_its_victim():
    from staa.generator.network import GeneratorConfig, STAAGenerator

    torch.manual_seed(0)
    gen = STAAGenerator(GeneratorConfig(channels=4, levels=2, eps=0.01)).eval()
    victim = torch.nn.Sequential(torch.nn.Linear(1600, 4)).train()
    attack = STAA(victim, gen)
    assert type(attack).__call__ is Attack.__call__
    x = 0.1 * torch.randn(3, 1600, generator=torch.Generator().manual_seed(1))
    adv = attack(x)
    assert adv.shape == x.shape and (adv - x).abs().max() <= 0.01 + 1e-6
    assert attack.passes == 0 and victim.training  # no query, and the victim's mode is restored


def test_an_adaptive_attack_needs_a_defense_only_where_its_constructor_does():
    model = torch.nn.Sequential(torch.nn.Linear(800, 4))
    x = 0.1 * torch.randn(2, 800, generator=torch.Generator().manual_seed(0))
    suite = parse_attack("standard:steps=2:queries=2").build(model, eps=0.01)  # the undefended suite
    assert (suite(x) - x).abs().max() <= 0.01 + 1e-6
    with pytest.raises(ValueError, match="runs through a defense; none was given"):
        parse_attack("adaptive_pgd:steps=2").build(model, eps=0.01)
