"""Concurrent requests through ``/v1/audio/transcriptions`` on the Serve cluster, against the same
recordings decoded one by one in process, in one run.

A local Ray (``--num-cpus``) runs the Serve application; an API process (uvicorn) points at it with
``IAM_SERVE_ADDRESS``, so windows of concurrent requests share ASR batches. ``--concurrency``
clients post the clips (multipart, an API key, as OpenAI's client does) at once. The peer is the
in-process runner transcribing the same clips one after another (model load not timed).

Example::

    python benchmarks/openai_load.py --audio ../shared/data/spk1_snt*.wav ../shared/data/spk2_snt*.wav --repeat 4
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg

from common import collect_audio, command_line, cpu_name, create_database, drop_database, free_port, our_runner, save_report

ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--audio", nargs="+", required=True)
    p.add_argument("--repeat", type=int, default=4)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--model", default="tiny.en")
    p.add_argument("--threads", type=int, default=1, help="CTranslate2 threads per ASR replica and in process")
    p.add_argument("--asr-replicas", type=int, default=1)
    p.add_argument("--num-cpus", type=int, default=2)
    p.add_argument("--label", default="cpu")
    return p.parse_args(argv)


def serve_cluster(args) -> str:
    import ray
    from ray import serve

    from common import settings_for
    from iam_cluster.serve.app import AppArgs, build_app

    ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    app = build_app(AppArgs(asr_replicas=args.asr_replicas, asr_num_cpus=max(0.5, args.num_cpus / 2)),
                    settings_for(args.model, "cpu", threads=args.threads))
    serve.run(app, name="iam", route_prefix="/")
    return f"http://127.0.0.1:{port}"


def api_process(db_url: str, serve_url: str, media: Path) -> tuple[subprocess.Popen, str, str]:
    """The API on the cluster, with a user and an API key; returns (process, base URL, key)."""
    from iam_cluster.api.security import new_api_key

    key, prefix, digest = new_api_key()
    with psycopg.connect(db_url, autocommit=True) as conn:
        (user,) = conn.execute("INSERT INTO users (email, password_hash, tier) VALUES (%s, 'x', 'enterprise') "
                               "RETURNING id", [f"{uuid.uuid4().hex[:8]}@example.com"]).fetchone()
        conn.execute("INSERT INTO api_keys (user_id, name, prefix, key_hash, scopes) "
                     "VALUES (%s, 'bench', %s, %s, ARRAY['transcribe'])", [user, prefix, digest])
    port = free_port()
    env = {**os.environ, "DATABASE_URL": db_url, "JWT_SECRET_KEY": uuid.uuid4().hex * 2,
           "IAM_SERVE_ADDRESS": serve_url, "STORAGE_ROOT": str(media), "REDIS_KEY_PREFIX": f"b{uuid.uuid4().hex[:6]}:",
           "RATE_LIMIT_PER_USER": "100000", "RATE_LIMIT_PER_IP": "100000",
           # One API key sends every request: allow it as many uploads at once as the benchmark's
           # concurrency (the default, 4 per account, would answer the rest 429 with Retry-After).
           "MAX_CONCURRENT_UPLOADS": "1000"}
    code = (f"import uvicorn\nfrom iam_cluster.api.app import create_app\n"
            f"uvicorn.run(create_app(), host='127.0.0.1', port={port}, log_level='warning')")
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url, key
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit("the API did not start")


def post_all(url: str, key: str, files: list[Path], concurrency: int) -> tuple[float, list[float], int]:
    def one(path: Path) -> tuple[float, bool]:
        t = time.perf_counter()
        with path.open("rb") as f:
            r = httpx.post(f"{url}/v1/audio/transcriptions", headers={"Authorization": f"Bearer {key}"},
                           files={"file": (path.name, f)}, data={"model": "whisper-1"}, timeout=600)
        ok = r.status_code == 200 and bool(r.json()["text"])
        if not ok:
            print(f"error: {path.name}: {r.status_code} {r.text[:300]}", flush=True)
        return time.perf_counter() - t, ok

    one(files[0])  # warm-up: first requests load lazily on every replica
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(one, files))
    return time.perf_counter() - start, [r[0] for r in results], sum(not ok for _, ok in results)


def main(argv=None) -> None:
    args = parse_args(argv)
    files = collect_audio(args.audio, args.repeat)
    import soundfile as sf

    seconds = sum(sf.info(str(f)).duration for f in files)
    name, db_url = create_database()
    media = Path(f"/tmp/iam-bench-media-{uuid.uuid4().hex[:6]}")
    proc = None
    try:
        proc, url, key = api_process(db_url, serve_cluster(args), media)
        serve_wall, latencies, errors = post_all(url, key, files, args.concurrency)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        import ray
        from ray import serve

        serve.shutdown()
        ray.shutdown()
        drop_database(name)
    from iam_cluster.pipeline.types import TranscribeOptions

    runner = our_runner(args.model, "cpu", threads=args.threads)
    runner.run(files[0], TranscribeOptions())  # warm-up, model load not timed
    start = time.perf_counter()
    for f in files:
        runner.run(f, TranscribeOptions())
    local_wall = time.perf_counter() - start
    latencies.sort()
    lines = [f"# /v1/audio/transcriptions on the Serve cluster: {args.label}", "", f"Command: `{command_line()}`", "",
             f"CPU {cpu_name()}, {os.cpu_count()} cores; {len(files)} clips, {seconds:.1f} s of audio; model "
             f"{args.model}, {args.threads} CTranslate2 thread(s); Ray CPUs {args.num_cpus}, {args.asr_replicas} ASR "
             f"replica(s); {args.concurrency} concurrent requests", "",
             "| system | wall s | audio s / wall s | errors | p50 latency s | p95 latency s |",
             "|---|---:|---:|---:|---:|---:|",
             f"| in process, one by one | {local_wall:.2f} | {seconds / local_wall:.1f} | 0 | | |",
             f"| /v1/audio via Serve, {args.concurrency} at once | {serve_wall:.2f} | {seconds / serve_wall:.1f} | "
             f"{errors} | {latencies[len(latencies) // 2]:.2f} | {latencies[int(0.95 * (len(latencies) - 1))]:.2f} |",
             "", f"Throughput /v1 via Serve / in process: **{local_wall / serve_wall:.2f}x** (target >= 1.5x), "
             f"errors {errors}"]
    save_report("\n".join(lines) + "\n", Path(__file__).parent / "results" / f"openai-load-{args.label}.md")


if __name__ == "__main__":
    main()
