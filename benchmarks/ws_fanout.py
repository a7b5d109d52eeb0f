"""WebSocket fan-out across two API processes: share of message events delivered and delivery latency.

Two uvicorn API processes (one worker each) share a fresh migrated database and a Redis prefix.
``--sockets`` WebSocket clients connect, half to each process, for ``--users`` users (each user's
sockets alternate between the two processes, so every event crosses processes for half of them).
Then ``--rounds`` rounds send one message to every user: through ``POST /api/v2/messages``
(``--via rest``, each from its own sender, alternating processes) or by publishing the
``new_message`` event to Redis as the API does (``--via redis``). Latency is measured from the
moment the send starts to the moment a socket receives the event; every socket of the recipient
must receive every message.

Example::

    python benchmarks/ws_fanout.py --sockets 500 --users 100 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).parent))
from api_load import drop_database, free_port, prepare_database, start, wait_up  # noqa: E402
from common import command_line, cpu_name, save_report  # noqa: E402

#: App code for the API processes.
APP = """
from iam_cluster.api.app import create_app
app = create_app()
"""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sockets", type=int, default=500)
    p.add_argument("--users", type=int, default=100)
    p.add_argument("--rounds", type=int, default=5, help="messages per user (at most 30: the send limit)")
    p.add_argument("--gap", type=float, default=0.5, help="seconds between rounds")
    p.add_argument("--concurrency", type=int, default=32, help="sends in flight at once")
    p.add_argument("--via", choices=["auto", "rest", "redis"], default="auto")
    p.add_argument("--label", default="cpu")
    return p.parse_args(argv)


def seed(url: str, secret: str, users: int) -> tuple[list[uuid.UUID], list[dict], list[dict]]:
    """``users`` recipients and as many senders; returns ids, recipients' and senders' auth headers."""
    from iam_cluster.api.security import create_access_token, hash_password
    from iam_cluster.settings import AuthSettings

    auth = AuthSettings(jwt_secret_key=secret, access_token_expire_minutes=60)
    pw = hash_password("bench password")
    ids, rec_h, snd_h = [], [], []
    with psycopg.connect(url, autocommit=True) as conn:
        for i in range(users):
            for role, out in (("r", rec_h), ("s", snd_h)):
                email = f"{role}{i}@bench.example.com"
                (uid,) = conn.execute("INSERT INTO users (email, password_hash) VALUES (%s, %s) RETURNING id",
                                      (email, pw)).fetchone()
                out.append({"Authorization": f"Bearer {create_access_token(uid, email, auth)}"})
                if role == "r":
                    ids.append(uid)
    return ids, rec_h, snd_h


async def run(args, bases: list[str], env: dict, ids, rec_h, snd_h) -> dict:
    import httpx
    from redis.asyncio import Redis
    from websockets.asyncio.client import connect

    from iam_cluster import events

    via = args.via
    if via == "auto":
        r = httpx.get(bases[0] + "/api/v2/messages", headers=snd_h[0], timeout=5)
        via = "rest" if r.status_code != 404 else "redis"

    sent_at: dict[str, float] = {}
    latencies: list[float] = []
    received: set[tuple[int, str]] = set()
    dupes = 0
    socket_user: list[int] = [j % args.users for j in range(args.sockets)]

    def proc_of(j: int) -> int:
        """Socket ``j``'s process: a user's sockets alternate between the two, half on each overall."""
        return (j // args.users + j) % 2

    async def reader(j: int, ws) -> None:
        nonlocal dupes
        async for raw in ws:
            t = time.perf_counter()
            event = json.loads(raw)
            if event["type"] != "new_message":
                continue
            tag = event["data"].get("subject", "")
            if tag in sent_at:
                key = (j, tag)
                if key in received:
                    dupes += 1
                else:
                    received.add(key)
                    latencies.append(t - sent_at[tag])

    sockets = []
    readers = []
    t0 = time.perf_counter()
    connect_sem = asyncio.Semaphore(64)

    async def open_one(j: int):
        base = bases[proc_of(j)]
        token = rec_h[socket_user[j]]["Authorization"].split(" ", 1)[1]
        async with connect_sem:
            return await connect(base.replace("http://", "ws://") + f"/api/v2/messages/ws?token={token}",
                                 open_timeout=30, max_queue=None)

    sockets = await asyncio.gather(*(open_one(j) for j in range(args.sockets)))
    connect_s = time.perf_counter() - t0
    readers = [asyncio.create_task(reader(j, ws)) for j, ws in enumerate(sockets)]
    await asyncio.sleep(1.0)  # presence events settle
    per_process = [sum(1 for j in range(args.sockets) if proc_of(j) == k) for k in (0, 1)]

    redis = Redis.from_url(env.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    prefix = env["REDIS_KEY_PREFIX"]
    sem = asyncio.Semaphore(args.concurrency)
    send_lat: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=args.concurrency * 2)
    clients = [httpx.AsyncClient(base_url=b, timeout=10, limits=limits) for b in bases]

    async def send(seq: int, user: int) -> None:
        nonlocal errors
        tag = f"bench-{seq}"
        async with sem:
            t = time.perf_counter()
            sent_at[tag] = t
            try:
                if via == "rest":
                    r = await clients[seq % 2].post("/api/v2/messages", headers=snd_h[user],
                                                    json={"recipient_id": str(ids[user]), "subject": tag,
                                                          "body": "fan-out benchmark"})
                    if r.status_code != 201:
                        errors += 1
                else:
                    await events.publish(redis, prefix, ids[user], "new_message", {"subject": tag})
            except Exception:
                errors += 1
            send_lat.append(time.perf_counter() - t)

    seq = 0
    t_send = time.perf_counter()
    for _ in range(args.rounds):
        batch = []
        for user in range(args.users):
            batch.append(send(seq, user))
            seq += 1
        await asyncio.gather(*batch)
        await asyncio.sleep(args.gap)
    send_wall = time.perf_counter() - t_send
    expected = args.rounds * args.sockets  # every socket's user got one message per round
    deadline = time.perf_counter() + 10.0
    while len(received) < expected and time.perf_counter() < deadline:
        await asyncio.sleep(0.05)
    for t in readers:
        t.cancel()
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    for c in clients:
        await c.aclose()
    await redis.aclose()
    latencies.sort()
    send_lat.sort()

    def pct(xs, q):
        return xs[min(len(xs) - 1, int(len(xs) * q))] if xs else float("nan")

    return {"via": via, "messages": seq, "expected": expected, "delivered": len(received), "dupes": dupes,
            "errors": errors, "p50": pct(latencies, 0.5), "p95": pct(latencies, 0.95), "p99": pct(latencies, 0.99),
            "max": latencies[-1] if latencies else float("nan"), "send_p50": pct(send_lat, 0.5),
            "send_p95": pct(send_lat, 0.95), "connect_s": connect_s, "per_process": per_process,
            "send_wall": send_wall}


def main(argv=None) -> None:
    args = parse_args(argv)
    name, url, env = prepare_database()
    procs = []
    try:
        ids, rec_h, snd_h = seed(url, env["JWT_SECRET_KEY"], args.users)
        ports = [free_port(), free_port()]
        procs = [start(APP, p, env) for p in ports]
        bases = [f"http://127.0.0.1:{p}" for p in ports]
        for b in bases:
            asyncio.run(wait_up(b + "/health"))
        r = asyncio.run(run(args, bases, env, ids, rec_h, snd_h))
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(timeout=10)
            except Exception:
                p.kill()
        drop_database(name)
    share = r["delivered"] / r["expected"] if r["expected"] else 0.0
    how = ("`POST /api/v2/messages` (one sender per recipient, alternating processes)" if r["via"] == "rest"
           else "`events.publish` straight to Redis (the relay alone, without the REST request)")
    lines = [f"# WebSocket fan-out: {args.label}", "",
             f"Command: `{command_line()}`", "",
             f"CPU {cpu_name()}, {os.cpu_count()} cores; two uvicorn API processes (one worker each), local "
             f"PostgreSQL and Redis; all clients in the benchmark process (websockets, httpx).", "",
             f"- sockets: {sum(r['per_process'])} ({r['per_process'][0]} on process A, {r['per_process'][1]} on B), "
             f"{args.users} users ({args.sockets // args.users} sockets each, spread over both processes); "
             f"connected in {r['connect_s']:.1f} s",
             f"- sent: {r['messages']} messages via {how}, {args.rounds} rounds of {args.users} "
             f"({args.concurrency} in flight), {r['send_wall']:.1f} s; send errors {r['errors']}",
             f"- send call latency p50 {1000 * r['send_p50']:.1f} ms, p95 {1000 * r['send_p95']:.1f} ms", "",
             "| deliveries expected | delivered | share | duplicates | p50 ms | p95 ms | p99 ms | max ms |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|",
             f"| {r['expected']} | {r['delivered']} | {100 * share:.2f}% | {r['dupes']} | {1000 * r['p50']:.1f} | "
             f"{1000 * r['p95']:.1f} | {1000 * r['p99']:.1f} | {1000 * r['max']:.1f} |", "",
             "Latency: from the start of the send (the POST, or the Redis PUBLISH) to the socket's receipt of "
             "the `new_message` event."]
    save_report("\n".join(lines) + "\n", Path(__file__).parent / "results" / f"ws-fanout-{args.label}.md")
    if share < 1.0:
        raise SystemExit(f"only {100 * share:.2f}% delivered")


if __name__ == "__main__":
    main()
