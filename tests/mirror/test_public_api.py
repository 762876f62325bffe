"""The public API: what ``mirror`` exports is exactly this list, every name imports from the top
level, and every class and function among them says what it is."""

from __future__ import annotations

import importlib
import inspect

import pytest

import mirror

PUBLIC = [
    "MAX_PAGE",
    "AccessDenied",
    "AuthError",
    "Change",
    "ChangeOrigin",
    "ConfigError",
    "ConflictError",
    "CrmError",
    "Daemon",
    "FieldType",
    "Mirror",
    "MirrorConfig",
    "MirrorError",
    "ObjectSpec",
    "ObjectStatus",
    "Page",
    "PageOutcome",
    "PartnerUser",
    "PartnerView",
    "PushResult",
    "QueryError",
    "QuotaExceeded",
    "RecordError",
    "RunResult",
    "TransientError",
    "ValidationError",
    "build_adapter",
    "check_config",
    "configure_logging",
    "cron_problems",
    "data_dir",
    "load_config",
    "parse_config",
    "redacted",
    "register_secrets",
    "secret_values",
]
# the public values that are neither classes nor functions: the package docstring names them
CONSTANTS = {"MAX_PAGE"}


def test_the_public_names_are_exactly_these() -> None:
    assert mirror.__all__ == PUBLIC


@pytest.mark.parametrize("name", PUBLIC)
def test_each_public_name_imports_from_the_top_level(name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from mirror import {name}", namespace)
    assert namespace[name] is getattr(importlib.import_module("mirror"), name)


@pytest.mark.parametrize("name", sorted(set(PUBLIC) - CONSTANTS))
def test_each_public_class_and_function_has_a_docstring(name: str) -> None:
    value = getattr(mirror, name)
    assert inspect.isclass(value) or inspect.isfunction(value)
    own = value.__doc__
    assert own and own.strip() and own is not type.__doc__, name


@pytest.mark.parametrize("name", sorted(CONSTANTS))
def test_each_public_constant_is_named_in_the_package_docstring(name: str) -> None:
    assert f"``{name}``" in (mirror.__doc__ or "")


def test_errors_are_rooted_at_mirror_error() -> None:
    errors = [getattr(mirror, n) for n in PUBLIC if n.endswith(("Error", "Denied", "Exceeded"))]
    assert errors and all(issubclass(e, mirror.MirrorError) for e in errors)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError):
        mirror.NoSuchName  # noqa: B018
