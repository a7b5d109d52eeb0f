"""One long recording through Serve, cut into shards versus whole, in one run: wall time and WER.

The recording is built from clips that have a reference ``.txt`` beside them (repeated, with
pauses) until it is at least ``--minutes`` long, so WER is exact. Two ASR replicas share the
machine's cores; the only difference between the two runs is ``shard_seconds``.

Example::

    python benchmarks/serve_shards.py --clips /work/shared/data --minutes 10 --shard-seconds 120
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

from common import command_line, normalise, save_report, settings_for

import msgspec
import numpy as np


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clips", nargs="+", required=True, help="files or folders of clips with .txt references")
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--shard-seconds", type=float, default=120.0)
    p.add_argument("--asr-replicas", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="CTranslate2 threads per ASR replica")
    p.add_argument("--num-cpus", type=int, default=2)
    p.add_argument("--model", default="tiny.en")
    p.add_argument("--device", default="cpu")
    p.add_argument("--label", default="long-cpu")
    return p.parse_args(argv)


def build_recording(clips: list[str], minutes: float) -> tuple[bytes, str, float]:
    """WAV bytes of clips (with references) repeated with 1-s pauses, their joined reference, seconds."""
    import soundfile as sf

    from iam_cluster.pipeline.decode import decode_audio
    from iam_cluster.pipeline.types import SAMPLE_RATE

    paths = []
    for raw in clips:
        p = Path(raw)
        candidates = sorted(p.iterdir()) if p.is_dir() else [p]
        paths += [c for c in candidates if c.suffix in {".wav", ".flac", ".mp3"} and c.with_suffix(".txt").exists()
                  and c.stem != "multilingual" and "stereo" not in c.stem]
    pause = np.zeros(SAMPLE_RATE, np.float32)
    parts, refs, total = [], [], 0.0
    while total < minutes * 60:
        for path in paths:
            samples = decode_audio(path).samples
            parts += [samples, pause]
            refs.append(path.with_suffix(".txt").read_text().strip())
            total += len(samples) / SAMPLE_RATE + 1.0
    buffer = io.BytesIO()
    sf.write(buffer, np.concatenate(parts), SAMPLE_RATE, format="WAV")
    return buffer.getvalue(), " ".join(refs), total


def main(argv=None) -> None:
    import jiwer
    import ray
    from ray import serve

    from iam_cluster.pipeline.types import Transcript
    from iam_cluster.serve.app import AppArgs, build_app

    args = parse_args(argv)
    data, reference, seconds = build_recording(args.clips, args.minutes)
    warm, _, _ = build_recording(args.clips, 0.1)
    ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
    rows = []
    for name, shard_seconds in (("whole", 1e9), (f"shards of {args.shard_seconds:.0f} s", args.shard_seconds)):
        settings = settings_for(args.model, args.device, threads=args.threads)
        app = build_app(AppArgs(asr_replicas=args.asr_replicas, asr_num_cpus=args.num_cpus / (args.asr_replicas + 1),
                                shard_seconds=shard_seconds), settings)
        handle = serve.run(app, name="iam", route_prefix=None)
        handle.transcribe.remote(warm, {}, "warm.wav").result()  # warm-up
        start = time.perf_counter()
        t = msgspec.convert(handle.transcribe.remote(data, {}, "long.wav").result(), Transcript)
        wall = time.perf_counter() - start
        wer = 100 * jiwer.wer(normalise(reference), normalise(t.text))
        rows.append((name, wall, seconds / wall, wer))
        serve.delete("iam")
    serve.shutdown()
    ray.shutdown()
    lines = [f"# Serve, one long recording: {args.label}", "",
             f"Command: `{command_line()}`", "",
             f"{seconds / 60:.1f} min recording; model {args.model}, device {args.device}, "
             f"{args.asr_replicas} ASR replicas x {args.threads} threads, Ray CPUs {args.num_cpus}", "",
             "| run | wall s | x real time | WER % |", "|---|---:|---:|---:|"]
    lines += [f"| {n} | {w:.2f} | {x:.1f} | {e:.2f} |" for n, w, x, e in rows]
    lines += ["", f"Sharded / whole speed: **{rows[0][1] / rows[1][1]:.2f}x**; "
              f"WER change {rows[1][3] - rows[0][3]:+.2f} points"]
    save_report("\n".join(lines) + "\n", Path(__file__).parent / "results" / f"serve-shards-{args.label}.md")


if __name__ == "__main__":
    main()
