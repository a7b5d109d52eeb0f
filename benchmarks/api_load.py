"""Poll-endpoint throughput of the API against a bare Litestar handler, in one run, on loopback.

Both servers run in their own uvicorn process (one worker each); N concurrent HTTP clients poll
for a fixed time. The API path does everything a real poll does: rate-limit counters in Redis,
JWT check, user lookup, the meeting-and-latest-job query in PostgreSQL, msgspec encoding.

Example::

    python benchmarks/api_load.py --clients 32 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg

from common import command_line, cpu_name, create_database, drop_database, free_port, save_report

BARE_APP = """
from litestar import Litestar, get

@get("/bare", sync_to_thread=False)
def bare() -> dict:
    return {"status": "ok"}

app = Litestar([bare])
"""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--label", default="poll-cpu")
    return p.parse_args(argv)


def prepare_database() -> tuple[str, str, dict]:
    """A fresh migrated database; returns (name, url, env for the API process)."""
    name, url = create_database()
    env = {**os.environ, "DATABASE_URL": url, "JWT_SECRET_KEY": uuid.uuid4().hex,
           "REDIS_KEY_PREFIX": f"bench:{uuid.uuid4().hex[:8]}:",
           # Limits high enough not to refuse the load; the counting itself still happens.
           "RATE_LIMIT_PER_USER": "100000000", "RATE_LIMIT_PER_IP": "100000000"}
    return name, url, env


def seed(url: str, secret: str) -> tuple[str, dict, dict]:
    """A user with a meeting and an API key; returns the poll path and the access-token and API-key headers."""
    from iam_cluster.api.security import new_api_key

    from iam_cluster.api.security import create_access_token, hash_password
    from iam_cluster.settings import AuthSettings

    with psycopg.connect(url, autocommit=True) as conn:
        (user_id,) = conn.execute("INSERT INTO users (email, password_hash) VALUES ('load@example.com', %s) "
                                  "RETURNING id", (hash_password("load test pw"),)).fetchone()
        (meeting_id,) = conn.execute("INSERT INTO meetings (user_id, title) VALUES (%s, 'load') RETURNING id",
                                     (user_id,)).fetchone()
        key, prefix, digest = new_api_key()
        conn.execute("INSERT INTO api_keys (user_id, name, prefix, key_hash, scopes) "
                     "VALUES (%s, 'load', %s, %s, ARRAY['read'])", (user_id, prefix, digest))
    token = create_access_token(user_id, "load@example.com",
                                AuthSettings(jwt_secret_key=secret, access_token_expire_minutes=60))
    return (f"/api/v1/meetings/{meeting_id}", {"Authorization": f"Bearer {token}"},
            {"Authorization": f"Bearer {key}"})


def start(app_code: str, port: int, env: dict) -> subprocess.Popen:
    code = f"import uvicorn\n{app_code}\nuvicorn.run(app, host='127.0.0.1', port={port}, log_level='warning')"
    return subprocess.Popen([sys.executable, "-c", code], env=env, cwd=Path(__file__).parent.parent)


async def wait_up(url: str) -> None:
    import httpx

    async with httpx.AsyncClient() as client:
        for _ in range(100):
            try:
                await client.get(url)
                return
            except httpx.TransportError:
                await asyncio.sleep(0.1)
    raise SystemExit(f"server at {url} did not start")


async def hammer(url: str, headers: dict, clients: int, seconds: float) -> dict:
    """``clients`` concurrent loops of GET for ``seconds``: requests/s, errors, p50/p95 latency."""
    import httpx

    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=10) as client:
        deadline = time.perf_counter() + seconds

        async def loop() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                t = time.perf_counter()
                try:
                    r = await client.get(url)
                    if r.status_code != 200:
                        errors += 1
                except httpx.HTTPError:
                    errors += 1
                latencies.append(time.perf_counter() - t)

        start_t = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(clients)))
        wall = time.perf_counter() - start_t
    latencies.sort()
    return {"requests": len(latencies), "rps": len(latencies) / wall, "errors": errors,
            "p50": latencies[len(latencies) // 2], "p95": latencies[int(len(latencies) * 0.95)]}


def main(argv=None) -> None:
    args = parse_args(argv)
    name, url, env = prepare_database()
    procs = []
    try:
        path, headers, key_headers = seed(url, env["JWT_SECRET_KEY"])
        api_port, bare_port = free_port(), free_port()
        procs.append(start("from iam_cluster.api.app import create_app\napp = create_app()", api_port, env))
        procs.append(start(BARE_APP, bare_port, env))
        api_url, bare_url = f"http://127.0.0.1:{api_port}{path}", f"http://127.0.0.1:{bare_port}/bare"
        asyncio.run(wait_up(api_url))
        asyncio.run(wait_up(bare_url))
        asyncio.run(hammer(api_url, headers, 4, 1.0))  # warm-up: pool connections, JIT-free paths
        results = {
            "bare Litestar handler": asyncio.run(hammer(bare_url, {}, args.clients, args.seconds)),
            "API poll (GET /api/v1/meetings/{id})": asyncio.run(hammer(api_url, headers, args.clients, args.seconds)),
        }
        # Auth cost per request: one client at a time (no queueing), access token vs API key, twice each.
        single = {}
        for label, h in [("access token", headers), ("API key", key_headers)] * 2:
            r = asyncio.run(hammer(api_url, h, 1, args.seconds / 2))
            single.setdefault(label, []).append(r)
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=10)
        drop_database(name)
    bare, api = results.values()
    lines = [f"# API load: {args.label}", "",
             f"Command: `{command_line()}`", "",
             f"CPU {cpu_name()}, {os.cpu_count()} cores; {args.clients} concurrent clients for {args.seconds:.0f} s "
             "each; one uvicorn process per server; clients in this process (httpx)", "",
             "| endpoint | requests | req/s | errors | p50 ms | p95 ms |", "|---|---:|---:|---:|---:|---:|"]
    for label, r in results.items():
        lines.append(f"| {label} | {r['requests']} | {r['rps']:.0f} | {r['errors']} | {1000 * r['p50']:.1f} | "
                     f"{1000 * r['p95']:.1f} |")
    lines += ["", f"API poll / bare handler throughput: **{api['rps'] / bare['rps']:.2f}x**, "
              f"errors {api['errors'] + bare['errors']}", "",
              "One client at a time, poll endpoint (two rounds each, interleaved):", "",
              "| credential | requests | mean ms | p50 ms | errors |", "|---|---:|---:|---:|---:|"]
    means = {}
    for label, rounds in single.items():
        n = sum(r["requests"] for r in rounds)
        means[label] = sum(r["requests"] / r["rps"] for r in rounds) / n * 1000
        p50 = sorted(r["p50"] for r in rounds)[0] * 1000
        lines.append(f"| {label} | {n} | {means[label]:.2f} | {p50:.2f} | {sum(r['errors'] for r in rounds)} |")
    lines += ["", f"API-key auth adds **{means['API key'] - means['access token']:+.2f} ms** per request over an "
              "access token (target <= 1 ms)"]
    save_report("\n".join(lines) + "\n", Path(__file__).parent / "results" / f"api-load-{args.label}.md")


if __name__ == "__main__":
    main()
