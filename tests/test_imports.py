"""The import rules of docs/architecture.md, read from the source with `ast` (nothing is imported).

    pytest tests/test_imports.py -q

0. No import cycle between modules (test_no_import_cycle_between_modules).
1. The lower layers (config, errors, heads, net, checkpoint, optim, models/, probes/, data/, results, reader) import
   nothing of the upper ones (run/, tune/, analysis/, offline/): a probe is a function of tensors, not of a Trainer.
   reader.py (the DuckDB views every reader of results uses) sits on results.py (the writer and schema),
   never the reverse.
2. offline/ (commands on saved checkpoints) does not import train.py: it rebuilds the net with net.build_net.
3. No module imports another module's private name (`from .x import _y`).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "rlp_tune"
LOWER = ["config.py", "errors.py", "heads.py", "net.py", "checkpoint.py", "optim.py", "results.py", "reader.py", "models", "probes", "data"]
UPPER = ("rlp_tune.run", "rlp_tune.tune", "rlp_tune.analysis", "rlp_tune.offline", "rlp_tune.cli")
# private names still imported across modules, each waiting on its owner (say who in the report)
KNOWN_PRIVATE: set[tuple[str, str, str]] = set()


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def imports(path: Path) -> list[tuple[str, str | None, int]]:
    """(absolute module, imported name or None, line) for every import in the file, nested ones included."""
    mod = module_name(path)
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, None, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - (node.level - 1)] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            for a in node.names:
                sub = f"{target}.{a.name}"   # `from . import x` may name a module
                out.append((target, a.name, node.lineno))
                out.append((sub, None, node.lineno))
    return out


def files(names) -> list[Path]:
    out = []
    for n in names:
        p = PKG / n
        out += sorted(p.rglob("*.py")) if p.is_dir() else [p]
    return out


def test_module_name_and_relative_imports_resolve(tmp_path):
    assert module_name(PKG / "probes" / "layers.py") == "rlp_tune.probes.layers"
    assert module_name(PKG / "offline" / "__init__.py") == "rlp_tune.offline"
    got = {m for m, _, _ in imports(PKG / "offline" / "probe.py")}
    assert {"rlp_tune.checkpoint", "rlp_tune.probes.layers", "rlp_tune.offline.frozen"} <= got


@pytest.mark.parametrize("path", files(LOWER), ids=lambda p: str(p.relative_to(PKG)))
def test_lower_layers_do_not_import_upper_ones(path):
    bad = sorted({(m, line) for m, _, line in imports(path) if m.startswith(UPPER)})
    assert not bad, f"{path.relative_to(PKG)} imports {bad}"


def test_the_writer_does_not_import_the_reader():
    bad = sorted({(m, line) for m, _, line in imports(PKG / "results.py") if m.startswith("rlp_tune.reader")})
    assert not bad, f"results.py imports {bad}"
    assert "rlp_tune.results" in {m for m, _, _ in imports(PKG / "reader.py")}


@pytest.mark.parametrize("path", files(["offline"]), ids=lambda p: str(p.relative_to(PKG)))
def test_offline_commands_do_not_import_the_trainer(path):
    bad = sorted({(m, line) for m, _, line in imports(path) if m.startswith(("rlp_tune.run.train", "rlp_tune.tune"))})
    assert not bad, f"{path.relative_to(PKG)} imports {bad}"


def test_no_module_imports_another_modules_private_name():
    found = set()
    for path in files(["."]):
        for target, name, _ in imports(path):
            if name and name.startswith("_") and not name.startswith("__") and target.startswith("rlp_tune"):
                found.add((module_name(path), target, name))
    assert found <= KNOWN_PRIVATE, sorted(found - KNOWN_PRIVATE)


def import_graph() -> dict[str, set[str]]:
    """rlp_tune module → the rlp_tune modules it imports (function-level imports included)."""
    mods = {module_name(p): p for p in files(["."])}
    return {m: {t for t, _, _ in imports(path) if t in mods and t != m} for m, path in mods.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
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


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_between_modules():
    """Counting every import (function-level ones too): no two modules need each other. A package's
    __init__ that re-exports its modules is left out (its modules import it only to register)."""
    graph = import_graph()
    inits = {m for m in graph if (PKG.parent / m.replace(".", "/") / "__init__.py").exists()}
    graph = {m: deps - inits for m, deps in graph.items() if m not in inits}
    assert cycles(graph) == []
