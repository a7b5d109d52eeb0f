"""The API under stalled uploads and with its database down, measured on a live server.

1. **Stalled uploads.** ``--stalled`` uploads (slow-loris clients: each promises a megabyte, sends
   a kilobyte, then nothing) are held open by several accounts while another account lists its
   meetings (``GET /api/v1/meetings``) ``--requests`` times, one after another; the same is timed
   first with no stalled upload. Reported: p50/p95 of both, their ratio (target <= 2), and errors.
2. **Database down.** A second API process is started with ``DATABASE_URL`` on a closed port; every
   operation of the OpenAPI document is called once (path parameters filled with a random id, a
   valid access token sent) and timed. Reported: the slowest answer (target <= 1 s) and the statuses.

Both API processes are ``iam-cluster``'s own app under uvicorn (one worker), Redis real.

Example::

    python benchmarks/resilience.py --stalled 50 --requests 200
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import psycopg

from api_load import start as start_app
from common import command_line, cpu_name, create_database, drop_database, free_port, save_report

APP = "from iam_cluster.api.app import create_app\napp = create_app()"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--stalled", type=int, default=50)
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--label", default="cpu")
    return p.parse_args(argv)


def start(port: int, env: dict) -> subprocess.Popen:
    return start_app(APP, port, env)


def wait_up(url: str) -> None:
    for _ in range(300):
        try:
            httpx.get(f"{url}/health", timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit(f"API at {url} did not start")


def seed_users(url: str, secret: str, n: int) -> list[tuple[dict, str]]:
    """``n`` users, each with one meeting: ``(auth headers, meeting id)``."""
    from iam_cluster.api.security import create_access_token, hash_password
    from iam_cluster.settings import AuthSettings

    auth = AuthSettings(jwt_secret_key=secret, access_token_expire_minutes=60)
    digest = hash_password("resilience bench pw")
    out = []
    with psycopg.connect(url, autocommit=True) as conn:
        for i in range(n):
            email = f"user{i}-{uuid.uuid4().hex[:6]}@example.com"
            (user_id,) = conn.execute("INSERT INTO users (email, password_hash) VALUES (%s, %s) RETURNING id",
                                      (email, digest)).fetchone()
            (meeting,) = conn.execute("INSERT INTO meetings (user_id, title) VALUES (%s, 'bench') RETURNING id",
                                      (user_id,)).fetchone()
            out.append(({"Authorization": f"Bearer {create_access_token(user_id, email, auth)}"}, str(meeting)))
    return out


def stall(port: int, path: str, headers: dict) -> socket.socket:
    """An upload that promises a megabyte, sends a kilobyte, then nothing."""
    s = socket.create_connection(("127.0.0.1", port))
    head = [f"POST {path}?filename=a.wav HTTP/1.1", "Host: 127.0.0.1", "Content-Length: 1000000",
            "Content-Type: application/octet-stream", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
    s.sendall("\r\n".join(head).encode() + b"RIFF" + b"\0" * 1020)
    return s


def timed_gets(url: str, headers: dict, n: int) -> tuple[list[float], int]:
    times, errors = [], 0
    with httpx.Client(headers=headers, timeout=60) as client:
        for _ in range(n):
            t = time.perf_counter()
            try:
                errors += client.get(url).status_code != 200
            except httpx.HTTPError:
                errors += 1
            times.append(time.perf_counter() - t)
    return times, errors


def p95(xs: list[float]) -> float:
    return sorted(xs)[int(0.95 * (len(xs) - 1))]


def stalled_uploads(args, env: dict, users: list[tuple[dict, str]]) -> list[str]:
    port = free_port()
    proc = start(port, env)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_up(base)
        (other, _), stallers = users[0], users[1:]
        timed_gets(f"{base}/api/v1/meetings", other, 10)  # warm-up
        quiet, quiet_errors = timed_gets(f"{base}/api/v1/meetings", other, args.requests)
        per_user = 4  # MAX_CONCURRENT_UPLOADS
        sockets = [stall(port, f"/api/v1/meetings/{stallers[i // per_user][1]}/upload", stallers[i // per_user][0])
                   for i in range(args.stalled)]
        time.sleep(0.5)
        loaded, loaded_errors = timed_gets(f"{base}/api/v1/meetings", other, args.requests)
        still_open = 0
        for s in sockets:
            s.setblocking(False)
            try:
                s.recv(1)  # an answer (or a close) came already
            except BlockingIOError:
                still_open += 1  # no answer yet: the upload was still stalled while we measured
            s.close()
    finally:
        proc.terminate()
        proc.wait(10)
    ratio = p95(loaded) / p95(quiet)
    return [
        f"## {args.stalled} stalled uploads ({len(stallers)} accounts, 4 each; pool of 10 connections)", "",
        f"`GET /api/v1/meetings` of another account, {args.requests} requests one after another:", "",
        "| | p50 ms | p95 ms | errors |", "|---|---:|---:|---:|",
        f"| no stalled upload | {statistics.median(quiet) * 1e3:.1f} | {p95(quiet) * 1e3:.1f} | {quiet_errors} |",
        f"| {args.stalled} stalled uploads | {statistics.median(loaded) * 1e3:.1f} | {p95(loaded) * 1e3:.1f} "
        f"| {loaded_errors} |", "",
        f"p95 loaded / unloaded: **{ratio:.2f}x** (target <= 2), errors {quiet_errors + loaded_errors} (target 0); "
        f"{still_open} of {args.stalled} uploads were still stalled (unanswered) when the measurement ended.", ""]


def database_down(env: dict, headers: dict) -> list[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    port = free_port()
    proc = start(port, {**env, "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{closed}/nothing"})
    try:
        base = f"http://127.0.0.1:{port}"
        wait_up(base)
        document = httpx.get(f"{base}/docs/openapi.json", timeout=30).json()
        rows, slowest = [], (0.0, "")
        statuses: dict[int, int] = {}
        some_id = str(uuid.uuid4())
        with httpx.Client(headers=headers, timeout=30) as client:
            for path, item in document["paths"].items():
                concrete = path
                while "{" in concrete:
                    a, b = concrete.index("{"), concrete.index("}")
                    concrete = concrete[:a] + some_id + concrete[b + 1 :]
                for method in item:
                    if method not in ("get", "post", "put", "patch", "delete"):
                        continue
                    t = time.perf_counter()
                    r = client.request(method.upper(), base + concrete, json={} if method != "get" else None)
                    took = time.perf_counter() - t
                    statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                    rows.append(took)
                    slowest = max(slowest, (took, f"{method.upper()} {path} -> {r.status_code}"))
    finally:
        proc.terminate()
        proc.wait(10)
    codes = ", ".join(f"{code}: {n}" for code, n in sorted(statuses.items()))
    return [
        "## Database down (DATABASE_URL on a closed port)", "",
        f"Every operation of the OpenAPI document once ({len(rows)} calls, valid access token): "
        f"median {statistics.median(rows) * 1e3:.0f} ms, slowest **{slowest[0] * 1e3:.0f} ms** ({slowest[1]}; "
        f"target <= 1000 ms). Statuses: {codes}.", ""]


def main(argv=None) -> None:
    args = parse_args(argv)
    name, url = create_database()
    env = {**os.environ, "DATABASE_URL": url, "JWT_SECRET_KEY": uuid.uuid4().hex + uuid.uuid4().hex,
           "REDIS_KEY_PREFIX": f"bench:{uuid.uuid4().hex[:8]}:", "RATE_LIMIT_PER_USER": "100000000",
           "RATE_LIMIT_PER_IP": "100000000", "UPLOAD_READ_TIMEOUT_S": "120",
           "STORAGE_ROOT": f"/tmp/resilience-{uuid.uuid4().hex[:8]}"}
    try:
        users = seed_users(url, env["JWT_SECRET_KEY"], 1 + -(-args.stalled // 4))
        lines = [f"# API resilience: {args.label}", "", f"Command: `{command_line()}`", "",
                 f"CPU {cpu_name()}, {os.cpu_count()} cores; load average at start "
                 f"{os.getloadavg()[0]:.1f}; one uvicorn process per API", ""]
        lines += stalled_uploads(args, env, users)
        lines += database_down(env, users[0][0])
    finally:
        drop_database(name)
    save_report("\n".join(lines) + "\n", Path(__file__).parent / "results" / f"resilience-{args.label}.md")


if __name__ == "__main__":
    main()
