"""Whether the fields a write is about to set still hold the values the portal edited.

A CRM stamps its versions in whole seconds (Salesforce ``SystemModstamp``, Dataverse
``modifiedon``) or milliseconds (HubSpot), so a change made in the same second as the version a
portal edit was made against, after a sync had read that version, leaves the version as it
was: a version check lets the edit overwrite it. The adapters therefore read the fields a
write sets in the same request that reads the version, and compare them with the edit's base
(``Write.expected_values``): another value is a change the portal never saw, and the write is
refused as if the version had moved. Only the written fields count, so a change of another
field in that second never holds an edit back (the engine merges per field).

Values are compared as the engine stores them: each side converted to its field's type (so
``10`` and ``"10.0"``, or a datetime with and without milliseconds, are one value), an empty
string taken for no value, and floats with the same tolerance as the three-way merge.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mirror.push.diff import field_changes
from mirror.store.records import field_value
from mirror.types import ObjectSpec


def changed_fields(
    spec: ObjectSpec, expected: Mapping[str, Any] | None, current: Mapping[str, Any]
) -> list[str]:
    """The fields of ``expected`` (an edit's base) whose value in ``current`` (the record as
    the adapter's check read found it, in Python values) is another one, in name order.
    Fields ``current`` does not hold are not compared."""
    if not expected:
        return []
    names = sorted(name for name in expected if name in current)
    before = {name: normalized(spec, name, expected[name]) for name in names}
    now = {name: normalized(spec, name, current[name]) for name in names}
    return sorted(field_changes(before, now, names))


def normalized(spec: ObjectSpec, name: str, value: Any) -> Any:
    """``value`` converted to the type of field ``name``; ``None`` for no value or ``""``."""
    return field_value(spec, name, value, lenient=True)
