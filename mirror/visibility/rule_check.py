"""Checking partner-slice rules against the schema they are served over, failing closed.

The rules name objects and fields; a misspelled name must never leave a field it meant to hide
open, or a path through a field that does not exist. ``validate_rules`` checks every name
against the objects' fields and lists every problem at once. The sync checks the rules against
what the CRM describes before it writes anything; every way of serving a partner (a
``PartnerView``, ``Mirror.as_partner`` and the CLI built on it, the PostgreSQL install) checks
them against the mirrored schema first (``served_rules``). An object that is not mirrored yet
cannot be checked: its rule is marked unchecked, and its fields are never served until a later
check (a view made after the object is mirrored) finds them sound.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import replace

from mirror.errors import ConfigError
from mirror.store.database import Store
from mirror.visibility.rules import SlicePath, SliceRule, VisibilityRules


def validate_rules(
    rules: VisibilityRules,
    fields_of: Mapping[str, Collection[str]],
    known_objects: Collection[str] | None = None,
) -> frozenset[str]:
    """Check every object and field the rules name against ``fields_of`` (object name to its
    field names); ``known_objects``, when given, are every object the source may hold. Raises
    ``ConfigError`` listing every problem; returns the objects with a rule that could not be
    checked (no fields known for them)."""
    check = _Checker(rules, fields_of, known_objects)
    check.object(rules.partner_object, "partners.object")
    check.field(rules.partner_object, rules.partner_flag, "partners.flag_field")
    if rules.user_object:
        check.object(rules.user_object, "partner_users.object")
        check.field(rules.user_object, rules.user_partner_field, "partner_users.partner_field")
        check.field(rules.user_object, rules.user_role_field, "partner_users.role_field")
    for rule in rules.slices.values():
        if rule.shared:
            check.object(rule.object, f"slices.{rule.object}")
        else:
            # field rules of an object nobody sees only matter if they were meant elsewhere
            check.object(rule.object, f"fields.{rule.object}", strict=True)
        check.field(rule.object, rule.owner_field, f"slices.{rule.object}.owner_field")
        check.field_rules(rule)
        for path in rule.paths:
            check.path(rule, path)
    if check.problems:
        raise ConfigError(check.problems)
    return frozenset(name for name in rules.slices if name not in fields_of)


class _Checker:
    """Collects the problems of one set of rules."""

    def __init__(
        self,
        rules: VisibilityRules,
        fields_of: Mapping[str, Collection[str]],
        known_objects: Collection[str] | None,
    ) -> None:
        self.rules = rules
        self.fields_of = fields_of
        self.known = None if known_objects is None else {*known_objects, *fields_of}
        self.problems: list[str] = []

    def object(self, name: str, where: str, strict: bool = False) -> bool:
        """Whether ``name`` is an object of the source (a problem when it is not); without a
        list of the source's objects, ``strict`` asks for one whose fields are known."""
        known = self.known
        if known is None and strict:
            known = set(self.fields_of)
        if known is None or name in known:
            return True
        listed = ", ".join(sorted(known)) or "none"
        self.problems.append(
            f"{where}: no object {name!r} in source {self.rules.source} (known: {listed})"
        )
        return False

    def field(self, object_name: str, field_name: str | None, where: str) -> None:
        """A problem when ``object_name``'s known fields lack ``field_name``."""
        fields = self.fields_of.get(object_name)
        if fields is not None and field_name and field_name not in fields:
            self.problems.append(f"{where}: {object_name} has no field {field_name!r}")

    def field_rules(self, rule: SliceRule) -> None:
        """Every field named by ``[fields.<Object>]`` exists; every writable one is shown."""
        where = f"fields.{rule.object}"
        for key, names in (("visible", rule.visible or ()), ("hidden", rule.hidden),
                           ("writable", rule.writable)):  # fmt: skip
            for name in sorted(names):
                self.field(rule.object, name, f"{where}.{key}")
        self.problems += [
            f"{where}.writable: {n!r} is not among the fields partners see; a partner may "
            "only write a field it sees"
            for n in sorted(rule.writable)
            if not rule.declares_shown(n)
        ]
        fields = self.fields_of.get(rule.object)
        if rule.shared and fields is not None and not any(map(rule.declares_shown, fields)):
            self.problems.append(f"{where}: partners would see no field of {rule.object}")

    def path(self, rule: SliceRule, path: SlicePath) -> None:
        """The path's field exists where it is read, and its other end is shared."""
        where = f"slices.{rule.object} path {path.text!r}"
        if path.kind == "self":
            if rule.object != self.rules.partner_object:
                self.problems.append(f"{where}: 'self' only applies to {self.rules.partner_object}")
            return
        if path.kind == "direct":
            self.field(rule.object, path.field, where)
            return
        if not self.object(path.other, where):
            return
        self.field(path.other if path.kind == "child" else rule.object, path.field, where)
        other = self.rules.rule(path.other)
        if other is None or not other.shared:
            self.problems.append(
                f"{where}: {path.other} is not shared with partners, so the path never leads to one"
            )


def served_rules(
    store: Store, rules: VisibilityRules, known_objects: Collection[str] | None = None
) -> VisibilityRules:
    """``rules`` checked against the mirrored schema of their source, ready to serve partners;
    ``ConfigError`` listing every problem otherwise. Cheap when nothing changed since the last
    check (no query once every object named is checked)."""
    if known_objects is None:
        known_objects = rules.known_objects
    pending = rules.unchecked if rules.checked else frozenset(rules.slices)
    if rules.checked and not pending:
        return rules
    mirrored = {name for source, name in store.objects() if source == rules.source}
    if rules.checked and not pending & mirrored:
        return rules
    fields_of: dict[str, frozenset[str]] = {}
    for name in sorted(mirrored & rules.named_objects()):
        table = store.mirrored(rules.source, name)
        fields_of[name] = frozenset({*table.spec.field_names, *(f.name for f in table.removed)})
    unchecked = validate_rules(rules, fields_of, known_objects)
    slices = {
        name: replace(rule, unchecked=name in unchecked) for name, rule in rules.slices.items()
    }
    return replace(
        rules,
        slices=slices,
        checked=True,
        unchecked=unchecked,
        known_objects=None if known_objects is None else frozenset(known_objects),
    )
