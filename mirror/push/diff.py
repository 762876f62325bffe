"""Pure functions over records: field-level differences and the three-way merge.

Plain values are compared with ``==`` (cheap, and the hot path: most records in a page are
either unchanged, recognised earlier by their content hash, or differ in a few scalars);
``deepdiff`` is used only for nested values, where ``==`` says nothing about what changed.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
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
        if before == after:  # equal values never differ, whichever comparison _differs picks
            continue
        if _differs(before, after):
            changes[name] = (before, after)
    return changes


def differs(before: Any, after: Any) -> bool:
    """Whether two values of one field differ as the merge compares them (nested values by
    content, floats within a relative tolerance)."""
    return before != after and _differs(before, after)


def _differs(before: Any, after: Any) -> bool:
    if isinstance(before, dict | list) or isinstance(after, dict | list):
        return bool(DeepDiff(before, after, ignore_order=False))
    if isinstance(before, float) and isinstance(after, float):
        return not (before == after or abs(before - after) <= 1e-9 * max(abs(before), abs(after)))
    return bool(before != after)


class Policy(enum.StrEnum):
    """How a conflict (the same field changed on both sides) is resolved."""

    CRM_WINS = "crm_wins"
    PORTAL_WINS = "portal_wins"
    LATEST_WINS = "latest_wins"
    MANUAL = "manual"


@dataclass(frozen=True)
class PendingEdit:
    """One field's open portal edit: the CRM value it was made against, the portal's value,
    when it was made, (once pushed) the CRM version our write produced, and whether the CRM
    record it meets was read after that write had landed (``read_after_write``)."""

    base: Any
    value: Any
    edited_at: datetime
    pushed_version: datetime | None = None
    read_after_write: bool = False


class Outcome(enum.StrEnum):
    """What a merge decided for one field."""

    CRM = "crm"
    PORTAL = "portal"
    AGREED = "agreed"
    CONFLICT_CRM = "conflict_crm"
    CONFLICT_PORTAL = "conflict_portal"
    PARKED = "parked"


@dataclass(frozen=True)
class FieldMerge:
    """The merged value of one field and whether the portal edit still has to reach the CRM."""

    value: Any
    outcome: Outcome
    still_pending: bool

    @property
    def conflict(self) -> bool:
        """Whether both sides had changed the field."""
        return self.outcome in (Outcome.CONFLICT_CRM, Outcome.CONFLICT_PORTAL, Outcome.PARKED)


def merge_field(
    edit: PendingEdit,
    crm_value: Any,
    crm_version: datetime | None,
    crm_changed_at: datetime | None,
    policy: Policy,
) -> FieldMerge:
    """Three-way merge of one field: ``edit.base`` (common ancestor), ``edit.value`` (portal),
    ``crm_value`` (the CRM now, at ``crm_version``).

    An edit already pushed waits for its echo: the CRM showing the portal's value confirms it.
    Another value is a change made in the CRM after our write when its version is later than
    the write's (``pushed_version``, exact or an upper bound such as the write's response
    time), or when the record was read after the write had landed. Otherwise the read cannot
    tell: at the CRM's timestamp resolution a read taken before our write and a CRM edit made
    in the same second as it look alike. The portal's value then stays (no flip-flop) and the
    edit stays open, unconfirmed, until a read made after the write decides it
    (``mirror.push.echoes``).
    """
    if edit.pushed_version is not None:
        if not _differs(crm_value, edit.value):
            return FieldMerge(crm_value, Outcome.AGREED, False)
        if edit.read_after_write:
            return FieldMerge(crm_value, Outcome.CRM, False)
        if crm_version is not None and crm_version > edit.pushed_version:
            return FieldMerge(crm_value, Outcome.CRM, False)
        return FieldMerge(edit.value, Outcome.PORTAL, True)
    if not _differs(crm_value, edit.value):
        return FieldMerge(crm_value, Outcome.AGREED, False)
    if not _differs(crm_value, edit.base):
        return FieldMerge(edit.value, Outcome.PORTAL, True)
    if policy is Policy.LATEST_WINS:
        crm_later = crm_changed_at is not None and crm_changed_at > edit.edited_at
        policy = Policy.CRM_WINS if crm_later else Policy.PORTAL_WINS
    if policy is Policy.CRM_WINS:
        return FieldMerge(crm_value, Outcome.CONFLICT_CRM, False)
    if policy is Policy.PORTAL_WINS:
        return FieldMerge(edit.value, Outcome.CONFLICT_PORTAL, True)
    return FieldMerge(crm_value, Outcome.PARKED, False)


def merge_record(
    crm_record: Mapping[str, Any],
    edits: Mapping[str, PendingEdit],
    *,
    crm_version: datetime | None,
    crm_changed_at: datetime | None,
    policy_of: Callable[[str], Policy],
) -> tuple[dict[str, Any], dict[str, FieldMerge]]:
    """Merge an incoming CRM record with the open portal edits of the same record.

    Fields without an edit take the CRM's value; edited fields go through ``merge_field``.
    Returns the values the mirror row should hold and the per-field decisions.
    """
    values = dict(crm_record)
    merges: dict[str, FieldMerge] = {}
    for name in sorted(edits):
        if name not in crm_record:
            continue
        merged = merge_field(
            edits[name], crm_record[name], crm_version, crm_changed_at, policy_of(name)
        )
        merges[name] = merged
        values[name] = merged.value
    return values, merges


def remaining_edit(edit: PendingEdit, merged: FieldMerge, crm_value: Any) -> PendingEdit | None:
    """The edit still to push after a merge (rebased onto the CRM's value), or ``None``."""
    if not merged.still_pending:
        return None
    if edit.pushed_version is not None:
        return edit
    return PendingEdit(crm_value, edit.value, edit.edited_at, None)
