"""Object schemas: the CRM's metadata merged with ``schemas/<crm>.toml``, and additive migrations.

The CRM's describe is the truth about fields; the TOML adds what metadata cannot say (which field
attributes a record to a partner, which objects to mirror by default, cursor overrides). When
the CRM's schema changes, the mirror only ever grows: new fields become columns, removed fields
stay as columns (no longer filled), and a field whose type changed keeps its column type, with
incoming values converted to it. Nothing is dropped silently; every change is recorded.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from mirror.errors import ConfigError
from mirror.resources import data_dir, schema_file
from mirror.types import FieldSpec, FieldType, ObjectSpec, Relation

DEFAULT_SCHEMAS_DIR = data_dir("schemas")
OBJECT_OVERRIDES = frozenset({"partner_field", "cursor_field", "key", "external_id_field"})


@dataclass(frozen=True)
class CrmSchema:
    """The defaults for one CRM, from ``schemas/<crm>.toml``."""

    crm: str
    objects: tuple[str, ...]
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict)

    def object_settings(self, name: str) -> Mapping[str, Any]:
        """The TOML table ``[objects.<name>]`` (empty when there is none)."""
        return self.overrides.get(name, {})


@cache
def load_crm_schema(crm: str, schemas_dir: str | None = None) -> CrmSchema:
    """Read the schema file of ``crm`` (``mirror.resources.schema_file``)."""
    path = schema_file(crm, schemas_dir)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"no schema file for CRM {crm!r} at {path}") from exc
    objects = raw.get("objects", {})
    return CrmSchema(
        crm=crm,
        objects=tuple(raw.get("mirror", {}).get("objects", list(objects))),
        overrides={name: dict(settings) for name, settings in objects.items()},
        raw=raw,
    )


def apply_schema(spec: ObjectSpec, schema: CrmSchema) -> ObjectSpec:
    """``spec`` with the TOML's per-object settings applied; unknown fields are config errors."""
    settings = {k: v for k, v in schema.object_settings(spec.name).items() if k in OBJECT_OVERRIDES}
    problems = [
        f"schemas/{schema.crm}.toml: objects.{spec.name}.{key} names field {value!r}, "
        f"which {spec.name} does not have"
        for key, value in settings.items()
        if value and not spec.has_field(value)
    ]
    if problems:
        raise ConfigError(problems)
    return dataclasses.replace(spec, **settings)


@dataclass(frozen=True)
class Migration:
    """What changes between the mirrored schema of an object and what the CRM describes now."""

    effective: ObjectSpec
    added: tuple[FieldSpec, ...] = ()
    removed: tuple[FieldSpec, ...] = ()
    retyped: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    new_table: bool = False

    @property
    def changed(self) -> bool:
        """Whether the stored schema must be updated."""
        return bool(self.new_table or self.added or self.removed or self.retyped)


def plan_migration(
    stored: ObjectSpec | None, removed_before: tuple[FieldSpec, ...], described: ObjectSpec
) -> Migration:
    """Compare the stored spec with the described one; the result never drops a column."""
    if stored is None:
        return Migration(effective=described, new_table=True)
    old = {f.name: f for f in stored.fields}
    fields: list[FieldSpec] = []
    added: list[FieldSpec] = []
    retyped: dict[str, tuple[str, str]] = {}
    for spec in described.fields:
        previous = old.get(spec.name) or _find(removed_before, spec.name)
        if previous is None:
            added.append(spec)
            fields.append(spec)
        elif previous.type != spec.type:
            retyped[spec.name] = (previous.type.value, spec.type.value)
            fields.append(dataclasses.replace(spec, type=previous.type))
        else:
            fields.append(spec)
    described_names = {f.name for f in described.fields}
    removed = tuple(f for f in stored.fields if f.name not in described_names)
    effective = dataclasses.replace(described, fields=tuple(fields))
    return Migration(effective, tuple(added), removed, retyped)


def _find(fields: tuple[FieldSpec, ...], name: str) -> FieldSpec | None:
    return next((f for f in fields if f.name == name), None)


def spec_to_json(spec: ObjectSpec) -> dict[str, Any]:
    """A JSON-serialisable form of ``spec``."""
    data = dataclasses.asdict(spec)
    for item in data["fields"]:
        item["type"] = item["type"].value
        item["references"] = list(item["references"])
    data["relations"] = [dataclasses.asdict(r) for r in spec.relations]
    return data


def spec_from_json(data: Mapping[str, Any]) -> ObjectSpec:
    """The inverse of ``spec_to_json``."""
    fields = tuple(field_from_json(item) for item in data["fields"])
    relations = tuple(Relation(**item) for item in data.get("relations", ()))
    scalars = {k: v for k, v in data.items() if k not in ("fields", "relations")}
    return ObjectSpec(fields=fields, relations=relations, **scalars)


def field_from_json(item: Mapping[str, Any]) -> FieldSpec:
    """One ``FieldSpec`` from its JSON form."""
    values = dict(item)
    values["type"] = FieldType(values["type"])
    values["references"] = tuple(values.get("references", ()))
    return FieldSpec(**values)
