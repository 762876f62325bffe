"""The client side of Dataverse ``$batch``: build a multipart/mixed request, read the answers.

Requests go in as independent ``application/http`` parts (no change sets: one bad record must
not roll back the others) and the batch is sent with ``Prefer: odata.continue-on-error``, so
Dataverse runs every request and answers each in order with its own status, headers and body.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)
_STATUS = re.compile(r"^HTTP/\d\.\d\s+(\d{3})")


@dataclass(frozen=True)
class BatchRequest:
    """One request of a batch: method, URL (absolute-path), headers, JSON body."""

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None


@dataclass(frozen=True)
class BatchAnswer:
    """One answer of a batch."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        """The body decoded as JSON (``{}`` when empty)."""
        return orjson.loads(self.body) if self.body.strip() else {}


def build(requests: Sequence[BatchRequest]) -> tuple[str, bytes]:
    """``(Content-Type, body)`` of a batch holding ``requests``."""
    boundary = f"batch_{uuid.uuid4()}"
    chunks = []
    for request in requests:
        lines = [f"--{boundary}", "Content-Type: application/http",
                 "Content-Transfer-Encoding: binary", "",
                 f"{request.method} {request.url} HTTP/1.1"]  # fmt: skip
        headers = dict(request.headers)
        payload = b""
        if request.body is not None:
            headers["Content-Type"] = "application/json; type=entry"
            payload = orjson.dumps(request.body)
        lines += [f"{name}: {value}" for name, value in headers.items()]
        chunks.append(("\r\n".join(lines) + "\r\n\r\n").encode() + payload + b"\r\n")
    body = b"".join(chunks) + f"--{boundary}--\r\n".encode()
    return f'multipart/mixed; boundary="{boundary}"', body


def parse(content_type: str, body: bytes) -> list[BatchAnswer]:
    """The answers of a batch response, in order (change-set answers flattened)."""
    match = _BOUNDARY.search(content_type or "")
    if match is None:
        raise ValueError("the $batch answer is not multipart/mixed")
    answers: list[BatchAnswer] = []
    for part in _parts(body, match.group(1)):
        part_headers, content = _head_and_body(part)
        inner = _BOUNDARY.search(part_headers.get("content-type", ""))
        if inner is not None and "multipart/mixed" in part_headers.get("content-type", ""):
            for item in _parts(content, inner.group(1)):
                answers.append(_answer(_head_and_body(item)[1]))
        else:
            answers.append(_answer(content))
    return answers


def _parts(body: bytes, boundary: str) -> list[bytes]:
    delimiter = b"--" + boundary.encode()
    parts = []
    for piece in body.split(delimiter)[1:]:
        if piece.startswith(b"--"):
            break
        parts.append(piece.removeprefix(b"\r\n").removeprefix(b"\n").removesuffix(b"\r\n"))
    return parts


def _head_and_body(data: bytes) -> tuple[dict[str, str], bytes]:
    for separator in (b"\r\n\r\n", b"\n\n"):
        if separator in data:
            head, body = data.split(separator, 1)
            break
    else:
        head, body = data, b""
    headers: dict[str, str] = {}
    for line in head.decode("utf-8", "replace").splitlines():
        name, _, value = line.partition(":")
        if name.strip():
            headers[name.strip().lower()] = value.strip()
    return headers, body


def _answer(http: bytes) -> BatchAnswer:
    text = http.lstrip(b"\r\n")
    line_end = text.find(b"\n")
    status_line = text[: line_end if line_end >= 0 else len(text)].decode().strip()
    match = _STATUS.match(status_line)
    if match is None:
        raise ValueError(f"unexpected $batch answer line {status_line[:80]!r}")
    headers, body = _head_and_body(text[line_end + 1 :] if line_end >= 0 else b"")
    return BatchAnswer(int(match.group(1)), headers, body.rstrip(b"\r\n"))
