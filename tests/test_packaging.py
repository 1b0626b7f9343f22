"""``environment.yml`` (conda) asks for what ``pyproject.toml`` declares, version for version;
``requirements.lock`` pins every requirement at a version its specifier allows; a module of an
optional part names its extra when that extra is missing.

The conda file is written by hand; this test is what keeps it from drifting: every core and
extra requirement of ``pyproject.toml`` appears in it with the same version specifier, and it
asks for nothing the project does not declare, except the few entries listed (with the
reason) in :data:`CONDA_ONLY`. The README's library snippet states the model's parameter
counts, checked against the model.
"""

from __future__ import annotations

import re
import subprocess
import sys
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
        if r.name != project["name"]:  # an extra asking for another of this project's
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


# --------------------------------------------------------------------------------------------
# The lock
# --------------------------------------------------------------------------------------------

LOCK = ROOT / "requirements.lock"


def _declared() -> list[requirements.Requirement]:
    """Every requirement of pyproject.toml (core and extras) and requirements.in."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        lines += extra
    for line in (ROOT / "requirements.in").read_text().splitlines():
        if line.split("#")[0].strip():
            lines.append(line.split("#")[0].strip())
    return [r for r in map(requirements.Requirement, lines) if r.name != project["name"]]


def _pins(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)", line)
        if m:
            out[m.group(1).lower().replace("_", "-")] = m.group(2)
    return out


def _lock_differences(text: str) -> list[str]:
    pins = _pins(text)
    problems = []
    for r in _declared():
        name = r.name.lower().replace("_", "-")
        if name not in pins:
            problems.append(f"{r.name} is not pinned")
        elif not r.specifier.contains(pins[name], prereleases=True):
            problems.append(f"{r.name}=={pins[name]} does not satisfy {r.specifier}")
    problems += [f"{line} pins the checkout" for line in text.splitlines() if " @ file:" in line]
    return problems


def test_the_lock_pins_what_pyproject_declares() -> None:
    assert _lock_differences(LOCK.read_text()) == [], "run `make lock`"


def test_the_lock_pins_torch_as_the_makefile_installs_it() -> None:
    spec = re.search(r"^TORCH_SPEC \?= torch==(\S+)$", (ROOT / "Makefile").read_text(), re.M)
    assert spec is not None
    assert _pins(LOCK.read_text())["torch"] == spec.group(1)  # no +cpu: a CUDA build fits too


def test_the_lock_check_notices_drift() -> None:
    text = LOCK.read_text()
    older = re.sub(r"^numpy==\S+", "numpy==1.20.0", text, flags=re.M)
    assert _lock_differences(older) == ["numpy==1.20.0 does not satisfy >=1.24"]
    fewer = re.sub(r"^seaborn==\S+\n", "", text, flags=re.M)
    assert _lock_differences(fewer) == ["seaborn is not pinned"]


def test_tidy_lock_drops_the_checkout_and_local_labels() -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import tidy_lock
    finally:
        sys.path.pop(0)
    raw = (
        "torch==2.13.0+cpu\n    # via vit1d\nvit1d @ file:///home/me/vit1d\n"
        "    # via vit1d (pyproject.toml)\nwcwidth==0.9.4\n    # via prompt-toolkit\n"
    )
    assert tidy_lock.tidy(raw) == (
        "torch==2.13.0\n    # via vit1d\nwcwidth==0.9.4\n    # via prompt-toolkit\n"
    )


# --------------------------------------------------------------------------------------------
# Optional parts name their extra
# --------------------------------------------------------------------------------------------


def _import_without(module: str, absent: str) -> subprocess.CompletedProcess:
    """Import ``module`` in a fresh interpreter where ``absent`` cannot be imported."""
    code = f"import sys; sys.modules[{absent!r}] = None; import {module}"
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT
    )


def _extra(name: str) -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [requirements.Requirement(r).name for r in project["optional-dependencies"][name]]


@pytest.mark.parametrize(
    ("module", "absent"),
    [
        ("vit1d.viz.plots", "matplotlib"),
        ("vit1d.viz.plots", "seaborn"),
        ("vit1d.viz.plots", "ipywidgets"),
        ("vit1d.viz.analysis_plots", "seaborn"),
        ("vit1d.viz.probing_plots", "matplotlib"),
        ("vit1d.viz.widgets", "ipywidgets"),
    ],
)
def test_a_missing_extra_is_named(module: str, absent: str) -> None:
    done = _import_without(module, absent)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError:"), done.stderr
    assert f"needs {absent}" in last and 'pip install "vit1d[viz]"' in last
    assert absent in _extra("viz")  # the extra named is the one that installs it


@pytest.mark.parametrize(
    "module", ["vit1d.features.hear", "vit1d.analysis.analyses", "vit1d.cli", "vit1d.cli.analyses"]
)
def test_the_core_imports_without_plotting(module: str) -> None:
    done = _import_without(module, "matplotlib")
    assert done.returncode == 0, done.stderr


def test_figures_without_the_viz_extra_are_a_user_error(tmp_path: Path) -> None:
    """``vit1d analyses --figures`` without matplotlib: one line naming the extra."""
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from vit1d.cli import main\n"
        f"sys.exit(main(['analyses', '--checkpoint', {str(tmp_path)!r}, '--corpus', {str(tmp_path)!r},"
        f" '--out', {str(tmp_path)!r}, '--figures']))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "needs matplotlib" in done.stderr and 'pip install "vit1d[viz]"' in done.stderr
