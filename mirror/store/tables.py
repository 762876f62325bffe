"""Table definitions: the engine's own tables and one typed table per mirrored object.

Object tables are named ``<source>__<object>`` and carry the CRM's field names as columns plus
system columns: ``_modstamp`` (the record's change-cursor value), ``_deleted``, ``_synced_at``,
``_pending`` (a portal edit is waiting to be pushed) and ``_hash`` (a content hash that lets the
sync recognise unchanged records without comparing fields).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    Time,
    literal_column,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

from mirror.types import FieldSpec, FieldType, ObjectSpec

SYSTEM_COLUMNS = ("_modstamp", "_deleted", "_synced_at", "_pending", "_hash")


class UtcDateTime(TypeDecorator[dt.datetime]):
    """A timestamp stored as UTC and always read back as an aware UTC datetime."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        """Normalise to UTC (naive on SQLite, which keeps no zone)."""
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        """Attach UTC to what the database returns."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


COLUMN_TYPES: dict[FieldType, TypeEngine[Any]] = {
    FieldType.ID: String(),
    FieldType.REFERENCE: String(),
    FieldType.STRING: Text(),
    FieldType.TEXT: Text(),
    FieldType.BOOLEAN: Boolean(),
    FieldType.INTEGER: BigInteger(),
    FieldType.FLOAT: Float(precision=53),
    FieldType.DECIMAL: Numeric(),
    FieldType.DATE: Date(),
    FieldType.DATETIME: UtcDateTime(),
    FieldType.TIME: Time(),
    FieldType.JSON: JSON(),
}

engine_metadata = MetaData()

mirror_objects = Table(
    "mirror_objects",
    engine_metadata,
    Column("source", String(64), primary_key=True),
    Column("object", String(128), primary_key=True),
    Column("table_name", String(200), nullable=False),
    Column("spec", JSON, nullable=False),
    Column("removed_fields", JSON, nullable=False, default=list),
    Column("type_changes", JSON, nullable=False, default=dict),
    Column("updated_at", UtcDateTime, nullable=False),
)

