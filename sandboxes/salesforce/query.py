"""SOQL query execution for the REST query/queryAll resources and Bulk query jobs.

A query result is a SNAPSHOT, as in Salesforce: the first call stores the ordered ids of the
whole result in ``sandbox_cursor``; every page (REST ``nextRecordsUrl`` or Bulk locator) then
reads its slice of ids by position and fetches the rows' current values. A record changed while
a client pages is therefore neither skipped nor repeated. Parsing and SQL generation belong to
``soql.py``; this module only rewrites the parsed query's field list (to fetch the ids it
needs) and renders rows as Salesforce does: ``attributes``, nested parent objects or ``null``.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sandboxes.salesforce.schema import SalesforceSchema
from sandboxes.salesforce.soql import compile_query, parse
from sandboxes.salesforce.soql_nodes import (
    Comparison,
    CompiledQuery,
    FieldPath,
    OutputColumn,
    Query,
    Value,
)
from sandboxes.salesforce.store import Store
from sandboxes.salesforce.values import to_wire

SNAPSHOT_CHUNK = 5_000
_ID = ("Id",)


def _field(path: tuple[str, ...]) -> FieldPath:
    return FieldPath(path, 1, 1)


@dataclass(frozen=True)
class QueryPlan:
    """A compiled query plus what rendering needs: visible columns and the ids behind them."""

    parsed: Query
    compiled: CompiledQuery
    extended: Query
    columns: tuple[OutputColumn, ...]
    id_index: dict[tuple[str, ...], int]
    query_all: bool

    @property
    def sobject(self) -> str:
        """The root sObject's canonical name."""
        return self.compiled.sobject

    @property
    def is_count(self) -> bool:
        """``SELECT COUNT() FROM ...``: only totalSize is answered."""
        return self.compiled.count_only

    @property
    def is_aggregate(self) -> bool:
        """``SELECT COUNT(field) FROM ...``: one AggregateResult row."""
        return self.parsed.count == "field"


def plan_query(soql: str, schema: SalesforceSchema, *, query_all: bool, now: datetime) -> QueryPlan:
    """Parse and compile ``soql``; raises ``SoqlError`` for a query Salesforce would refuse."""
    parsed = parse(soql)
    compiled = compile_query(parsed, schema, include_deleted=query_all, now=now)
    selected = {column.path for column in compiled.columns}
    relations = {
        column.path[:depth] for column in compiled.columns for depth in range(1, len(column.path))
    }
    wanted = [_ID, *sorted(relation + _ID for relation in relations)]
    hidden = tuple(_field(path) for path in wanted if path not in selected)
    extended = replace(parsed, fields=parsed.fields + hidden) if not parsed.count else parsed
    extended_compiled = (
        compile_query(extended, schema, include_deleted=True, now=now)
        if not parsed.count
        else compiled
    )
    id_index = {
        column.path: index
        for index, column in enumerate(extended_compiled.columns)
        if column.path[-1] == "Id"
    }
    return QueryPlan(parsed, compiled, extended, compiled.columns, id_index, query_all)


