"""The database foundation on a real PostgreSQL: migrations vs schema.sql, queries, errors, triggers."""

from __future__ import annotations

import threading
from importlib import resources

import psycopg
import pytest

from iam_cluster.cli import main
from iam_cluster.db.errors import Conflict, InvalidReference, InvalidValue, translate_errors
from iam_cluster.db.migrate import apply_migrations, load_migrations
from iam_cluster.db.pool import struct_row
from iam_cluster.db.queries import QUERIES, parse_queries
from iam_cluster.db.rows import Meeting, User

#: Catalogue views that describe a schema; two databases with equal answers have the same schema.
CATALOGUE = {
    "columns": """
        SELECT table_name, column_name, ordinal_position, data_type, is_nullable, column_default,
               is_generated, generation_expression, numeric_precision, numeric_scale
        FROM information_schema.columns WHERE table_schema = 'public'
        ORDER BY table_name, ordinal_position""",
    "indexes": """
        SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'
        ORDER BY tablename, indexname""",
    "constraints": """
        SELECT conrelid::regclass::text, conname, contype, pg_get_constraintdef(oid)
        FROM pg_constraint WHERE connamespace = 'public'::regnamespace
        ORDER BY 1, 2""",
    "triggers": """
        SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(oid)
        FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1, 2""",
    "functions": """
        SELECT proname, pg_get_functiondef(p.oid) FROM pg_proc AS p
        WHERE pronamespace = 'public'::regnamespace ORDER BY 1""",
}


def migration_files() -> list[str]:
    """Every migration in ``iam_cluster/db/migrations/``, sorted, as ``NNNN_name`` (no ``.sql``)."""
    folder = resources.files("iam_cluster.db") / "migrations"
    return sorted(f.name.removesuffix(".sql") for f in folder.iterdir() if f.name.endswith(".sql"))


def describe(url: str) -> dict[str, list[tuple]]:
    with psycopg.connect(url) as c:
        return {name: c.execute(query).fetchall() for name, query in CATALOGUE.items()}


def new_user(c, email="ada@example.com", **extra):
    params = dict(email=email, password_hash="x", full_name="Ada", is_admin=False, tier="free") | extra
    with c.cursor(row_factory=struct_row(User)) as cur:
        return cur.execute(QUERIES["insert_user"], params).fetchone()


def test_migrations_produce_schema_sql(create_database):
    migrated, loaded = create_database(), create_database()
    assert apply_migrations(migrated) == migration_files()
    schema = (resources.files("iam_cluster.db") / "schema.sql").read_text()
    with psycopg.connect(loaded, autocommit=True) as c:
        c.execute(schema)
    a, b = describe(migrated), describe(loaded)
    assert {t for t, *_ in a["columns"]} >= {
        "users", "refresh_tokens", "meetings", "jobs", "messages", "notifications", "schema_migrations"}
    for name in CATALOGUE:
        assert a[name] == b[name], f"schema.sql differs from the migrations in {name}"


def test_migrating_twice_applies_nothing(empty_database_url):
    assert [m.label for m in load_migrations()] == migration_files()
    assert apply_migrations(empty_database_url) == migration_files()
    assert apply_migrations(empty_database_url) == []
    with psycopg.connect(empty_database_url) as c:
        rows = c.execute("SELECT version, name FROM schema_migrations ORDER BY version").fetchall()
    assert rows == [tuple(label.split("_", 1)) for label in migration_files()]


def test_concurrent_migrators(empty_database_url):
    barrier, results, errors = threading.Barrier(4), [], []

    def run():
        barrier.wait()
        try:
            results.append(apply_migrations(empty_database_url))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads) and errors == []
    # Each migration is applied exactly once, in order; which migrator applies which one is a race
    # (every migration takes the lock in its own transaction).
    assert len(results) == 4 and sorted(label for r in results for label in r) == migration_files()
    assert all(r == sorted(r) for r in results)


def test_migrate_cli(empty_database_url, capsys):
    assert main(["migrate", "--database-url", empty_database_url]) == 0
    assert capsys.readouterr().out.splitlines() == [f"applied {label}" for label in migration_files()]
    assert main(["migrate", "--database-url", empty_database_url]) == 0
    assert "nothing to apply" in capsys.readouterr().out


def test_migrate_cli_unreachable(capsys):
    assert main(["migrate", "--database-url", "postgresql://postgres@127.0.0.1:1/x?connect_timeout=2"]) == 2
    assert "[database_unavailable]" in capsys.readouterr().err


def test_email_unique_whatever_its_case(conn):
    user = new_user(conn, "Ada@Example.com")
    assert isinstance(user, User) and user.tier == "free" and user.is_active
    with pytest.raises(Conflict) as info, translate_errors():
        new_user(conn, "ada@EXAMPLE.COM")
    assert info.value.code == "conflict" and info.value.constraint == "users_email_lower_key"
    found = conn.cursor(row_factory=struct_row(User)).execute(
        QUERIES["get_user_by_email"], {"email": "ADA@example.com"}).fetchone()
    assert found.id == user.id


