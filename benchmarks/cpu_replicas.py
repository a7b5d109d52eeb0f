"""One batch of windows, decoded by ``WhisperASR`` on CPU in different layouts of the same threads:
one copy of the model with all threads (CTranslate2 intra-op threads), or several single-thread copies
each decoding its part of the batch at once (the engine's default, ``pipeline.asr.cpu_layout``).

    python benchmarks/cpu_replicas.py /tmp/longform/ten_minutes.wav --threads 2 --out results/x.md

The windows are consecutive 30-s stretches of the file (speech throughout is the costly case);
each layout decodes 1, 3 and 8 of them (best of ``--rounds``), after one warm-up call.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import code_version, cpu_name, save_report

from iam_cluster.pipeline.asr import WhisperASR
from iam_cluster.pipeline.decode import decode_audio
from iam_cluster.pipeline.types import SAMPLE_RATE, TranscribeOptions

WINDOW = 30 * SAMPLE_RATE


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("audio", help="a recording with at least 8 x 30 s of audio")
    ap.add_argument("--model", default="tiny.en")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sizes", default="1,3,8", help="windows per batch")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    samples = decode_audio(args.audio).samples
    sizes = [int(n) for n in args.sizes.split(",")]
    windows = [samples[i * WINDOW : (i + 1) * WINDOW] for i in range(max(sizes))]
    if len(windows[-1]) < WINDOW:
        raise SystemExit(f"{args.audio}: shorter than {max(sizes)} x 30 s")
    options = TranscribeOptions()
    layouts = [(f"{args.threads} copies x 1 thread", args.threads), (f"1 copy x {args.threads} threads", 1)]
    rows = []
    for name, replicas in layouts:
        asr = WhisperASR(args.model, device="cpu", compute_type="int8", cpu_threads=args.threads,
                         cpu_replicas=replicas)
        asr.decode(windows[:2], "en", options)  # warm-up
        times = []
        for n in sizes:
            best = float("inf")
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                asr.decode(windows[:n], "en", options)
                best = min(best, time.perf_counter() - t0)
            times.append(best)
        rows.append((name, times))
        print(name, " ".join(f"{n}w {t:.2f}s" for n, t in zip(sizes, times)), flush=True)
        del asr

    lines = [
        "# CPU layouts of the model's threads: copies vs intra-op threads", "",
        f"- command: `python benchmarks/cpu_replicas.py {args.audio} --threads {args.threads} "
        f"--sizes {args.sizes} --rounds {args.rounds}`",
        f"- cpu: {cpu_name()}; model {args.model} int8, beam 5, word timestamps; code {code_version()}",
        "- seconds for one `WhisperASR.decode` of N consecutive 30-s windows (best of the rounds)", "",
        "| layout | " + " | ".join(f"{n} windows s" for n in sizes) + " |",
        "|---|" + "---:|" * len(sizes),
    ]
    lines += [f"| {name} | " + " | ".join(f"{t:.2f}" for t in times) + " |" for name, times in rows]
    base = rows[1][1]
    lines += ["", "copies faster by: " + ", ".join(f"{n} windows x{b / t:.2f}"
                                                  for n, b, t in zip(sizes, base, rows[0][1]))]
    save_report("\n".join(lines) + "\n", args.out)


if __name__ == "__main__":
    main()