class Snapshots:
    """Ordered id snapshots of query results, stored in the sandbox database."""

    def __init__(self, store: Store, schema: SalesforceSchema) -> None:
        """Keep snapshots in ``store``."""
        self.store = store
        self.schema = schema

    @staticmethod
    def new_locator(prefix: str = "01g") -> str:
        """A fresh 18-char locator id (``01g`` query locators, ``750`` bulk jobs)."""
        alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
        return prefix + "Kj" + "".join(secrets.choice(alphabet) for _ in range(13))

    def take(
        self, plan: QueryPlan, now: datetime, key: str, first_page: int | None
    ) -> tuple[list[str], int, bool]:
        """Run the query for its ordered ids (LIMIT and OFFSET applied).

        Returns ``(first ids, total, stored)``. With ``first_page`` set and a result that fits
        in it, nothing is stored; otherwise every id is saved under ``key``, in one transaction
        with the read, and the first ``first_page`` ids (all of them when None) come back.
        """
        ids_only = replace(plan.parsed, fields=(_field(_ID),), count=None)
        compiled = compile_query(ids_only, self.schema, include_deleted=plan.query_all, now=now)
        with self.store.transaction() as conn:
            cursor = conn.execute(compiled.sql, compiled.params)
            if first_page is not None:
                head = [row[0] for row in cursor.fetchmany(first_page + 1)]
                if len(head) <= first_page:
                    return head, len(head), False
            else:
                head = []
            total = 0

            def positioned() -> Iterator[tuple[str, int, str]]:
                nonlocal total
                for record_id in head:
                    yield key, total, record_id
                    total += 1
                while chunk := cursor.fetchmany(SNAPSHOT_CHUNK):
                    for (record_id,) in chunk:
                        yield key, total, record_id
                        total += 1

            conn.executemany(
                "INSERT INTO sandbox_cursor (locator, position, record_id) VALUES (?, ?, ?)",
                positioned(),
            )
        return head[: first_page or 0], total, True

    def page_ids(self, key: str, start: int, count: int) -> list[str]:
        """Ids at positions ``[start, start + count)`` of snapshot ``key``."""
        rows = self.store.query(
            "SELECT record_id FROM sandbox_cursor WHERE locator = ? AND position >= ?"
            " AND position < ? ORDER BY position",
            (key, start, start + count),
        )
        return [row[0] for row in rows]

    def drop(self, keys: Sequence[str]) -> None:
        """Forget snapshots."""
        with self.store.transaction() as conn:
            conn.executemany("DELETE FROM sandbox_cursor WHERE locator = ?", [(k,) for k in keys])

    def rows(self, plan: QueryPlan, ids: Sequence[str], now: datetime) -> list[tuple[Any, ...]]:
        """Current rows (extended columns) of ``ids``, in the order of ``ids``."""
        if not ids:
            return []
        literals = tuple(Value("string", i, f"'{i}'", 1, 1) for i in ids)
        by_id = replace(
            plan.extended,
            where=Comparison(_field(_ID), "IN", literals),
            order_by=(),
            limit=None,
            offset=None,
        )
        compiled = compile_query(by_id, self.schema, include_deleted=True, now=now)
        root_id = plan.id_index[_ID]
        found = {row[root_id]: row for row in self.store.query(compiled.sql, compiled.params)}
        return [found[i] for i in ids if i in found]


class RecordRenderer:
    """Renders extended rows as REST query records for one API version."""

    def __init__(self, plan: QueryPlan, schema: SalesforceSchema, version: str) -> None:
        """Render rows of ``plan`` with urls for API ``version``."""
        self.plan = plan
        self.schema = schema
        self.base = f"/services/data/v{version}/sobjects/"
        self.targets = self._relation_targets()

    def _relation_targets(self) -> dict[tuple[str, ...], str]:
        targets: dict[tuple[str, ...], str] = {}
        for path in self.plan.id_index:
            table = self.schema.table(self.plan.sobject)
            for depth, name in enumerate(path[:-1]):
                relation = table.relations[name.lower()]
                targets[path[: depth + 1]] = relation.target
                table = self.schema.table(relation.target)
        return targets

    def _attributes(self, sobject: str, record_id: str) -> dict[str, str]:
        by_prefix = self.schema.by_prefix(record_id[:3])
        sobject = by_prefix.name if by_prefix is not None else sobject
        return {"type": sobject, "url": f"{self.base}{sobject}/{record_id}"}

    def render(self, row: Sequence[Any]) -> dict[str, Any]:
        """One record: attributes, the selected fields in order, parents nested or null."""
        plan = self.plan
        record: dict[str, Any] = {
            "attributes": self._attributes(plan.sobject, row[plan.id_index[_ID]])
        }
        for index, column in enumerate(plan.columns):
            container: dict[str, Any] | None = record
            for depth, name in enumerate(column.path[:-1]):
                if container is None:
                    break
                prefix = column.path[: depth + 1]
                if name not in container:
                    parent_id = row[plan.id_index[(*prefix, "Id")]]
                    container[name] = (
                        None
                        if parent_id is None
                        else {"attributes": self._attributes(self.targets[prefix], parent_id)}
                    )
                container = container[name]
            if container is not None:
                container[column.path[-1]] = to_wire(column.soql_type, row[index])
        return record
