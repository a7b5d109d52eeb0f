"""How the CPU copies share the work (``pipeline.copies``; no model needed): which windows share a
``generate``, the order of a batch's encodes and decodes, and the pool that serves every call in
flight, the earliest first."""

from __future__ import annotations

import gc
import threading
import time
import weakref

import pytest

from iam_cluster.pipeline.copies import CopyPool, PartQueue, PoolCall, cpu_parts, even_parts, run_stages


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


def test_nothing_to_take_until_an_encode_in_flight_is_done():
    q = PartQueue([0, 1])
    assert q.take() == ("encode", 0)
    assert q.take() is None and not q.finished  # window 0 is being encoded
    q.encoded(0)
    assert q.take() == ("decode", 0)
    assert q.take() is None
    q.decoded(0)
    assert q.finished


def test_an_encode_that_takes_turns_waits_for_the_turn_and_others_do_not():
    q = PartQueue([0, 1, 2], turns=[True, False])
    assert q.take(turn_free=False) is None  # the part with most left (a tie: the first) waits
    assert q.take() == ("encode", 0)
    assert q.take(turn_free=False) == ("encode", 1)  # encoded at its own few seconds: no turn


class Work:
    """A pool call whose encodes and decodes note themselves in ``log`` and sleep ``seconds``."""

    def __init__(self, name: str, cuts: list[int], log: list, seconds: dict | None = None, turns=None,
                 fail: str | None = None) -> None:
        self.name, self.log, self.seconds, self.fail = name, log, seconds or {}, fail
        self.call = PoolCall(PartQueue(cuts, turns), self.encode, self.decode, lambda: name)

    def _do(self, task: str) -> None:
        self.log.append(("start", task, threading.current_thread().name))
        if task == self.fail:
            raise RuntimeError(f"{task} broke")
        time.sleep(self.seconds.get(task, 0.02))
        self.log.append(("end", task, threading.current_thread().name))

    def encode(self, x: int) -> None:
        self._do(f"{self.name}.e{x}")

    def decode(self, j: int) -> None:
        self._do(f"{self.name}.d{j}")


def started(log: list) -> list[str]:
    return [task for what, task, _ in log if what == "start"]


def test_a_free_copy_takes_the_next_call_only_when_the_earlier_has_nothing_to_hand_out():
    """Two calls of two one-window parts, the first call's second part slow to decode: the copy
    done with the first part encodes and decodes the next call's windows meanwhile, instead of
    idling; the first call's work always comes first."""
    log: list = []
    pool = CopyPool(2)
    a = Work("a", [0, 1, 2], log, {"a.d1": 0.6})
    b = Work("b", [0, 1, 2], log)
    fa, fb = pool.submit(a.call), pool.submit(b.call)
    assert (fa.result(timeout=10), fb.result(timeout=10)) == ("a", "b")
    order = started(log)
    assert set(order[:2]) == {"a.e0", "a.e1"}  # the first call's encodes first, side by side
    assert set(order[2:4]) == {"a.d0", "a.d1"}
    assert order.index("b.e0") > max(order.index("a.d0"), order.index("a.d1"))
    ended = [task for what, task, _ in log if what == "end"]
    assert ended.index("b.d1") < ended.index("a.d1")  # all of b done while a's long part decoded
    pool.close()


def test_encodes_that_take_turns_never_run_two_at_once():
    log: list = []
    pool = CopyPool(2)
    calls = [Work(name, [0, 1, 2, 3], log, {f"{name}.e{k}": 0.05 for k in range(3)}, turns=[True] * 3)
             for name in ("a", "b")]
    futures = [pool.submit(w.call) for w in calls]
    assert [f.result(timeout=10) for f in futures] == ["a", "b"]
    running = 0
    for what, task, _ in log:
        if ".e" in task:
            running += 1 if what == "start" else -1
            assert running <= 1
    pool.close()


