"""Apply ``migrations/NNNN_name.sql`` in order, each once, safe when several processes migrate at once."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources

import psycopg

from iam_cluster.db.errors import translate
from iam_cluster.db.queries import QUERIES

log = logging.getLogger(__name__)

_FILENAME = re.compile(r"^(\d{4})_(\w+)\.sql$")
#: pg_advisory_xact_lock key shared by every migrator ("iam_migr" in ASCII).
LOCK_KEY = int.from_bytes(b"iam_migr", "big") & 0x7FFF_FFFF_FFFF_FFFF


@dataclass(frozen=True)
class Migration:
    """One migration file: ``0001_initial.sql`` is version ``0001``, name ``initial``."""

    version: str
    name: str
    sql: str

    @property
    def label(self) -> str:
        return f"{self.version}_{self.name}"


def load_migrations() -> list[Migration]:
    """The package's migrations, in version order.

    Raises:
        ValueError: a file name does not match ``NNNN_name.sql`` or two files share a version.
    """
    folder = resources.files("iam_cluster.db") / "migrations"
    found: dict[str, Migration] = {}
    for f in folder.iterdir():
        if not f.name.endswith(".sql"):
            continue
        m = _FILENAME.match(f.name)
        if m is None:
            raise ValueError(f"migration file {f.name!r} is not named NNNN_name.sql")
        if m[1] in found:
            raise ValueError(f"two migrations have version {m[1]}")
        found[m[1]] = Migration(m[1], m[2], f.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


def applied_versions(conn: psycopg.Connection) -> set[str]:
    """Versions recorded in ``schema_migrations`` (empty when the table does not exist yet)."""
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()[0]
    if not exists:
        return set()
    return {row[0] for row in conn.execute(QUERIES["applied_migrations"])}


def apply_migrations(conninfo: str, migrations: list[Migration] | None = None) -> list[str]:
    """Apply every migration not yet recorded, each in its own transaction.

    Each transaction first takes a transaction-scoped advisory lock, then checks again whether its
    migration was applied, so concurrent migrators wait for each other and never apply one twice.

    Args:
        conninfo: a PostgreSQL URL or ``key=value`` connection string.
        migrations: what to apply; the package's migrations by default.

    Returns:
        Labels (``0001_initial``) of the migrations this call applied, in order; empty when none.

    Raises:
        DatabaseUnavailable: the database cannot be reached.
        DatabaseError: a migration failed (its transaction is rolled back; earlier ones stay).
    """
    migrations = load_migrations() if migrations is None else migrations
    applied: list[str] = []
    try:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            for migration in migrations:
                with conn.transaction():
                    conn.execute(QUERIES["lock_migrations"], {"key": LOCK_KEY})
                    conn.execute(QUERIES["create_schema_migrations"])
                    if migration.version in applied_versions(conn):
                        continue
                    log.info("applying migration %s", migration.label)
                    # No parameters: psycopg sends the file as one multi-statement query.
                    conn.execute(migration.sql)
                    conn.execute(QUERIES["record_migration"],
                                 {"version": migration.version, "name": migration.name})
                applied.append(migration.label)
    except psycopg.Error as exc:
        raise translate(exc) from exc
    return applied
