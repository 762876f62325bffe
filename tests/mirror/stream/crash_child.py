"""The process a crash test kills: it applies the stream's inbox with a page hook that, inside
the apply's transaction, says where it is (a file) and waits to be killed.

``python -m tests.mirror.stream.crash_child <database url> <signal file>``; the CRM is the
deterministic seeded TinyCRM with the changes ``changed_crm`` makes, as in the parent test.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from mirror import Mirror
from tests.adapters.fourth.crm import TinyCrm, seeded
from tests.mirror.stream.world import config_for, registered


def changed_crm() -> TinyCrm:
    """The seeded CRM with the changes the test's events tell of."""
    crm = seeded(partners=2, deals_each=3)
    for number, deal in enumerate(sorted(crm.records["deals"])[:3]):
        crm.update("deals", deal, {"name": f"changed {number}"})
    return crm


def main(db_url: str, signal_file: str) -> None:
    """Apply the inbox and hang inside the transaction."""
    crm = changed_crm()

    def hang(*_args: Any) -> None:
        Path(signal_file).write_text("in the transaction")
        while True:
            time.sleep(1)

    with registered():
        mirror = Mirror(config_for(db_url, crm, "listen"), hooks=[hang])
        mirror.apply_stream("tiny")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
