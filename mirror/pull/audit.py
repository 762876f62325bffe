"""The self-audit: compare the CRM with the mirror, heal what differs, report what it healed.

Per object: every CRM id is compared with the mirror's live ids in both directions (records
the mirror lacks are fetched and applied, records the CRM no longer has are marked deleted),
then a random sample of mirrored records is fetched again and compared by content hash
(records that drifted are re-applied). Healing goes through the normal page path, so the
access table, the change feed and the conflict handling see it like any pull.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import delete, func, select

from mirror.pull.pages import PageContext, apply_page
from mirror.pull.sync import Puller
from mirror.store.database import MirrorTable
from mirror.store.records import BadValue
from mirror.store.tables import mirror_sweep
from mirror.types import Checkpoint, Page, Record

log = logging.getLogger("prm_mirror.audit")
FETCH_CHUNK = 200


@dataclass(frozen=True)
class AuditReport:
    """What the audit of one object found and healed."""

    source: str
    object: str
    crm_records: int
    missing_healed: int
    deleted_healed: int
    sampled: int
    drift_healed: int

    @property
    def healed(self) -> int:
        """Every record the audit had to repair."""
        return self.missing_healed + self.deleted_healed + self.drift_healed


def audit_object(puller: Puller, mirrored: MirrorTable, sample: int = 200) -> AuditReport:
    """Audit one object (see the module docstring)."""
    spec, table = mirrored.spec, mirrored.table
    store = puller.store
    deleted = puller.sweep(mirrored, keep_staged=True)
    scope = (mirror_sweep.c.source == spec.source, mirror_sweep.c.object == spec.name)
    key = table.c[spec.key]
    live = select(key).where(table.c._deleted.is_(False))
    with store.engine.connect() as conn:
        crm_count = conn.execute(select(func.count()).where(*scope)).scalar_one()
        missing = list(
            conn.execute(
                select(mirror_sweep.c.record_id).where(
                    *scope, mirror_sweep.c.record_id.not_in(live)
                )
            ).scalars()
        )
        sampled = list(
            conn.execute(
                select(key, table.c._hash)
                .where(table.c._deleted.is_(False), table.c._pending.is_(False))
                .order_by(func.random())
                .limit(sample)
            ).all()
        )
    with store.transaction() as conn:
        conn.execute(delete(mirror_sweep).where(*scope))
    healed_missing = _apply(puller, mirrored, _fetch(puller, mirrored, missing))
    fetched = _fetch(puller, mirrored, [row[0] for row in sampled])
    expected = {row[0]: row[1] for row in sampled}
    drifted = [r for r in fetched if _hash(mirrored, r) != expected.get(r[spec.key])]
    healed_drift = _apply(puller, mirrored, drifted)
    report = AuditReport(
        spec.source, spec.name, int(crm_count), healed_missing, deleted, len(sampled), healed_drift
    )
    log.info("audit of %s.%s: %s", spec.source, spec.name, report)
    return report


def _fetch(puller: Puller, mirrored: MirrorTable, ids: list[str]) -> list[Record]:
    records: list[Record] = []
    for start in range(0, len(ids), FETCH_CHUNK):
        records += puller.adapter.fetch(mirrored.spec, ids[start : start + FETCH_CHUNK])
    return [r for r in records if not r.get("IsDeleted")]


def _hash(mirrored: MirrorTable, record: Record) -> str | None:
    try:
        return mirrored.checker.content_hash(mirrored.checker.clean(record))
    except BadValue:
        return None


def _apply(puller: Puller, mirrored: MirrorTable, records: list[Record]) -> int:
    if not records:
        return 0
    spec = mirrored.spec
    checkpoint = puller.store.load_checkpoint(spec.source, spec.name) or Checkpoint()
    ctx = PageContext(None, log_inserts=True, hooks=puller.hooks)
    if puller.policy_of is not None:
        ctx = PageContext(None, log_inserts=True, hooks=puller.hooks, policy_of=puller.policy_of)
    with puller.store.transaction() as conn:
        outcome = apply_page(puller.store, conn, mirrored, Page(records, checkpoint), ctx)
    return outcome.inserted + outcome.updated
