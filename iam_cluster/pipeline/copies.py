"""How the CPU copies of a model share the work: which windows share a ``generate`` (``cpu_parts``,
``even_parts``), the order a batch's encodes, decodes and a decode's later stages are taken in
(``PartQueue``, ``Stages``), and the worker threads, one per copy, that take the work of every
decode call in flight, the earliest call's first (``CopyPool``)."""

from __future__ import annotations

import itertools
import threading
import weakref
from collections.abc import Callable, Generator, Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

#: A part's decode as stages: a generator that yields lists of tasks, each list to be run (in any
#: order, on any copy) before the generator goes on, and returns the part's result. The work
#: between two yields runs in the thread that resumes it (the first: the ``generate``); the tasks
#: of a stage are what copies can share (each window's alignment, the tails' ``generate`` calls).
Stages = Generator[list[Callable[[], None]], None, object]


def run_stages(stages: Stages) -> object:
    """A ``Stages`` generator run to its end in the caller's thread; its result."""
    try:
        tasks = next(stages)
        while True:
            for task in tasks:
                task()
            tasks = stages.send(None)
    except StopIteration as done:
        return done.value


def cpu_parts(schedule: str, frames: Sequence[int], sources: Sequence[Hashable | None], copies: int,
              sizes: Sequence[float] | None = None) -> list[list[int]]:
    """How the CPU copies share a batch (``WhisperASR._part_call``): lists of window indices,
    each decoded in one ``generate``, of one input length.

    ``window``: every window alone. ``part``: the batch in ``copies`` contiguous parts
    (``even_parts``; windows of several input lengths: each alone). ``by_recording`` (``auto``
    with oneDNN): each recording's windows of one length (``sources``) in up to ``copies``
    contiguous parts, a window packed from several recordings (source None) alone. ``sizes``:
    each window's audio length (default: all alike); parts are as even in it as can be.

    With oneDNN a window's numbers move with what shares its ``generate`` (``batch_invariant_cpu``
    in the tests), so a file's words never depend on another request's audio; and the windows of
    many short files go one by one, taking turns at the encoder: the 120-clip folder held 495-525 MB in
    parts (x1.67-1.74 the batched peer's) and 369-378 MB one by one (x1.22-1.28), at 3.9x the peer's
    speed (Zen 4 EPYC, ``benchmarks/results/rtf-short-window-turns-zen4-amd-cpu.md``,
    ``rtf-short-by-recording-zen4-amd-cpu.md``). A long recording's windows lost nothing to it
    (``rtf-longform-4systems-by-recording-zen4-amd-cpu.md``).
    """
    n = len(frames)
    if schedule == "window" or (schedule == "part" and len(set(frames)) > 1):
        return [[i] for i in range(n)]
    if schedule == "part":
        groups = [list(range(n))]
    else:
        by: dict[tuple, list[int]] = {}
        for i, (source, length) in enumerate(zip(sources, frames)):
            by.setdefault((i,) if source is None else (source, length), []).append(i)
        groups = list(by.values())
    sizes = [1.0] * n if sizes is None else sizes
    parts = []
    for group in groups:
        parts += [[group[i] for i in part] for part in even_parts([sizes[i] for i in group], copies)]
    return sorted(parts)


def even_parts(sizes: Sequence[float], k: int) -> list[range]:
    """``min(k, len(sizes))`` contiguous runs of indices whose largest total ``size`` is as small as
    can be (then whose smallest is as large). A part's ``generate``, alignment and tails cost
    about its windows' speech, and the copies' encodes are shared (``PartQueue``): a batch's last
    part decides when it ends. Three windows of 26.7, 24.6 and 12.5 s went as two and one and
    the copy with the short one idled 0.7 s of 2.6 (long_silences, Zen 4 EPYC); as one and two,
    no copy holds more than 37 s of the 64."""
    n = len(sizes)
    k = min(k, n)
    best: tuple[tuple[float, float], list[int]] | None = None
    for cuts in itertools.combinations(range(1, n), k - 1):
        bounds = [0, *cuts, n]
        totals = [sum(sizes[a:b]) for a, b in zip(bounds, bounds[1:])]
        score = (max(totals), -min(totals))
        if best is None or score < best[0]:
            best = (score, bounds)
    bounds = best[1]
    return [range(a, b) for a, b in zip(bounds, bounds[1:])]


