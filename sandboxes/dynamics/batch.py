"""``POST /$batch`` for the Dataverse sandbox: OData multipart/mixed batches and change sets.

A batch holds up to 1,000 requests, each an ``application/http`` part, or change sets (nested
``multipart/mixed``) whose requests are applied atomically and may refer to rows created
earlier in the same change set as ``$<Content-ID>`` (in the URL or in an ``@odata.bind``).
Requests run in order. Without ``Prefer: odata.continue-on-error`` the batch stops at the first
failure and answers with that failure's status; with it, every request runs and the batch
answers 200. Each answer is an ``application/http`` part of the ``batchresponse_`` multipart.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from werkzeug.wrappers import Request, Response

from sandboxes.dynamics.errors import DataverseError
from sandboxes.dynamics.odata import query_error

MAX_REQUESTS = 1000
_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)

Execute = Callable[["Operation"], Response]


@dataclass
class Operation:
    """One request inside a batch."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    content_id: str | None = None

    @property
    def path_and_query(self) -> tuple[str, str]:
        """The request's path (under the host) and query string."""
        parts = urlsplit(self.url)
        path = parts.path if parts.path.startswith("/") else "/api/data/v9.2/" + parts.path
        return path, parts.query


@dataclass
class Part:
    """A top-level batch part: one operation, or a change set of several."""

    operations: list[Operation]
    changeset: bool = False


def boundary_of(content_type: str) -> str:
    """The ``boundary`` parameter of a multipart content type; 400 when missing."""
    match = _BOUNDARY.search(content_type or "")
    if match is None or "multipart/mixed" not in (content_type or "").lower():
        raise query_error("The batch request must have a multipart/mixed Content-Type.")
    return match.group(1)


def split_parts(body: bytes, boundary: str) -> list[bytes]:
    """The bodies of a multipart payload's parts (headers included)."""
    delimiter = b"--" + boundary.encode()
    parts = []
    for piece in body.split(delimiter)[1:]:
        if piece.startswith(b"--"):
            break
        parts.append(_strip_line_break(piece, leading=True))
    return [_strip_line_break(part, leading=False) for part in parts]


def _strip_line_break(data: bytes, *, leading: bool) -> bytes:
    for line_break in (b"\r\n", b"\n"):
        if leading and data.startswith(line_break):
            return data[len(line_break) :]
        if not leading and data.endswith(line_break):
            return data[: -len(line_break)]
    return data


def _head_and_body(data: bytes) -> tuple[dict[str, str], bytes]:
    for separator in (b"\r\n\r\n", b"\n\n"):
        if separator in data:
            head, body = data.split(separator, 1)
            break
    else:
        head, body = data, b""
    headers: dict[str, str] = {}
    for line in head.decode("utf-8").splitlines():
        name, _, value = line.partition(":")
        if name.strip():
            headers[name.strip().lower()] = value.strip()
    return headers, body


def _operation(part: bytes) -> Operation:
    part_headers, http = _head_and_body(part)
    if "application/http" not in part_headers.get("content-type", ""):
        raise query_error("Each batch part must be Content-Type: application/http.")
    text = http.lstrip(b"\r\n")
    line_end = text.find(b"\n")
    request_line = text[: line_end if line_end >= 0 else len(text)].decode().strip()
    pieces = request_line.split()
    if len(pieces) < 2:
        raise query_error(f"Invalid request line '{request_line}' in the batch.")
    headers, body = _head_and_body(text[line_end + 1 :] if line_end >= 0 else b"")
    return Operation(pieces[0].upper(), pieces[1], headers, body.rstrip(b"\r\n"),
                     part_headers.get("content-id"))  # fmt: skip


def parse_batch(content_type: str, body: bytes) -> list[Part]:
    """The parts of a batch request body."""
    parts: list[Part] = []
    for raw in split_parts(body, boundary_of(content_type)):
        headers, content = _head_and_body(raw)
        if "multipart/mixed" in headers.get("content-type", ""):
            inner = split_parts(content, boundary_of(headers["content-type"]))
            operations = [_operation(item) for item in inner]
            if any(op.method == "GET" for op in operations):
                raise query_error("GET requests are not allowed inside a change set.")
            parts.append(Part(operations, changeset=True))
        else:
            parts.append(Part([_operation(raw)]))
    if sum(len(p.operations) for p in parts) > MAX_REQUESTS:
        raise query_error(f"The batch holds more than {MAX_REQUESTS} requests.")
    return parts


