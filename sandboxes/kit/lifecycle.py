"""What every sandbox does alike: open its state on first use, serve it, stop and save it.

A sandbox subclass calls ``_configure`` from its constructor and provides ``_open()`` (its org or
portal: an object with ``store``, ``clock`` and a writable ``base_url``; ``_seed_once`` and
``_resumed_clock`` do what every sandbox does on opening its file), ``_app()`` (its WSGI app)
and, when its answers should carry its own clock in ``Date``, ``_date_clock()``.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

from sandboxes.dataset.generate import Dataset
from sandboxes.kit.clock import SandboxClock
from sandboxes.kit.server import SandboxServer, WsgiApp
from sandboxes.kit.store import SqliteStore


class SandboxLifecycle:
    """Start, serve in the foreground, stop; ``with`` support; the port and base URL."""

    _requested_port: int = 0
    _server: SandboxServer | None = None
    _state: Any = None
    db_path: Path
    seed: int
    size: str | int
    anchor: datetime | None
    admin_token: str

    def _configure(
        self,
        db_path: str | Path,
        seed: int,
        size: str | int,
        port: int,
        anchor: datetime | None,
        admin_token: str | None,
    ) -> None:
        """Keep the constructor's arguments; a random admin token unless one is given."""
        self.db_path = Path(db_path)
        self.seed = seed
        self.size = size
        self.anchor = anchor
        self.admin_token = admin_token or secrets.token_urlsafe(24)
        self._requested_port = port
        self._server = None
        self._state = None

    def _seed_once(self, store: SqliteStore, load: Callable[[Dataset], object]) -> None:
        """Generate the dataset and ``load`` it into ``store``, unless the file holds one."""
        if store.get_meta("generated") is None:
            dataset = Dataset(self.seed, self.size, self.anchor)
            load(dataset)
            store.set_meta("anchor", dataset.anchor.isoformat())
            store.set_meta("generated", f"seed={self.seed} size={self.size}")

    @staticmethod
    def _stored_anchor(store: SqliteStore) -> datetime:
        """The instant the stored dataset's timestamps lead up to."""
        return datetime.fromisoformat(store.get_meta("anchor") or datetime.now(UTC).isoformat())

    def _resumed_clock(self, store: SqliteStore) -> SandboxClock:
        """The saved whole-second clock, never before the dataset's anchor."""
        clock = SandboxClock.from_state(store.get_meta("clock"))
        if clock.now() < self._stored_anchor(store):
            clock = SandboxClock(floor=self._stored_anchor(store))
        return clock

    def _open(self) -> Any:
        raise NotImplementedError

    def _app(self) -> WsgiApp:
        raise NotImplementedError

    def _date_clock(self) -> Callable[[], datetime] | None:
        return None

    @property
    def _world(self) -> Any:
        """The opened state (generating the dataset on first use)."""
        if self._state is None:
            self._state = self._open()
        return self._state

    def _new_server(self) -> SandboxServer:
        world = self._world
        server = SandboxServer(self._app(), self._requested_port, clock=self._date_clock())
        world.base_url = server.base_url
        return server

    def start(self) -> Self:
        """Generate the dataset if the file is new and serve in a daemon thread."""
        if self._server is None:
            self._server = self._new_server()
            self._server.start()
        return self

    def serve_forever(self) -> None:
        """Generate the dataset if needed and serve in the foreground until interrupted."""
        self._server = self._new_server()
        try:
            self._server.serve_forever()
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop serving, save the clock and close the database."""
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self._state is not None:
            self._state.store.set_meta("clock", self._state.clock.state())
            self._state.store.close()
            self._state = None

    def __enter__(self) -> Self:
        """Start on entering a ``with`` block."""
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        """Stop on leaving it."""
        self.stop()

    @property
    def port(self) -> int:
        """The TCP port served (the requested one before serving, when it is not 0)."""
        if self._server is not None:
            return self._server.port
        if self._requested_port:
            return self._requested_port
        raise RuntimeError("the sandbox is not started")

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"
