"""Whisper's encoder cost against the length of its input, on one CTranslate2 thread.

    python benchmarks/encoder_frames.py /tmp/longform/ten_minutes.wav --out results/x.md

Whisper is trained on 30-s inputs (3000 mel frames, speech then silence); CTranslate2 also encodes
shorter ones, and attention makes the cost grow faster than the input. This measures by how much
(best of ``--rounds`` per length, after a warm-up), which is what a shorter window could save.
Whether the words survive a shorter input is another matter: see the note in the results.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from common import code_version, command_line, cpu_name, save_report

from iam_cluster.pipeline.asr import WhisperASR
from iam_cluster.pipeline.decode import decode_audio
from iam_cluster.pipeline.types import SAMPLE_RATE


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("audio", help="a recording of at least 30 s")
    ap.add_argument("--model", default="tiny.en")
    ap.add_argument("--frames", default="3000,2500,2000,1500,1000,500")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    asr = WhisperASR(args.model, device="cpu", cpu_threads=1, cpu_replicas=1)
    samples = decode_audio(args.audio).samples[: 30 * SAMPLE_RATE]
    mel = asr.features([samples])  # (1, 80, 3000)
    whisper = asr.whisper
    whisper.encode(np.ascontiguousarray(mel))  # warm-up
    rows = []
    full = None
    for frames in [int(f) for f in args.frames.split(",")]:
        x = np.ascontiguousarray(mel[..., :frames])
        best = float("inf")
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            whisper.encode(x)
            best = min(best, time.perf_counter() - t0)
        full = full or best
        rows.append((frames, best))
    lines = [
        "# Encoder cost against input length",
        "",
        f"- command: `{command_line()}`",
        f"- code: {code_version()}",
        f"- cpu: {cpu_name()}, one CTranslate2 thread, model {asr.name}, {asr.compute_type}",
        "",
        "| input s | mel frames | encode s (best) | x the first length's cost | s per input second |",
        "|---:|---:|---:|---:|---:|",
    ]
    for frames, t in rows:
        lines.append(f"| {frames / 100:.0f} | {frames} | {t:.3f} | {t / full:.2f} | {t / (frames / 100):.4f} |")
    save_report("\n".join(lines) + "\n", args.out)


if __name__ == "__main__":
    main()
