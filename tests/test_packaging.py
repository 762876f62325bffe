"""A built wheel works as well as an editable install: it carries the schemas and the example
configs, and ``prm-mirror init`` and ``prm-mirror demo`` run from it without the source tree."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = (
    "pyproject.toml",
    "README.md",
    "cli",
    "mirror",
    "adapters",
    "sandboxes",
    "prm_demo",
    "prm_portal",
    "schemas",
    "config",
)


def python_packages() -> set[str]:
    """Every directory of the shipped packages holding modules or shipped files, as a package."""
    found = set()
    for top in ("mirror", "adapters", "sandboxes", "prm_demo", "prm_portal", "cli"):
        for folder in (ROOT / top).rglob("*"):
            if folder.is_dir() and folder.name != "__pycache__" and any(folder.iterdir()):
                found.add(".".join(folder.relative_to(ROOT).parts))
        found.add(top)
    return found


def test_the_package_list_covers_the_source_tree() -> None:
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    parents = {name.rsplit(".", 1)[0] for name in listed if "." in name}
    assert python_packages() <= listed | parents


def run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PRM_MIRROR_CONFIG")}
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.slow
def test_a_wheel_installed_without_the_source_tree_runs_init_and_the_demo(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(
                ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy2(ROOT / name, source / name)
    built = run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                "--no-index", "-w", tmp_path / "dist", source, cwd=tmp_path)  # fmt: skip
    assert built.returncode == 0, built.stderr
    wheel = next((tmp_path / "dist").glob("prm_mirror-*.whl"))

    venv = tmp_path / "venv"
    assert run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path).returncode == 0
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(run(venv / "bin" / "python", "-c", purelib, cwd=tmp_path).stdout.strip())
    # the dependencies come from this interpreter's site-packages (nothing is downloaded); a
    # plain path line does not run that directory's own .pth files, so no editable install leaks
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = run(sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install",
                    "-q", "--no-deps", "--no-index", wheel, cwd=tmp_path)  # fmt: skip
    assert installed.returncode == 0, installed.stderr

    work = tmp_path / "work"
    work.mkdir()
    where = run(venv / "bin" / "python", "-c", "import mirror; print(mirror.__file__)", cwd=work)
    assert where.stdout.startswith(str(site)), where.stdout + where.stderr
    prm = venv / "bin" / "prm-mirror"
    init = run(prm, "init", cwd=work)
    assert init.returncode == 0, init.stdout + init.stderr
    assert (work / "prm-mirror.toml").read_text() == (ROOT / "config" / "example.toml").read_text()
    demo = run(prm, "demo", "--size", "tiny", cwd=work)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "Traceback" not in demo.stdout + demo.stderr
    assert (work / "prm-mirror-demo.db").exists()
