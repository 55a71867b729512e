"""The package's architecture: layers that import only the layers below them, no cycle."""

import ast
import importlib
import os

import pytest

from conftest import REPO, entry_points

PACKAGE = os.path.join(REPO, "ncf_tf")
# Lowest first; a module may import its own subpackage and any lower layer.
LAYERS = [["core"], ["data"], ["eval"], ["models", "baselines"], ["train"], ["serve"],
          ["results", "bench"], ["api"], ["cli"]]
RANK = {pkg: rank for rank, pkgs in enumerate(LAYERS) for pkg in pkgs}


def modules() -> dict[str, str]:
    """Dotted module name -> file, for every module of ncf_tf."""
    found = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                rel = os.path.relpath(os.path.join(folder, name), REPO)[:-3].split(os.sep)
                if rel[-1] == "__init__":
                    rel = rel[:-1]
                found[".".join(rel)] = os.path.join(folder, name)
    return found


def imports_of(path: str, known: set[str]) -> set[str]:
    """The ncf_tf modules a file imports anywhere in it (function bodies included)."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name.startswith("ncf_tf"):
                out.add(name)
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {m: imports_of(path, set(mods)) - {m} for m, path in mods.items()}


def layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_top_level_holds_only_subpackages():
    for name in os.listdir(PACKAGE):
        path = os.path.join(PACKAGE, name)
        if name == "__pycache__":
            continue
        if os.path.isdir(path):
            assert name in RANK, f"ncf_tf/{name}/ is in no layer of LAYERS"
            assert os.path.exists(os.path.join(path, "__init__.py")), name
        else:
            assert name == "__init__.py", f"ncf_tf/{name} belongs in a subpackage"


def test_each_layer_imports_only_the_layers_below():
    wrong = []
    for module, deps in graph().items():
        here = layer(module)
        for dep in deps:
            there = layer(dep)
            if here is None or there is None or there == here:
                continue
            if RANK[there] >= RANK[here]:
                wrong.append(f"{module} imports {dep}")
    assert not wrong, "\n".join(sorted(wrong))


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph, as a path that returns to its start; None if none."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(edges):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle():
    # A package's __init__ is imported by each of its modules, so it is left out of
    # the edges into it (Python resolves that order); every other edge counts.
    edges = {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in graph().items()}
    cycle = find_cycle(edges)
    assert cycle is None, " -> ".join(cycle)


def test_the_scripts_are_the_entry_points():
    assert set(entry_points()) == set(os.listdir(os.path.join(REPO, "bin"))) - {"benchmark"}


@pytest.mark.parametrize("script", sorted(os.listdir(os.path.join(REPO, "bin"))))
def test_bin_scripts_import_their_main_in_two_lines(script):
    with open(os.path.join(REPO, "bin", script)) as f:
        code = [line for line in f.read().splitlines()
                if line.strip() and not line.startswith("#") and not line.startswith('"""')]
    module, function = entry_points().get(script, f"ncf_tf.cli.{script}:main").split(":")
    assert code == [f"from {module} import {function}", f"raise SystemExit({function}())"]
    assert callable(getattr(importlib.import_module(module), function))
