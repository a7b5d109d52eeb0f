"""A/B of how a batch is shared out over the CPU copies of the model (``WhisperASR._decode_batch``).

``before``: each copy encodes and decodes its own contiguous part (the split before
``asr.encode_plan``); ``now``: each copy decodes its part, the encoder's windows are shared out so
that every copy does as many encodes plus decodes (``encode_plan``). Same words by construction
(each part is decoded as before); this times one ``decode`` of N windows of real speech, the two
taking turns, and prints the median of each and their ratio.

Example: ``python benchmarks/encode_plan.py --audio /tmp/longform/ten_minutes.wav --windows 3 5 7``
"""

from __future__ import annotations

import argparse
import statistics
import time

from common import cpu_name, our_runner


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--audio", required=True, help="a recording of at least windows x 29 s of speech")
    p.add_argument("--windows", type=int, nargs="+", default=[3, 5, 7])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()

    from iam_cluster.pipeline.asr import _split
    from iam_cluster.pipeline.decode import decode_audio
    from iam_cluster.pipeline.types import TranscribeOptions

    asr = our_runner("tiny.en", "cpu", "auto", args.threads).pipeline.asr
    now = asr._decode_batch

    def before(audios, language, options, align, timestamps, frames):
        futures = [asr._pool.submit(asr._decode_part, audios[a:b], language, options, align, timestamps, frames)
                   for a, b in _split(len(audios), asr.replicas)]
        return [text for f in futures for text in f.result()]

    samples = decode_audio(args.audio).samples
    step = 29 * 16000
    windows = [samples[i * step : (i + 1) * step] for i in range(max(args.windows))]
    options = TranscribeOptions()
    print(f"CPU {cpu_name()}, {args.threads} threads, {asr.replicas} copies, tiny.en int8, beam 5, {args.audio}")
    print("| windows | before s (median) | now s (median) | before / now |\n|---:|---:|---:|---:|")
    for n in args.windows:
        times: dict[str, list[float]] = {"before": [], "now": []}
        for r in range(args.rounds):
            order = [("before", before), ("now", now)]
            for name, split in order if r % 2 == 0 else order[::-1]:
                asr._decode_batch = split
                start = time.perf_counter()
                asr.decode(windows[:n], "en", options)
                times[name].append(time.perf_counter() - start)
        b, w = statistics.median(times["before"]), statistics.median(times["now"])
        print(f"| {n} | {b:.2f} | {w:.2f} | {b / w:.2f} |", flush=True)


if __name__ == "__main__":
    main()
