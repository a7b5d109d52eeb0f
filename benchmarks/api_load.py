"""Poll-endpoint throughput of the API against a bare Litestar handler, in one run, on loopback.

Each server runs in its own uvicorn process (one worker each); N concurrent HTTP clients poll
for a fixed time. The API path does everything a real poll does: rate-limit counters in Redis,
JWT check, user lookup, the meeting-and-latest-job query in PostgreSQL, msgspec encoding.

``--observability compare`` (the default) runs the API twice, through ``serve_api`` as
``iam-cluster api`` does: "on" with Prometheus metrics, a JSON access line per request (written
to a file, as a container runtime would) and a /metrics scrape every 15 s (Prometheus' default
interval); "off" with metrics off
and logging at WARNING. Rounds alternate between the servers so drift hits all of them alike.

Example::

    python benchmarks/api_load.py --clients 32 --seconds 10 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

from common import code_version, command_line, cpu_name, save_report

ADMIN_URL = os.environ.get("IAM_BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
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
    p.add_argument("--rounds", type=int, default=1, help="alternating rounds of --seconds per server")
    p.add_argument("--observability", choices=["compare", "on", "off"], default="compare",
                   help="API servers to run: with metrics and JSON access logs (on), without (off), or both")
    p.add_argument("--label", default="poll-cpu")
    return p.parse_args(argv)


#: Seconds between two scrapes of /metrics (Prometheus' default ``scrape_interval``).
SCRAPE_INTERVAL_S = 15.0
#: Environment of the API server with observability on and off.
OBSERVABILITY_ENV = {
    "on": {"METRICS_ENABLED": "1", "LOG_FORMAT": "json", "LOG_LEVEL": "INFO", "ACCESS_LOG": "1"},
    "off": {"METRICS_ENABLED": "0", "LOG_FORMAT": "json", "LOG_LEVEL": "WARNING", "ACCESS_LOG": "0"},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare_database() -> tuple[str, str, dict]:
    """A fresh migrated database with one user and one meeting; returns (name, url, env)."""
    from iam_cluster.db.migrate import apply_migrations

    name = f"iam_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    apply_migrations(url)
    env = {**os.environ, "DATABASE_URL": url, "JWT_SECRET_KEY": uuid.uuid4().hex,
           "REDIS_KEY_PREFIX": f"bench:{uuid.uuid4().hex[:8]}:",
           # Limits high enough not to refuse the load; the counting itself still happens.
           "RATE_LIMIT_PER_USER": "100000000", "RATE_LIMIT_PER_IP": "100000000"}
    return name, url, env


def drop_database(name: str) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def seed(url: str, secret: str) -> tuple[str, dict]:
    """A user with a meeting; returns the poll path and auth headers."""
    from iam_cluster.api.security import create_access_token, hash_password
    from iam_cluster.settings import AuthSettings

    with psycopg.connect(url, autocommit=True) as conn:
        (user_id,) = conn.execute("INSERT INTO users (email, password_hash) VALUES ('load@example.com', %s) "
                                  "RETURNING id", (hash_password("load test pw"),)).fetchone()
        (meeting_id,) = conn.execute("INSERT INTO meetings (user_id, title) VALUES (%s, 'load') RETURNING id",
                                     (user_id,)).fetchone()
    token = create_access_token(user_id, "load@example.com",
                                AuthSettings(jwt_secret_key=secret, access_token_expire_minutes=60))
    return f"/api/v1/meetings/{meeting_id}", {"Authorization": f"Bearer {token}"}


def start(app_code: str, port: int, env: dict) -> subprocess.Popen:
    code = f"import uvicorn\n{app_code}\nuvicorn.run(app, host='127.0.0.1', port={port}, log_level='warning')"
    return subprocess.Popen([sys.executable, "-c", code], env=env, cwd=Path(__file__).parent.parent)


def start_api(port: int, env: dict, mode: str, log: Path) -> subprocess.Popen:
    """The API as ``iam-cluster api`` runs it, observability ``mode`` on or off; its log lines to ``log``."""
    code = f"from iam_cluster.api.app import serve_api\nserve_api('127.0.0.1', {port})"
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-c", code], env={**env, **OBSERVABILITY_ENV[mode]},
                                cwd=Path(__file__).parent.parent, stderr=out)


async def scrape_every(url: str, interval: float, stop: asyncio.Event) -> None:
    """What Prometheus does to an API with metrics on, during its load."""
    import httpx

    async with httpx.AsyncClient() as client:
        while not stop.is_set():
            await client.get(url)
            try:
                await asyncio.wait_for(stop.wait(), interval)
            except asyncio.TimeoutError:
                pass


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
    """``clients`` concurrent loops of GET for ``seconds``: every latency, the wall time, errors."""
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
    return {"latencies": latencies, "wall": wall, "errors": errors}


def merge(parts: list[dict]) -> dict:
    """One result from several rounds' results (latencies pooled)."""
    latencies = sorted(t for p in parts for t in p["latencies"])
    wall = sum(p["wall"] for p in parts)
    return {"requests": len(latencies), "rps": len(latencies) / wall, "errors": sum(p["errors"] for p in parts),
            "p50": latencies[len(latencies) // 2], "p95": latencies[int(len(latencies) * 0.95)],
            "cpu_ms": 1000 * sum(p["cpu"] for p in parts) / len(latencies)}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a server process so far."""
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


async def round_robin(targets: dict[str, tuple[str, dict, str | None, int]], clients: int, seconds: float,
                      rounds: int) -> dict[str, dict]:
    """``rounds`` rounds; in each, every target is loaded for ``seconds`` (order rotating)."""
    parts: dict[str, list[dict]] = {label: [] for label in targets}
    labels = list(targets)
    for r in range(rounds):
        for label in labels[r % len(labels):] + labels[:r % len(labels)]:
            url, headers, metrics_url, pid = targets[label]
            stop = asyncio.Event()
            scraper = (asyncio.create_task(scrape_every(metrics_url, SCRAPE_INTERVAL_S, stop))
                       if metrics_url else None)
            cpu = cpu_seconds(pid)
            part = await hammer(url, headers, clients, seconds)
            part["cpu"] = cpu_seconds(pid) - cpu  # the server's own work, whatever else loads the machine
            parts[label].append(part)
            stop.set()
            if scraper is not None:
                await scraper
    return {label: merge(p) for label, p in parts.items()}


def main(argv=None) -> None:
    args = parse_args(argv)
    modes = ["off", "on"] if args.observability == "compare" else [args.observability]
    name, url, env = prepare_database()
    procs = []
    logs = Path(tempfile.mkdtemp(prefix="api-load-"))
    try:
        path, headers = seed(url, env["JWT_SECRET_KEY"])
        bare_port = free_port()
        procs.append(start(BARE_APP, bare_port, env))
        targets = {"bare Litestar handler": (f"http://127.0.0.1:{bare_port}/bare", {}, None, procs[-1].pid)}
        for mode in modes:
            port = free_port()
            procs.append(start_api(port, env, mode, logs / f"api-{mode}.log"))
            scrape = f"http://127.0.0.1:{port}/metrics" if mode == "on" else None
            targets[f"API poll, observability {mode}"] = (f"http://127.0.0.1:{port}{path}", headers, scrape,
                                                          procs[-1].pid)
        for target, hdrs, _, _ in targets.values():
            asyncio.run(wait_up(target))
            asyncio.run(hammer(target, hdrs, 4, 1.0))  # warm-up: pool connections, lazy imports
        results = asyncio.run(round_robin(targets, args.clients, args.seconds, args.rounds))
        log_lines = {mode: sum(1 for _ in open(logs / f"api-{mode}.log")) for mode in modes}
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=10)
        drop_database(name)
        shutil.rmtree(logs, ignore_errors=True)
    lines = [f"# API load: {args.label}", "",
             f"Command: `{command_line()}`", "", f"Code: {code_version()}", "",
             f"CPU {cpu_name()}, {os.cpu_count()} cores; {args.clients} concurrent clients, {args.rounds} alternating "
             f"round(s) of {args.seconds:.0f} s per server; one uvicorn process per server; clients in this "
             "process (httpx)", "",
             "| endpoint | requests | req/s | errors | p50 ms | p95 ms | server CPU ms/request |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for label, r in results.items():
        lines.append(f"| {label} | {r['requests']} | {r['rps']:.0f} | {r['errors']} | {1000 * r['p50']:.1f} | "
                     f"{1000 * r['p95']:.1f} | {r['cpu_ms']:.2f} |")
    bare = results["bare Litestar handler"]
    lines.append("")
    for mode in modes:
        api = results[f"API poll, observability {mode}"]
        lines.append(f"- API poll (observability {mode}) / bare handler throughput: **{api['rps'] / bare['rps']:.2f}x**; "
                     f"log lines written: {log_lines[mode]}")
    if len(modes) == 2:
        on, off = results["API poll, observability on"], results["API poll, observability off"]
        lines.append(f"- Observability cost: on / off throughput **{on['rps'] / off['rps']:.3f}x** "
                     f"(target >= 0.95), p50 {1000 * on['p50']:.1f} vs {1000 * off['p50']:.1f} ms; server CPU "
                     f"per request on / off **{on['cpu_ms'] / off['cpu_ms']:.3f}x** (target <= 1.05)")
    lines.append(f"- errors: {sum(r['errors'] for r in results.values())}")
    save_report("\n".join(lines) + "\n", Path(__file__).parent / "results" / f"api-load-{args.label}.md")


if __name__ == "__main__":
    main()
