"""The demos and sandboxes the ``prm-mirror demo`` and ``prm-mirror sandbox serve`` commands offer,
one :class:`CrmDemo` per CRM, each published under the ``prm_mirror.demos`` entry point so the
command line lists whatever is installed without naming any CRM itself."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from rich.console import Console

from sandboxes.kit.configs import config_toml


class ServedSandbox(Protocol):
    """What ``sandbox serve`` needs of a running sandbox."""

    base_url: str

    def serve_forever(self) -> None:
        """Serve in the foreground until interrupted."""


DemoRunner = Callable[[Console, Path, Path, "str | int", int], None]


@dataclass(frozen=True)
class CrmDemo:
    """One CRM's demo story and seeded sandbox.

    ``default`` marks the demo the commands run when none is named; ``order`` is where it is
    listed among the installed ones.
    """

    crm: str
    run: DemoRunner
    open_sandbox: Callable[..., Any]
    order: int
    default: bool = False

    def serve(self, path: str, seed: int, size: str | int, port: int) -> ServedSandbox:
        """Generate or open the sandbox's database at ``path`` and bind ``port``."""
        box: ServedSandbox = self.open_sandbox(path, seed=seed, size=size, port=port)
        return box

    def config_for(self, box: ServedSandbox, database: str) -> str:
        """The config file (TOML) that mirrors ``box`` into ``database``."""
        return config_toml(self.crm, box, database)


def _salesforce_demo(console: Console, db: Path, work: Path, size: str | int, seed: int) -> None:
    from prm_demo.salesforce import run_demo

    run_demo(console, db, work, size, seed)


def _hubspot_demo(console: Console, db: Path, work: Path, size: str | int, seed: int) -> None:
    from prm_demo.hubspot import run_hubspot_demo

    run_hubspot_demo(console, db, work, size, seed)


def _dynamics_demo(console: Console, db: Path, work: Path, size: str | int, seed: int) -> None:
    from prm_demo.dynamics import run_demo

    run_demo(console, db, work, size, seed)


def _salesforce_sandbox(path: str, **options: Any) -> Any:
    from sandboxes.salesforce.sandbox import SalesforceSandbox

    return SalesforceSandbox(path, **options)


def _hubspot_sandbox(path: str, **options: Any) -> Any:
    from sandboxes.hubspot.sandbox import HubSpotSandbox

    return HubSpotSandbox(path, **options)


def _dynamics_sandbox(path: str, **options: Any) -> Any:
    from sandboxes.dynamics.sandbox import DynamicsSandbox

    return DynamicsSandbox(path, **options)


SALESFORCE = CrmDemo("salesforce", _salesforce_demo, _salesforce_sandbox, order=0, default=True)
HUBSPOT = CrmDemo("hubspot", _hubspot_demo, _hubspot_sandbox, order=1)
DYNAMICS = CrmDemo("dynamics", _dynamics_demo, _dynamics_sandbox, order=2)
