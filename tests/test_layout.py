"""The layout holds: who may import whom, the engine and the CLI never name a CRM, every folder
says what lives in it, and no module grows past the size one reader can hold."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("mirror", "adapters", "sandboxes", "prm_demo", "prm_portal", "bench")
CRM_NAMES = ("salesforce", "hubspot", "dynamics", "dataverse")
MAX_LINES = 400

# what each top-level package may import from the project's own packages
ALLOWED = {
    "mirror": {"mirror"},
    "adapters": {"mirror", "adapters"},
    "sandboxes": {"sandboxes"},
    "prm_demo": {"mirror", "sandboxes", "prm_demo"},
    "prm_portal": {"mirror", "sandboxes", "prm_portal"},
    "bench": {"mirror", "adapters", "sandboxes", "bench"},
    "cli": {"mirror", "cli"},
}
PROJECT = {"mirror", "adapters", "sandboxes", "prm_demo", "prm_portal", "bench", "cli", "tests"}
# the engine modules an adapter builds on: the port, its value types, errors and the cursor
ADAPTER_FACING = {"mirror", "mirror.adapter", "mirror.types", "mirror.errors", "mirror.cursor"}


def modules(top: str) -> Iterator[Path]:
    """Every Python file of one top-level package (``cli`` is the CLI's module or package)."""
    if top == "cli" and (ROOT / "cli.py").exists():
        yield ROOT / "cli.py"
        return
    yield from sorted((ROOT / top).rglob("*.py"))


def imported(path: Path) -> Iterator[str]:
    """The absolute module names one file imports."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module


def where(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("top", sorted(ALLOWED))
def test_each_package_imports_only_what_its_layer_may(top: str) -> None:
    offenders = [
        f"{where(path)}: {name}"
        for path in modules(top)
        for name in imported(path)
        if name.split(".")[0] in PROJECT and name.split(".")[0] not in ALLOWED[top]
    ]
    assert offenders == []


def test_adapters_build_only_on_the_engine_port() -> None:
    offenders = [
        f"{where(path)}: {name}"
        for path in modules("adapters")
        for name in imported(path)
        if name.split(".")[0] == "mirror" and name not in ADAPTER_FACING
    ]
    assert offenders == []


def test_the_demo_and_the_cli_use_only_the_public_api() -> None:
    offenders = [
        f"{where(path)}: {name}"
        for top in ("prm_demo", "prm_portal", "cli")
        for path in modules(top)
        for name in imported(path)
        if name.startswith("mirror.")
    ]
    assert offenders == []


def code_strings(path: Path) -> Iterator[tuple[int, str]]:
    """String constants and names of a module, docstrings left out (prose may name a CRM)."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) not in docstrings:
                yield node.lineno, node.value
        elif isinstance(node, ast.Name):
            yield node.lineno, node.id
        elif isinstance(node, ast.Attribute):
            yield node.lineno, node.attr


@pytest.mark.parametrize("top", ["mirror", "cli"])
def test_the_engine_and_the_cli_never_name_a_crm(top: str) -> None:
    offenders = [
        f"{where(path)}:{line}: {text[:60]!r}"
        for path in modules(top)
        for line, text in code_strings(path)
        if any(crm in text.lower() for crm in CRM_NAMES)
    ]
    assert offenders == []


def folders() -> Iterator[Path]:
    for top in PACKAGES:
        yield ROOT / top
        for folder in sorted((ROOT / top).rglob("*")):
            if folder.is_dir() and any(folder.glob("*.py")):
                yield folder


def test_every_folder_says_what_lives_in_it() -> None:
    silent = []
    for folder in folders():
        init = folder / "__init__.py"
        doc = ast.get_docstring(ast.parse(init.read_text())) if init.exists() else None
        if not doc or len(doc.split()) < 8:
            silent.append(where(folder))
    assert silent == []


def test_no_module_is_longer_than_one_reader_can_hold() -> None:
    tops = [*PACKAGES, "cli"]
    long = [
        f"{where(path)}: {n}"
        for top in tops
        for path in modules(top)
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    ]
    assert long == []
