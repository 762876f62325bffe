"""The peer side of ``bench.peers``: a dlt pipeline from the Salesforce sandbox into SQLite.

Runs under the interpreter of dlt's own virtual environment (``bench.peers_env``), so it imports
nothing of this project: only the standard library, dlt, simple-salesforce and requests.

``python bench/peers_dlt.py run --base-url URL --workdir DIR --objects A,B`` runs the pipeline
once (a backfill when ``DIR`` holds no pipeline state yet, else an incremental run) and prints
one JSON line with its timings, rows and peak RSS; ``inspect`` prints, per object, every row's
``Id``, ``IsDeleted`` and ``SystemModstamp`` as the destination holds them. The credentials come
from the ``PEERS_SF_USERNAME``, ``PEERS_SF_PASSWORD`` and ``PEERS_SF_TOKEN`` environment
variables.

The pipeline is written the way dlt's Salesforce verified source reads Salesforce: one resource
per object selecting every field the object's describe lists (compound fields left out), read
with the Bulk API (``query_all``: deleted records come too, with ``IsDeleted`` true) or, with
``--api rest``, with REST ``query_all_iter`` (the verified source's fallback, live records only);
incremental on ``SystemModstamp`` (``WHERE SystemModstamp > last value``), write disposition
``merge``, here on the primary key ``Id``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dlt
import requests
from requests.adapters import HTTPAdapter
from simple_salesforce import Salesforce

DATASET = "salesforce"
PIPELINE = "peers_salesforce"
NUMBERS = {"int": int, "double": float, "currency": float, "percent": float}
LOGIN_HOSTS = ("https://login.salesforce.com", "https://test.salesforce.com")


class ToSandbox(HTTPAdapter):
    """Sends the https requests simple-salesforce builds to the sandbox's plain-HTTP port."""

    def __init__(self, target: str) -> None:
        """Every request this adapter is mounted for goes to ``target``."""
        super().__init__()
        self.target = target.rstrip("/")

    def send(self, request: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """Rewrite the URL to the sandbox, keeping path and query."""
        parts = urlsplit(request.url or "")
        request.url = self.target + parts.path + ("?" + parts.query if parts.query else "")
        kwargs["verify"] = False
        return super().send(request, **kwargs)


def client(base_url: str) -> Salesforce:
    """A simple-salesforce client logged in to the sandbox with the password flow."""
    session = requests.Session()
    session.trust_env = False
    adapter = ToSandbox(base_url)
    port = urlsplit(base_url).port
    for prefix in (f"https://127.0.0.1:{port}", f"https://localhost:{port}", *LOGIN_HOSTS):
        session.mount(prefix, adapter)
    return Salesforce(
        username=os.environ["PEERS_SF_USERNAME"],
        password=os.environ["PEERS_SF_PASSWORD"],
        security_token=os.environ["PEERS_SF_TOKEN"],
        session=session,
    )


def soql(describe: dict[str, Any], sobject: str, since: str | None) -> str:
    """Every field but the compound ones, after ``since`` on SystemModstamp when given."""
    compound = {f["compoundFieldName"] for f in describe["fields"] if f.get("compoundFieldName")}
    fields = [f["name"] for f in describe["fields"] if f["name"] not in compound - {"Name"}]
    where = f" WHERE SystemModstamp > {since}" if since else ""
    return f"SELECT {', '.join(fields)} FROM {sobject}{where} ORDER BY SystemModstamp ASC"


def typed(describe: dict[str, Any]) -> dict[str, Any]:
    """Field name to a converter of its Bulk API CSV text (empty text is null)."""
    converters: dict[str, Any] = {}
    for field in describe["fields"]:
        kind = field["type"]
        if kind == "boolean":
            converters[field["name"]] = lambda text: text == "true"
        elif kind in NUMBERS:
            converters[field["name"]] = NUMBERS[kind]
    return converters


def bulk_rows(
    sf: Salesforce, sobject: str, describe: dict[str, Any], query: str, page: int
) -> Iterator[list[dict]]:
    """Bulk API 2.0 ``queryAll`` pages as typed records, polling every 0.1 s."""
    describe_types = typed(describe)
    for text in getattr(sf.bulk2, sobject).query_all(query, max_records=page, wait=0.1):
        records = []
        for row in csv.DictReader(io.StringIO(text)):
            record: dict[str, Any] = {}
            for name, value in row.items():
                if value == "":
                    record[name] = None
                else:
                    convert = describe_types.get(name)
                    record[name] = convert(value) if convert else value
            records.append(record)
        yield records


def rest_rows(sf: Salesforce, query: str) -> Iterator[list[dict]]:
    """REST query pages (2,000 records each), the ``attributes`` entry dropped."""
    batch: list[dict] = []
    for record in sf.query_all_iter(query):
        record.pop("attributes", None)
        batch.append(record)
        if len(batch) == 2000:
            yield batch
            batch = []
    if batch:
        yield batch


def salesforce_source(sf: Salesforce, objects: list[str], api: str, page: int) -> Any:
    """One merge resource per object, incremental on SystemModstamp."""

    def resource_of(sobject: str) -> Any:
        @dlt.resource(
            name=sobject.lower(),
            write_disposition="merge",
            primary_key="Id",
            parallelized=True,
        )
        def read(
            modstamp: Any = dlt.sources.incremental("SystemModstamp", initial_value=None),  # noqa: B008
        ) -> Iterator[list[dict]]:
            describe = getattr(sf, sobject).describe()
            query = soql(describe, sobject, modstamp.last_value)
            if api == "bulk":
                yield from bulk_rows(sf, sobject, describe, query, page)
            else:
                yield from rest_rows(sf, query)

        return read

    @dlt.source(name=DATASET)
    def source() -> Any:
        return [resource_of(name) for name in objects]

    return source()


def pipeline(workdir: Path, database: Path) -> Any:
    """The pipeline whose state and files live in ``workdir``, loading into ``database``."""
    destination = dlt.destinations.sqlalchemy(credentials=f"sqlite:///{database}")
    return dlt.pipeline(
        pipeline_name=PIPELINE,
        pipelines_dir=str(workdir / "pipelines"),
        destination=destination,
        dataset_name=DATASET,
    )


def peak_rss_mb() -> float:
    """This process's peak resident set size (``VmHWM``), in MB."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def run(args: argparse.Namespace) -> dict[str, Any]:
    """One pipeline run; its timings per step, rows per object and peak RSS."""
    started = time.perf_counter()
    sf = client(args.base_url)
    objects = args.objects.split(",")
    pipe = pipeline(Path(args.workdir), Path(args.workdir) / "dlt.db")
    pipe.run(salesforce_source(sf, objects, args.api, args.bulk_page_size))
    seconds = time.perf_counter() - started
    trace = pipe.last_trace
    steps = {
        step.step: round((step.finished_at - step.started_at).total_seconds(), 3)
        for step in trace.steps
        if step.started_at and step.finished_at
    }
    counts = trace.last_normalize_info.row_counts if trace.last_normalize_info else {}
    rows = {name: int(counts.get(name.lower(), 0)) for name in objects}
    return {"seconds": round(seconds, 3), "steps": steps, "rows": rows,
            "peak_rss_mb": round(peak_rss_mb(), 1)}  # fmt: skip


def inspect(args: argparse.Namespace) -> dict[str, Any]:
    """Every row's ``[Id, IsDeleted, SystemModstamp]`` per object, as loaded."""
    pipe = pipeline(Path(args.workdir), Path(args.workdir) / "dlt.db")
    held: dict[str, Any] = {}
    with pipe.sql_client() as sql:
        for name in args.objects.split(","):
            table = sql.make_qualified_table_name(name.lower())
            rows = sql.execute_sql(f"SELECT id, is_deleted, system_modstamp FROM {table}")
            held[name] = [[row[0], bool(row[1]), str(row[2])] for row in rows]
    return held


def main(argv: list[str] | None = None) -> None:
    """``run`` or ``inspect``; prints one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("run", "inspect"))
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--objects", required=True)
    parser.add_argument("--api", choices=("bulk", "rest"), default="bulk")
    parser.add_argument("--bulk-page-size", type=int, default=50_000)
    args = parser.parse_args(argv)
    answer = run(args) if args.command == "run" else inspect(args)
    sys.stdout.write(json.dumps(answer) + "\n")


if __name__ == "__main__":
    main()
