"""The record checker: typed values pass, convertible ones are converted, bad ones are named."""

from __future__ import annotations

import pytest

from mirror.store.records import BadValue, RecordChecker
from mirror.types import FieldSpec, FieldType, ObjectSpec

NAMES = ["Amount", "Close Date"]


def spec_of(types: list[FieldType]) -> ObjectSpec:
    fields = [FieldSpec("Id", FieldType.ID)]
    fields += [FieldSpec(NAMES[i % len(NAMES)] + str(i), t) for i, t in enumerate(types)]
    return ObjectSpec("crm", "Thing", "Id", "Id", tuple(fields))


def test_a_bad_value_is_named_with_its_field() -> None:
    checker = RecordChecker(spec_of([FieldType.INTEGER, FieldType.DATETIME]))
    with pytest.raises(BadValue, match="field Close Date1: 'soon'"):
        checker.clean({"Id": "001A", "Amount0": "12", "Close Date1": "soon"})
    cleaned = checker.clean({"Id": "001A", "Amount0": "12", "Close Date1": None})
    assert cleaned == {"Id": "001A", "Amount0": 12, "Close Date1": None}


def test_a_record_without_its_key_is_refused() -> None:
    with pytest.raises(BadValue, match="the record has no Id"):
        RecordChecker(spec_of([FieldType.STRING])).clean({"Amount0": "x"})


def test_the_content_hash_follows_values_not_key_order() -> None:
    checker = RecordChecker(spec_of([FieldType.STRING, FieldType.FLOAT]))
    one = checker.clean({"Id": "001A", "Amount0": "x", "Close Date1": 1.5})
    other = checker.clean({"Close Date1": 1.5, "Amount0": "x", "Id": "001A"})
    changed = checker.clean({"Id": "001A", "Amount0": "x", "Close Date1": 2.5})
    assert checker.content_hash(one) == checker.content_hash(other)
    assert checker.content_hash(one) != checker.content_hash(changed)