def test_foreign_key_and_check_violations(conn):
    import uuid

    with pytest.raises(InvalidReference) as info, translate_errors():
        conn.execute(QUERIES["meetings_api_create"], dict(user_id=uuid.uuid4(), title="t", description=None,
                                                     meeting_date=None))
    assert info.value.code == "invalid_reference" and info.value.constraint == "meetings_user_id_fkey"
    user = new_user(conn)
    with pytest.raises(InvalidValue), translate_errors():
        conn.execute("INSERT INTO meetings (user_id, title, processing_status) VALUES (%(u)s, 't', 'bogus')",
                     {"u": user.id})


def test_updated_at_trigger(conn):
    user = new_user(conn)
    assert user.updated_at == user.created_at
    with conn.cursor(row_factory=struct_row(User)) as cur:
        changed = cur.execute(QUERIES["update_user_profile"],
                              {"id": user.id, "full_name": "Ada L.", "email": None}).fetchone()
    assert changed.full_name == "Ada L." and changed.email == user.email
    assert changed.updated_at > user.updated_at and changed.created_at == user.created_at


def test_full_text_search(conn):
    user = new_user(conn)
    other = new_user(conn, "bob@example.com")
    rows = {}
    for owner, title, text in [(user, "Budget review", "We discussed the quarterly budget and hiring."),
                               (user, "Standup", "Nothing blocked today."),
                               (other, "Budget", "Someone else's budget meeting.")]:
        m = conn.execute(QUERIES["meetings_api_create"], dict(user_id=owner.id, title=title, description=None,
                                                         meeting_date=None)).fetchone()
        conn.execute("UPDATE meetings SET transcription_text = %(t)s, transcription_cost = 0.0125, "
                     "transcript = '{\"segments\": [{\"start\": 0.0, \"text\": \"hi\"}]}' WHERE id = %(id)s",
                     {"t": text, "id": m[0]})
        rows[title] = m[0]
    with conn.cursor(row_factory=struct_row(Meeting)) as cur:
        found = cur.execute(QUERIES["meetings_api_search"], {"user_id": user.id, "q": "quarterly hiring",
                                                             "limit": 10, "offset": 0}).fetchall()
        assert [m.id for m in found] == [rows["Budget review"]]
        assert found[0].transcription_text.startswith("We discussed")
        assert str(found[0].transcription_cost) == "0.012500" and found[0].transcript["segments"][0]["text"] == "hi"
        found = cur.execute(QUERIES["meetings_api_search"],
                            {"user_id": user.id, "q": "BUDGET", "limit": 10, "offset": 0}).fetchall()
        assert [m.id for m in found] == [rows["Budget review"]]  # the other user's meeting stays hidden
    with conn.transaction():  # the GIN index serves the search (seq scans off: the table is tiny)
        conn.execute("SET LOCAL enable_seqscan = off")
        plan = "\n".join(r[0] for r in conn.execute(
            "EXPLAIN SELECT id FROM meetings WHERE search @@ plainto_tsquery('simple', 'budget')"))
    assert "meetings_search_idx" in plan


def test_jobs_idempotency_key_unique_per_user(conn):
    user = new_user(conn)
    meeting = conn.execute(QUERIES["meetings_api_create"], dict(user_id=user.id, title="t", description=None,
                                                           meeting_date=None)).fetchone()
    insert = ("INSERT INTO jobs (user_id, meeting_id, idempotency_key, request_hash) "
              "VALUES (%(u)s, %(m)s, %(k)s, 'h')")
    conn.execute(insert, {"u": user.id, "m": meeting[0], "k": "key-1"})
    with pytest.raises(Conflict), translate_errors():
        conn.execute(insert, {"u": user.id, "m": meeting[0], "k": "key-1"})
    status, attempts, progress = conn.execute("SELECT status, attempts, progress FROM jobs").fetchone()
    assert (status, attempts, progress) == ("queued", 0, 0)


@pytest.mark.anyio
async def test_async_pool(db_pool):
    async with db_pool.connection() as c, c.transaction():
        cur = c.cursor(row_factory=struct_row(User))
        await cur.execute(QUERIES["insert_user"], dict(email="pool@example.com", password_hash="x",
                                                       full_name=None, is_admin=True, tier="pro"))
        user = await cur.fetchone()
    async with db_pool.connection() as c:
        cur = c.cursor(row_factory=struct_row(User))
        await cur.execute(QUERIES["get_user_by_id"], {"id": user.id})
        assert await cur.fetchone() == user
        with pytest.raises(Conflict), translate_errors():
            await c.execute(QUERIES["insert_user"], dict(email="POOL@example.com", password_hash="x",
                                                         full_name=None, is_admin=False, tier="free"))


def test_parse_queries_rejects_duplicates_and_strays():
    assert parse_queries("-- comment\n-- name: a\n-- about a\nSELECT 1;\n") == {"a": "SELECT 1"}
    with pytest.raises(ValueError, match="twice"):
        parse_queries("-- name: a\nSELECT 1\n-- name: a\nSELECT 2")
    with pytest.raises(ValueError, match="before"):
        parse_queries("SELECT 0\n-- name: a\nSELECT 1")
