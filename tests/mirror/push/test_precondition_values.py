"""How a write's precondition compares the values it read with an edit's base
(``mirror.push.preconditions``): by each field's type, an empty string taken for no value."""

from __future__ import annotations

import datetime as dt

import pytest

from mirror.push.preconditions import changed_fields, normalized
from mirror.types import FieldSpec, FieldType, ObjectSpec

SPEC = ObjectSpec(
    "crm",
    "Deal",
    "Id",
    "Modstamp",
    (
        FieldSpec("Id", FieldType.ID),
        FieldSpec("Amount", FieldType.FLOAT),
        FieldSpec("Count", FieldType.INTEGER),
        FieldSpec("Closes", FieldType.DATETIME),
        FieldSpec("Step", FieldType.STRING),
    ),
)


def test_nothing_expected_is_nothing_changed() -> None:
    assert changed_fields(SPEC, None, {"Step": "a"}) == []
    assert changed_fields(SPEC, {}, {"Step": "a"}) == []


def test_changed_fields_are_named_in_order_and_only_those_read() -> None:
    expected = {"Step": "a", "Count": 1, "Amount": 2.0, "Closes": None}
    current = {"Step": "b", "Count": "2", "Amount": "2", "Other": 1}
    assert changed_fields(SPEC, expected, current) == ["Count", "Step"]
    assert changed_fields(SPEC, {"Step": "a"}, {}) == []


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("Step", None, None),
        ("Step", "", None),
        ("Amount", "", None),
        ("Amount", "10", 10.0),
        ("Count", "7", 7),
        ("Closes", "2027-03-31T12:00:00+02:00", dt.datetime(2027, 3, 31, 10, tzinfo=dt.UTC)),
        ("Count", "seven", "seven"),  # a value the type cannot take is compared as it is
        ("Other", "10", "10"),  # a field the object does not describe: as it is
        ("Step", 0, "0"),
    ],
)
def test_a_value_is_normalized_by_its_fields_type(name, value, expected) -> None:
    assert normalized(SPEC, name, value) == expected
    assert type(normalized(SPEC, name, value)) is type(expected)


def test_an_unreadable_value_differs_from_a_readable_one() -> None:
    assert changed_fields(SPEC, {"Count": "seven"}, {"Count": 7}) == ["Count"]
    assert changed_fields(SPEC, {"Count": "seven"}, {"Count": "seven"}) == []
    assert changed_fields(SPEC, {"Step": ""}, {"Step": None}) == []
    assert changed_fields(SPEC, {"Step": ""}, {"Step": "x"}) == ["Step"]


def test_both_sides_are_typed_before_they_are_compared() -> None:
    assert changed_fields(SPEC, {"Amount": "10"}, {"Amount": 10.0}) == []
    assert changed_fields(SPEC, {"Amount": 10.0}, {"Amount": "10"}) == []
    closes = "2027-03-31T12:00:00+02:00"
    assert changed_fields(SPEC, {"Closes": closes}, {"Closes": "2027-03-31T10:00:00Z"}) == []