class PartQueue:
    """The work of one batch's parts: encoding each window (positions ``0..cuts[-1]``, part ``j``
    holding ``cuts[j]..cuts[j+1]``), then decoding each part (``generate``, fallbacks, alignment,
    tails) once all its windows are encoded; a part decoded as ``Stages`` hands out each stage's
    tasks, and its next stage once they are done. Not thread-safe: ``CopyPool`` holds its lock.

    ``take`` hands out a part whose stage's tasks are all done (to go on with), else a task of a
    part's stage, else a part ready to decode, else a window to encode from the part with the
    most windows nobody took yet (on a tie the larger part, then the first), else None (nothing
    to take now). A started part's work comes first: it is what holds up the batch's end. So the largest part's encodes finish first: of parts of three and two windows
    the three are decoded while the last of the two is encoded, and even parts are encoded side
    by side. ``turns``: per window, whether its encode takes the encoder turn (``CopyPool``); such
    an encode is handed out only while the turn is free.
    """

    def __init__(self, cuts: Sequence[int], turns: Sequence[bool] | None = None) -> None:
        self._part = {i: j for j in range(len(cuts) - 1) for i in range(cuts[j], cuts[j + 1])}
        self._todo = [list(range(cuts[j], cuts[j + 1])) for j in range(len(cuts) - 1)]
        self._left = [len(t) for t in self._todo]
        self._size = list(self._left)
        self._taken = [False] * len(self._todo)
        self._decoded = 0
        self.turns = list(turns) if turns is not None else [False] * cuts[-1]
        #: per part decoded as stages, its generator (``CopyPool`` starts and resumes it)
        self.stages: dict[int, Stages] = {}
        self._tasks: list[tuple[int, Callable[[], None]]] = []  # of parts' current stages, in order
        self._open: dict[int, int] = {}  # per part, its stage's tasks not done yet
        self._resume: list[int] = []  # parts whose stage is done

    def take(self, turn_free: bool = True) -> tuple[str, object] | None:
        """``("resume", part)``, ``("task", (part, task))``, ``("decode", part)``,
        ``("encode", window)`` or None (nothing to take now)."""
        if self._resume:
            return "resume", self._resume.pop(0)
        if self._tasks:
            return "task", self._tasks.pop(0)
        ready = [j for j, left in enumerate(self._left) if left == 0 and not self._taken[j]]
        if ready:
            self._taken[ready[0]] = True
            return "decode", ready[0]
        most = max(range(len(self._todo)), key=lambda j: (len(self._todo[j]), self._size[j], -j))
        if self._todo[most] and (turn_free or not self.turns[self._todo[most][0]]):
            return "encode", self._todo[most].pop(0)
        return None

    def encoded(self, window: int) -> None:
        self._left[self._part[window]] -= 1

    def staged(self, part: int, tasks: Sequence[Callable[[], None]]) -> None:
        """A part's decode reached a stage of ``tasks`` (none: it goes on at once)."""
        if not tasks:
            self._resume.append(part)
            return
        self._open[part] = len(tasks)
        self._tasks.extend((part, task) for task in tasks)

    def task_done(self, part: int) -> None:
        self._open[part] -= 1
        if not self._open[part]:
            del self._open[part]
            self._resume.append(part)

    def decoded(self, part: int) -> None:
        self.stages.pop(part, None)
        self._decoded += 1

    @property
    def finished(self) -> bool:
        """Every part is decoded."""
        return self._decoded == len(self._todo)


@dataclass(eq=False)
class PoolCall:
    """One decode call's work for ``CopyPool``: ``encode(window)`` and ``decode(part)`` as its
    ``queue`` hands them out, then ``finish()``, the call's result. ``decode`` may return
    ``Stages`` (a generator): its stages' tasks are then handed out too."""

    queue: PartQueue
    encode: Callable[[int], None]
    decode: Callable[[int], Stages | None]
    finish: Callable[[], object]
    future: Future = field(default_factory=Future)


