"""``environment.yml`` (conda) asks for what ``pyproject.toml`` declares, version for version.

The conda file is written by hand; this test is what keeps it from drifting: every core and
extra requirement of ``pyproject.toml`` appears in it with the same version specifier, and it
asks for nothing the project does not declare, except the few entries listed (with the
reason) in :data:`CONDA_ONLY`. The README's library snippet states the model's parameter
counts, checked against the model.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

import vit1d

tomllib = pytest.importorskip("tomllib")
requirements = pytest.importorskip("packaging.requirements")

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
#: conda-forge names of PyPI packages
CONDA_NAMES = {"pytorch": "torch", "pysoundfile": "soundfile", "soxr-python": "soxr"}
#: what environment.yml may hold beyond pyproject.toml, and why
CONDA_ONLY = {
    "python": "the interpreter",
    "pip": "installs the pip section",
    "portaudio": "lets tinysoundfont's pyaudio dependency build",
    "tinysoundfont": "the renderer; the Makefile installs it with --no-deps (it declares pyaudio)",
}


def _normal(name: str) -> str:
    name = name.lower().replace("_", "-")
    return CONDA_NAMES.get(name, name)


def _pyproject() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs += extra
    out = {}
    for line in reqs:
        r = requirements.Requirement(line)
        out[_normal(r.name)] = str(r.specifier)
    return out


def _conda(env: dict) -> dict[str, str]:
    out = {}
    for dep in env["dependencies"]:
        entries = dep["pip"] if isinstance(dep, dict) else [dep]
        for line in entries:
            line = str(line).split("#")[0].strip()
            if line.startswith("-e"):
                continue
            if "=" in line and not any(op in line for op in ("==", ">=", "<=", "!=", "~=")):
                line = line.replace("=", "==", 1)  # conda's python=3.11
            r = requirements.Requirement(line)
            out[_normal(r.name)] = str(r.specifier)
    return out


def _differences(env: dict) -> list[str]:
    want, have = _pyproject(), _conda(env)
    problems = [
        f"{name}: pyproject.toml asks for {spec or 'any version'}, environment.yml for "
        f"{have[name] or 'any version'}"
        if name in have
        else f"{name}{spec} is missing"
        for name, spec in sorted(want.items())
        if have.get(name) != spec
    ]
    problems += [
        f"{n} is not in pyproject.toml" for n in sorted(set(have) - set(want) - set(CONDA_ONLY))
    ]
    return problems


def test_environment_yml_asks_for_what_pyproject_declares() -> None:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert _differences(env) == []


def test_the_check_notices_drift() -> None:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    older = [d.replace("numpy>=1.24", "numpy>=1.20") if isinstance(d, str) else d for d in deps]
    assert _differences({"dependencies": older}) == [
        "numpy: pyproject.toml asks for >=1.24, environment.yml for >=1.20"
    ]
    fewer = [d for d in deps if not (isinstance(d, str) and d.startswith("seaborn"))]
    assert _differences({"dependencies": fewer}) == ["seaborn>=0.13 is missing"]
    more = [*deps, "requests>=2"]
    assert _differences({"dependencies": more}) == ["requests is not in pyproject.toml"]


def test_readme_states_the_models_parameter_counts() -> None:
    """The library snippet's counts: the backbone alone and with the default projection head."""
    line = next(ln for ln in README.read_text().splitlines() if "vit1d.ViT1D()" in ln)
    backbone, with_head = (float(x) for x in re.findall(r"(\d+\.\d) M", line))
    model = vit1d.ViT1D()
    total = sum(p.numel() for p in model.parameters())
    head = sum(p.numel() for p in model.head.parameters())
    assert round((total - head) / 1e6, 1) == backbone
    assert round(total / 1e6, 1) == with_head
