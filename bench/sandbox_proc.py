"""A CRM sandbox in its own process, for the benchmarks and the chaos harness.

``python -m bench.sandbox_proc --db PATH --size N --seed S [--crm salesforce|hubspot|dynamics]``
generates the dataset into ``PATH`` if the file is new, serves it on a free port of 127.0.0.1
and prints one JSON line ``{"port": P}`` once it answers. The admin token of
``POST /__sandbox/<control>`` is read from the ``PRM_BENCH_ADMIN_TOKEN`` environment variable, so
the parent can drive the sandbox's controls without the token ever being printed. The process
serves until its stdin closes or it receives SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from types import FrameType
from typing import Any

ADMIN_TOKEN_ENV = "PRM_BENCH_ADMIN_TOKEN"
CRMS = ("salesforce", "hubspot", "dynamics")


def sandbox(crm: str, db: str, size: int, seed: int, admin_token: str | None) -> Any:
    """The (not yet started) sandbox of ``crm`` on the file ``db``."""
    if crm == "hubspot":
        from sandboxes.hubspot.sandbox import HubSpotSandbox

        return HubSpotSandbox(db, seed=seed, size=size, admin_token=admin_token)
    if crm == "dynamics":
        from sandboxes.dynamics.sandbox import DynamicsSandbox

        return DynamicsSandbox(db, seed=seed, size=size, admin_token=admin_token)
    from sandboxes.salesforce.sandbox import SalesforceSandbox

    return SalesforceSandbox(db, seed=seed, size=size, admin_token=admin_token)


def main(argv: list[str] | None = None) -> None:
    """Serve one sandbox until stdin closes or SIGTERM arrives."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--crm", choices=CRMS, default="salesforce")
    args = parser.parse_args(argv)
    box = sandbox(args.crm, args.db, args.size, args.seed, os.environ.get(ADMIN_TOKEN_ENV))

    def stop(_signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    box.start()
    try:
        print(json.dumps({"port": box.port}), flush=True)
        sys.stdin.read()
    finally:
        box.stop()


if __name__ == "__main__":
    main()
