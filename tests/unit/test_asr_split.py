"""Our splitter of a window's tokens at Whisper's timestamp tokens (no model needed)."""

from __future__ import annotations

from iam_cluster.pipeline.asr import split_at_timestamps

EOT, TS = 50256, 50363  # tiny.en's end of text and first timestamp (<|0.00|>)
P = 0.02  # seconds per timestamp step


def ts(seconds: float) -> int:
    return TS + round(seconds / P)


def test_pairs_single_timestamps_and_end_of_text():
    tokens = [ts(0.0), 11, 12, ts(2.5), ts(2.5), 13, ts(4.0), 14, 15, ts(6.0), EOT]
    assert split_at_timestamps(tokens, TS, EOT, P, 10.0) == [
        (0.0, 2.5, [11, 12]), (2.5, 4.0, [13]), (4.0, 6.0, [14, 15]),
    ]


def test_text_after_the_last_timestamp_runs_to_the_end_of_the_audio():
    tokens = [ts(0.4), 11, ts(3.0), ts(3.2), 12, 13]
    assert split_at_timestamps(tokens, TS, EOT, P, 7.5) == [(0.4, 3.0, [11]), (3.2, 7.5, [12, 13])]


def test_without_timestamp_tokens_one_segment_spans_the_window():
    assert split_at_timestamps([11, 12, EOT], TS, EOT, P, 12.0) == [(0.0, 12.0, [11, 12])]
    assert split_at_timestamps([], TS, EOT, P, 12.0) == []
    assert split_at_timestamps([ts(0.0), ts(0.0), EOT], TS, EOT, P, 12.0) == []


def test_times_are_clamped_to_the_audio_and_never_go_backwards():
    tokens = [ts(5.0), 11, ts(4.0), ts(29.0), 12, ts(29.9)]
    assert split_at_timestamps(tokens, TS, EOT, P, 8.0) == [(5.0, 5.0, [11]), (8.0, 8.0, [12])]


def test_cpu_threads_become_single_thread_copies_up_to_four():
    from iam_cluster.pipeline.asr import cpu_layout

    assert cpu_layout(1) == (1, 1)
    assert cpu_layout(2) == (2, 1)
    assert cpu_layout(4) == (4, 1)
    assert cpu_layout(16) == (4, 4)
    assert cpu_layout(2, 1) == (1, 2)  # asked for one copy: all threads on it
    assert cpu_layout(3, 8) == (3, 1)  # never more copies than threads
    assert cpu_layout(0)[0] * cpu_layout(0)[1] <= len(__import__("os").sched_getaffinity(0))
