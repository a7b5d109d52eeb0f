"""The durable job queue on a real PostgreSQL: enqueue, SKIP LOCKED claims, leases, retries, pg_notify."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import psycopg
import pytest

from iam_cluster import queue
from iam_cluster.db.errors import Conflict
from iam_cluster.queue import AsyncJobs, Jobs
from tests.fixtures.worker import add_meeting, enqueue


def meeting_status(conn, meeting_id) -> str:
    return conn.execute("SELECT processing_status FROM meetings WHERE id = %s", [meeting_id]).fetchone()[0]


def test_enqueue_claim_complete(conn):
    user_id, meeting_id = add_meeting(conn)
    job = enqueue(conn, user_id, meeting_id, {"language": "en"}, max_attempts=2)
    assert (job.status, job.attempts, job.max_attempts, job.options) == ("queued", 0, 2, {"language": "en"})
    assert meeting_status(conn, meeting_id) == "queued"

    claimed = Jobs(conn).claim("w1", lease_seconds=30)
    assert claimed.id == job.id and claimed.status == "processing"
    assert (claimed.attempts, claimed.lease_owner) == (1, "w1")
    assert claimed.lease_expires_at > claimed.started_at
    assert Jobs(conn).claim("w2", lease_seconds=30) is None  # nothing else runnable

    assert Jobs(conn).heartbeat(job.id, "w1", 30, progress=0.5)
    assert not Jobs(conn).heartbeat(job.id, "w2", 30)  # only the owner extends the lease
    done = Jobs(conn).complete(job.id, "w1")
    assert done.status == "completed" and done.progress == 1.0 and done.finished_at is not None
    # Terminal states never change.
    assert Jobs(conn).complete(job.id, "w1") is None
    assert Jobs(conn).fail(job.id, "w1", "internal", "late") is None
    assert Jobs(conn).retry_later(job.id, "w1", 1.0, "late") is None
    assert not Jobs(conn).heartbeat(job.id, "w1", 30)
    assert Jobs(conn).get(job.id).status == "completed"


def test_idempotency_key_replays_or_conflicts(conn):
    user_id, meeting_id = add_meeting(conn)
    first = enqueue(conn, user_id, meeting_id, {}, idempotency_key="k1", request_hash="h1")
    again = enqueue(conn, user_id, meeting_id, {}, idempotency_key="k1", request_hash="h1")
    assert again.id == first.id
    with pytest.raises(Conflict):
        enqueue(conn, user_id, meeting_id, {"language": "fr"}, idempotency_key="k1", request_hash="h2")
    assert conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == 1


def test_concurrent_claimers_never_share_a_job(conn, database_url):
    user_id, meeting_id = add_meeting(conn)
    enqueued = {enqueue(conn, user_id, meeting_id, {}).id for _ in range(30)}
    claimed: list[list[uuid.UUID]] = [[] for _ in range(6)]
    start = threading.Barrier(len(claimed))

    def claimer(i: int) -> None:
        with psycopg.connect(database_url, autocommit=True) as c:
            start.wait()
            while (job := Jobs(c).claim(f"w{i}", lease_seconds=30)) is not None:
                claimed[i].append(job.id)

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(len(claimed))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    everything = [j for ids in claimed for j in ids]
    assert len(everything) == len(set(everything)) == len(enqueued)
    assert set(everything) == enqueued
    owners = conn.execute("SELECT count(DISTINCT lease_owner) FROM jobs").fetchone()[0]
    assert owners > 1  # the claimers really ran side by side


def test_expired_lease_is_reclaimed_and_late_complete_refused(conn):
    user_id, meeting_id = add_meeting(conn)
    job = enqueue(conn, user_id, meeting_id, {})
    assert Jobs(conn).claim("dead", lease_seconds=0.2).id == job.id
    assert Jobs(conn).claim("w2", lease_seconds=30) is None  # the lease still holds
    time.sleep(0.4)
    taken = Jobs(conn).claim("w2", lease_seconds=30)
    assert taken.id == job.id and taken.lease_owner == "w2" and taken.attempts == 2
    # The first worker wakes up: its heartbeat and its results are refused.
    assert not Jobs(conn).heartbeat(job.id, "dead", 30)
    assert Jobs(conn).complete(job.id, "dead") is None
    assert Jobs(conn).fail(job.id, "dead", "internal", "late") is None
    assert Jobs(conn).complete(job.id, "w2").status == "completed"


def test_retries_with_backoff_then_failed_with_reason(conn):
    user_id, meeting_id = add_meeting(conn)
    job = enqueue(conn, user_id, meeting_id, {}, max_attempts=3)
    delays = []
    for attempt in (1, 2, 3):
        claimed = Jobs(conn).claim("w", lease_seconds=30)
        assert claimed is not None and claimed.attempts == attempt
        after = Jobs(conn).retry_later(job.id, "w", 10.0, f"boom {attempt}")
        if attempt < 3:
            assert after.status == "queued" and after.lease_owner is None
            assert Jobs(conn).claim("w", lease_seconds=30) is None  # not runnable before its time
            delays.append(conn.execute("SELECT extract(epoch FROM run_after - updated_at) FROM jobs WHERE id = %s",
                                       [job.id]).fetchone()[0])
            conn.execute("UPDATE jobs SET run_after = now() WHERE id = %s", [job.id])  # skip the wait
    assert [float(d) for d in delays] == [10.0, 20.0]  # retry_base * 2**(attempts - 1)
    assert after.status == "failed" and after.attempts == 3
    assert (after.error_code, after.error_message) == ("internal", "boom 3")
    assert after.finished_at is not None
    assert Jobs(conn).claim("w", lease_seconds=30) is None  # a failed job is never taken again


def test_fail_rejects_unknown_codes(conn):
    user_id, meeting_id = add_meeting(conn)
    job = enqueue(conn, user_id, meeting_id, {})
    Jobs(conn).claim("w", lease_seconds=30)
    with pytest.raises(ValueError):
        Jobs(conn).fail(job.id, "w", "oops", "no such code")
    failed = Jobs(conn).fail(job.id, "w", "unsupported_media", "not audio")
    assert (failed.status, failed.error_code, failed.attempts) == ("failed", "unsupported_media", 1)


def test_pg_notify_wakes_a_waiting_listener(conn, database_url):
    user_id, meeting_id = add_meeting(conn)
    got: list[str] = []
    with psycopg.connect(database_url, autocommit=True) as listener:
        assert queue.wait_for_jobs(listener, 0.05) == []  # subscribes; nothing queued yet
        waiter = threading.Thread(target=lambda: got.extend(queue.wait_for_jobs(listener, 10)))
        started = time.monotonic()
        waiter.start()
        time.sleep(0.2)
        job = enqueue(conn, user_id, meeting_id, {})
        waiter.join(timeout=10)
    assert got == [str(job.id)]
    assert time.monotonic() - started < 3


def test_notification_waits_for_commit(conn, database_url):
    user_id, meeting_id = add_meeting(conn)
    with psycopg.connect(database_url, autocommit=True) as listener:
        queue.listen(listener)
        with conn.transaction():
            job = enqueue(conn, user_id, meeting_id, {})
            assert queue.wait_for_jobs(listener, 0.2) == []  # not committed: no wake-up yet
        assert queue.wait_for_jobs(listener, 5) == [str(job.id)]


def test_cancel_queued_now_and_running_at_its_next_report(conn, database_url):
    user_id, meeting_id = add_meeting(conn)

    def cancel(user, job_id):
        async def go():
            async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as a:
                return await AsyncJobs(a).cancel(user, job_id)
        return asyncio.run(go())

    queued = enqueue(conn, user_id, meeting_id)
    assert cancel(uuid.uuid4(), queued.id) is None  # another user's job is not found
    done = cancel(user_id, queued.id)
    assert (done.status, done.error_code) == ("cancelled", "cancelled") and done.finished_at is not None
    assert Jobs(conn).claim("w", lease_seconds=30) is None  # never taken
    running = enqueue(conn, user_id, meeting_id)
    Jobs(conn).claim("w", lease_seconds=30)
    flagged = cancel(user_id, running.id)
    assert flagged.status == "processing" and flagged.cancel_requested_at is not None
    assert Jobs(conn).heartbeat(running.id, "w", 30).cancel_requested_at is not None  # the worker hears it
    ended = Jobs(conn).fail(running.id, "w", "cancelled", "cancelled by its owner")
    assert ended.status == "cancelled"
    assert cancel(user_id, running.id) is None  # an ended job stays as it ended
