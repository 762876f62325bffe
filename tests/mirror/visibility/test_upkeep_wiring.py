"""One grant upkeep per source: the syncs, pushes, partner views and deal registrations of a
source share it, and each sync brings its own page hook (what it backfilled is its own)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mirror.visibility import upkeep as upkeep_module
from sandboxes.salesforce.sandbox import SalesforceSandbox
from tests.mirror.visibility.test_field_rules import make_mirror

SOURCE = "salesforce"


def test_a_source_has_one_upkeep_and_each_sync_a_page_hook_of_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[str] = []
    hooks: list[upkeep_module.GrantPageHook] = []
    make_upkeep = upkeep_module.GrantUpkeep.__init__
    make_hook = upkeep_module.GrantPageHook.__init__

    def counted_upkeep(self: Any, store: Any, rules: Any) -> None:
        built.append(rules.source)
        make_upkeep(self, store, rules)

    def counted_hook(self: Any, upkeep: Any, **kw: Any) -> None:
        hooks.append(self)
        make_hook(self, upkeep, **kw)

    monkeypatch.setattr(upkeep_module.GrantUpkeep, "__init__", counted_upkeep)
    monkeypatch.setattr(upkeep_module.GrantPageHook, "__init__", counted_hook)
    with SalesforceSandbox(tmp_path / "sf.db", size="small") as box:
        mirror = make_mirror(f"sqlite:///{tmp_path / 'mirror.db'}", box)
        try:
            mirror.sync(["User", "Account"])
            assert built == [SOURCE] and len(hooks) == 1
            mirror.sync(["User", "Account"])
            assert built == [SOURCE] and len(hooks) == 2
            assert hooks[0] is not hooks[1] and hooks[0].backfilled != hooks[1].backfilled
            upkeep = mirror.grant_upkeep(SOURCE)
            assert all(hook.upkeep is upkeep for hook in hooks)
            registrations = mirror.registrations(SOURCE)
            assert registrations is not None and registrations.upkeep is upkeep
            partner = mirror.partners()[0]["id"]
            assert mirror.as_partner(partner).upkeep is upkeep
            assert built == [SOURCE]
        finally:
            mirror.store.close()