def render_response(response: Response, content_id: str | None) -> bytes:
    """One answer as an ``application/http`` part."""
    lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if content_id:
        lines.append(f"Content-ID: {content_id}")
    lines += ["", f"HTTP/1.1 {response.status}"]
    lines += [f"{name}: {value}" for name, value in response.headers.items()
              if name.lower() != "content-length"]  # fmt: skip
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + response.get_data()


def run_batch(request: Request, execute: Execute, atomic: Callable[[], object]) -> Response:
    """Answer a ``$batch`` request; ``atomic()`` gives a context manager for change sets."""
    parts = parse_batch(request.headers.get("Content-Type", ""), request.get_data())
    keep_going = "odata.continue-on-error" in ",".join(request.headers.getlist("Prefer"))
    boundary = f"batchresponse_{uuid.uuid4()}"
    chunks: list[bytes] = []
    status = 200
    for part in parts:
        answers = _run_changeset(part, execute, atomic) if part.changeset else [
            (part.operations[0], execute(part.operations[0]))]  # fmt: skip
        chunks.append(_render_part(part, answers))
        failed = next((r for _, r in answers if r.status_code >= 400), None)
        if failed is not None and not keep_going:
            status = failed.status_code
            break
    body = b"".join(f"--{boundary}\r\n".encode() + chunk + b"\r\n" for chunk in chunks)
    body += f"--{boundary}--\r\n".encode()
    response = Response(body, status=status)
    response.headers["Content-Type"] = f"multipart/mixed; boundary={boundary}"
    response.headers["OData-Version"] = "4.0"
    return response


def _render_part(part: Part, answers: list[tuple[Operation, Response]]) -> bytes:
    if not part.changeset or (len(answers) == 1 and answers[0][1].status_code >= 400):
        operation, response = answers[0]
        return render_response(response, operation.content_id)
    boundary = f"changesetresponse_{uuid.uuid4()}"
    inner = b"".join(
        f"--{boundary}\r\n".encode() + render_response(r, op.content_id) + b"\r\n"
        for op, r in answers
    )
    head = f"Content-Type: multipart/mixed; boundary={boundary}\r\n\r\n".encode()
    return head + inner + f"--{boundary}--".encode()


def _run_changeset(
    part: Part, execute: Execute, atomic: Callable[[], object]
) -> list[tuple[Operation, Response]]:
    """Run a change set atomically; on a failure, only that failure is answered."""
    references: dict[str, str] = {}
    answers: list[tuple[Operation, Response]] = []
    try:
        with atomic():  # type: ignore[attr-defined]
            for operation in part.operations:
                resolved = _resolve(operation, references)
                response = execute(resolved)
                if response.status_code >= 400:
                    raise _ChangesetFailed(operation, response)
                entity_id = response.headers.get("OData-EntityId")
                if operation.content_id and entity_id:
                    references[operation.content_id] = entity_id
                answers.append((operation, response))
    except _ChangesetFailed as failure:
        return [(failure.operation, failure.response)]
    return answers


class _ChangesetFailed(Exception):
    def __init__(self, operation: Operation, response: Response) -> None:
        super().__init__("change set failed")
        self.operation = operation
        self.response = response


def _resolve(operation: Operation, references: dict[str, str]) -> Operation:
    def substitute(text: str) -> str:
        for content_id, url in sorted(references.items(), key=lambda kv: -len(kv[0])):
            text = text.replace(f"${content_id}", url)
        return text

    if not references:
        return operation
    if operation.url.startswith("$") and operation.url[1:].split("/")[0] not in references:
        raise DataverseError(
            400, "0x80060888", f"Content-ID Reference: '{operation.url.split('/')[0]}' does "
            "not exist in the batch context.",
        )  # fmt: skip
    body = substitute(operation.body.decode("utf-8")).encode() if operation.body else b""
    return Operation(operation.method, substitute(operation.url), operation.headers, body,
                     operation.content_id)  # fmt: skip
