"""Peak RSS of one system on a file list, and the engine stages running when each peak was reached.

A sampler thread reads the process's RSS every 3 ms; for ours it also notes which timed stages of
the engine (``Stats.time``: encode, generate, align, vad, ...) were running at that instant, so the
report says where the peak comes from. Model load and one warm-up file are not counted.

Example (the 120-clip folder of ``rtf.py``'s memory target)::

    D=/work/shared/data
    python benchmarks/memory_stages.py --audio $D/spk1_snt{1,2,3,4,6}.wav $D/spk2_snt{1,2,3}.wav --repeat 15
    IAM_CPU_REPLICAS=1 python benchmarks/memory_stages.py ... --batch-size 2
    python benchmarks/memory_stages.py ... --system fw_batched_words
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import threading
import time
from pathlib import Path

from common import collect_audio, our_runner, rss_mb


class Sampler:
    """Peak RSS overall and per set of engine stages running at the sampled instant."""

    def __init__(self) -> None:
        self.active: collections.Counter[str] = collections.Counter()
        self.by_stages: dict[str, float] = collections.defaultdict(float)
        self.peak = (0.0, "-")
        threading.Thread(target=self._run, daemon=True).start()

    def reset(self) -> None:
        self.by_stages.clear()
        self.peak = (0.0, "-")

    def _run(self) -> None:
        while True:
            mb = rss_mb()
            key = "+".join(sorted(k for k, v in list(self.active.items()) if v > 0)) or "-"
            self.by_stages[key] = max(self.by_stages[key], mb)
            if mb > self.peak[0]:
                self.peak = (mb, key)
            time.sleep(0.003)

    def watch(self, stats_class) -> None:
        """Count the stages of every ``Stats.time`` block as running while they run."""
        original = stats_class.time
        active = self.active

        @contextlib.contextmanager
        def timed(stats, stage):
            active[stage] += 1
            try:
                with original(stats, stage):
                    yield
            finally:
                active[stage] -= 1

        stats_class.time = timed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--audio", nargs="+", required=True)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--system", choices=("ours", "fw_batched_words"), default="ours")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    files = [Path(f) for f in collect_audio(args.audio)] * args.repeat
    sampler = Sampler()
    if args.system == "ours":
        from iam_cluster.pipeline.stats import Stats
        from iam_cluster.pipeline.types import TranscribeOptions

        sampler.watch(Stats)
        runner = our_runner("tiny.en", "cpu", "auto", args.threads, batch_size=args.batch_size)

        def run(paths):
            for path, result in runner.run_many(paths, TranscribeOptions()):
                if not hasattr(result, "text"):
                    raise RuntimeError(f"{path}: {result}")
    else:
        from faster_whisper import BatchedInferencePipeline, WhisperModel

        from iam_cluster.pipeline.models import DEFAULT_CACHE_DIR, resolve_model

        model = WhisperModel(str(resolve_model("tiny.en", DEFAULT_CACHE_DIR).path), device="cpu",
                             compute_type="int8", cpu_threads=args.threads)
        batched = BatchedInferencePipeline(model)

        def run(paths):
            for path in paths:
                segments, _ = batched.transcribe(str(path), batch_size=args.batch_size, beam_size=5,
                                                 word_timestamps=True)
                list(segments)

    run(files[:1])
    warm = rss_mb()
    sampler.reset()
    start = time.perf_counter()
    run(files)
    wall = time.perf_counter() - start
    print(f"{args.system}: {len(files)} files, wall {wall:.2f} s, RSS after warm-up {warm:.0f} MB, "
          f"peak {sampler.peak[0]:.0f} MB while [{sampler.peak[1]}]")
    for key, mb in sorted(sampler.by_stages.items(), key=lambda kv: -kv[1])[:8]:
        print(f"  {mb:6.0f} MB  {key}")


if __name__ == "__main__":
    main()
