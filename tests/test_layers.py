"""The import graph of the project's own modules: no cycle, and nothing below the command line imports it."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("staa", "defenses", "eval")
APPLICATION = {"staa.cli", "staa.__main__", "staa.demo"}  # the top layer: the command line and the demo it runs


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
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                targets = [f"{base}.{a.name}" for a in node.names] + [base]
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
    bad = {m: sorted(d & APPLICATION) for m, d in import_graph().items() if m not in APPLICATION and d & APPLICATION}
    assert bad == {}


def test_defenses_import_nothing_from_eval():
    assert {m: d for m, d in import_graph().items() if m.startswith("defenses") and any(x.startswith("eval") for x in d)} == {}


def test_the_checks_see_a_cycle_and_a_layer_breach():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"staa.cli"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert "staa" in import_graph() and "staa.cli" in import_graph()["staa.__main__"]
