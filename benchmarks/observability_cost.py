"""What metrics and structured logs cost the API: the poll endpoint of ``api_load.py`` with
observability on and off, in one run, against the bare Litestar handler as the peer.

Each server runs in its own uvicorn process. The two API servers are started through
``serve_api`` as ``iam-cluster api`` starts them: **on** with Prometheus metrics, one JSON access
line per request (written to a file, as a container runtime would) and a ``/metrics`` scrape every
15 s (Prometheus' default interval); **off** with ``METRICS_ENABLED=0``, ``ACCESS_LOG=0`` and
``LOG_LEVEL=WARNING``. Rounds alternate between the servers so drift hits all alike; besides
throughput the report gives each server's own CPU time per request (psutil), which other load on
the machine hardly moves. Target: on / off >= 0.95 throughput, <= 1.05 CPU per request.

Example::

    python benchmarks/observability_cost.py --clients 32 --seconds 10 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil

from api_load import BARE_APP, free_port, hammer, prepare_database, seed, start, wait_up
from common import code_version, command_line, cpu_name, drop_database, save_report

#: The switch: environment of the API server with observability on and off.
MODES = {
    "on": {"METRICS_ENABLED": "1", "LOG_FORMAT": "json", "LOG_LEVEL": "INFO", "ACCESS_LOG": "1"},
    "off": {"METRICS_ENABLED": "0", "LOG_FORMAT": "json", "LOG_LEVEL": "WARNING", "ACCESS_LOG": "0"},
}
#: Seconds between two scrapes of /metrics (Prometheus' default ``scrape_interval``).
SCRAPE_INTERVAL_S = 15.0


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--seconds", type=float, default=10.0, help="per server and round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--label", default="cpu")
    return p.parse_args(argv)


def start_api(port: int, env: dict, mode: str, log: Path) -> subprocess.Popen:
    """The API as ``iam-cluster api`` runs it, observability ``mode``; its log lines go to ``log``."""
    code = f"from iam_cluster.api.app import serve_api\nserve_api('127.0.0.1', {port})"
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-c", code], env={**env, **MODES[mode]},
                                cwd=Path(__file__).parent.parent, stderr=out)


async def scrape_every(url: str, stop: asyncio.Event) -> None:
    """What Prometheus does to an API with metrics on, during its load."""
    import httpx

    async with httpx.AsyncClient() as client:
        while not stop.is_set():
            await client.get(url)
            try:
                await asyncio.wait_for(stop.wait(), SCRAPE_INTERVAL_S)
            except asyncio.TimeoutError:
                pass


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


async def load(url: str, headers: dict, pid: int, scrape: str | None, clients: int, seconds: float) -> dict:
    """One round on one server: ``api_load.hammer``'s figures plus the server's CPU seconds."""
    stop = asyncio.Event()
    scraper = asyncio.create_task(scrape_every(scrape, stop)) if scrape else None
    before = cpu_seconds(pid)
    result = await hammer(url, headers, clients, seconds)
    result["cpu"] = cpu_seconds(pid) - before
    stop.set()
    if scraper is not None:
        await scraper
    return result


def pooled(rounds: list[dict]) -> dict:
    requests = sum(r["requests"] for r in rounds)
    wall = sum(r["requests"] / r["rps"] for r in rounds)
    return {"requests": requests, "rps": requests / wall, "errors": sum(r["errors"] for r in rounds),
            "p50": sorted(r["p50"] for r in rounds)[len(rounds) // 2],
            "cpu_ms": 1000 * sum(r["cpu"] for r in rounds) / requests}


def main(argv=None) -> None:
    args = parse_args(argv)
    name, url, env = prepare_database()
    procs: list[subprocess.Popen] = []
    logs = Path(tempfile.mkdtemp(prefix="observability-cost-"))
    try:
        path, headers, _ = seed(url, env["JWT_SECRET_KEY"])
        bare_port = free_port()
        procs.append(start(BARE_APP, bare_port, env))
        targets = {"bare Litestar handler": (f"http://127.0.0.1:{bare_port}/bare", {}, procs[-1].pid, None)}
        for mode in ("off", "on"):
            port = free_port()
            procs.append(start_api(port, env, mode, logs / f"{mode}.log"))
            scrape = f"http://127.0.0.1:{port}/metrics" if mode == "on" else None
            targets[f"API poll, observability {mode}"] = (f"http://127.0.0.1:{port}{path}", headers,
                                                          procs[-1].pid, scrape)
        for target, hdrs, _, _ in targets.values():
            asyncio.run(wait_up(target))
            asyncio.run(hammer(target, hdrs, 4, 1.0))  # warm-up: pool connections, lazy imports
        rounds: dict[str, list[dict]] = {label: [] for label in targets}
        labels = list(targets)
        for r in range(args.rounds):
            for label in labels[r % len(labels):] + labels[:r % len(labels)]:
                rounds[label].append(asyncio.run(load(*targets[label], args.clients, args.seconds)))
        lines_written = {mode: sum(1 for _ in open(logs / f"{mode}.log")) for mode in ("off", "on")}
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=10)
        drop_database(name)
        shutil.rmtree(logs, ignore_errors=True)
    results = {label: pooled(r) for label, r in rounds.items()}
    on, off = results["API poll, observability on"], results["API poll, observability off"]
    lines = [f"# Observability cost: {args.label}", "", f"Command: `{command_line()}`", "",
             f"Code: {code_version()}", "",
             f"CPU {cpu_name()}, {os.cpu_count()} cores; {args.clients} concurrent clients, {args.rounds} "
             f"alternating rounds of {args.seconds:.0f} s per server; clients in this process (httpx)", "",
             "| server | requests | req/s | errors | p50 ms | server CPU ms/request | log lines |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for label, r in results.items():
        mode = label.rsplit(" ", 1)[-1]
        written = lines_written.get(mode, "")
        lines.append(f"| {label} | {r['requests']} | {r['rps']:.0f} | {r['errors']} | {1000 * r['p50']:.1f} | "
                     f"{r['cpu_ms']:.3f} | {written} |")
    lines += ["", f"- on / off throughput: **{on['rps'] / off['rps']:.3f}x** (target >= 0.95)",
              f"- on / off server CPU per request: **{on['cpu_ms'] / off['cpu_ms']:.3f}x** (target <= 1.05)",
              f"- API (off) / bare handler throughput: {off['rps'] / results['bare Litestar handler']['rps']:.2f}x"]
    save_report("\n".join(lines) + "\n", Path(__file__).parent / "results" / f"observability-cost-{args.label}.md")


if __name__ == "__main__":
    main()
