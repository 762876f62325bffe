"""What every adapter's metadata reading shares when it builds an ``ObjectSpec``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from mirror.types import FieldSpec, FieldType, Relation


def reference_relations(fields: Iterable[FieldSpec]) -> tuple[Relation, ...]:
    """One ``Relation`` per target of each reference field, named as the field's relationship."""
    return tuple(
        Relation(field=spec.name, target=target, name=spec.relationship_name)
        for spec in fields
        if spec.type is FieldType.REFERENCE
        for target in spec.references
    )


def engine_types(groups: Mapping[FieldType, Iterable[str]]) -> dict[str, FieldType]:
    """``{CRM type: engine type}`` from the CRM types each engine type stands for."""
    return {crm_type: kind for kind, crm_types in groups.items() for crm_type in crm_types}
