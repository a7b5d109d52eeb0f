"""The job worker end to end: real PostgreSQL, the real tiny.en model on real clips, local storage."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from iam_cluster.queue import Jobs
from iam_cluster.settings import Settings, WorkerSettings
from iam_cluster.worker.heartbeat import progress_of
from iam_cluster.worker.loop import Worker
from tests.fixtures.audio import reference, wer
from tests.fixtures.worker import add_meeting, enqueue, meeting

CLIP = "spk1_snt1.wav"


def test_worker_transcribes_a_real_clip(conn, settings, storage, runner, data_dir):
    user_id, meeting_id = add_meeting(conn, storage, (data_dir / CLIP).read_bytes())
    job = enqueue(conn, user_id, meeting_id, {"language": "en", "beam_size": 1})
    worker = Worker(settings, runner=runner, storage=storage, worker_id="w1")
    try:
        assert worker.run_once()
        assert not worker.run_once()  # the queue is empty now
    finally:
        worker.close()
    done = Jobs(conn).get(job.id)
    assert (done.status, done.attempts, done.progress, done.lease_owner) == ("completed", 1, 1.0, None)
    m = meeting(conn, meeting_id)
    assert m["processing_status"] == "completed" and m["processing_error"] is None
    assert wer([reference(data_dir / CLIP)], [m["transcription_text"]]) <= 0.25
    stored = m["transcript"]  # the whole transcript, as the engine made it
    assert stored["segments"] and all({"start", "end", "text"} <= s.keys() for s in stored["segments"])
    assert stored["segments"][0]["words"][0]["word"].strip()
    assert stored["language"] == "en" and stored["language_probability"] == 1.0 and stored["model"] == "tiny.en"
    assert 0 < stored["speech_duration"] <= stored["duration"] and stored["confidence"] == m["transcription_confidence"]
    assert stored["options"]["beam_size"] == 1
    assert (m["language_detected"], m["provider_used"], m["model_used"]) == ("en", "iam-cluster", "tiny.en")
    assert 0 < m["transcription_confidence"] <= 1 and 2.0 < m["duration_seconds"] < 6.0
    assert m["processing_completed_at"] >= m["processing_started_at"]
    # Full-text search sees the transcript.
    assert conn.execute("SELECT count(*) FROM meetings WHERE search @@ plainto_tsquery('simple', 'dog')"
                        ).fetchone()[0] == 1


def test_bad_media_fails_at_once_without_retry(conn, settings, storage, runner):
    user_id, meeting_id = add_meeting(conn, storage, b"this is not audio at all " * 40)
    job = enqueue(conn, user_id, meeting_id, {})
    worker = Worker(settings, runner=runner, storage=storage)
    assert worker.run_once()
    assert not worker.run_once()
    worker.close()
    failed = Jobs(conn).get(job.id)
    assert (failed.status, failed.error_code, failed.attempts) == ("failed", "unsupported_media", 1)
    assert failed.error_message
    m = meeting(conn, meeting_id)
    assert m["processing_status"] == "failed" and m["processing_error"] == failed.error_message
    assert m["transcription_text"] is None and m["transcript"] is None


def test_missing_audio_fails_without_retry(conn, settings, storage, runner):
    user_id, meeting_id = add_meeting(conn, storage, None)
    job = enqueue(conn, user_id, meeting_id, {})
    worker = Worker(settings, runner=runner, storage=storage)
    assert worker.run_once()
    worker.close()
    failed = Jobs(conn).get(job.id)
    assert (failed.status, failed.error_code, failed.attempts) == ("failed", "unsupported_media", 1)


class Broken:
    """A pipeline that always crashes (a bug, a lost GPU): the job retries, then fails."""

    def run(self, source, options, hook, name=None):
        raise RuntimeError("boom")


def test_crashes_retry_then_fail_with_reason(conn, settings, storage, data_dir):
    user_id, meeting_id = add_meeting(conn, storage, (data_dir / CLIP).read_bytes())
    job = enqueue(conn, user_id, meeting_id, {})
    worker = Worker(settings, runner=Broken(), storage=storage)
    assert worker.run_once()
    retried = Jobs(conn).get(job.id)
    assert (retried.status, retried.attempts, retried.error_code) == ("queued", 1, "internal")
    assert meeting(conn, meeting_id)["processing_status"] == "queued"
    while worker.run_once():  # retry_base_seconds=0: runnable again at once
        pass
    worker.close()
    failed = Jobs(conn).get(job.id)
    assert (failed.status, failed.attempts, failed.error_code) == ("failed", 3, "internal")
    assert failed.error_message == "RuntimeError: boom"
    m = meeting(conn, meeting_id)
    assert (m["processing_status"], m["processing_error"]) == ("failed", "RuntimeError: boom")


def test_results_after_a_lost_lease_are_never_written(conn, settings, storage, runner, data_dir, database_url):
    user_id, meeting_id = add_meeting(conn, storage, (data_dir / CLIP).read_bytes())
    job = enqueue(conn, user_id, meeting_id, {"beam_size": 1})

    class Overtaken:
        """Transcribes, while another worker takes the job over (this one's lease expired)."""

        def run(self, source, options, hook, name=None):
            transcript = runner.run(source, options)
            # One transaction: w1's heartbeat cannot renew the lease between the expiry and w2's
            # claim (it waits on the row, then finds w2 holding it).
            with psycopg.connect(database_url) as other:
                other.execute("UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = %s",
                              [job.id])
                taken = Jobs(other).claim("w2", lease_seconds=30)
                other.commit()
            assert taken is not None and taken.id == job.id
            return transcript

    worker = Worker(settings, runner=Overtaken(), storage=storage, worker_id="w1")
    assert worker.run_once()
    worker.close()
    now = Jobs(conn).get(job.id)
    assert (now.status, now.lease_owner, now.attempts) == ("processing", "w2", 2)
    assert meeting(conn, meeting_id)["transcription_text"] is None  # nothing written by w1


def test_dead_workers_job_is_completed_once_by_another(conn, settings, storage, runner, data_dir):
    user_id, meeting_id = add_meeting(conn, storage, (data_dir / CLIP).read_bytes())
    job = enqueue(conn, user_id, meeting_id, {"beam_size": 1})
    assert Jobs(conn).claim("dead", lease_seconds=0.1).id == job.id  # then the process dies
    time.sleep(0.3)
    worker = Worker(settings, runner=runner, storage=storage, worker_id="w2")
    assert worker.run_once()
    worker.close()
    done = Jobs(conn).get(job.id)
    assert (done.status, done.attempts) == ("completed", 2)
    assert Jobs(conn).complete(job.id, "dead") is None
    assert meeting(conn, meeting_id)["transcription_text"]


def test_pg_notify_wakes_a_waiting_worker(conn, settings, storage, runner, data_dir):
    user_id, meeting_id = add_meeting(conn, storage, (data_dir / CLIP).read_bytes())
    worker = Worker(settings, runner=runner, storage=storage)
    stop = threading.Event()
    # Polling alone would take a minute: only the notification can wake it in time.
    runner = threading.Thread(target=worker.run, args=(stop,), kwargs={"poll_seconds": 60})
    runner.start()
    try:
        time.sleep(1.0)  # the worker found the queue empty and waits on LISTEN
        job = enqueue(conn, user_id, meeting_id, {"beam_size": 1})
        started = time.monotonic()
        while Jobs(conn).get(job.id).status != "completed" and time.monotonic() - started < 30:
            time.sleep(0.05)
        assert Jobs(conn).get(job.id).status == "completed"
        assert time.monotonic() - started < 30
    finally:
        stop.set()
        runner.join(timeout=10)
    assert not runner.is_alive()


def test_progress_mapping_is_monotonic_and_short_of_one():
    steps = [("asr", 0, 4), ("asr", 2, 4), ("asr", 4, 4), ("diarize", 1, 2), ("diarize", 2, 2)]
    values = [progress_of(*s) for s in steps]
    assert values == sorted(values) and values[-1] < 1.0 and values[0] == 0.0


def test_heartbeat_keeps_the_lease_and_reports_progress(conn, settings, storage, runner, data_dir, database_url):
    user_id, meeting_id = add_meeting(conn, storage, (data_dir / CLIP).read_bytes())
    job = enqueue(conn, user_id, meeting_id, {"beam_size": 1})
    seen: dict = {}

    class Slow:
        """Runs well past the lease; only the heartbeat keeps other workers off the job."""

        def run(self, source, options, hook, name=None):
            hook("asr", 1, 2)
            time.sleep(1.5)
            with psycopg.connect(database_url, autocommit=True) as other:
                seen["claim"] = Jobs(other).claim("w2", lease_seconds=30)
                seen["progress"] = Jobs(other).get(job.id).progress
            return runner.run(source, options, hook)

    short = Settings(database=settings.database, storage=settings.storage,
                     worker=WorkerSettings(lease_seconds=0.6, heartbeat_seconds=0.1))
    worker = Worker(short, runner=Slow(), storage=storage, worker_id="w1")
    assert worker.run_once()
    worker.close()
    assert seen["claim"] is None  # the lease was extended while the job ran
    assert seen["progress"] == pytest.approx(0.45)
    done = Jobs(conn).get(job.id)
    assert (done.status, done.attempts, done.progress) == ("completed", 1, 1.0)


def test_cli_worker_once_drains_the_queue(conn, storage, database_url, tmp_path, monkeypatch):
    from iam_cluster.cli import main
    from iam_cluster.settings import get_settings

    user_id, meeting_id = add_meeting(conn, storage, b"\x00\x01 definitely not media" * 10)
    job = enqueue(conn, user_id, meeting_id, {})
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("STORAGE_ROOT", str(tmp_path / "media"))
    get_settings.cache_clear()
    try:
        assert main(["worker", "--once"]) == 0
    finally:
        get_settings.cache_clear()
    assert Jobs(conn).get(job.id).error_code == "unsupported_media"
