"""The change-event helpers of the Salesforce stream without a server: channel names, positions,
the header bitmaps and the header's mapping to the engine's events and gaps."""

from __future__ import annotations

from datetime import UTC, datetime

from adapters.salesforce.pubsub import Session, tenant_of
from adapters.salesforce.stream_events import (
    bitmap_fields,
    decode_position,
    encode_position,
    stream_item,
    topic_of,
)
from mirror.types import StreamEvent, StreamGap

FIELDS = [
    {"name": "ChangeEventHeader", "type": "record"},
    {"name": "Name", "type": ["null", "string"]},
    {
        "name": "BillingAddress",
        "type": [
            "null",
            {
                "type": "record",
                "name": "Address",
                "fields": [
                    {"name": "Street", "type": ["null", "string"]},
                    {"name": "City", "type": ["null", "string"]},
                ],
            },
        ],
    },
    {"name": "Industry", "type": ["null", "string"]},
]


def header(kind: str, ids: list[str], changed: list[str] | None = None) -> dict[str, object]:
    return {"ChangeEventHeader": {
        "changeType": kind, "recordIds": ids, "commitTimestamp": 1_700_000_000_000,
        "changedFields": changed or [],
    }}  # fmt: skip


def test_channels_follow_salesforce_naming() -> None:
    assert topic_of("Account") == "/data/AccountChangeEvent"
    assert topic_of("Thing__c") == "/data/Thing__ChangeEvent"


def test_positions_round_trip_and_unknown_ones_start_from_now() -> None:
    replays = {"/data/ChangeEvents": (1234).to_bytes(8, "big")}
    assert decode_position(encode_position(replays)) == replays
    for foreign in (None, "", "not json", "[1, 2]", '{"/data/ChangeEvents": "zz"}'):
        assert decode_position(foreign) == {}


def test_bitmaps_name_top_level_and_compound_fields() -> None:
    # bit 1 = Name, bit 3 = Industry; "2-0x2": the second part (City) of field 2
    assert bitmap_fields(["0xA", "2-0x2"], FIELDS) == ["Name", "Industry", "BillingAddress.City"]
    assert bitmap_fields([], FIELDS) == []
    assert bitmap_fields(["Name"], FIELDS) == ["Name"]  # CometD sends names as they are


def test_headers_map_to_events_and_gaps() -> None:
    update = stream_item("Account", header("UPDATE", ["001A"], ["0x8"]), FIELDS, "p1")
    assert update == StreamEvent(
        "Account", changed=("001A",), position="p1", changed_fields=("Industry",),
        committed_at=datetime.fromtimestamp(1_700_000_000, UTC),
    )  # fmt: skip
    delete = stream_item("Account", header("DELETE", ["001A", "001B"]), FIELDS, "p2")
    assert isinstance(delete, StreamEvent) and delete.deleted == ("001A", "001B")
    assert delete.changed == ()
    for kind in ("CREATE", "UNDELETE"):
        item = stream_item("Account", header(kind, ["001A"]), FIELDS, "p")
        assert isinstance(item, StreamEvent) and item.changed == ("001A",)
    overflow = stream_item("Account", header("GAP_OVERFLOW", []), FIELDS, "p3")
    assert overflow == StreamGap(
        "Account", "GAP_OVERFLOW event for an unknown number of records", "p3"
    )
    unknown = stream_item("Account", header("SNAPSHOT", ["001A"]), FIELDS, "p4")
    assert isinstance(unknown, StreamGap) and unknown.object == "Account"


def test_the_tenant_comes_from_the_session_and_the_token_stays_out_of_repr() -> None:
    token = "00DKj0000000001!AQsecretpart"
    assert tenant_of(token, None) == "00DKj0000000001"
    assert tenant_of(token, "00DKj0000000001EAA") == "00DKj0000000001EAA"
    assert tenant_of("opaque-token", None) == ""
    session = Session(token, "https://example.my.salesforce.com", "00DKj0000000001")
    assert "secret" not in repr(session) and ("accesstoken", token) in session.metadata()