class CopyPool:
    """One worker thread per CPU copy of the model, taking the work of every decode call in
    flight: the earliest call's encodes and part decodes first, a later call's only when the
    earlier ones have nothing to hand out (their last parts are being decoded, or wait for an
    encode in flight). A batch's parts end unevenly (one copy decodes the last part while the
    other has nothing left of that batch); that copy now encodes the next batch's windows instead
    of idling. Each batch's parts, and so every window's words, are what they are alone.

    Before, each call ran its own threads: calls one after the other left one core idle at every
    batch's end (ami_mix_b, Zen 4 EPYC: 0.56 s of 9 s); two calls at once, each with threads of
    its own, put four threads on two cores, and the next batch's encodes slowed the current
    batch's parts (9.34 / 10.12 s against 9.24 / 9.59 s).

    A part decoded in stages (``Stages``) hands its stages' tasks to whichever copy is free: the
    copy done with its own part aligns the other part's windows and decodes on its tails, where it
    used to idle (ami_mix_a, Zen 3 EPYC: copies busy 1.69 -> 1.89 of 2).

    Encodes that take turns (``WhisperASR.one_encode``) never run two at once: while one runs, a
    copy takes other work (a part to decode, another call's encode that does not take turns)
    rather than waiting for the encoder.
    """

    def __init__(self, copies: int) -> None:
        self.copies = copies
        self._calls: list[PoolCall] = []
        self._cond = threading.Condition()
        self._turn = False  # an encode that takes turns is running
        self._closed = False
        self._threads: list[threading.Thread] = []

    def submit(self, call: PoolCall) -> Future:
        """Queue a call's work behind every call already queued; its future gets ``finish()``'s
        result, or the first error of its work (the other calls go on)."""
        with self._cond:
            if self._closed:
                raise RuntimeError("the copy pool is closed")
            if not self._threads:
                self._threads = [threading.Thread(target=_serve, args=(weakref.ref(self), self._cond), daemon=True,
                                                  name=f"iam-asr-{k}") for k in range(self.copies)]
                for thread in self._threads:
                    thread.start()
            self._calls.append(call)
            self._cond.notify_all()
        if call.queue.finished:  # a call of no windows
            self._complete(call)
        return call.future

    def close(self) -> None:
        """Let the worker threads end once the queued calls are done."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _pick(self) -> tuple[PoolCall, str, object, bool] | None:
        for call in self._calls:
            task = call.queue.take(turn_free=not self._turn)
            if task is not None:
                kind, x = task
                turn = kind == "encode" and call.queue.turns[x]
                self._turn |= turn
                return call, kind, x, turn
        return None

    def _idle_and_closed(self) -> bool:
        return self._closed and not self._calls

    def _run(self, call: PoolCall, kind: str, x, turn: bool) -> None:
        tasks = None  # a stage reached: its tasks
        try:
            if kind == "encode":
                call.encode(x)
            elif kind == "task":
                x, task = x
                task()
            else:
                stages = call.decode(x) if kind == "decode" else call.queue.stages[x]
                if stages is not None:
                    try:
                        tasks = next(stages) if kind == "decode" else stages.send(None)
                    except StopIteration:
                        tasks = None
        except BaseException as exc:  # the call fails; its other tasks are dropped, other calls go on
            with self._cond:
                self._turn &= not turn
                failed = call in self._calls
                if failed:
                    self._calls.remove(call)
                self._cond.notify_all()
            if failed:
                call.future.set_exception(exc)
            return
        with self._cond:
            self._turn &= not turn
            if kind == "encode":
                call.queue.encoded(x)
            elif kind == "task":
                call.queue.task_done(x)
            elif tasks is not None:
                call.queue.stages[x] = stages  # (only the thread that takes the part's next step reads it)
                call.queue.staged(x, tasks)
            else:
                call.queue.decoded(x)
            done = call.queue.finished and call in self._calls
            self._cond.notify_all()
        if done:
            self._complete(call)

    def _complete(self, call: PoolCall) -> None:
        with self._cond:
            if call not in self._calls:
                return
            self._calls.remove(call)
        try:
            result = call.finish()
        except BaseException as exc:  # noqa: BLE001 - belongs to this call
            call.future.set_exception(exc)
        else:
            call.future.set_result(result)


def _serve(pool_ref: weakref.ref, cond: threading.Condition) -> None:
    """A worker's loop. It holds the pool only while it takes or does a task, never while it waits
    for one, so a pool (and the model whose closures it runs) no one uses any more is let go,
    and its workers end."""
    while True:
        with cond:
            pool = pool_ref()
            if pool is None:
                return
            picked = pool._pick()
            if picked is None:
                if pool._idle_and_closed():
                    return
                del pool
                cond.wait(timeout=1.0)
                continue
        pool._run(*picked)
        del pool, picked


def chain(first: Future, then: Callable[[object], Future]) -> Future:
    """A future of ``then(first's result)``'s result (or of the first error)."""
    out: Future = Future()

    def relay(done: Future) -> None:
        if done.exception() is not None:
            out.set_exception(done.exception())
        else:
            out.set_result(done.result())

    def step(done: Future) -> None:
        try:
            nxt = then(done.result())
        except BaseException as exc:  # noqa: BLE001 - reaches the caller through the future
            out.set_exception(exc)
            return
        nxt.add_done_callback(relay)

    first.add_done_callback(step)
    return out


def settled(fn: Callable[[], object]) -> Future:
    """A future already holding ``fn()``'s result or error (work done in the caller's thread)."""
    out: Future = Future()
    try:
        out.set_result(fn())
    except BaseException as exc:  # noqa: BLE001 - reaches the caller through the future
        out.set_exception(exc)
    return out
