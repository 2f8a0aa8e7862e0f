"""The import graph of the project's own modules: no cycle, imports point down the layers, nothing imports the CLI."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("staa", "defenses", "eval")
APPLICATION = ("staa.cli", "staa.__main__")  # the top layer: the command line, its run folders and the demo it runs
# the layers, lowest first (docs/design.md): a module may import its own layer and the ones below, never one above
LAYERS = [
    ("staa.specs",),
    ("staa.io",),
    ("defenses", "staa.metrics", "staa.datasets"),
    ("staa.models",),
    ("staa.generator",),
    ("staa.attacks",),
    ("staa.training",),
    ("staa",),
    ("eval",),
    APPLICATION,
]


def layer(module: str) -> int:
    """The rank of `module`: its longest matching layer prefix (`staa` alone is the package's public API)."""
    best, rank = "", None
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > len(best):
                best, rank = p, i
    assert rank is not None, f"{module} is in no layer"
    return rank


def is_application(module: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in APPLICATION)


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports, at any depth of the file (imports inside functions count too)."""
    files = {_module(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    graph = {}
    for name, path in files.items():
        deps = set()
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(
                        package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                    )
                # `from pkg import module` imports that module; `from module import name`, the module itself (parent
                # packages run first in both cases, as for any import, and count as no edge)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            else:
                continue
            for t in targets:  # the longest prefix that is one of our modules
                while t and t not in files:
                    t = t.rpartition(".")[0]
                if t and t != name:
                    deps.add(t)
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_project_has_no_import_cycle():
    assert cycles(import_graph()) == []


def test_library_code_never_imports_the_application_layer():
    graph = import_graph()
    bad = {m: sorted(x for x in d if is_application(x)) for m, d in graph.items() if not is_application(m)}
    assert {m: d for m, d in bad.items() if d} == {}


def test_imports_point_down_the_layers():
    upward = {m: sorted(x for x in d if layer(x) > layer(m)) for m, d in import_graph().items()}
    assert {m: d for m, d in upward.items() if d} == {}


def test_defenses_import_nothing_from_eval():
    assert {
        m: d for m, d in import_graph().items() if m.startswith("defenses") and any(x.startswith("eval") for x in d)
    } == {}


def test_the_checks_see_a_cycle_and_a_layer_breach():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"staa.cli"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert "staa" in import_graph() and "staa.cli" in import_graph()["staa.__main__"]
    assert "staa.cli.commands" in import_graph()["staa.cli"]  # imports inside a package resolve to its modules
    assert (
        layer("staa.io.atomic")
        < layer("defenses.mp3")
        < layer("staa.models.victim")
        < layer("staa.attacks.pgd")
        < layer("eval.harness")
    )
    assert is_application("staa.cli.demo") and not is_application("staa.cli_tools")
