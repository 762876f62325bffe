"""The change stream's tables (``mirror.stream``): the durable inbox of records the CRM said
changed, each source's stream position and state, and the incremental polls a gap asked for.

They live on the engine's metadata, so the store creates them with its other tables.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, Float, Index, Integer, String, Table, Text

from mirror.store.tables import UtcDateTime, engine_metadata

# one row per record the stream told of and the mirror has not applied yet: a second event of
# the same record replaces the first (a new ``token``), so duplicates collapse, and the applier
# deletes only the rows whose token it read (an event that came in meanwhile stays)
mirror_stream_inbox = Table(
    "mirror_stream_inbox",
    engine_metadata,
    Column("source", String(64), primary_key=True),
    Column("object", String(128), primary_key=True),
    Column("record_id", String(64), primary_key=True),
    Column("deleted", Boolean, nullable=False),
    Column("merged_into", String(64)),
    Column("committed_at", UtcDateTime),
    Column("received_at", UtcDateTime, nullable=False),
    Column("token", String(32), nullable=False),
    Index("ix_mirror_stream_inbox_received", "source", "object", "received_at"),
)

# where each source's stream stands: its replay position (saved with the events it follows),
# its state, when it last told of a change, and its counters
mirror_stream_positions = Table(
    "mirror_stream_positions",
    engine_metadata,
    Column("source", String(64), primary_key=True),
    Column("channel", String(128), primary_key=True),
    Column("position", Text),
    Column("state", String(16), nullable=False),
    Column("detail", Text),
    Column("last_event_at", UtcDateTime),
    Column("last_received_at", UtcDateTime),
    Column("last_applied_at", UtcDateTime),
    Column("lag_seconds", Float),
    Column("received", Integer, nullable=False, default=0),
    Column("applied", Integer, nullable=False, default=0),
    Column("gaps", Integer, nullable=False, default=0),
    Column("last_gap_reason", Text),
    Column("last_gap_at", UtcDateTime),
    Column("updated_at", UtcDateTime, nullable=False),
)

# an incremental poll a gap asked for, until a sync of the object that began after it ends
mirror_stream_polls = Table(
    "mirror_stream_polls",
    engine_metadata,
    Column("source", String(64), primary_key=True),
    Column("object", String(128), primary_key=True),
    Column("reason", Text, nullable=False),
    Column("requested_at", UtcDateTime, nullable=False),
)
