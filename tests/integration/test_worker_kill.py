"""A real worker process killed (SIGKILL) mid-job: another worker completes the job exactly once."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from iam_cluster.queue import Jobs
from iam_cluster.settings import Settings, WorkerSettings
from iam_cluster.worker.results import JobEnd
from iam_cluster.worker.loop import Worker
from tests.fixtures.worker import add_meeting, enqueue, meeting

LEASE, HEARTBEAT, WAIT = 3.0, 1.0, 60.0
ROOT = Path(__file__).parents[2]


def long_wav(data_dir) -> bytes:
    """About two minutes of speech: sample.wav four times, as one 16 kHz mono WAV."""
    samples, rate = sf.read(data_dir / "sample.wav", dtype="float32")
    buf = io.BytesIO()
    sf.write(buf, np.concatenate([samples] * 4), rate, format="WAV")
    return buf.getvalue()


def wait_for(predicate, what: str, timeout: float = WAIT, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def test_killed_worker_process_job_is_completed_once_by_another(
        conn, settings, storage, runner, data_dir, database_url, tmp_path, monkeypatch):
    user_id, meeting_id = add_meeting(conn, storage, long_wav(data_dir))
    job = enqueue(conn, user_id, meeting_id, {"language": "en", "beam_size": 1})
    env = dict(os.environ, DATABASE_URL=database_url, STORAGE_BACKEND="local",
               STORAGE_ROOT=str(tmp_path / "media"), WORKER_LEASE_SECONDS=str(LEASE),
               WORKER_HEARTBEAT_SECONDS=str(HEARTBEAT), WORKER_RETRY_BASE_SECONDS="0",
               IAM_MODEL="tiny.en", IAM_DEVICE="cpu", IAM_COMPUTE_TYPE="int8", IAM_CPU_THREADS="1",
               IAM_SERVE_ADDRESS="")
    proc = subprocess.Popen([sys.executable, "-m", "iam_cluster.cli", "worker"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        def claimed_by_proc():
            assert proc.poll() is None, f"worker exited early: {proc.stderr.read().decode()[-2000:]}"
            j = Jobs(conn).get(job.id)
            assert j.status in ("queued", "processing"), j
            return j if j.status == "processing" and f":{proc.pid}:" in (j.lease_owner or "") else None

        running = wait_for(claimed_by_proc, "the worker process to claim the job", step=0.05)
        dead_owner = running.lease_owner
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL

    # The job is orphaned: still processing under the dead worker's lease, nothing written.
    orphan = Jobs(conn).get(job.id)
    assert (orphan.status, orphan.lease_owner, orphan.attempts) == ("processing", dead_owner, 1)
    m = meeting(conn, meeting_id)
    assert m["transcription_text"] is None and m["transcript"] is None
    assert m["processing_status"] != "completed"

    written = []
    complete = JobEnd.complete

    def counting(*args, **kwargs):
        done = complete(*args, **kwargs)
        written.append(done)
        return done

    monkeypatch.setattr(JobEnd, "complete", counting)
    short = Settings(database=settings.database, storage=settings.storage,
                     worker=WorkerSettings(lease_seconds=LEASE, heartbeat_seconds=HEARTBEAT,
                                           max_attempts=3, retry_base_seconds=0))
    worker = Worker(short, runner=runner, storage=storage, worker_id="w2")
    try:
        wait_for(worker.run_once, "the dead worker's lease to expire", step=0.2)  # claims and runs it
        assert not worker.run_once()  # nothing else is runnable
    finally:
        worker.close()

    done = Jobs(conn).get(job.id)
    assert (done.status, done.attempts, done.progress, done.lease_owner) == ("completed", 2, 1.0, None)
    assert len(written) == 1 and written[0] is not None and written[0].id == job.id
    assert dead_owner != "w2" and done.lease_owner != dead_owner
    assert Jobs(conn).complete(job.id, dead_owner) is None  # the dead owner can never finish it
    assert conn.execute("SELECT count(*) FROM jobs WHERE meeting_id = %s AND status = 'completed'",
                        [meeting_id]).fetchone()[0] == 1
    m = meeting(conn, meeting_id)
    assert m["processing_status"] == "completed" and m["processing_error"] is None
    assert m["transcription_text"] and m["transcript"]["segments"]
    assert 100 < m["duration_seconds"] < 140
