"""What the partner is told about each of its writes: queued, in the CRM, refused (with the
CRM's message) or in conflict, from the outbox entries ``PartnerView.writes`` returns.

A write parked in a conflict is known to the engine's conflict list, not to the partner's
outbox rows; the open conflicts are read from the ``Mirror`` and matched ONLY against the
sequence numbers of the partner's own writes, so nothing of another partner's is read out.
"""

from __future__ import annotations

from typing import Any

from mirror import Mirror, PartnerView

LABELS = {
    "queued": "queued",
    "crm": "in the CRM",
    "refused": "refused by the CRM",
    "conflict": "in conflict",
    "superseded": "replaced",
}


def state_of(entry: dict[str, Any], in_conflict: bool) -> str:
    """The partner-facing state of one outbox entry."""
    if in_conflict:
        return "conflict"
    status = entry.get("status")
    if status == "done":
        return "crm"
    if status == "failed":
        return "refused"
    if status == "superseded":
        return "superseded"
    return "queued"


def partner_writes(
    mirror: Mirror, view: PartnerView, record_id: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """The partner's latest writes (of one record, when given), each with ``state``,
    ``label`` and ``message`` (the CRM's message when it refused)."""
    entries = view.writes(limit=limit if record_id is None else 500)
    if record_id is not None:
        entries = [e for e in entries if record_id in (e["record_id"], e.get("crm_id"))][:limit]
    conflicted = _conflicted(mirror, {e["seq"] for e in entries})
    shown = []
    for entry in entries:
        state = state_of(entry, entry["seq"] in conflicted)
        message = entry.get("error_message") if state in ("refused", "superseded") else None
        if state == "conflict":
            message = "changed in the CRM too; your channel manager decides which value stays"
        shown.append(
            {
                "seq": entry["seq"],
                "object": entry["object"],
                "record_id": entry.get("crm_id") or entry["record_id"],
                "op": entry["op"],
                "state": state,
                "label": LABELS[state],
                "message": message,
                "at": entry["created_at"],
            }
        )
    return shown


def _conflicted(mirror: Mirror, seqs: set[int]) -> set[int]:
    """Which of ``seqs`` (the partner's own outbox entries) are parked in an open conflict."""
    if not seqs:
        return set()
    return {c["outbox_seq"] for c in mirror.conflicts("open") if c["outbox_seq"] in seqs}
