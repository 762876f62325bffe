"""What the partner is told about each of its writes: queued, in the CRM, refused (with the
CRM's message) or in conflict, from the outbox entries ``PartnerView.writes`` returns (each
with the open conflict it is parked in, if any: the partner's own writes only).
"""

from __future__ import annotations

from typing import Any

from mirror import PartnerView

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
    view: PartnerView, record_id: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """The partner's latest writes (of one record, when given), each with ``state``,
    ``label`` and ``message`` (the CRM's message when it refused)."""
    shown = []
    for entry in view.writes(limit=limit, record_id=record_id):
        state = state_of(entry, entry["conflict_id"] is not None)
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
