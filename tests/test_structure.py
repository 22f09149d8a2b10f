"""The house's rules, checked on the code: packages stacked bottom up, no import cycle, no private name borrowed.

The order is the one the README's package map draws: a package imports only itself and packages below
it. Imports inside functions count too (a lazy import is still a dependency).
"""

import ast
import functools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "workflow" / "dpfair"
#: bottom up; the base modules (errors, jobs, jsonio, logs, metrics, models) form the ground floor
LAYERS = [
    "base",
    "privacy",
    "data",
    "training",
    "synthesis",
    "federated",
    "fairness",
    "audit",
    "tables",
    "findings",
    "report",
    "pipeline",
]
BASE_MODULES = {"__init__", "errors", "faces", "jobs", "jsonio", "logs", "metrics", "models"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(["dpfair", *parts])


def layer(module: str) -> str:
    part = module.split(".")[1] if "." in module else "__init__"
    return "base" if part in BASE_MODULES else part


def imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module imported, names taken) for every dpfair import in the file, at any depth."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "dpfair":
            out.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out.extend((a.name, []) for a in node.names if a.name.split(".")[0] == "dpfair")
    return out


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def resolve(target: str, names: list[str]) -> list[str]:
    """The modules an import statement loads: ``from pkg import sub`` loads ``pkg.sub`` too."""
    found = [target] if target in MODULES else []
    found += [f"{target}.{n}" for n in names if f"{target}.{n}" in MODULES]
    return found


@functools.cache
def graph() -> dict[str, set[str]]:
    edges = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        for target, names in imports(path):
            edges[module].update(t for t in resolve(target, names) if t != module)
    return edges


def test_every_package_has_a_place_in_the_order():
    packages = {layer(m) for m in MODULES}
    assert packages <= set(LAYERS), f"packages missing from the order: {sorted(packages - set(LAYERS))}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_upward_import(module):
    mine = LAYERS.index(layer(module))
    upward = [t for t in graph()[module] if LAYERS.index(layer(t)) > mine]
    assert not upward, f"{module} ({layer(module)}) imports from higher packages: {upward}"


def test_no_import_cycle():
    edges = graph()
    state, stack, cycles = {}, [], []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt) :] + [nxt]))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize("path", sorted(Path(__file__).resolve().parents[1].glob("[wt]*/**/*.py")), ids=str)
def test_no_private_name_imported_across_modules(path):
    borrowed = [(m, n) for m, names in imports(path) for n in names if n.startswith("_") and not n.startswith("__")]
    assert not borrowed, f"{path} imports private names: {borrowed}"
