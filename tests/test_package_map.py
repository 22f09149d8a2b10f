"""The README stays a front door: short, its package map matches the packages, its benchmark table the
definitions in benchmarks/.

Packages, not files, are checked: files inside a package come and go; a package (a folder with
``__init__.py`` under workflow/dpfair) must be in the map with a description, and the map names none that
does not exist.
"""

import re
from pathlib import Path

import pytest
from dpfair.pipeline.benchmark import load_benchmark

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
LIBRARY = REPO / "workflow" / "dpfair"


def section(text: str, heading: str) -> str:
    """The text of the README's ``## heading`` section, up to the next ``## ``."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f"README has no '## {heading}' section"
    return match.group(1)


def package_map() -> dict[str, str]:
    """``{package path relative to workflow/dpfair, with a trailing slash: description}`` from the map block."""
    block = re.search(r"```\n(.*?)```", section(README.read_text(), "Package map"), re.S)
    assert block, "the Package map section has no fenced block"
    entries = {}
    for line in block.group(1).splitlines():
        m = re.match(r"^  (\S+/)\s{2,}(\S.*)$", line)  # indented under workflow/dpfair/: a package entry
        if m:
            entries[m.group(1)] = m.group(2).strip()
    return entries


def packages() -> set[str]:
    return {
        str(init.parent.relative_to(LIBRARY)) + "/"
        for init in LIBRARY.rglob("__init__.py")
        if init.parent != LIBRARY and "__pycache__" not in init.parts
    }


def test_readme_is_short():
    assert len(README.read_text().splitlines()) <= 200


def test_every_package_is_in_the_map_with_a_description():
    entries = package_map()
    missing = sorted(packages() - set(entries))
    assert not missing, f"packages missing from the README's package map: {missing}"
    assert all(len(entries[p].split()) >= 3 for p in packages()), {p: entries[p] for p in packages()}


def test_the_map_names_only_packages_that_exist():
    stale = sorted(set(package_map()) - packages())
    assert not stale, f"the README's package map names packages that do not exist: {stale}"


def test_the_map_names_the_rule_adapters():
    block = section(README.read_text(), "Package map")
    for folder in ("workflow/rules/", "workflow/scripts/"):
        assert folder in block and (REPO / folder).is_dir()


def benchmark_table() -> dict[str, dict[str, str]]:
    """The README's benchmark table: ``{name: {column: cell}}``."""
    lines = [line for line in section(README.read_text(), "Benchmarks").splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[2:]:
        cells = dict(zip(header, (c.strip() for c in line.strip("|").split("|"))))
        rows[cells["benchmark"].strip("`")] = cells
    return rows


def listed(cell: str) -> list[str]:
    return [item.strip().strip("`") for item in cell.split(",") if item.strip()]


def test_every_benchmark_definition_is_in_the_table():
    files = sorted(p.stem for p in (REPO / "benchmarks").glob("*.yaml"))
    assert sorted(benchmark_table()) == files


@pytest.mark.parametrize("path", sorted((REPO / "benchmarks").glob("*.yaml")), ids=lambda p: p.stem)
def test_each_table_row_matches_its_definition(path):
    row = benchmark_table()[path.stem]
    benchmark = load_benchmark(path)
    assert benchmark.name == path.stem
    assert listed(row["datasets"]) == benchmark.datasets
    assert set(listed(row["models"])) == {m for d in benchmark.datasets for m in benchmark.models_for(d)}
    assert set(listed(row["methods"])) == set(benchmark.methods)
    assert [e.replace("∞", "inf") for e in listed(row["ε"])] == benchmark.epsilons
    assert [int(s) for s in listed(row["seeds"])] == benchmark.seeds
    assert int(row["runs"]) == len(benchmark.runs())
    assert row["what it is for"]
