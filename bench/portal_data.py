"""The portal benchmark's prepared data: a mirror of the seeded sandbox, built once per store,
size and seed and copied for each run.

Backfilling a million opportunities takes minutes into SQLite and over half an hour into
PostgreSQL, so the first run keeps what it built: the SQLite mirror as
``bench/.cache/portal-mirror-<size>-seed<seed>-<fingerprint>.db`` and the PostgreSQL one as the
database ``prm_portal_<size>_s<seed>_<fingerprint>`` (the fingerprint is the sandbox's code: a
mirror of other data is not reused). Each run works on a copy (a file copy; a database created
from the prepared one as its template), beside a copy of the pristine sandbox it mirrors, so
the edits of one run never reach the next. An engine change needs no rebuild: opening the
store adds any index or column it lacks. ``python -m bench.portal_data --size 1000000
--store postgres`` prepares one ahead of a run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from types import SimpleNamespace

from bench.common import (
    PG_URL,
    SANDBOX_CODE,
    cache_dir,
    code_fingerprint,
    console,
    copy_sqlite,
    remove_sqlite,
)
from bench.sandbox_process import SandboxProcess, cached_sandbox
from sandboxes.kit.configs import config_toml
from sandboxes.salesforce.org import Credentials

STORES = ("sqlite", "postgres")
# the portal's pages and open streams query the store at once: connections kept open for them
POOL = "pool_size = 32\nmax_overflow = 32\n"
# partner users are their partner's admins; the same rule as the portal's demo
ROLES = """
[sources.salesforce.visibility.partner_users]
role_field = "UserType"
admin_roles = ["PowerPartner"]
"""


def config_text(sandbox_url: str, database: str) -> str:
    """The config that mirrors the sandbox process, partner users as admins."""
    credentials = Credentials()
    box = SimpleNamespace(
        base_url=sandbox_url,
        username=credentials.username,
        password=credentials.password,
        security_token=credentials.security_token,
    )
    text = config_toml("salesforce", box, database)
    return text.replace("[store]\n", f"[store]\n{POOL}", 1) + ROLES


def _pg_admin(base_url: str):  # type: ignore[no-untyped-def]
    from sqlalchemy import create_engine

    return create_engine(base_url, isolation_level="AUTOCOMMIT")


def pg_database_url(base_url: str, database: str) -> str:
    """``base_url`` pointing at ``database`` on the same server."""
    from sqlalchemy.engine import make_url

    return make_url(base_url).set(database=database).render_as_string(hide_password=False)


def prepared_name(store: str, size: int, seed: int) -> str:
    """The prepared mirror's file stem (SQLite) or database name (PostgreSQL)."""
    fingerprint = code_fingerprint(SANDBOX_CODE)
    if store == "postgres":
        return f"prm_portal_{size}_s{seed}_{fingerprint}"
    return f"portal-mirror-{size}-seed{seed}-{fingerprint}"


def _pg_exists(base_url: str, database: str) -> bool:
    from sqlalchemy import text

    admin = _pg_admin(base_url)
    try:
        with admin.connect() as conn:
            found = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": database}
            ).first()
        return found is not None
    finally:
        admin.dispose()


def _pg_recreate(base_url: str, database: str, template: str | None = None) -> None:
    from sqlalchemy import text

    admin = _pg_admin(base_url)
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            copy = f' TEMPLATE "{template}" STRATEGY FILE_COPY' if template else ""
            conn.execute(text(f'CREATE DATABASE "{database}"{copy}'))
    finally:
        admin.dispose()


def prepared_mirror(
    store: str, size: int, seed: int, *, pg_url: str = PG_URL, rebuild: bool = False
) -> str:
    """The prepared mirror's database URL, backfilled now unless an earlier run left it."""
    from mirror import Mirror

    name = prepared_name(store, size, seed)
    if store == "postgres":
        url = pg_database_url(pg_url, name)
        if _pg_exists(pg_url, name) and not rebuild:
            return url
        partial = f"{name}_partial"
        _pg_recreate(pg_url, partial)
        target = pg_database_url(pg_url, partial)
    else:
        path = cache_dir() / f"{name}.db"
        url = f"sqlite:///{path}"
        if path.exists() and not rebuild:
            return url
        partial_path = path.with_suffix(".partial")
        remove_sqlite(partial_path)
        target = f"sqlite:///{partial_path}"
    work = cache_dir() / f"portal-build-sandbox-{store}-{size}.db"
    copy_sqlite(cached_sandbox(size, seed), work)
    started = time.perf_counter()
    with SandboxProcess(work, size, seed) as sandbox:
        config = cache_dir() / f"portal-build-{store}-{size}.toml"
        config.write_text(config_text(sandbox.base_url, target))
        with Mirror.open(config) as mirror:
            mirror.sync()
    remove_sqlite(work)
    console.print(
        f"backfilled the {store} mirror of {size} in {time.perf_counter() - started:.0f} s"
    )
    if store == "postgres":
        from sqlalchemy import text

        admin = _pg_admin(pg_url)
        try:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                conn.execute(text(f'ALTER DATABASE "{partial}" RENAME TO "{name}"'))
        finally:
            admin.dispose()
    else:
        copy_sqlite(partial_path, path)
        remove_sqlite(partial_path)
    return url


def working_copy(
    store: str, size: int, seed: int, workdir: Path, *, pg_url: str = PG_URL, rebuild: bool = False
) -> str:
    """A copy of the prepared mirror for one run (its database URL)."""
    prepared = prepared_mirror(store, size, seed, pg_url=pg_url, rebuild=rebuild)
    if store == "postgres":
        name = prepared_name(store, size, seed)
        work = f"prm_portal_work_{size}"
        _pg_recreate(pg_url, work, template=name)
        return pg_database_url(pg_url, work)
    copy = copy_sqlite(Path(prepared.removeprefix("sqlite:///")), workdir / "mirror.db")
    return f"sqlite:///{copy}"


def main(argv: list[str] | None = None) -> None:
    """Prepare the mirror of one store and size ahead of a run."""
    cli = argparse.ArgumentParser(prog="python -m bench.portal_data", description=__doc__)
    cli.add_argument("--size", type=int, default=10_000)
    cli.add_argument("--seed", type=int, default=7)
    cli.add_argument("--store", choices=STORES, default="sqlite")
    cli.add_argument("--pg-url", default=PG_URL)
    cli.add_argument("--rebuild", action="store_true")
    args = cli.parse_args(argv)
    url = prepared_mirror(
        args.store, args.size, args.seed, pg_url=args.pg_url, rebuild=args.rebuild
    )
    console.print(f"prepared: {url.split('@')[-1]}")


if __name__ == "__main__":
    main()
