"""The TinyCRM adapter package in one module: its settings model, the adapter and its plugin.

This is all a fourth CRM brings to the engine: nothing under ``mirror/`` or in the CLI names it.
The plugin is registered with ``mirror.registry.register_adapter`` by the tests (an installed
package would name it in a ``prm_mirror.adapters`` entry point instead), and brings its own
schema file.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr

from adapters._kit.settings import AdapterSettings, SettingsPlugin, reveal
from mirror.adapter import CrmAdapter
from mirror.cursor import ChangeCursor, StampCodec
from mirror.errors import AuthError, ConfigError, CrmError, TransientError
from mirror.types import (
    Checkpoint,
    FieldSpec,
    FieldType,
    ObjectSpec,
    Page,
    Record,
    Relation,
    Tombstone,
    Write,
    WriteOp,
    WriteResult,
)
from tests.adapters.fourth.crm import ApiError, server_at

CRM = "tinycrm"
SCHEMA = Path(__file__).with_name("tinycrm.toml")
TYPES = {
    "id": FieldType.ID,
    "text": FieldType.STRING,
    "flag": FieldType.BOOLEAN,
    "number": FieldType.FLOAT,
    "time": FieldType.DATETIME,
}
READ_ONLY = frozenset({"id", "updated_at"})
STAMPS = StampCodec[datetime](datetime.fromisoformat, lambda when: when.isoformat())


class TinySettings(AdapterSettings):
    """How to reach one TinyCRM server."""

    label: ClassVar[str] = CRM

    url: str | None = None
    api_key: SecretStr | None = None
    page_size: int = Field(default=100, ge=1, le=1000)
    max_retries: int = Field(default=3, ge=0, le=10)
    # which change stream the adapter offers (tests/adapters/fourth/stream.py): none, a
    # connection it listens on, or webhook deliveries signed with ``webhook_secret``
    stream_kind: Literal["", "listen", "webhook"] = ""
    webhook_secret: SecretStr | None = None

    def problems(self) -> list[str]:
        """The address and the key are required; the address is a ``memory://`` one."""
        missing = [name for name in ("url", "api_key") if not getattr(self, name)]
        found = [f"{CRM}.{name}: required" for name in missing]
        if self.url and not self.url.startswith("memory://"):
            found.append(f"{CRM}.url must be a memory:// address: got {self.url!r}")
        return found


