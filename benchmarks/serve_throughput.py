"""Throughput of the Ray Serve application against the in-process pipeline, in one run.

N recordings are sent concurrently through Serve (real Ray started here) and, on the same model
and audio, transcribed one after another by the in-process ``Pipeline``. Printed: audio seconds per
wall second for each, their ratio, the ASR batch sizes Serve actually formed, and p50/p95 job
latency.

Example::

    python benchmarks/serve_throughput.py --audio /work/shared/data/spk*.wav --concurrency 8
    python benchmarks/serve_throughput.py --audio long.wav --device cuda --asr-replicas 2 --asr-num-gpus 0.5
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import collect_audio, command_line, our_runner, save_report, settings_for



def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--audio", nargs="+", required=True, help="files or folders")
    p.add_argument("--repeat", type=int, default=1, help="repeat the file list")
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight through Serve")
    p.add_argument("--model", default="tiny.en")
    p.add_argument("--device", default="cpu")
    p.add_argument("--compute-type", default="auto")
    p.add_argument("--threads", type=int, default=2, help="CTranslate2 threads (in process and per replica)")
    p.add_argument("--asr-replicas", type=int, default=1)
    p.add_argument("--asr-num-gpus", type=float, default=0.0)
    p.add_argument("--num-cpus", type=int, default=2, help="CPUs given to the local Ray")
    p.add_argument("--shard-seconds", type=float, help="default: the settings' (IAM_SHARD_SECONDS)")
    p.add_argument("--max-batch-size", type=int, help="default: the settings' (IAM_BATCH_SIZE)")
    p.add_argument("--diarize", action="store_true")
    p.add_argument("--label", default=dt.date.today().isoformat())
    p.add_argument("--out", type=Path)
    return p.parse_args(argv)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def run_in_process(files: list[Path], args) -> tuple[float, list[float]]:
    """The pipeline in this process, one recording after another (model load not timed)."""
    from iam_cluster.pipeline.types import TranscribeOptions

    runner = our_runner(args.model, args.device, args.compute_type, args.threads,
                        batch_size=args.max_batch_size, shard_seconds=args.shard_seconds)
    options = TranscribeOptions(diarize=args.diarize)
    runner.run(files[0], options)  # warm-up
    latencies, start = [], time.perf_counter()
    for f in files:
        t = time.perf_counter()
        runner.run(f, options)
        latencies.append(time.perf_counter() - t)
    return time.perf_counter() - start, latencies


def run_serve(files: list[Path], args) -> tuple[float, list[float], list[int]]:
    """The same recordings through Serve, ``--concurrency`` in flight (start-up not timed)."""
    import ray
    from ray import serve

    from iam_cluster.serve.app import AppArgs, build_app

    ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
    settings = settings_for(args.model, args.device, args.compute_type, args.threads,
                            batch_size=args.max_batch_size, shard_seconds=args.shard_seconds)
    app = build_app(AppArgs(asr_replicas=args.asr_replicas, asr_num_gpus=args.asr_num_gpus), settings)
    handle = serve.run(app, name="iam", route_prefix=None)
    asr = serve.get_deployment_handle("ASR", app_name="iam")
    options = {"diarize": args.diarize}
    handle.transcribe.remote(files[0].read_bytes(), options, files[0].name).result()  # warm-up
    seen = asr.batch_sizes_seen.remote().result()
    payloads = [f.read_bytes() for f in files]

    def one(i: int) -> float:
        t = time.perf_counter()
        handle.transcribe.remote(payloads[i], options, files[i].name).result()
        return time.perf_counter() - t

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        latencies = list(pool.map(one, range(len(files))))
    wall = time.perf_counter() - start
    after = asr.batch_sizes_seen.remote().result()
    batches = sorted(size for size, n in after.items() for _ in range(n - seen.get(size, 0)))
    serve.shutdown()
    ray.shutdown()
    return wall, latencies, batches


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    files = collect_audio(args.audio, args.repeat)
    if not files:
        sys.exit("no audio files")
    import soundfile as sf

    audio_seconds = sum(sf.info(str(f)).duration if f.suffix != ".mp3" else _duration(f) for f in files)
    local_wall, local_lat = run_in_process(files, args)
    serve_wall, serve_lat, batches = run_serve(files, args)
    rows = [
        ("in-process (sequential)", local_wall, local_lat),
        (f"serve ({args.concurrency} concurrent)", serve_wall, serve_lat),
    ]
    lines = [
        f"# Serve throughput: {args.label}", "",
        f"Command: `{command_line()}`", "",
        f"{len(files)} recordings, {audio_seconds:.1f} s of audio; model {args.model}, device {args.device}, "
        f"threads {args.threads}, ASR replicas {args.asr_replicas}, Ray CPUs {args.num_cpus}", "",
        "| system | wall s | audio s / wall s | p50 latency s | p95 latency s |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, wall, lat in rows:
        lines.append(f"| {name} | {wall:.2f} | {audio_seconds / wall:.1f} | {percentile(lat, .5):.2f} | "
                     f"{percentile(lat, .95):.2f} |")
    mean_batch = statistics.mean(batches) if batches else 0.0
    lines += ["", f"Serve / in-process throughput: **{local_wall / serve_wall:.2f}x**", "",
              f"ASR batches formed: {len(batches)}, mean size {mean_batch:.2f}, sizes {batches}"]
    save_report("\n".join(lines) + "\n", args.out or Path(__file__).parent / "results" / f"serve-{args.label}.md")


def _duration(path: Path) -> float:
    from iam_cluster.pipeline.decode import probe

    return probe(path).duration or 0.0


if __name__ == "__main__":
    main()
