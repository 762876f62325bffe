"""Id sets in SQL as one bound parameter.

``column IN (:a, :b, ...)`` costs a bound parameter per id: the statement is compiled and every
element processed anew for each batch, and SQLite limits how many there may be. Passing the
whole set as one value (a JSON array read by ``json_each`` on SQLite, an array compared with
``= ANY`` on PostgreSQL) keeps one cached statement for any number of ids, and both databases
still probe the column's index for each id.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Iterator
from typing import Any

from sqlalchemy import ColumnElement, String, any_, bindparam, func, literal_column, select
from sqlalchemy.dialects.postgresql import ARRAY

BATCH = 5000


def id_in(dialect: str, column: Any, ids: Collection[str]) -> ColumnElement[bool]:
    """``column`` is one of ``ids``, as a condition with a single bound parameter."""
    if dialect == "postgresql":
        return column == any_(bindparam(None, list(ids), type_=ARRAY(String)))
    members: Any = select(literal_column("value")).select_from(
        func.json_each(bindparam(None, json.dumps(list(ids)), type_=String))
    )
    return column.in_(members)


def batches(ids: Iterable[str], size: int = BATCH) -> Iterator[list[str]]:
    """``ids`` in lists of at most ``size``: bounds the memory of one statement's answer."""
    batch: list[str] = []
    for record_id in ids:
        batch.append(record_id)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
