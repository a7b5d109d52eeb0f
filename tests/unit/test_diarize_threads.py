"""Model batches in threads: the split, and results in order."""

from __future__ import annotations

import threading
import time

from iam_cluster.pipeline.diarize.threads import cpu_workers, in_threads, spans


def test_spans_cover_every_item_once_within_the_batch_size():
    for n in range(0, 40):
        for batch, workers, least in [(16, 1, 1), (16, 2, 6), (4, 3, 1), (128, 2, 16)]:
            got = spans(n, batch, workers, least)
            assert [i for a, b in got for i in range(a, b)] == list(range(n))
            assert all(0 < b - a <= batch for a, b in got)


def test_small_work_stays_in_one_batch_and_large_work_feeds_every_worker():
    assert spans(4, 16, 2, 6) == [(0, 4)]  # a 30-s excerpt's chunks
    assert spans(19, 16, 2, 6) == [(0, 10), (10, 19)]  # a 150-s meeting's
    assert spans(100, 16, 2, 6) == [(b, min(100, b + 16)) for b in range(0, 100, 16)]


def test_results_come_back_in_order_from_concurrent_threads():
    seen = set()

    def work(i: int) -> int:
        seen.add(threading.get_ident())
        time.sleep(0.02 * (5 - i))  # the first items finish last
        return i * i

    assert list(in_threads(work, list(range(5)), 2)) == [i * i for i in range(5)]
    assert len(seen) == 2
    assert list(in_threads(work, [3], 4)) == [9]


def test_one_worker_on_a_gpu_and_omp_num_threads_honoured(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert cpu_workers("cuda") == 1 and cpu_workers("cpu") >= 1
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # what Ray gives a worker with one CPU or less
    assert cpu_workers("cpu") == 1
