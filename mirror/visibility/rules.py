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
marked ``public`` (a product catalogue) are visible to every partner.

Field rules say which fields of a shared object partners see, in one of two modes per object:
an allow-list (``visible``: only the fields named, so a field the CRM adds later stays hidden
until someone names it) or a deny-list (``hidden``: every field but those named). An object
whose field table names neither takes the source's mode (``[partners] field_rules``, ``"deny"``
when unset); in allow mode a shared object must name its visible fields. ``writable`` names the
fields a partner may write, all of them fields it sees. Every key and value is checked here
(``parse_rules``); the names are checked against the mirrored schema by
``mirror.visibility.rule_check``
before anything is served.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from graphlib import CycleError, TopologicalSorter
from typing import Any, Literal

from mirror.errors import ConfigError

PathKind = Literal["self", "direct", "parent", "child"]
FieldMode = Literal["allow", "deny"]
FIELD_MODES = ("allow", "deny")
# what each table of the rules may hold, and of which type
_TEXT, _FLAG, _NAMES = "a string", "true or false", "a list of strings"
_KEYS: dict[str, dict[str, str]] = {
    "partners": {"object": _TEXT, "flag_field": _TEXT, "name_field": _TEXT, "field_rules": _TEXT},
    "partner_users": {
        "object": _TEXT,
        "partner_field": _TEXT,
        "role_field": _TEXT,
        "admin_roles": "a list of role values",
        "login_fields": _NAMES,
    },
    "slices": {
        "paths": _NAMES,
        "owner_field": _TEXT,
        "public": _FLAG,
        "creatable": _FLAG,
        "deletable": _FLAG,
    },
    "fields": {"visible": _NAMES, "hidden": _NAMES, "writable": _NAMES},
}
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


