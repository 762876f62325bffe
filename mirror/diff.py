"""Pure functions over records: field-level differences.

Plain values are compared with ``==`` (cheap, and the hot path: most records in a page are
either unchanged, recognised earlier by their content hash, or differ in a few scalars);
``deepdiff`` is used only for nested values, where ``==`` says nothing about what changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from deepdiff import DeepDiff

FieldChanges = dict[str, tuple[Any, Any]]


def field_changes(
    old: Mapping[str, Any], new: Mapping[str, Any], fields: Iterable[str]
) -> FieldChanges:
    """The fields that differ between ``old`` and ``new``, as ``{field: (before, after)}``."""
    changes: FieldChanges = {}
    for name in fields:
        before, after = old.get(name), new.get(name)
        if _differs(before, after):
            changes[name] = (before, after)
    return changes


def _differs(before: Any, after: Any) -> bool:
    if isinstance(before, dict | list) or isinstance(after, dict | list):
        return bool(DeepDiff(before, after, ignore_order=False))
    if isinstance(before, float) and isinstance(after, float):
        return not (before == after or abs(before - after) <= 1e-9 * max(abs(before), abs(after)))
    return bool(before != after)
