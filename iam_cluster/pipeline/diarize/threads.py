"""How the diarizer's torch models use a CPU's cores: batches in Python threads, one torch thread each.

torch's own intra-op threads contend with CTranslate2's once the ASR has run in the process (on a
2-core Intel host the diarizer ran 2.4x slower with two of them than with one), so each model
call runs on one torch thread, and independent batches (segmentation chunks, speaker clips) run
at once in Python threads: torch releases the GIL inside its operators. On a 2-core AMD host,
after the ASR had run, segmenting a 150-s meeting took 0.79 s on one thread, 0.49 s as two
batches in two threads (0.45 s with two torch threads, which the Intel host punished).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: Python threads that run model batches at once on CPU, by default: the process's cores, at most this.
MAX_CPU_WORKERS = 4


def cpu_workers(device: str) -> int:
    """Batches run at once: one per core on CPU (at most ``MAX_CPU_WORKERS``, and at most
    ``OMP_NUM_THREADS`` where that is set, as Ray sets it for its workers), one on a GPU."""
    if device != "cpu":
        return 1
    cores = len(os.sched_getaffinity(0))
    omp = os.environ.get("OMP_NUM_THREADS", "")
    if omp.isdigit() and int(omp) > 0:
        cores = min(cores, int(omp))
    return max(1, min(MAX_CPU_WORKERS, cores))


def spans(n: int, batch_size: int, workers: int, min_size: int = 1) -> list[tuple[int, int]]:
    """``[start, end)`` batches of ``n`` items: at most ``batch_size`` each, and as many as there are
    ``workers`` when that leaves each at least ``min_size`` items. Small work stays in one batch:
    a 30-s excerpt (four segmentation chunks, a dozen speaker clips) took 0.30-0.40 s split over
    two threads against 0.25-0.28 s in one (the Python between the model calls holds the GIL)."""
    size = max(1, min(batch_size, max(min_size, -(-n // max(1, workers)))))
    return [(b, min(n, b + size)) for b in range(0, n, size)]


def in_threads(fn: Callable[[T], R], items: Sequence[T], workers: int) -> Iterator[R]:
    """``fn`` over ``items`` in order, up to ``workers`` at once (in this thread when one)."""
    if workers <= 1 or len(items) <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(min(workers, len(items)), thread_name_prefix="iam-diarize") as pool:
        yield from pool.map(fn, items)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op thread count set to ``n`` (0: leave it) for the block, then restored."""
    import torch

    before = torch.get_num_threads()
    if n and n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n and n != before:
            torch.set_num_threads(before)
