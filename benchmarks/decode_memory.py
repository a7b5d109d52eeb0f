"""Peak memory of the worker's first stage (decode, level, VAD, shards) against the audio's length.

For each length a FLAC is built by repeating a real recording, and a fresh process runs what a
worker runs before the model: ``pipeline.runner.prepare`` (16-bit PCM decode, level measurement,
VAD in parts, shards). The process's peak RSS is compared with the target, 300 MB + 2 MB per
minute of audio, and with the same stage keeping float32 samples (the engine's old way).

Example::

    python benchmarks/decode_memory.py --minutes 10 60 120 --audio ../shared/data/meeting_long_dev.wav
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from common import command_line, cpu_name, save_report

CHILD = """
import json, sys, time
sys.path.insert(0, "benchmarks")
from common import peak_rss_mb
from iam_cluster.pipeline.decode import decode_audio
from iam_cluster.pipeline.runner import Limits, prepare
from iam_cluster.pipeline.types import TranscribeOptions
from iam_cluster.pipeline.vad import SileroVad
path, pcm16 = sys.argv[1], sys.argv[2] == "1"
vad = SileroVad()
base = peak_rss_mb()
t = time.perf_counter()
if pcm16:
    prepared = prepare(path, TranscribeOptions(), vad, Limits(None), 300.0)
else:  # float32 samples kept, as before 16-bit storage
    from iam_cluster.pipeline.run import find_speech
    from iam_cluster.pipeline.shard import shard
    audio = decode_audio(path)
    prepared = shard(audio, find_speech(audio, TranscribeOptions(), vad), 300.0)
print(json.dumps({"base_mb": base, "peak_mb": peak_rss_mb(),
                  "seconds": time.perf_counter() - t}))
"""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--audio", required=True, help="a recording to repeat (speech all through is the hard case)")
    p.add_argument("--minutes", type=float, nargs="+", default=[10, 60, 120])
    p.add_argument("--label", default="cpu")
    return p.parse_args(argv)


def build(audio: Path, minutes: float, out: Path) -> Path:
    import soundfile as sf

    from iam_cluster.pipeline.decode import decode_audio

    clip = (decode_audio(audio).samples * 32767).astype(np.int16)
    need = int(minutes * 60 * 16000)
    with sf.SoundFile(out, "w", samplerate=16000, channels=1, format="FLAC", subtype="PCM_16") as f:
        written = 0
        while written < need:
            part = clip[: need - written]
            f.write(part)
            written += len(part)
    return out


def measure(path: Path, pcm16: bool) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(path), "1" if pcm16 else "0"], capture_output=True,
                         text=True, check=True, cwd=Path(__file__).resolve().parent.parent)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    args = parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in args.minutes:
            path = build(Path(args.audio), minutes, Path(tmp) / f"{minutes:g}.flac")
            rows.append((minutes, measure(path, True), measure(path, False)))
            path.unlink()
    lines = [f"# Decode memory: {args.label}", "", f"Command: `{command_line()}`", "",
             f"CPU {cpu_name()}, {os.cpu_count()} cores; `{Path(args.audio).name}` repeated to each length; peak RSS of "
             "a fresh process running decode + level + VAD + shards (the worker's first stage)", "",
             "| minutes | peak MB, 16-bit (ours) | target 300 + 2/min | met | peak MB, float32 | seconds |",
             "|---:|---:|---:|---|---:|---:|"]
    for minutes, ours, floats in rows:
        target = 300 + 2 * minutes
        lines.append(f"| {minutes:g} | {ours['peak_mb']:.0f} | {target:.0f} | {'yes' if ours['peak_mb'] <= target else 'NO'} "
                     f"| {floats['peak_mb']:.0f} | {ours['seconds']:.1f} |")
    if len(rows) > 1:
        (m0, a, _), (m1, b, _) = rows[0], rows[-1]
        lines += ["", f"Growth: **{(b['peak_mb'] - a['peak_mb']) / (m1 - m0):.2f} MB per minute** of audio "
                  f"(baseline after imports {rows[0][1]['base_mb']:.0f} MB)"]
    save_report("\n".join(lines) + "\n", Path(__file__).parent / "results" / f"decode-memory-{args.label}.md")


if __name__ == "__main__":
    main()
