"""What gets installed: every package folder is listed, the diagnostics install as odenet.analysis,
and the core imports only torch and numpy."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import textwrap

import pytest

from odenet.analysis._requirements import NEEDED as ANALYSIS_EXTRA

ROOT = pathlib.Path(__file__).resolve().parents[1]
DISTRIBUTION = {"sklearn": "scikit-learn"}  # import name -> distribution name, where they differ


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _packages_on_disk() -> set[str]:
    found = set()
    for prefix, folder in (("odenet", ROOT / "odenet"), ("odenet.analysis", ROOT / "analysis")):
        for init in folder.rglob("__init__.py"):
            rel = init.parent.relative_to(folder).parts
            found.add(".".join((prefix, *rel)))
    return found


def test_every_package_folder_is_installed():
    tool = _pyproject()["tool"]["setuptools"]
    assert set(tool["packages"]) == _packages_on_disk()
    assert tool["package-dir"]["odenet.analysis"] == "analysis"


def test_the_command_and_the_extras():
    project = _pyproject()["project"]
    assert project["scripts"]["odenet-analysis"] == "odenet.analysis._cli:main"
    core = {d.split(">")[0].split("=")[0].strip() for d in project["dependencies"]}
    assert core == {"torch", "numpy"}
    extras = project["optional-dependencies"]
    assert "odenet[analysis]" in extras["test"] and "odenet[analysis]" in extras["docs"]
    listed = {d.split(">")[0].split("=")[0].strip() for d in extras["analysis"]}
    assert listed == {DISTRIBUTION.get(m, m) for m in ANALYSIS_EXTRA}


def _run_without_the_extra(code: str) -> subprocess.CompletedProcess:
    blocker = "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in ANALYSIS_EXTRA)
    return subprocess.run([sys.executable, "-c", blocker + textwrap.dedent(code)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_core_runs_with_torch_and_numpy_only():
    proc = _run_without_the_extra("""
        import importlib, pkgutil, torch
        import odenet
        for m in pkgutil.walk_packages(odenet.__path__, "odenet."):
            if not m.name.startswith("odenet.analysis"):
                importlib.import_module(m.name)
        y = odenet.odeint(lambda t, y: -y, torch.ones(2), torch.tensor([0.0, 1.0]),
                          method="rk4", step_size=0.25, gradient="anode")
        print("ok", tuple(y.shape))
    """)
    assert proc.returncode == 0, proc.stderr
    assert "ok (2, 2)" in proc.stdout


def test_analysis_without_the_extra_says_how_to_install_it():
    proc = _run_without_the_extra("import odenet.analysis")
    assert proc.returncode == 1
    assert "pip install 'odenet[analysis]'" in proc.stderr
    assert "torchdiffeq" in proc.stderr


def test_analysis_is_odenet_analysis():
    import odenet
    import odenet.analysis

    assert odenet.analysis.__name__ == "odenet.analysis"
    assert pathlib.Path(odenet.analysis.__file__).parent == ROOT / "analysis"
    assert callable(odenet.analysis.report)
