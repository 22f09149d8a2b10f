"""environment.yml (conda, GPU users) and pyproject.toml (pip) must name the same packages."""

import re
import tomllib

import yaml

# conda-forge names that differ from PyPI's
CONDA_TO_PYPI = {"pytorch-gpu": "torch"}
NOT_A_DEPENDENCY = {"python", "pip"}


def _name(spec: str) -> str:
    return re.split(r"[\s<>=!\[;]", spec.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_and_pyproject_name_the_same_packages(repo):
    project = tomllib.loads((repo / "pyproject.toml").read_text())["project"]
    pip_names = {_name(s) for s in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        pip_names |= {_name(s) for s in extra}
    env = yaml.safe_load((repo / "environment.yml").read_text())
    conda_names = set()
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            conda_names |= {_name(s) for s in dep["pip"]}
        else:
            conda_names.add(CONDA_TO_PYPI.get(_name(dep), _name(dep)))
    conda_names -= NOT_A_DEPENDENCY
    assert pip_names == conda_names, {
        "only in pyproject.toml": sorted(pip_names - conda_names),
        "only in environment.yml": sorted(conda_names - pip_names),
    }


def test_torch_is_pinned_for_cpu_machines(repo):
    deps = tomllib.loads((repo / "pyproject.toml").read_text())["project"]["dependencies"]
    torch = [d for d in deps if _name(d) == "torch"]
    assert torch and "==" in torch[0], "an unpinned torch pulls a multi-GB CUDA build on CPU machines"
