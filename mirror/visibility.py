"""Partner slices: which records each partner sees, declared as paths from the partner.

A slice rule per object lists paths, each one of:

- ``"self"``: the partner's own record (on the partner object, when its flag field is true);
- ``"Field"``: directly attributed: the record's ``Field`` holds the partner's id;
- ``"Field -> Parent"``: through a parent: visible while the ``Parent`` record that ``Field``
  points at is visible;
- ``"Child.Field <-"``: through children: visible while some visible ``Child`` record points
  at it through ``Child.Field``.

Paths compose over several hops (a Contact via its Account, visible via an Opportunity,
attributed to the partner). The object graph of the paths must be acyclic, so a record can
never keep itself visible. Objects with no rule are visible to nobody (default deny); objects
marked ``public`` (a product catalogue) are visible to every partner. Field rules hide fields
and name the fields a partner may write.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from graphlib import CycleError, TopologicalSorter
from typing import Any, Literal

from mirror.errors import ConfigError
from mirror.types import ObjectSpec

PathKind = Literal["self", "direct", "parent", "child"]
_PARENT = re.compile(r"^\s*(\w+)\s*->\s*(\w+)\s*$")
_CHILD = re.compile(r"^\s*(\w+)\.(\w+)\s*<-\s*$")
_DIRECT = re.compile(r"^\s*(\w+)\s*$")


@dataclass(frozen=True)
class SlicePath:
    """One way a record of ``object`` becomes visible to a partner."""

    object: str
    kind: PathKind
    field: str = ""
    other: str = ""

    @property
    def text(self) -> str:
        """The canonical spelling, also the path's id in ``mirror_access``."""
        if self.kind == "self":
            return "self"
        if self.kind == "direct":
            return f"{self.field}"
        if self.kind == "parent":
            return f"{self.field} -> {self.other}"
        return f"{self.other}.{self.field} <-"

    @property
    def owner_source(self) -> str | None:
        """The object whose grants this path derives from (``None`` for self and direct)."""
        return self.other or None


@dataclass(frozen=True)
class SliceRule:
    """The slice of one object: its paths, owner field and field rules."""

    object: str
    paths: tuple[SlicePath, ...] = ()
    owner_field: str | None = None
    public: bool = False
    hidden: frozenset[str] = frozenset()
    writable: frozenset[str] = frozenset()
    creatable: bool = False
    deletable: bool = False


@dataclass(frozen=True)
class VisibilityRules:
    """Every slice rule of one source, plus who the partners and their users are."""

    source: str
    partner_object: str
    partner_flag: str | None
    user_object: str | None = None
    user_partner_field: str | None = None
    user_role_field: str | None = None
    admin_roles: frozenset[str] = frozenset({"admin"})
    slices: Mapping[str, SliceRule] = field(default_factory=dict)
    order: tuple[str, ...] = ()

    def rule(self, name: str) -> SliceRule | None:
        """The slice rule of ``name`` (``None``: nobody sees it)."""
        return self.slices.get(name)

    def child_paths_from(self, name: str) -> list[SlicePath]:
        """Paths on other objects that make them visible through ``name`` records as children."""
        return [
            p
            for rule in self.slices.values()
            for p in rule.paths
            if p.kind == "child" and p.other == name
        ]

    def access_fields(self, name: str) -> frozenset[str]:
        """The fields of ``name`` its records' grants, or the grants they give, are read from:
        an update that changes none of them changes no grant."""
        rule = self.rule(name)
        own = [p.field for p in rule.paths if p.kind in ("direct", "parent")] if rule else []
        if rule is not None and rule.owner_field:
            own.append(rule.owner_field)
        if name == self.partner_object and self.partner_flag:
            own.append(self.partner_flag)
        given = [p.field for p in self.child_paths_from(name)]
        return frozenset(own + given)

    def inherited_path(self, name: str) -> SlicePath | None:
        """The path through a parent when it is ``name``'s only path: its records then see
        exactly what their parent sees, and their grants are not stored but read through the
        parent's (``None`` for objects with grants of their own)."""
        rule = self.rule(name)
        if rule is None or rule.public or len(rule.paths) != 1 or rule.paths[0].kind != "parent":
            return None
        return rule.paths[0]

    def parent_paths_from(self, name: str) -> list[SlicePath]:
        """Paths on other objects that make them visible through a ``name`` parent."""
        return [
            p
            for rule in self.slices.values()
            for p in rule.paths
            if p.kind == "parent" and p.other == name
        ]