def test_a_failed_task_fails_its_call_only():
    log: list = []
    pool = CopyPool(2)
    bad = Work("a", [0, 2, 3], log, fail="a.e1")
    good = Work("b", [0, 1, 2], log)
    fa, fb = pool.submit(bad.call), pool.submit(good.call)
    with pytest.raises(RuntimeError, match="a.e1 broke"):
        fa.result(timeout=10)
    assert fb.result(timeout=10) == "b"
    assert "a.d0" not in started(log)  # the failed call's other work is dropped
    pool.close()


def test_a_pool_no_one_holds_is_let_go_and_its_workers_end():
    log: list = []
    pool = CopyPool(2)
    pool.submit(Work("a", [0, 1], log).call).result(timeout=10)
    threads = list(pool._threads)
    ref = weakref.ref(pool)
    del pool
    for _ in range(50):  # a worker holds it while it waits (up to a second) for work
        gc.collect()
        if ref() is None:
            break
        time.sleep(0.1)
    assert ref() is None
    for thread in threads:
        thread.join(timeout=5)
        assert not thread.is_alive()


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


def test_a_parts_stages_hand_out_their_tasks_and_go_on_once_they_are_done():
    q = PartQueue([0, 1, 2])
    assert q.take() == ("encode", 0)
    q.encoded(0)
    assert q.take() == ("decode", 0)
    first, second = (lambda: None), (lambda: None)
    q.staged(0, [first, second])
    assert q.take() == ("task", (0, first))  # before the other part's encode: it holds up the batch's end
    assert q.take() == ("task", (0, second))
    assert q.take() == ("encode", 1)
    q.task_done(0)
    assert q.take() is None  # one task of the stage still running
    q.task_done(0)
    assert q.take() == ("resume", 0)
    q.staged(0, [])  # a stage of no tasks: on at once
    assert q.take() == ("resume", 0)
    q.decoded(0)
    assert not q.finished


class StagedWork(Work):
    """A pool call whose part 0 decodes in stages: a ``generate`` (d0), then four slow tasks at once,
    then one more stage; its result the order the stages saw."""

    def decode(self, j: int):
        self._do(f"{self.name}.d{j}")
        if j:
            return None
        return self._stages()

    def _stages(self):
        yield [lambda k=k: self._do(f"{self.name}.t{k}") for k in range(4)]
        self.log.append(("between", "stage", threading.current_thread().name))
        yield [lambda: self._do(f"{self.name}.last")]
        return "staged"


def test_a_stage_s_tasks_are_shared_by_the_copies_and_the_words_wait_for_all_of_them():
    """Part 0's four tasks run on both copies (the copy done with part 1 takes its share), and its
    next stage starts only once all four are done."""
    log: list = []
    pool = CopyPool(2)
    work = StagedWork("a", [0, 1, 2], log, {f"a.t{k}": 0.1 for k in range(4)})
    assert pool.submit(work.call).result(timeout=10) == "a"
    threads = {name for what, task, name in log if what == "start" and ".t" in task}
    assert threads == {"iam-asr-0", "iam-asr-1"}
    ends = [k for k, (what, task, _) in enumerate(log) if what == "end" and ".t" in task]
    between = next(k for k, (what, _, _) in enumerate(log) if what == "between")
    last = next(k for k, (what, task, _) in enumerate(log) if what == "start" and task == "a.last")
    assert max(ends) < between < last
    pool.close()


def test_run_stages_runs_every_stage_in_the_callers_thread():
    log: list = []
    work = StagedWork("a", [0, 1], log)
    assert run_stages(work.decode(0)) == "staged"
    assert [task for what, task, _ in log if what == "end"] == ["a.d0", "a.t0", "a.t1", "a.t2", "a.t3", "a.last"]
    assert {name for _, _, name in log} == {threading.current_thread().name}


def test_a_failed_stage_task_fails_its_call():
    log: list = []
    pool = CopyPool(2)
    work = StagedWork("a", [0, 1, 2], log, fail="a.t2")
    with pytest.raises(RuntimeError, match="a.t2 broke"):
        pool.submit(work.call).result(timeout=10)
    assert "a.last" not in started(log)
    pool.close()
