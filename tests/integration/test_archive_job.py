"""The archive job on a real local Ray (2 CPUs): kill mid-run then rerun, S3 in and out through moto, and
submitted to a Ray cluster already running (``ray start --head``), as ``ray job submit`` runs it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
import zipfile
from pathlib import Path

import msgspec
import pytest

ROOT = Path(__file__).parents[2]
DATA = ROOT / "tests" / "data"
SCRIPT = ROOT / "jobs" / "transcribe_archive.py"

pytestmark = pytest.mark.slow
pytest.importorskip("ray.data")


def _job(args: list[str], env: dict | None = None, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_ADDRESS": "", **(env or {})}
    env.pop("RAY_ADDRESS")
    return subprocess.Popen([sys.executable, str(SCRIPT), *args, "--num-cpus", "2", "-q"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, **kwargs)


def _finish(proc: subprocess.Popen, timeout: float = 240) -> dict:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err.decode()[-3000:]
    return msgspec.json.decode(out)


def _lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for line in path.read_bytes().splitlines():
        try:
            out.append(msgspec.json.decode(line))
        except msgspec.DecodeError:
            pass
    return out


def _session(sid: int) -> list[int]:
    """Live processes of a session (zombies, which can write nothing more, left out)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state, _ppid, _pgid, session = stat[stat.rindex(")") + 2 :].split()[:4]
        if int(session) == sid and state != "Z":
            pids.append(int(entry.name))
    return pids


def _kill_session(proc: subprocess.Popen) -> None:
    """SIGKILL to every process the job started, as a lost node would; returns once none is alive.

    Killing the driver's process group is not enough: Ray puts each worker in a group of its own, and a
    worker outliving its raylet for a moment could still write a file after the kill was observed.
    """
    deadline = time.monotonic() + 60
    while (pids := _session(proc.pid)) and time.monotonic() < deadline:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
    proc.wait()
    assert not _session(proc.pid), "the job's processes outlived SIGKILL"


def _archive(path: Path) -> dict[str, str]:
    """Eight Harvard sentences (four in a nested folder), jfk, and two bad members; returns expected status."""
    expected = {}
    with zipfile.ZipFile(path, "w") as zf:
        for i, wav in enumerate(sorted(DATA.glob("spk*_snt*.wav"))):
            name = f"calls/day{i % 2}/{wav.name}" if i % 2 else wav.name
            zf.write(wav, name)
            expected[name] = "ok"
        zf.write(DATA / "jfk.flac", "jfk.flac")
        expected["jfk.flac"] = "ok"
        zf.writestr("notes.txt", b"not audio")
        expected["notes.txt"] = "unsupported_media"
        zf.writestr("empty.wav", b"")
        expected["empty.wav"] = "empty_media"
    return expected


def test_killed_job_resumes_and_transcribes_every_file_once(tmp_path):
    expected = _archive(tmp_path / "in.zip")
    out = tmp_path / "out"
    args = [str(tmp_path / "in.zip"), "--output", str(out), "--group-files", "1", "--pack-windows", "1"]
    proc = _job(args)
    manifest = out / "manifest.jsonl"
    deadline = time.monotonic() + 180
    while len(_lines(manifest)) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the job ended before it could be killed"
    _kill_session(proc)  # the driver, the local Ray it started and every worker of that Ray
    # What the driver recorded, and what workers recorded after writing outputs it had not heard of.
    before = {r["key"]: r for p in [manifest, *sorted((out / ".manifest-parts").glob("*.jsonl"))] for r in _lines(p)}
    assert 3 <= len(before) < len(expected)
    stamps = {k: (out / r["outputs"][0]).stat().st_mtime_ns for k, r in before.items() if r["status"] == "ok"}

    summary = _finish(_job(args))
    assert summary["skipped"] == len(before) and summary["files"] == len(expected)
    lines = _lines(manifest)
    assert len(lines) == len(expected) and len({r["key"] for r in lines}) == len(expected)
    assert not list((out / ".manifest-parts").glob("*"))  # merged into the manifest, then removed
    got = {r["key"]: r["status"] if r["status"] == "ok" else r["error_code"] for r in lines}
    assert got == expected
    for r in lines:
        if r["status"] == "ok":
            assert r["duration"] > 0 and r["words"] > 0 and r["language"] == "en"
            assert all((out / k).is_file() for k in r["outputs"])
    # What the killed run finished was not transcribed again.
    assert all((out / before[k]["outputs"][0]).stat().st_mtime_ns == t for k, t in stamps.items())
    assert (out / "calls/day1/spk1_snt2.txt").read_text().strip()
    assert summary["failures_by_code"] == {"empty_media": 1, "unsupported_media": 1}

    again = _finish(_job(args))  # nothing left to do: no Ray is even started
    assert again["skipped"] == len(expected) and again["ok"] == len(expected) - 2


