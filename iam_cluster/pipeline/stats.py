"""Where the engine's time goes: seconds per stage and counts of the expensive paths taken."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager


class Stats:
    """Accumulates wall seconds per stage and event counts; safe to share between threads.

    Stages: ``decode``, ``vad``, ``encode``, ``generate``, ``fallback``, ``align``, ``unpack``,
    and ``asr`` / ``asr_again`` (the model's whole time in the first pass and in later passes,
    which decode again speech a window skipped or whose recording was in doubt). Counts:
    ``windows``, ``again_windows``, ``fallback_windows``, ``suspect_recordings``,
    ``retry_pieces``, ``guard_silent_words``, ``guard_unsure_words`` and the like.
    """

    def __init__(self) -> None:
        self.seconds: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    @contextmanager
    def time(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - start)

    def add(self, stage: str, seconds: float) -> None:
        with self._lock:
            self.seconds[stage] += seconds

    def count(self, event: str, n: int = 1) -> None:
        with self._lock:
            self.counts[event] += n

    def reset(self) -> None:
        with self._lock:
            self.seconds.clear()
            self.counts.clear()

    def snapshot(self) -> dict:
        """``{"seconds": {...}, "counts": {...}}`` as plain dicts."""
        with self._lock:
            return {"seconds": dict(self.seconds), "counts": dict(self.counts)}
