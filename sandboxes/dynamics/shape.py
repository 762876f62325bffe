"""How the Dataverse sandbox writes rows as Web API JSON, and reads ``Prefer`` headers.

A row is ``{"@odata.etag": "W/\\"<versionnumber>\\"", <selected properties>..., <primary
key>}``; lookups appear as ``_x_value``. With ``Prefer: odata.include-annotations=...`` the
matching annotations are added: ``OData.Community.Display.V1.FormattedValue`` (choice labels,
Yes/No, money, the looked-up row's primary name) and, on lookups,
``Microsoft.Dynamics.CRM.lookuplogicalname`` and ``...associatednavigationproperty``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sandboxes.dynamics.records import etag
from sandboxes.dynamics.schema import Attribute, DataverseSchema, Entity
from sandboxes.dynamics.store import DataverseStore, quote
from sandboxes.dynamics.values import wire_writer

FORMATTED = "OData.Community.Display.V1.FormattedValue"
LOOKUP_NAME = "Microsoft.Dynamics.CRM.lookuplogicalname"
NAVIGATION = "Microsoft.Dynamics.CRM.associatednavigationproperty"


def parse_prefer(headers: Iterable[str]) -> dict[str, str | None]:
    """The preferences of one or more ``Prefer`` headers: ``{"odata.maxpagesize": "50"}``."""
    found: dict[str, str | None] = {}
    for header in headers:
        for part in _split_outside_quotes(header):
            name, _, value = part.partition("=")
            if name.strip():
                found[name.strip().lower()] = value.strip().strip('"') if value else None
    return found


def _split_outside_quotes(text: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


class Annotations:
    """Which instance annotations a request asked for."""

    def __init__(self, preference: str | None) -> None:
        """From the value of ``odata.include-annotations`` (``None``: none)."""
        patterns = [p.strip() for p in (preference or "").split(",") if p.strip()]
        self.patterns = [p for p in patterns if not p.startswith("-")]
        self._wanted: dict[str, bool] = {}

    def wants(self, name: str) -> bool:
        """Whether annotation ``name`` is included."""
        if name not in self._wanted:
            matches = (fnmatch.fnmatchcase(name, pattern) for pattern in self.patterns)
            self._wanted[name] = any(matches)
        return self._wanted[name]

    @property
    def any(self) -> bool:
        """Whether any annotation was asked for."""
        return bool(self.patterns)


class RowWriter:
    """Renders stored rows of one table as Web API JSON."""

    def __init__(
        self,
        store: DataverseStore,
        entity: Entity,
        selected: Sequence[Attribute] | None,
        annotations: Annotations,
    ) -> None:
        """Rows of ``entity`` with ``selected`` properties (``None``: all of them)."""
        self.store = store
        self.schema: DataverseSchema = store.schema
        self.entity = entity
        chosen = list(selected) if selected is not None else list(_readable(entity))
        key = entity.by_name[entity.primary_id]
        self.attributes = [*chosen, key] if key not in chosen else chosen
        self.annotations = annotations
        # each column's name, wire name and value writer, worked out once per response
        self._columns = [(a, a.name, a.wire_name, wire_writer(a)) for a in self.attributes]

    def render(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """The JSON objects of ``rows``."""
        names = self._lookup_names(rows) if self.annotations.wants(FORMATTED) else {}
        return [self._one(row, names) for row in rows]

    def _one(self, row: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
        item: dict[str, Any] = {"@odata.etag": etag(row)}
        annotate = self.annotations.any
        for attribute, name, wire, write in self._columns:
            value = row.get(name)
            if annotate:
                self._annotate(item, attribute, row, value, names)
            item[wire] = None if value is None else write(value)
        return item

    def _annotate(
        self,
        item: dict[str, Any],
        attribute: Attribute,
        row: Mapping[str, Any],
        value: Any,
        names: Mapping[str, str],
    ) -> None:
        wire = attribute.wire_name
        wanted = self.annotations.wants(FORMATTED)
        formatted = _formatted(attribute, value, names) if wanted else None
        if formatted is not None:
            item[f"{wire}@{FORMATTED}"] = formatted
        if attribute.is_lookup and value is not None:
            target = row.get(f"{attribute.name}type") or attribute.targets[0]
            if self.annotations.wants(NAVIGATION):
                item[f"{wire}@{NAVIGATION}"] = attribute.nav_property(target)
            if self.annotations.wants(LOOKUP_NAME):
                item[f"{wire}@{LOOKUP_NAME}"] = target

    def _lookup_names(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, str]:
        """Primary names of every row the lookups of ``rows`` point at, in one query each."""
        wanted: dict[str, set[str]] = {}
        for attribute in self.attributes:
            if not attribute.is_lookup:
                continue
            for row in rows:
                value = row.get(attribute.name)
                if value is not None:
                    target = row.get(f"{attribute.name}type") or attribute.targets[0]
                    wanted.setdefault(target, set()).add(value)
        names: dict[str, str] = {}
        for target, ids in wanted.items():
            entity = self.schema.entities.get(target)
            if entity is None:
                continue
            marks = ", ".join("?" for _ in ids)
            found = self.store.query(
                f"SELECT {quote(entity.primary_id)}, {quote(entity.primary_name)} "
                f"FROM {quote(entity.name)} WHERE {quote(entity.primary_id)} IN ({marks})",
                sorted(ids),
            )
            names.update({str(r[0]): str(r[1] or "") for r in found})
        return names


def _readable(entity: Entity) -> Iterable[Attribute]:
    return (a for a in entity.attributes if a.type != "EntityName")


def _formatted(attribute: Attribute, value: Any, names: Mapping[str, str]) -> str | None:
    if value is None:
        return None
    if attribute.options:
        return attribute.label_of(value)
    if attribute.type == "Boolean":
        return "Yes" if value else "No"
    if attribute.type == "Money" and isinstance(value, int | float):
        return f"${value:,.2f}"
    if attribute.type in ("Integer", "BigInt") and isinstance(value, int):
        return f"{value:,}"
    if attribute.is_lookup:
        return names.get(str(value))
    return None