class TinyAdapter:
    """A TinyCRM server as the engine sees it: keyset pages on the closed-range cursor."""

    name = CRM

    def __init__(self, settings: TinySettings, *, source: str = CRM) -> None:
        """Check ``settings`` (``ConfigError`` lists every problem); no request yet."""
        settings.raise_problems()
        self.settings = settings
        self.source = source
        self.calls = 0
        self._token: str | None = None

    # --- transport ---------------------------------------------------------------------------

    def _call(self, operation: str, **arguments: Any) -> Any:
        for attempt in range(self.settings.max_retries + 1):
            try:
                return self._request(operation, arguments)
            except ApiError as error:
                if error.status == 401 and attempt == 0:
                    self._token = None
                    continue
                if error.status < 500 or attempt == self.settings.max_retries:
                    raise _mirror_error(error) from None
                time.sleep(0.001 * 2**attempt)
        raise TransientError(f"{CRM}: gave up after {self.settings.max_retries} retries")

    def _request(self, operation: str, arguments: Mapping[str, Any]) -> Any:
        server = server_at(str(self.settings.url))
        if self._token is None:
            self.calls += 1
            self._token = server.request(None, "login", api_key=reveal(self.settings.api_key))
        self.calls += 1
        return server.request(self._token, operation, **arguments)

    # --- the port ------------------------------------------------------------------------------

    def check(self) -> None:
        """Log in and list the objects."""
        self._token = None
        self._call("objects")

    def list_objects(self) -> list[str]:
        """The CRM's objects."""
        return list(self._call("objects"))

    def describe(self, object_name: str) -> ObjectSpec:
        """Fields from the CRM's metadata; links become reference fields and relations."""
        catalog = self._call("objects")
        if object_name not in catalog:
            raise ConfigError(f"{CRM} has no object {object_name!r}")
        fields, relations = [], []
        for name, kind in catalog[object_name].items():
            target = kind.removeprefix("link:") if kind.startswith("link:") else None
            fields.append(
                FieldSpec(
                    name,
                    FieldType.REFERENCE if target else TYPES[kind],
                    crm_type=kind,
                    createable=name not in READ_ONLY,
                    updateable=name not in READ_ONLY,
                    references=(target,) if target else (),
                    external_id=name == "external_key",
                    unique=name == "external_key",
                )
            )
            if target:
                relations.append(Relation(name, target))
        return ObjectSpec(
            self.source,
            object_name,
            "id",
            "updated_at",
            tuple(fields),
            tuple(relations),
            external_id_field="external_key",
        )

    def read(self, spec: ObjectSpec, since: Checkpoint | None) -> Iterator[Page]:
        """Keyset pages from the checkpoint: rows and tombstones in (stamp, id) order."""
        phase = since.phase if since is not None else "backfill"
        cursor = ChangeCursor.resume(STAMPS, since)
        while True:
            answer = self._call(
                "query",
                object_name=spec.name,
                since=cursor.position,
                skip=cursor.position_ids,
                limit=self.settings.page_size,
            )
            cursor.began(answer.began)
            events = [(row["updated_at"], row["id"]) for row in answer.rows]
            events += [(when, record_id) for record_id, when in answer.deleted]
            for stamp, record_id in sorted(events):
                cursor.take(stamp, record_id)
            done = len(events) < self.settings.page_size
            yield Page(
                [_record(spec, row) for row in answer.rows],
                cursor.checkpoint("incremental" if done else phase, {}),
                [Tombstone(record_id, when) for record_id, when in answer.deleted],
            )
            if done:
                return

    def read_ids(self, spec: ObjectSpec) -> Iterator[list[str]]:
        """Every live id, a page at a time."""
        ids = self._call("ids", object_name=spec.name)
        for start in range(0, len(ids), self.settings.page_size):
            yield ids[start : start + self.settings.page_size]

    def fetch(self, spec: ObjectSpec, ids: Sequence[str]) -> list[Record]:
        """The live records among ``ids``."""
        return [_record(spec, row) for row in self._call("get", object_name=spec.name, ids=ids)]

    def write(self, spec: ObjectSpec, writes: Sequence[Write]) -> list[WriteResult]:
        """One request per write; a failed one fails alone."""
        return [self._write(spec, write) for write in writes]

    def api_calls(self) -> int:
        """Requests made so far, logins and failed ones included."""
        return self.calls

    def _write(self, spec: ObjectSpec, write: Write) -> WriteResult:
        try:
            if write.op is WriteOp.CREATE:
                values = {**write.values, "external_key": write.idempotency_key}
                record_id, created = self._call("create", object_name=spec.name, values=values)
            elif write.op is WriteOp.UPDATE:
                record_id, created = str(write.record_id), False
                self._call(
                    "update",
                    object_name=spec.name,
                    record_id=record_id,
                    values=dict(write.values),
                    version=write.expected_version,
                )
            else:
                record_id, created = str(write.record_id), False
                self._call("delete", object_name=spec.name, record_id=record_id)
                return WriteResult(True, record_id)
        except CrmError as error:
            return WriteResult(
                False,
                write.record_id,
                error_code=error.code,
                message=str(error),
                precondition_failed=error.code == "PRECONDITION_FAILED",
            )
        [current] = self.fetch(spec, [record_id])
        return WriteResult(True, record_id, current["updated_at"].isoformat(), created=created)


def _record(spec: ObjectSpec, row: Mapping[str, Any]) -> Record:
    return {name: row.get(name) for name in spec.field_names}


def _mirror_error(error: ApiError) -> Exception:
    if error.status in (401, 403):
        return AuthError(f"{CRM}: {error.message}; check {CRM}.api_key")
    if error.status >= 500:
        return TransientError(f"{CRM}: {error.message}")
    code = "PRECONDITION_FAILED" if error.status == 412 else "NOT_FOUND"
    return CrmError(f"{CRM}: {error.message}", code=code)


def _build(source: str, settings: TinySettings) -> CrmAdapter:
    from tests.adapters.fourth.stream import TinyListener, TinyWebhooks

    kinds = {"": TinyAdapter, "listen": TinyListener, "webhook": TinyWebhooks}
    adapter: CrmAdapter = kinds[settings.stream_kind](settings, source=source)
    return adapter


plugin = SettingsPlugin(TinySettings, _build, schema=SCHEMA)
"""What an entry point of the TinyCRM package would name."""

__all__ = ["TinyAdapter", "TinySettings", "plugin"]