def test_s3_prefix_in_and_out(moto_endpoint):
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1", aws_access_key_id="testing",
                      aws_secret_access_key="testing")
    bucket = f"archive-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    s3.upload_file(str(DATA / "spk1_snt1.wav"), bucket, "in/a/spk1_snt1.wav")
    s3.upload_file(str(DATA / "spk2_snt2.wav"), bucket, "in/b/c/spk2_snt2.wav")
    s3.put_object(Bucket=bucket, Key="in/bad.wav", Body=b"RIFF\x00\x00")
    s3.put_object(Bucket=bucket, Key="other/ignored.wav", Body=b"x")
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_ENDPOINT_URL": moto_endpoint}
    args = [f"s3://{bucket}/in/", "--output", f"s3://{bucket}/out", "--format", "json,txt"]
    summary = _finish(_job(args, env))
    assert (summary["files"], summary["ok"], summary["failed"]) == (3, 2, 1)
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="out/")["Contents"]}
    assert keys == {"out/a/spk1_snt1.json", "out/a/spk1_snt1.txt", "out/b/c/spk2_snt2.json",
                    "out/b/c/spk2_snt2.txt", "out/manifest.jsonl", "out/summary.json"}
    text = s3.get_object(Bucket=bucket, Key="out/a/spk1_snt1.txt")["Body"].read().decode().lower()
    assert "dog" in text
    lines = [msgspec.json.decode(x) for x in s3.get_object(Bucket=bucket, Key="out/manifest.jsonl")["Body"].read()
             .splitlines()]
    assert sorted(r["key"] for r in lines) == ["a/spk1_snt1.wav", "b/c/spk2_snt2.wav", "bad.wav"]
    assert next(r for r in lines if r["key"] == "bad.wav")["error_code"] == "truncated_media"
    assert _finish(_job(args, env))["skipped"] == 3


def test_job_submitted_to_a_running_cluster(tmp_path):
    """The production path: the job's driver joins a cluster it did not start (RAY_ADDRESS), whose
    workers run its tasks and actors; a local job started meanwhile still gets a Ray of its own."""
    from tests.fixtures.services import free_port

    temp = Path(f"/tmp/rt-{uuid.uuid4().hex[:8]}")  # short: Ray's socket paths must fit 107 bytes
    # Ray (2.60) turns token authentication on for clusters started with `ray start`.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    head = subprocess.Popen([str(Path(sys.executable).with_name("ray")), "start", "--head", "--block",
                             "--port", str(free_port()), "--num-cpus", "2", "--include-dashboard=false",
                             "--disable-usage-stats", "--temp-dir", str(temp)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        current = temp / "ray_current_cluster"
        deadline = time.monotonic() + 90
        while not current.exists() and head.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert current.exists(), "ray start --head did not come up"
        address = current.read_text().strip()
        with zipfile.ZipFile(tmp_path / "in.zip", "w") as zf:
            zf.write(DATA / "spk1_snt1.wav", "a/spk1_snt1.wav")
            zf.write(DATA / "jfk.flac", "jfk.flac")
        out = tmp_path / "out"
        proc = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "in.zip"), "--output", str(out), "-q"],
                              cwd=ROOT, env={**env, "RAY_ADDRESS": address}, capture_output=True, timeout=240)
        assert proc.returncode == 0, proc.stderr.decode()[-3000:]
        summary = msgspec.json.decode(proc.stdout)
        assert (summary["files"], summary["ok"]) == (2, 2)
        assert "dog" in (out / "a/spk1_snt1.txt").read_text().lower()
        assert "country" in (out / "jfk.txt").read_text().lower()
        # Without an address the job starts a Ray of its own beside the running cluster.
        local = _finish(_job([str(tmp_path / "in.zip"), "--output", str(tmp_path / "out2")], env))
        assert local["ok"] == 2
    finally:
        _kill_session(head)  # the head and every process it started; no other Ray on this machine is touched
        shutil.rmtree(temp, ignore_errors=True)
