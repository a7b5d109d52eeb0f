"""The usage ledger on a real PostgreSQL: one row per completed job, settle on completion, release on failure."""

from __future__ import annotations

from decimal import Decimal

from iam_cluster.queue import Jobs
from iam_cluster.billing import ledger
from iam_cluster.billing.plans import billable_minutes, tiered_cost
from iam_cluster.db.queries import QUERIES
from iam_cluster.pipeline.types import Transcript
from iam_cluster.worker.events import EventSink
from iam_cluster.worker.results import JobEnd
from iam_cluster.worker.loop import Worker
from tests.fixtures.worker import add_meeting, enqueue

CLIP = "spk1_snt1.wav"


class Fixed:
    """A pipeline that returns an empty transcript of a fixed length (no model needed)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def run(self, source, options, hook=None, name=None):
        return Transcript(source="x", duration=self.seconds, language="en", language_probability=1.0,
                          segments=[], model="tiny.en", speech_duration=self.seconds / 2)


class Broken:
    def run(self, source, options, hook=None, name=None):
        raise RuntimeError("boom")


def _queued(conn, storage, data_dir, minutes="0.5"):
    """A queued job holding a reservation of ``minutes``, as the transcribe endpoint leaves it."""
    user_id, meeting_id = add_meeting(conn, storage, (data_dir / CLIP).read_bytes())
    job = enqueue(conn, user_id, meeting_id, {})
    conn.execute(QUERIES["billing_reserve"], {"job_id": job.id, "user_id": user_id, "minutes": Decimal(minutes)})
    return user_id, meeting_id, job


def _reservation(conn, job_id):
    return conn.execute("SELECT settled_at IS NOT NULL, released_at IS NOT NULL FROM quota_reservations "
                        "WHERE job_id = %s", [job_id]).fetchone()


def _usage(conn, job_id):
    return conn.execute("SELECT audio_seconds, billable_minutes, model, cost, stripe_reported_at, "
                        "stripe_attempts FROM usage_records WHERE job_id = %s", [job_id]).fetchall()


def test_billable_minutes_and_tiered_cost():
    assert billable_minutes(0) == 0 and billable_minutes(None) == 0
    assert billable_minutes(0.5) == Decimal("0.1") and billable_minutes(6.0) == Decimal("0.1")
    assert billable_minutes(6.01) == Decimal("0.2") and billable_minutes(60.0) == 1
    assert billable_minutes(61) == Decimal("1.1")
    assert tiered_cost(Decimal(100)) == Decimal("10.0000")
    assert tiered_cost(Decimal(600)) == Decimal("48.0000")  # 100*0.10 + 400*0.08 + 100*0.06
    assert tiered_cost(Decimal(50), already_used=Decimal(80)) == Decimal("4.4000")  # 20*0.10 + 30*0.08
    assert tiered_cost(Decimal(10), already_used=Decimal(1000)) == Decimal("0.6000")


def test_completed_job_writes_one_usage_row_and_settles(conn, settings, storage, data_dir):
    user_id, meeting_id, job = _queued(conn, storage, data_dir)
    worker = Worker(settings, runner=Fixed(61.0), storage=storage, worker_id="w1")
    try:
        assert worker.run_once()
    finally:
        worker.close()
    assert _usage(conn, job.id) == [(61.0, Decimal("1.1"), "tiny.en", Decimal("0.1100"), None, 0)]
    assert _reservation(conn, job.id) == (True, False)
    # The completion retried (a redelivered result, a second worker): the lease guard writes nothing ...
    again = JobEnd(conn, "w1", EventSink(settings.redis)).complete(job, Fixed(61.0).run(None, None))
    assert again is None
    # ... and the ledger itself refuses a second row for the job.
    with conn.transaction():
        assert ledger.record_completion(conn, user_id=user_id, job_id=job.id, meeting_id=meeting_id,
                                        audio_seconds=61.0, model="tiny.en") is None
    assert len(_usage(conn, job.id)) == 1
    assert conn.execute("SELECT count(*) FROM usage_records").fetchone()[0] == 1


def test_cost_follows_the_months_tiers(conn, settings, storage, data_dir):
    user_id, _, job = _queued(conn, storage, data_dir)
    conn.execute("INSERT INTO usage_records (user_id, job_id, audio_seconds, billable_minutes, cost) "
                 "VALUES (%s, gen_random_uuid(), 5940, 99, 9.9)", [user_id])
    worker = Worker(settings, runner=Fixed(120.0), storage=storage)
    try:
        assert worker.run_once()
    finally:
        worker.close()
    # 2 minutes after 99 used: 1 at $0.10, 1 at $0.08
    assert _usage(conn, job.id)[0][3] == Decimal("0.1800")


def test_failed_job_releases_its_reservation_and_bills_nothing(conn, settings, storage, data_dir):
    _, _, job = _queued(conn, storage, data_dir)
    worker = Worker(settings, runner=Broken(), storage=storage)
    try:
        assert worker.run_once()
        assert Jobs(conn).get(job.id).status == "queued"  # a retry keeps the reservation
        assert _reservation(conn, job.id) == (False, False)
        while worker.run_once():
            pass
    finally:
        worker.close()
    assert Jobs(conn).get(job.id).status == "failed"
    assert _reservation(conn, job.id) == (False, True)
    assert _usage(conn, job.id) == []


def test_bad_media_fails_at_once_and_releases(conn, settings, storage, runner):
    user_id, meeting_id = add_meeting(conn, storage, b"not audio " * 100)
    job = enqueue(conn, user_id, meeting_id, {})
    conn.execute(QUERIES["billing_reserve"], {"job_id": job.id, "user_id": user_id, "minutes": Decimal(1)})
    worker = Worker(settings, runner=runner, storage=storage)
    try:
        assert worker.run_once()
    finally:
        worker.close()
    assert _reservation(conn, job.id) == (False, True)
    assert _usage(conn, job.id) == []
