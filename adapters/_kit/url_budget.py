"""How long a request is on the wire, and packing ids and fields into requests that fit.

Every CRM limits the URL of a request (Salesforce 16,384 bytes, Dataverse 32,768 characters,
HubSpot about 16 KB); a query that puts every field and many ids into its URL outgrows that on
a wide object. The adapters measure each request by its percent-encoded length, exactly as the
HTTP library will send it, send it another way when it does not fit (a POST carrying it in the
body), and plan fetches of many ids so that every statement stays within the limit of the way
it is sent: ids are split over as many requests as needed, and when even one id with every
field is too long, the fields are split too (each part keeps the key and the version field, so
the parts are joined per record and a record that changed between parts is read again).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import requests

from mirror.errors import ConfigError, TransientError

T = TypeVar("T")
Row = dict[str, Any]
MAX_REREADS = 3


def prepared_url(url: str, params: Mapping[str, Any] | Sequence[tuple[str, Any]] | None) -> str:
    """``url`` with ``params`` encoded the way ``requests`` sends them (lists repeated)."""
    return str(requests.Request("GET", url, params=params).prepare().url)


def url_bytes(url: str) -> int:
    """The length of a URL on the wire, in bytes."""
    return len(url.encode("utf-8"))


class TooLong(ConfigError):
    """One item alone does not fit the request limit: the request cannot be split further."""


def pack(
    items: Sequence[T],
    cost: Callable[[T], int],
    room: int,
    max_items: int | None = None,
) -> list[list[T]]:
    """Consecutive groups of ``items`` whose costs add up to at most ``room`` (and that hold at
    most ``max_items``); ``TooLong`` when one item alone costs more than ``room``."""
    groups: list[list[T]] = []
    group: list[T] = []
    used = 0
    for item in items:
        size = cost(item)
        if size > room:
            raise TooLong(f"one item needs {size} bytes of a request; only {room} are left")
        full = max_items is not None and len(group) >= max_items
        if group and (used + size > room or full):
            groups.append(group)
            group, used = [], 0
        group.append(item)
        used += size
    if group:
        groups.append(group)
    return groups


@dataclass(frozen=True)
class FetchShape:
    """How one CRM's fetch-by-ids statement grows.

    ``limit``: the most the statement may measure; ``fixed``: what it measures with no field
    and no id; ``field_cost`` and ``id_cost``: what each field and each id adds (separators
    included); ``max_ids``: the most ids one request may hold.
    """

    limit: int
    fixed: int
    field_cost: Callable[[str], int]
    id_cost: Callable[[str], int]
    max_ids: int | None = None

    def plan(
        self, ids: Sequence[str], fields: Sequence[str], pinned: Sequence[str]
    ) -> list[tuple[list[str], list[str]]]:
        """``(ids, fields)`` per request, covering every id with every field. ``pinned``
        fields (the key, the version) go into every request. Raises ``TooLong`` when the
        pinned fields and one id alone are over the limit."""
        if not ids:
            return []
        widest = max(self.id_cost(i) for i in ids)
        pinned = list(dict.fromkeys(pinned))
        rest = [f for f in dict.fromkeys(fields) if f not in pinned]
        base = self.fixed + sum(self.field_cost(f) for f in pinned)
        if base + sum(self.field_cost(f) for f in rest) + widest <= self.limit:
            field_groups = [pinned + rest]
        else:
            room = self.limit - base - widest
            field_groups = [pinned + group for group in pack(rest, self.field_cost, room)]
        plan: list[tuple[list[str], list[str]]] = []
        for group in field_groups:
            room = self.limit - self.fixed - sum(self.field_cost(f) for f in group)
            plan += [(chunk, group) for chunk in pack(ids, self.id_cost, room, self.max_ids)]
        return plan


def fetch_joined(
    shape: FetchShape,
    ids: Sequence[str],
    fields: Sequence[str],
    *,
    key: str,
    pinned: Sequence[str],
    version: str | None,
    run: Callable[[list[str], list[str]], Iterable[Row]],
    normalize: Callable[[Any], str] = str,
) -> list[Row]:
    """Every row of ``ids`` with every field, read through ``run(ids, fields)`` as
    ``shape`` plans it, the ``pinned`` fields in every request. Rows read in several parts
    are joined by ``key``; a row missing from a part is left out (it went away meanwhile), and
    a row whose ``version`` value differs between parts changed between them and is read
    again (``TransientError`` after three tries)."""
    wanted = list(dict.fromkeys(ids))
    rows: dict[str, Row] = {}
    for _attempt in range(MAX_REREADS):
        plan = shape.plan(wanted, fields, pinned)
        parts = len({tuple(group) for _, group in plan})
        found = _join(plan, run, key, version, normalize)
        for record_id, (row, seen, torn) in found.items():
            if not torn and seen == parts:
                rows[record_id] = row
        wanted = [i for i, (_, seen, torn) in found.items() if torn and seen == parts]
        if not wanted:
            return [rows[normalize(i)] for i in dict.fromkeys(ids) if normalize(i) in rows]
    raise TransientError(
        f"{len(wanted)} records kept changing while their fields were read in parts; "
        "try again later"
    )


def _join(
    plan: list[tuple[list[str], list[str]]],
    run: Callable[[list[str], list[str]], Iterable[Row]],
    key: str,
    version: str | None,
    normalize: Callable[[Any], str],
) -> dict[str, tuple[Row, int, bool]]:
    """Per record id: the joined row, how many field parts held it, whether versions differ."""
    found: dict[str, tuple[Row, int, bool]] = {}
    for chunk, group in plan:
        for row in run(chunk, group):
            record_id = normalize(row.get(key))
            joined, seen, torn = found.get(record_id, ({}, 0, False))
            if version is not None and joined and joined.get(version) != row.get(version):
                torn = True
            found[record_id] = ({**joined, **row}, seen + 1, torn)
    return found
