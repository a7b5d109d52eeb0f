"""The recording keys the engine's windows carry to the Serve ASR deployment (``serve.asr``)."""

from iam_cluster.serve.asr import window_sources


def test_window_sources_are_unique_across_calls_and_keep_packed_windows_apart():
    """Windows of one file in one call share a key, another call's never do (two requests' file
    0 are two recordings), a window packed from several files has none, and a call that names no
    sources is one recording."""
    first = window_sources(4, [0, 0, None, 1])
    second = window_sources(2, [0, 0])
    whole = window_sources(2)
    assert first[0] == first[1] != first[3] and first[2] is None
    assert second[0] == second[1] and second[0] not in first
    assert whole[0] == whole[1] is not None and whole[0] not in (*first, *second)