mirror_checkpoints = Table(
    "mirror_checkpoints",
    engine_metadata,
    Column("source", String(64), primary_key=True),
    Column("object", String(128), primary_key=True),
    Column("phase", String(16), nullable=False),
    Column("cursor", String(64)),
    Column("ids_at_cursor", JSON, nullable=False),
    Column("state", JSON, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

mirror_runs = Table(
    "mirror_runs",
    engine_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", String(64), nullable=False),
    Column("object", String(128), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime),
    Column("pages", Integer, nullable=False, default=0),
    Column("inserted", Integer, nullable=False, default=0),
    Column("updated", Integer, nullable=False, default=0),
    Column("unchanged", Integer, nullable=False, default=0),
    Column("deleted", Integer, nullable=False, default=0),
    Column("rejected", Integer, nullable=False, default=0),
    Column("api_calls", Integer, nullable=False, default=0),
    Column("error", Text),
    # the process running it (``mirror.pull.runs``), and until when it is known to be alive
    Column("host", String(255)),
    Column("pid", Integer),
    Column("owner", String(255)),
    Column("alive_until", UtcDateTime),
    Index("ix_mirror_runs_object", "source", "object", "id"),
    Index("ix_mirror_runs_status", "status"),
)

mirror_changes = Table(
    "mirror_changes",
    engine_metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("source", String(64), nullable=False),
    Column("object", String(128), nullable=False),
    Column("record_id", String(64), nullable=False),
    Column("op", String(16), nullable=False),
    Column("origin", String(16), nullable=False),
    Column("author", String(128)),
    Column("fields", JSON),
    Column("at", UtcDateTime, nullable=False),
    Column("run_id", Integer),
    Column("partner_id", String(64)),
    # a membership event of one rep's slice (its user id); none: of the partner's whole slice
    Column("owner_id", String(64)),
    # a record's changes, and (partner, owner, seq) to find the membership event before or
    # after a change with one seek: the feed asks it for every change it serves
    Index(
        "ix_mirror_changes_record",
        "source",
        "object",
        "record_id",
        "partner_id",
        "owner_id",
        "seq",
    ),
    Index("ix_mirror_changes_partner", "partner_id", "seq"),
)

mirror_rejects = Table(
    "mirror_rejects",
    engine_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", String(64), nullable=False),
    Column("object", String(128), nullable=False),
    Column("record_id", String(64)),
    Column("reason", Text, nullable=False),
    Column("payload", JSON, nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("run_id", Integer),
    Index("ix_mirror_rejects_record", "source", "object", "record_id"),
)

mirror_idmap = Table(
    "mirror_idmap",
    engine_metadata,
    Column("source", String(64), primary_key=True),
    Column("object", String(128), primary_key=True),
    Column("old_id", String(64), primary_key=True),
    Column("new_id", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("at", UtcDateTime, nullable=False),
)


mirror_outbox = Table(
    "mirror_outbox",
    engine_metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("source", String(64), nullable=False),
    Column("object", String(128), nullable=False),
    Column("record_id", String(64), nullable=False),
    Column("op", String(16), nullable=False),
    Column("new_values", JSON, nullable=False),
    Column("old_values", JSON, nullable=False),
    Column("base_version", String(64)),
    Column("idempotency_key", String(64), nullable=False),
    Column("partner_id", String(64)),
    Column("author", String(128)),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UtcDateTime, nullable=False),
    Column("force", Boolean, nullable=False, default=False),
    Column("crm_id", String(64)),
    Column("pushed_version", String(64)),
    Column("confirmed", Boolean, nullable=False, default=False),
    Column("error_code", String(64)),
    Column("error_message", Text),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Index("ix_mirror_outbox_status", "status", "seq"),
    Index("ix_mirror_outbox_record", "source", "object", "record_id"),
    Index("ix_mirror_outbox_partner", "partner_id", "seq"),
)

mirror_conflicts = Table(
    "mirror_conflicts",
    engine_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", String(64), nullable=False),
    Column("object", String(128), nullable=False),
    Column("record_id", String(64), nullable=False),
    Column("field", String(128), nullable=False),
    Column("base", JSON),
    Column("portal", JSON),
    Column("crm", JSON),
    Column("outbox_seq", Integer),
    Column("policy", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("resolution", String(16)),
    Column("resolved_value", JSON),
    Column("detected_at", UtcDateTime, nullable=False),
    Column("resolved_at", UtcDateTime),
    Column("resolved_by", String(128)),
    Index("ix_mirror_conflicts_status", "status", "source", "object"),
)

mirror_access = Table(
    "mirror_access",
    engine_metadata,
    Column("source", String(64), primary_key=True),
    Column("object", String(128), primary_key=True),
    Column("record_id", String(64), primary_key=True),
    Column("partner_id", String(64), primary_key=True),
    Column("owner_id", String(64), primary_key=True),
    Column("path", String(200), primary_key=True),
    Column("via_object", String(128), primary_key=True),
    Column("via_id", String(64), primary_key=True),
    Index("ix_mirror_access_partner", "partner_id", "source", "object", "record_id"),
    # every column is part of the key: on SQLite a rowid table would store each grant twice
    # (the table and its key's index), and write two b-trees per grant instead of one
    sqlite_with_rowid=False,
)


def given_by_children(path: Any) -> Any:
    """The grants records give their parents (paths ``Child.Field <-``), as a condition on
    ``path`` written out literally: the same text as the index below, so the database can use
    that partial index for a query that states it."""
    return path.like(literal_column("'%<-'"))


# the grants a set of records gave their parents (the incremental upkeep's lookup by ``via``),
# read from this index alone: every column is in the key, so the index holds them all. Only
# grants given by children are in it, a fifth of the table: the grants records get from their
# parents are found by their own keys
Index(
    "ix_mirror_access_given",
    mirror_access.c.source,
    mirror_access.c.via_object,
    mirror_access.c.via_id,
    mirror_access.c.object,
    mirror_access.c.path,
    sqlite_where=given_by_children(mirror_access.c.path),
    postgresql_where=given_by_children(mirror_access.c.path),
    postgresql_include=["record_id", "partner_id", "owner_id"],
)

# objects whose first backfill ended while their grants wait to be derived: a sync of several
# objects derives them all once, at its end (or the next sync does, if this one was killed)
mirror_access_pending = Table(
    "mirror_access_pending",
    engine_metadata,
    Column("source", String(64), primary_key=True),
    Column("object", String(128), primary_key=True),
)

# how many records each partner's slice of an object holds (distinct records among its
# grants), kept with the grants: a slice's count reads one row, whatever the slice's size
mirror_slice_sizes = Table(
    "mirror_slice_sizes",
    engine_metadata,
    Column("source", String(64), primary_key=True),
    Column("partner_id", String(64), primary_key=True),
    Column("object", String(128), primary_key=True),
    Column("records", Integer, nullable=False),
    sqlite_with_rowid=False,
)

mirror_leases = Table(
    "mirror_leases",
    engine_metadata,
    Column("name", String(200), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("acquired_at", UtcDateTime, nullable=False),
)

mirror_ranges = Table(
    "mirror_ranges",
    engine_metadata,
    Column("source", String(64), primary_key=True),
    Column("object", String(128), primary_key=True),
    Column("range_no", Integer, primary_key=True),
    Column("lower", String(64)),
    Column("upper", String(64)),
    Column("phase", String(16), nullable=False),
    Column("cursor", String(64)),
    Column("ids_at_cursor", JSON, nullable=False),
    Column("state", JSON, nullable=False),
    Column("version", Integer, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

# every deal registration a partner attempted, accepted or refused: how repeated probing of one
# customer is limited and shown to the channel manager (mirror.portal.registration_probes)
mirror_registration_attempts = Table(
    "mirror_registration_attempts",
    engine_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", String(64), nullable=False),
    Column("partner_id", String(64), nullable=False),
    Column("user_id", String(128)),
    Column("company", String(255), nullable=False),
    Column("domain", String(255)),
    Column("at", UtcDateTime, nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("registration_id", String(64)),
    Column("verdict", String(32)),
    Index("ix_mirror_registration_attempts_partner", "source", "partner_id", "at"),
)

mirror_sweep = Table(
    "mirror_sweep",
    engine_metadata,
    Column("source", String(64), primary_key=True),
    Column("object", String(128), primary_key=True),
    Column("record_id", String(64), primary_key=True),
)


def column_for(field: FieldSpec, key: str) -> Column[Any]:
    """The mirror column of one CRM field (the key field is the primary key)."""
    return Column(field.name, COLUMN_TYPES[field.type], primary_key=field.name == key)


def system_columns() -> list[Column[Any]]:
    """Fresh copies of the system columns every object table carries."""
    return [
        Column("_modstamp", UtcDateTime),
        Column("_deleted", Boolean, nullable=False, default=False),
        Column("_synced_at", UtcDateTime, nullable=False),
        Column("_pending", Boolean, nullable=False, default=False),
        Column("_hash", String(32)),
    ]


def object_table(
    spec: ObjectSpec,
    metadata: MetaData,
    extra: tuple[FieldSpec, ...] = (),
    indexed: tuple[str, ...] = (),
) -> Table:
    """The typed table of ``spec``, plus ``extra`` fields kept after the CRM dropped them."""
    if spec.table_name in metadata.tables:
        metadata.remove(metadata.tables[spec.table_name])
    columns = [column_for(f, spec.key) for f in (*spec.fields, *extra)]
    table = Table(spec.table_name, metadata, *columns, *system_columns())
    Index(f"ix_{spec.table_name}__modstamp", table.c._modstamp)
    partner = spec.partner_field
    if partner and not spec.has_field(partner):
        partner = None
    for name in indexed:
        # the (partner, key) index below also serves lookups by partner alone
        if name in table.c and name not in (spec.key, partner):
            # with the deleted flag and the key, a parent's live children (a partner's
            # contacts through its accounts, a deal's line items) are read off the index alone
            Index(
                f"ix_{spec.table_name}__{name.lower()}",
                table.c[name],
                table.c._deleted,
                table.c[spec.key],
            )
    if partner:
        Index(f"ix_{spec.table_name}__partner", table.c[partner], table.c[spec.key])
    return table