@dataclass(frozen=True)
class SliceRule:
    """The slice of one object: its paths, owner field and field rules.

    ``visible`` is the allow-list (``None``: the deny-list ``hidden`` applies instead).
    ``unchecked`` marks a rule whose field names could not be checked against a mirrored
    schema yet (the object was not mirrored): its fields are never served.
    """

    object: str
    paths: tuple[SlicePath, ...] = ()
    owner_field: str | None = None
    public: bool = False
    hidden: frozenset[str] = frozenset()
    writable: frozenset[str] = frozenset()
    creatable: bool = False
    deletable: bool = False
    visible: frozenset[str] | None = None
    unchecked: bool = field(default=False, compare=False)

    @property
    def mode(self) -> FieldMode:
        """``allow`` (only ``visible`` is shown) or ``deny`` (all but ``hidden``)."""
        return "deny" if self.visible is None else "allow"

    @property
    def shared(self) -> bool:
        """Whether partners see the object at all (it has paths, or is public)."""
        return self.public or bool(self.paths)

    def shows(self, name: str) -> bool:
        """Whether partners see the field ``name``; ``ConfigError`` when the rule was never
        checked against the object's mirrored schema (fail closed)."""
        if self.unchecked:
            raise ConfigError(
                f"the field rules of {self.object} were not checked against its mirrored "
                "schema (it was not mirrored when they were loaded): open the view again"
            )
        return self.declares_shown(name)

    def declares_shown(self, name: str) -> bool:
        """Whether the rule, as written, shows ``name`` (no check of its state)."""
        if self.visible is not None:
            return name in self.visible
        return name not in self.hidden


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
    user_login_fields: tuple[str, ...] = ()
    slices: Mapping[str, SliceRule] = field(default_factory=dict)
    order: tuple[str, ...] = ()
    field_rules: FieldMode = "deny"
    # set by ``mirror.visibility.rule_check.served_rules``: checked against the mirrored schema,
    # except
    # the objects in ``unchecked`` (not mirrored then); ``known_objects``: the source's objects
    checked: bool = field(default=False, compare=False)
    unchecked: frozenset[str] = field(default=frozenset(), compare=False)
    known_objects: frozenset[str] | None = field(default=None, compare=False)

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

    def grant_fields(self, name: str) -> frozenset[str]:
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

    def named_objects(self) -> frozenset[str]:
        """Every object the rules name: partners, users, slices and the paths' other ends."""
        names = {self.partner_object, *self.slices}
        if self.user_object:
            names.add(self.user_object)
        names.update(p.other for rule in self.slices.values() for p in rule.paths if p.other)
        return frozenset(names)


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
    ``[fields.*]`` tables of a schema file (merged with the source's overrides); every key
    and value is checked, and every problem reported at once."""
    problems = _shape_problems(raw)
    partners = _table(raw.get("partners"))
    users = _table(raw.get("partner_users"))
    mode = partners.get("field_rules", "deny")
    if mode not in FIELD_MODES:
        if isinstance(mode, str):
            problems.append(f"partners.field_rules: {mode!r} is neither 'allow' nor 'deny'")
        mode = "deny"
    slice_tables, field_tables = _table(raw.get("slices")), _table(raw.get("fields"))
    slices: dict[str, SliceRule] = {}
    for name in sorted(set(slice_tables) | set(field_tables)):
        settings, fields = _table(slice_tables.get(name)), _table(field_tables.get(name))
        paths = []
        for text in _names(settings.get("paths")):
            try:
                paths.append(parse_path(name, text))
            except ValueError as exc:
                problems.append(f"slices.{name}: {exc}")
        visible = fields.get("visible")
        if "visible" in fields and "hidden" in fields:
            problems.append(f"fields.{name}: name either the visible or the hidden fields")
        rule = SliceRule(
            object=name,
            paths=tuple(paths),
            owner_field=_text(settings.get("owner_field")),
            public=settings.get("public") is True,
            hidden=frozenset(_names(fields.get("hidden"))),
            writable=frozenset(_names(fields.get("writable"))),
            creatable=settings.get("creatable") is True,
            deletable=settings.get("deletable") is True,
            visible=None if visible is None else frozenset(_names(visible)),
        )
        if mode == "allow" and rule.visible is None and "hidden" not in fields and rule.shared:
            problems.append(
                f"fields.{name}: field_rules is 'allow', so name the fields partners see "
                "(visible = [...])"
            )
        slices[name] = rule
    if not isinstance(partners.get("object"), str):
        problems.append("partners.object: which object holds the partners is required")
    order = _dependency_order(slices, problems)
    if problems:
        raise ConfigError(problems)
    return VisibilityRules(
        source=source,
        partner_object=partners["object"],
        partner_flag=_text(partners.get("flag_field")),
        user_object=_text(users.get("object")),
        user_partner_field=_text(users.get("partner_field")),
        user_role_field=_text(users.get("role_field")),
        admin_roles=frozenset(users.get("admin_roles", ["admin"])),
        user_login_fields=tuple(_names(users.get("login_fields"))),
        slices=slices,
        order=order,
        field_rules=mode,
    )


def _shape_problems(raw: Mapping[str, Any]) -> list[str]:
    """Unknown tables and keys, and values of the wrong type (a misspelled ``hiden`` or a
    ``hidden = "Field"`` would otherwise hide nothing)."""
    problems = [
        f"{key}: unknown table (one of {', '.join(_KEYS)})" for key in raw if key not in _KEYS
    ]
    for key in ("partners", "partner_users"):
        if key in raw:
            problems += _entry_problems(key, raw[key], _KEYS[key])
    for key in ("slices", "fields"):
        tables = raw.get(key, {})
        if not isinstance(tables, Mapping):
            problems.append(f"{key}: must be a table of [{key}.<Object>] tables")
            continue
        for name, entry in tables.items():
            problems += _entry_problems(f"{key}.{name}", entry, _KEYS[key])
    return problems


def _entry_problems(where: str, entry: Any, keys: Mapping[str, str]) -> list[str]:
    if not isinstance(entry, Mapping):
        return [f"{where}: must be a table"]
    problems = []
    for key, value in entry.items():
        wanted = keys.get(key)
        if wanted is None:
            problems.append(f"{where}.{key}: unknown option (one of {', '.join(keys)})")
        elif not _fits(value, wanted):
            problems.append(f"{where}.{key}: must be {wanted}, not {value!r}")
    return problems


def _fits(value: Any, wanted: str) -> bool:
    if wanted == _TEXT:
        return isinstance(value, str) and bool(value.strip())
    if wanted == _FLAG:
        return isinstance(value, bool)
    if wanted == _NAMES:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    return isinstance(value, list) and all(isinstance(v, str | int) for v in value)


def _table(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _names(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


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
    """The fields among ``names`` partners see (none without a rule: nothing is shared)."""
    if rule is None:
        return []
    return [n for n in names if rule.shows(n)]


def visible_values(rule: SliceRule | None, values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` (field name to value) cut to the fields partners see."""
    if rule is None:
        return {}
    return {k: v for k, v in values.items() if rule.shows(k)}


def path_index_fields(rules: VisibilityRules) -> dict[str, tuple[str, ...]]:
    """The reference fields slice paths follow, per object, so upkeep and queries use indexes."""
    wanted: dict[str, set[str]] = {}
    for rule in rules.slices.values():
        if rule.owner_field:
            wanted.setdefault(rule.object, set()).add(rule.owner_field)
        for path in rule.paths:
            if path.kind in ("direct", "parent") and path.field:
                wanted.setdefault(rule.object, set()).add(path.field)
            elif path.kind == "child" and path.other and path.field:
                wanted.setdefault(path.other, set()).add(path.field)
    return {name: tuple(sorted(fields)) for name, fields in wanted.items()}
