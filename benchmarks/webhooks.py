"""Webhook delivery: latency from a job's end (its commit) to the receiver, and nothing lost when the
receiver fails.

Jobs end through the worker's own ``JobEnd`` (a fixed transcript stands in for the model: the
delivery path is what is measured) at a steady pace while a real ``Deliverer`` thread, woken by
``pg_notify``, posts to a receiver on loopback. Two runs: a healthy receiver (latency p50/p95/max),
and one that fails every event's first two attempts (every event still delivered, exactly once).

Example::

    python benchmarks/webhooks.py --jobs 100
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import statistics
import threading
import time
import uuid
from pathlib import Path

import psycopg

from common import command_line, cpu_name, create_database, drop_database, save_report


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=100)
    p.add_argument("--interval", type=float, default=0.05, help="seconds between two job ends")
    p.add_argument("--label", default="cpu")
    return p.parse_args(argv)


class Receiver:
    """Records when each event id first got a 2xx; fails the first ``failures`` attempts of each."""

    def __init__(self, failures: int) -> None:
        self.failures, self.attempts, self.accepted = failures, {}, {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                job = body["data"]["job"]["id"]
                with receiver.lock:
                    n = receiver.attempts[job] = receiver.attempts.get(job, 0) + 1
                    ok = n > receiver.failures
                    if ok:
                        receiver.accepted.setdefault(job, []).append(time.monotonic())
                self.send_response(200 if ok else 503)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def run(url: str, jobs: int, interval: float, failures: int) -> dict:
    from iam_cluster.pipeline.types import Transcript
    from iam_cluster.queue import Jobs
    from iam_cluster.settings import RedisSettings, WebhookSettings
    from iam_cluster.webhooks.deliver import Deliverer
    from iam_cluster.worker.events import EventSink
    from iam_cluster.worker.results import JobEnd

    receiver = Receiver(failures)
    settings = WebhookSettings(allow_private=True, base_delay_s=0.5, poll_s=1.0)
    stop = threading.Event()
    deliverer = Deliverer(url, settings)
    thread = threading.Thread(target=deliverer.run, args=(stop,), daemon=True)
    thread.start()
    ended: dict[str, float] = {}
    transcript = Transcript(source="x", duration=3.0, language="en", language_probability=1.0, segments=[])
    with psycopg.connect(url, autocommit=True) as conn:
        (user,) = conn.execute("INSERT INTO users (email, password_hash) VALUES (%s, 'x') RETURNING id",
                               [f"{uuid.uuid4().hex[:8]}@example.com"]).fetchone()
        conn.execute("INSERT INTO webhook_endpoints (user_id, url, events) VALUES (%s, %s, ARRAY['job.completed'])",
                     [user, receiver.url])
        end = JobEnd(conn, "bench-worker", EventSink(RedisSettings()))
        for _ in range(jobs):
            (meeting,) = conn.execute("INSERT INTO meetings (user_id, title) VALUES (%s, 'b') RETURNING id",
                                      [user]).fetchone()
            job = Jobs(conn).enqueue(user, meeting, {}, max_attempts=1).job
            job = Jobs(conn).claim("bench-worker", 60)
            end.complete(job, transcript)
            ended[str(job.id)] = time.monotonic()  # committed: the event exists from here on
            time.sleep(interval)
    deadline = time.monotonic() + 30 + 10 * failures
    while len(receiver.accepted) < jobs and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # anything duplicated would arrive now
    stop.set()
    thread.join(timeout=30)
    deliverer.close()
    latencies = sorted(receiver.accepted[j][0] - t for j, t in ended.items() if j in receiver.accepted)
    return {"events": jobs, "delivered": len(receiver.accepted), "lost": jobs - len(receiver.accepted),
            "duplicates": sum(len(v) - 1 for v in receiver.accepted.values()),
            "attempts": sum(receiver.attempts.values()),
            "p50": statistics.median(latencies) if latencies else float("nan"),
            "p95": latencies[int(0.95 * (len(latencies) - 1))] if latencies else float("nan"),
            "max": latencies[-1] if latencies else float("nan")}


def main(argv=None) -> None:
    args = parse_args(argv)
    rows = []
    for label, failures in (("healthy receiver", 0), ("receiver fails each event's first 2 attempts", 2)):
        name, url = create_database()
        try:
            rows.append((label, run(url, args.jobs, args.interval, failures)))
        finally:
            drop_database(name)
    lines = [f"# Webhook delivery: {args.label}", "", f"Command: `{command_line()}`", "",
             f"CPU {cpu_name()}, {os.cpu_count()} cores; {args.jobs} job ends, one every {args.interval:.2f} s; "
             "latency from the commit that ended the job to the receiver's first 2xx", "",
             "| receiver | events | delivered | lost | duplicates | attempts | p50 s | p95 s | max s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for label, r in rows:
        lines.append(f"| {label} | {r['events']} | {r['delivered']} | {r['lost']} | {r['duplicates']} | "
                     f"{r['attempts']} | {r['p50']:.3f} | {r['p95']:.3f} | {r['max']:.3f} |")
    healthy = rows[0][1]
    lines += ["", f"Healthy receiver p95 **{healthy['p95']:.3f} s** (target <= 2 s); lost with a failing receiver: "
              f"**{rows[1][1]['lost']}** (target 0)"]
    save_report("\n".join(lines) + "\n", Path(__file__).parent / "results" / f"webhooks-{args.label}.md")


if __name__ == "__main__":
    main()