def parse_path(object_name: str, text: str) -> SlicePath:
    """Parse one path spelling; raises ``ValueError`` with a hint when it is not one."""
    if text.strip() == "self":
        return SlicePath(object_name, "self")
    if match := _PARENT.match(text):
        return SlicePath(object_name, "parent", match.group(1), match.group(2))
    if match := _CHILD.match(text):
        return SlicePath(object_name, "child", match.group(2), match.group(1))
    if match := _DIRECT.match(text):
        return SlicePath(object_name, "direct", match.group(1))
    raise ValueError(
        f"path {text!r} is none of 'self', 'Field', 'Field -> Parent', 'Child.Field <-'"
    )


def parse_rules(source: str, raw: Mapping[str, Any]) -> VisibilityRules:
    """Build rules from the ``[partners]``, ``[partner_users]``, ``[slices.*]`` and
    ``[fields.*]`` tables of a schema file (merged with the source's overrides)."""
    problems: list[str] = []
    partners = raw.get("partners", {})
    users = raw.get("partner_users", {})
    fields = raw.get("fields", {})
    slices: dict[str, SliceRule] = {}
    names = set(raw.get("slices", {})) | set(fields)
    for name in sorted(names):
        settings = raw.get("slices", {}).get(name, {})
        paths = []
        for text in settings.get("paths", []):
            try:
                paths.append(parse_path(name, text))
            except ValueError as exc:
                problems.append(f"slices.{name}: {exc}")
        field_rules = fields.get(name, {})
        slices[name] = SliceRule(
            object=name,
            paths=tuple(paths),
            owner_field=settings.get("owner_field"),
            public=bool(settings.get("public", False)),
            hidden=frozenset(field_rules.get("hidden", [])),
            writable=frozenset(field_rules.get("writable", [])),
            creatable=bool(settings.get("creatable", False)),
            deletable=bool(settings.get("deletable", False)),
        )
    if "object" not in partners:
        problems.append("partners.object: which object holds the partners is required")
    order = _dependency_order(slices, problems)
    if problems:
        raise ConfigError(problems)
    return VisibilityRules(
        source=source,
        partner_object=partners["object"],
        partner_flag=partners.get("flag_field"),
        user_object=users.get("object"),
        user_partner_field=users.get("partner_field"),
        user_role_field=users.get("role_field"),
        admin_roles=frozenset(users.get("admin_roles", ["admin"])),
        slices=slices,
        order=order,
    )


def _dependency_order(slices: Mapping[str, SliceRule], problems: list[str]) -> tuple[str, ...]:
    graph: dict[str, set[str]] = {name: set() for name in slices}
    for rule in slices.values():
        for path in rule.paths:
            if path.other:
                graph[rule.object].add(path.other)
                graph.setdefault(path.other, set())
    try:
        return tuple(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        cycle = " -> ".join(exc.args[1])
        problems.append(
            f"slices: the paths form a cycle ({cycle}); a record could keep itself visible"
        )
        return ()


def validate_rules(rules: VisibilityRules, specs: Mapping[str, ObjectSpec]) -> None:
    """Check every field the rules name against the described objects; all problems at once."""
    problems: list[str] = []

    def need(object_name: str, field_name: str | None, where: str) -> None:
        spec = specs.get(object_name)
        if spec is not None and field_name and not spec.has_field(field_name):
            problems.append(f"{where}: {object_name} has no field {field_name!r}")

    need(rules.partner_object, rules.partner_flag, "partners.flag_field")
    if rules.user_object:
        need(rules.user_object, rules.user_partner_field, "partner_users.partner_field")
        need(rules.user_object, rules.user_role_field, "partner_users.role_field")
    for rule in rules.slices.values():
        need(rule.object, rule.owner_field, f"slices.{rule.object}.owner_field")
        for name in sorted(rule.hidden | rule.writable):
            need(rule.object, name, f"fields.{rule.object}")
        for path in rule.paths:
            where = f"slices.{rule.object} path {path.text!r}"
            if path.kind in ("direct", "parent"):
                need(rule.object, path.field, where)
            elif path.kind == "child":
                need(path.other or "", path.field, where)
            if path.kind == "self" and rule.object != rules.partner_object:
                problems.append(f"{where}: 'self' only applies to {rules.partner_object}")
    if problems:
        raise ConfigError(problems)


def merge_settings(base: Mapping[str, Any], override: Mapping[str, Any] | None) -> dict[str, Any]:
    """``base`` with ``override``'s tables merged in, one level deep per table."""
    merged: dict[str, Any] = {k: dict(v) if isinstance(v, Mapping) else v for k, v in base.items()}
    for key, value in (override or {}).items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def visible_fields(rule: SliceRule | None, names: Iterable[str]) -> list[str]:
    """``names`` without the fields ``rule`` hides."""
    hidden = rule.hidden if rule else frozenset()
    return [n for n in names if n not in hidden]
