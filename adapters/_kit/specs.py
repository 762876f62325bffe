"""What every adapter's metadata reading shares when it builds an ``ObjectSpec``."""

from __future__ import annotations

from collections.abc import Iterable

from mirror.types import FieldSpec, FieldType, Relation


def reference_relations(fields: Iterable[FieldSpec]) -> tuple[Relation, ...]:
    """One ``Relation`` per target of each reference field, named as the field's relationship."""
    return tuple(
        Relation(field=spec.name, target=target, name=spec.relationship_name)
        for spec in fields
        if spec.type is FieldType.REFERENCE
        for target in spec.references
    )
