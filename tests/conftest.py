import os
from pathlib import Path

# Before torch is imported anywhere: passive OpenMP waiting (see the README's note on parallel jobs).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("DPFAIR_DATASETS_DIR", str(REPO / "datasets"))


@pytest.fixture
def repo() -> Path:
    return REPO


def write_module(directory: Path, name: str, body: str) -> Path:
    """Write a dataset module file for registry tests."""
    path = directory / f"{name}.py"
    path.write_text(body)
    return path


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The real Snakefile run once on the tiny grid, shared by the workflow and browser tests."""
    from tiny_grid import TINY, snakemake

    workdir = tmp_path_factory.mktemp("tiny")
    result = snakemake(workdir, TINY)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return workdir
