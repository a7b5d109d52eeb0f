"""How the CPU copies share one batch's parts (``asr.PartQueue``; no model needed)."""

from __future__ import annotations

import threading

from iam_cluster.pipeline.asr import PartQueue, cpu_parts, even_parts


def test_the_larger_part_is_encoded_first_and_decoded_while_the_other_finishes():
    """Five windows as parts of two and three: the copy of two helps encode the three, which is
    decoded while the last window of the two is encoded (each copy used to encode its own part,
    and the copy of two idled while the other encoded its third)."""
    q = PartQueue([0, 2, 5])
    assert q.take() == ("encode", 2)  # copy A: the part of three
    assert q.take() == ("encode", 3)  # copy B: a tie of two left each, the larger part
    q.encoded(2)
    assert q.take() == ("encode", 0)  # copy A: the part of two has more left
    q.encoded(3)
    assert q.take() == ("encode", 4)  # copy B: a tie of one each, the larger part
    q.encoded(4)
    assert q.take() == ("decode", 1)  # copy B: the part of three is ready before the part of two
    q.encoded(0)
    assert q.take() == ("encode", 1)  # copy A
    q.encoded(1)
    assert q.take() == ("decode", 0)
    assert q.take() is None


def test_even_parts_are_encoded_side_by_side():
    q = PartQueue([0, 3, 6])
    taken = [q.take() for _ in range(6)]
    assert taken == [("encode", 0), ("encode", 3), ("encode", 1), ("encode", 4), ("encode", 2), ("encode", 5)]
    for i in (0, 3, 1, 4, 2):
        q.encoded(i)
    assert q.take() == ("decode", 0)
    q.encoded(5)
    assert q.take() == ("decode", 1)
    assert q.take() is None


def test_a_copy_waits_for_encodes_in_flight_and_stops_when_another_fails():
    q = PartQueue([0, 1])
    assert q.take() == ("encode", 0)
    got = []
    waiting = threading.Thread(target=lambda: got.append(q.take()))
    waiting.start()
    waiting.join(0.2)
    assert waiting.is_alive()  # nothing to take until window 0 is encoded
    q.encoded(0)
    waiting.join(5)
    assert got == [("decode", 0)]

    q = PartQueue([0, 1, 2])
    q.take(), q.take()
    waiting = threading.Thread(target=lambda: got.append(q.take()))
    waiting.start()
    q.fail()  # the copy encoding window 0 raised: the others stop
    waiting.join(5)
    assert not waiting.is_alive() and got[-1] is None


def test_cpu_parts_keep_one_recording_per_generate_with_oneDNN():
    """``by_recording``: each recording's windows of one length in up to ``copies`` parts, a window
    packed from several recordings (None) alone; ``part``: the batch in contiguous parts whatever
    it holds; ``window``: every window alone."""
    frames = [3000] * 8
    assert cpu_parts("window", frames, [0] * 8, 2) == [[i] for i in range(8)]
    assert cpu_parts("part", frames, [None] * 8, 2) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert cpu_parts("part", [3000, 120, 3000], [0] * 3, 2) == [[0], [1], [2]]
    sources = ["a", "a", "b", "a", "b", "b", None, "a"]
    assert cpu_parts("by_recording", frames, sources, 2) == [[0, 1], [2], [3, 7], [4, 5], [6]]
    assert cpu_parts("by_recording", frames, [None] * 3, 2) == [[0], [1], [2]]
    assert cpu_parts("by_recording", [3000, 120, 3000, 120], ["a"] * 4, 2) == [[0], [1], [2], [3]]
    assert cpu_parts("by_recording", frames[:3], ["a"] * 3, 4) == [[0], [1], [2]]


def test_parts_are_as_even_in_audio_as_can_be():
    """A part's decode costs about its windows' speech: the short last window of a recording goes
    with a long one, not alone (long_silences: 26.7, 24.6 and 12.5 s)."""
    assert [list(p) for p in even_parts([26.7, 24.6, 12.5], 2)] == [[0], [1, 2]]
    assert [list(p) for p in even_parts([26.2, 25.4, 26.5, 27.1, 11.0], 2)] == [[0, 1], [2, 3, 4]]
    assert [list(p) for p in even_parts([1.0] * 8, 2)] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert [list(p) for p in even_parts([1.0] * 8, 4)] == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert [list(p) for p in even_parts([5.0, 1.0], 4)] == [[0], [1]]
    assert cpu_parts("by_recording", [3000] * 3, ["a"] * 3, 2, [26.7, 24.6, 12.5]) == [[0], [1, 2]]
