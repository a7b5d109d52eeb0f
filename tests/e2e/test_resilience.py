"""The API under slow clients, a dead database and hostile uploads: it answers fast and clearly."""

from __future__ import annotations

import io
import socket
import statistics
import time

import httpx
import msgspec
import numpy as np
import soundfile as sf

from tests.fixtures.api import serving


def stall(url: str, path: str, headers: dict) -> socket.socket:
    """Start an upload that promises a megabyte, sends a kilobyte, then nothing (a slow-loris client)."""
    host, port = url.removeprefix("http://").split(":")
    s = socket.create_connection((host, int(port)))
    head = [f"POST {path}?filename=a.wav HTTP/1.1", f"Host: {host}", "Content-Length: 1000000",
            "Content-Type: application/octet-stream", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
    s.sendall("\r\n".join(head).encode() + b"RIFF" + b"\0" * 1020)
    return s


def test_stalled_uploads_leave_other_users_alone(api_settings, make_user, runner):
    """Twelve uploads stall (three users, four each) while the database pool has four connections:
    another user's requests answer as fast as without them, and the stalled ones end in 408 with
    nothing stored."""
    settings = msgspec.structs.replace(api_settings, api=msgspec.structs.replace(
        api_settings.api, upload_read_timeout_s=4.0, rate_limit_per_ip=100_000))
    stallers = [make_user()[3] for _ in range(3)]
    _, _, _, other = make_user()
    with serving(settings, runner) as url:
        def timings() -> list[float]:
            out = []
            for _ in range(20):
                t = time.perf_counter()
                assert httpx.get(f"{url}/api/v1/meetings", headers=other, timeout=30).status_code == 200
                out.append(time.perf_counter() - t)
            return out

        quiet = timings()
        meetings = [httpx.post(f"{url}/api/v1/meetings", json={"title": "s"}, headers=h).json()["id"] for h in stallers]
        sockets = [stall(url, f"/api/v1/meetings/{m}/upload", h) for m, h in zip(meetings, stallers) for _ in range(4)]
        loaded = timings()
        answers = []
        for s in sockets:
            s.settimeout(20)
            answers.append(s.recv(200).split(b" ", 2)[1])
            s.close()
    assert answers == [b"408"] * 12
    p95 = lambda xs: sorted(xs)[int(0.95 * (len(xs) - 1))]  # noqa: E731
    assert p95(loaded) <= max(2 * p95(quiet), 0.25), (statistics.median(quiet), p95(quiet), p95(loaded))
    assert not [p for p in settings.storage.root.rglob("*") if p.is_file()]  # nothing half-written kept


def test_a_burst_wider_than_the_pool_is_served(api_settings, make_user, runner):
    """Each request holds the pool's connection through ``conn`` and checks its credential on a pool
    of its own: 24 concurrent requests against a pool of 4 all answer (when both came from one pool,
    every connection was held by a request waiting for its second, and all timed out with 503)."""
    import asyncio

    settings = msgspec.structs.replace(api_settings, api=msgspec.structs.replace(
        api_settings.api, rate_limit_per_ip=100_000))
    _, _, _, headers = make_user()
    with serving(settings, runner) as url:
        async def burst() -> list[int]:
            async with httpx.AsyncClient(headers=headers, timeout=30) as client:
                return [r.status_code for r in await asyncio.gather(
                    *(client.get(f"{url}/api/v1/meetings") for _ in range(24)))]

        started = time.monotonic()
        codes = asyncio.run(burst())
    assert codes == [200] * 24 and time.monotonic() - started < 4.0, codes


def test_a_dead_database_is_a_fast_503(api_settings, make_user):
    from litestar.testing import TestClient

    from iam_cluster.api.app import create_app

    _, _, _, headers = make_user()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    dead = msgspec.structs.replace(api_settings, database=msgspec.structs.replace(
        api_settings.database, url=f"postgresql://postgres@127.0.0.1:{closed}/nothing"))
    with TestClient(create_app(dead)) as client:
        assert client.get("/health").status_code == 200
        for method, path, kw in [("GET", "/api/v1/meetings", {"headers": headers}),
                                 ("POST", "/api/v1/auth/login", {"json": {"email": "a@b.co", "password": "x"}}),
                                 ("GET", "/api/v1/jobs", {"headers": headers}), ("GET", "/ready", {})]:
            started = time.monotonic()
            r = client.request(method, path, **kw)
            assert time.monotonic() - started <= 1.0, path
            assert r.status_code == 503, (path, r.text)
        assert r.headers.get("retry-after") or path == "/ready"


def test_silent_or_overlong_audio_is_refused_at_upload(client, make_user, api_settings):
    """A 3.5-hour FLAC of silence is about 40 KB: it is refused before any job, worker or bill."""
    _, _, _, headers = make_user()
    mid = client.post("/api/v1/meetings", json={"title": "silence"}, headers=headers).json()["id"]
    buffer = io.BytesIO()
    with sf.SoundFile(buffer, "w", samplerate=8000, channels=1, format="FLAC") as f:
        block = np.zeros(8000 * 600, np.int16)
        for _ in range(21):  # 210 minutes
            f.write(block)
    silent = buffer.getvalue()
    r = client.post(f"/api/v1/meetings/{mid}/upload?filename=silence.flac", content=silent, headers=headers)
    assert r.status_code == 422 and r.json()["error"]["code"] == "empty_media", r.text
    short = msgspec.structs.replace(api_settings, audio=msgspec.structs.replace(api_settings.audio, max_duration_s=5))
    from litestar.testing import TestClient

    from iam_cluster.api.app import create_app

    with TestClient(create_app(short)) as limited:
        with open("tests/data/jfk.flac", "rb") as f:
            r = limited.post(f"/api/v1/meetings/{mid}/upload?filename=jfk.flac", content=f.read(), headers=headers)
    assert r.status_code == 422 and r.json()["error"]["code"] == "too_long"
    assert "users/" not in r.json()["error"]["message"]  # error messages never show storage keys
    assert not [p for p in api_settings.storage.root.rglob("*") if p.is_file()]


def test_guessable_passwords_are_refused(client):
    for password in ("password", "12345678", "        ", "qwertyuiop", "ada@example.com1"):
        r = client.post("/api/v1/auth/register", json={"email": "ada@example.com", "password": password})
        assert r.status_code == 422 and r.json()["error"]["code"] == "weak_password", (password, r.text)
        assert r.json()["error"]["field"] == "password"
    ok = client.post("/api/v1/auth/register", json={"email": "ada@example.com", "password": "correct horse battery"})
    assert ok.status_code == 201
