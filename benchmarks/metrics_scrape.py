"""How long a Prometheus scrape of /metrics takes, on the API and on the worker's metrics server,
with many jobs in the database; ``/health`` of the same API is the peer measured in the same run.

The worker's /metrics runs the queue query at every scrape (``queue_stats``: queued, runnable,
processing, lapsed leases, the oldest queued job's age), so its time is what grows with the
queue. The API is started as ``iam-cluster api`` starts it; the worker's metrics server is the
one ``iam-cluster worker`` starts (a worker itself would claim the jobs). Target: < 50 ms.

Example::

    python benchmarks/metrics_scrape.py --queued 10000 --finished 10000 --scrapes 200
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg

from api_load import free_port, prepare_database, seed, wait_up
from common import code_version, command_line, cpu_name, drop_database, save_report

WORKER_SERVER = """
import time, psycopg
from iam_cluster.observability.worker import MetricsServer, QueueCollector
MetricsServer("127.0.0.1", {port}, QueueCollector(lambda: psycopg.connect({url!r}, autocommit=True)), 60.0).start()
while True:
    time.sleep(3600)
"""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--queued", type=int, default=10_000, help="queued jobs (half of them runnable now)")
    p.add_argument("--finished", type=int, default=10_000, help="completed and failed jobs (history)")
    p.add_argument("--processing", type=int, default=100, help="jobs being processed (a tenth with lapsed leases)")
    p.add_argument("--scrapes", type=int, default=200, help="timed requests per endpoint")
    p.add_argument("--label", default="cpu")
    return p.parse_args(argv)


def fill_queue(url: str, queued: int, processing: int, finished: int) -> None:
    """Jobs in every state, spread over 100 meetings of one user, with a realistic spread of ages."""
    with psycopg.connect(url, autocommit=True) as conn:
        (user_id,) = conn.execute("SELECT id FROM users LIMIT 1").fetchone()
        conn.execute("INSERT INTO meetings (user_id, title) SELECT %s, 'm' || g FROM generate_series(1, 100) g",
                     [user_id])
        meetings = [r[0] for r in conn.execute("SELECT id FROM meetings").fetchall()]
        conn.execute("""
            INSERT INTO jobs (user_id, meeting_id, status, created_at, run_after, lease_owner, lease_expires_at,
                              attempts, finished_at, error_code)
            SELECT %(user)s, (%(meetings)s::uuid[])[1 + g %% 100],
                   s.status, now() - g * interval '1 second',
                   CASE WHEN s.status = 'queued' AND g %% 2 = 0 THEN now() + interval '1 minute'
                        ELSE now() - g * interval '1 second' END,
                   CASE WHEN s.status = 'processing' THEN 'bench' END,
                   CASE WHEN s.status = 'processing' THEN now() + (CASE WHEN g %% 10 = 0 THEN -1 ELSE 1 END)
                        * interval '1 minute' END,
                   CASE WHEN s.status = 'queued' THEN 0 ELSE 1 END,
                   CASE WHEN s.status IN ('completed', 'failed') THEN now() END,
                   CASE WHEN s.status = 'failed' THEN 'internal' END
            FROM (SELECT g, CASE WHEN g <= %(q)s THEN 'queued'
                                 WHEN g <= %(q)s + %(p)s THEN 'processing'
                                 WHEN g %% 10 = 0 THEN 'failed' ELSE 'completed' END AS status
                  FROM generate_series(1, %(total)s) g) s
            """, {"user": user_id, "meetings": meetings, "q": queued, "p": processing,
                  "total": queued + processing + finished})
        conn.execute("ANALYZE jobs")


def query_ms(url: str, runs: int = 50) -> float:
    """Median server-side execution time of the queue query (EXPLAIN ANALYZE), in ms."""
    from iam_cluster.db.queries import QUERIES

    times = []
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(runs):
            plan = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + QUERIES["queue_stats"]).fetchone()[0]
            times.append(plan[0]["Execution Time"])
    return sorted(times)[len(times) // 2]


async def time_gets(url: str, n: int) -> dict:
    """``n`` sequential GETs on one keep-alive connection: latency percentiles and body size."""
    async with httpx.AsyncClient(timeout=10) as client:
        for _ in range(5):  # warm-up
            await client.get(url)
        latencies, size = [], 0
        for _ in range(n):
            t = time.perf_counter()
            r = await client.get(url)
            latencies.append(time.perf_counter() - t)
            assert r.status_code == 200, (url, r.status_code)
            size = len(r.content)
    latencies.sort()
    return {"p50": latencies[n // 2], "p95": latencies[int(n * 0.95)], "max": latencies[-1], "bytes": size}


def main(argv=None) -> None:
    args = parse_args(argv)
    name, url, env = prepare_database()
    procs: list[subprocess.Popen] = []
    root = Path(__file__).parent.parent
    try:
        poll_path, headers, _ = seed(url, env["JWT_SECRET_KEY"])
        fill_queue(url, args.queued, args.processing, args.finished)
        api_port, worker_port = free_port(), free_port()
        api_env = {**env, "METRICS_ENABLED": "1", "LOG_LEVEL": "WARNING", "LOG_FORMAT": "json"}
        procs.append(subprocess.Popen([sys.executable, "-c", "from iam_cluster.api.app import serve_api\n"
                                       f"serve_api('127.0.0.1', {api_port})"], env=api_env, cwd=root))
        procs.append(subprocess.Popen([sys.executable, "-c", WORKER_SERVER.format(port=worker_port, url=url)],
                                      env=env, cwd=root))
        api, worker = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{worker_port}"
        asyncio.run(wait_up(api + "/health"))
        asyncio.run(wait_up(worker + "/metrics"))
        with httpx.Client(headers=headers) as client:  # label series as a running API has them
            for path in ("/health", "/ready", poll_path, "/api/v1/meetings", "/api/v1/users/me"):
                client.get(api + path)
        results = {
            "API /health (peer)": asyncio.run(time_gets(api + "/health", args.scrapes)),
            "API /metrics": asyncio.run(time_gets(api + "/metrics", args.scrapes)),
            "worker /metrics (queue read at scrape)": asyncio.run(time_gets(worker + "/metrics", args.scrapes)),
        }
        server_ms = query_ms(url)
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=10)
        drop_database(name)
    total = args.queued + args.processing + args.finished
    lines = [f"# /metrics scrape time: {args.label}", "", f"Command: `{command_line()}`", "",
             f"Code: {code_version()}", "",
             f"CPU {cpu_name()}, {os.cpu_count()} cores; {total} jobs in the database ({args.queued} queued, "
             f"{args.processing} processing, {args.finished} finished); {args.scrapes} sequential scrapes "
             "per endpoint on one keep-alive connection", "",
             "| endpoint | p50 ms | p95 ms | max ms | body bytes |", "|---|---:|---:|---:|---:|"]
    for label, r in results.items():
        lines.append(f"| {label} | {1000 * r['p50']:.2f} | {1000 * r['p95']:.2f} | {1000 * r['max']:.2f} | {r['bytes']} |")
    health = results["API /health (peer)"]["p50"]
    worst = max(results["API /metrics"]["p95"], results["worker /metrics (queue read at scrape)"]["p95"])
    lines += ["", f"- queue query alone (server-side execution, median of 50): {server_ms:.2f} ms",
              f"- API /metrics p50 / API /health p50: {results['API /metrics']['p50'] / health:.2f}x; worker "
              f"/metrics p50 / API /health p50: {results['worker /metrics (queue read at scrape)']['p50'] / health:.2f}x",
              f"- worst p95 of the two scrapes: **{1000 * worst:.1f} ms** (target < 50 ms): "
              f"{'met' if worst < 0.05 else 'NOT met'}"]
    save_report("\n".join(lines) + "\n", Path(__file__).parent / "results" / f"metrics-scrape-{args.label}.md")


if __name__ == "__main__":
    main()
