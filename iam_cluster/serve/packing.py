"""Short recordings of concurrent requests decoded together: their speech packed into shared windows.

Whisper encodes 30 s whatever a window holds, so 32 concurrent 3-s requests decoded one by one
cost 32 windows, and batched at the ASR replica still 32; packed, about five. The ingress hands
each prepared recording to a ``RequestPacker``; recordings with the same options that arrive
while others are being decoded wait (a few milliseconds when the cluster is idle) and then go
through ONE ``finish`` call, exactly as a folder does in the CLI. The window decoder keeps every
recording's words its own (see ``pipeline/windows.py``: wide gaps between recordings, recordings
whose words are in doubt decoded again alone), so requests of different callers may share a
window without one ever receiving another's words.

Long recordings (more than one shard) are not packed: they fill their own windows, and a short
request should not wait for one. Inside a shared call, a recording whose speech needs more than one
window gets windows of its own too (``windows.long_files``), so its words are the ones it gets
alone; only recordings that fit in one window share windows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import msgspec

from iam_cluster.errors import IAMError
from iam_cluster.observability.logging import get_logger
from iam_cluster.pipeline.types import ProgressHook, TranscribeOptions, Transcript

log = get_logger("iam_cluster.serve")

#: ``finish(prepared recordings, options, hook) -> transcripts`` (blocking; run in a thread).
Finish = Callable[[Sequence, TranscribeOptions, ProgressHook], list[Transcript]]


class _AllCancelled(IAMError):
    code = "cancelled"


@dataclass
class _Request:
    prepared: object
    hook: ProgressHook
    future: asyncio.Future
    cancelled: bool = field(default=False)


class RequestPacker:
    """Decodes the recordings of concurrent requests together, at most ``running`` groups at once.

    Args:
        finish: runs one group (the ingress's ``finish`` with remote ASR and diarization).
        max_files: most recordings in one group.
        running: groups decoded at the same time (two keep the ASR replicas fed while a group's
            results are being joined).
        wait_s: how long the first request of a group waits for others when nothing is running.
    """

    def __init__(self, finish: Finish, max_files: int = 64, running: int = 2, wait_s: float = 0.01) -> None:
        self.finish, self.max_files, self.running, self.wait_s = finish, max_files, running, wait_s
        self.pending: dict[bytes, list[_Request]] = {}
        self.active = 0

    @staticmethod
    def packable(prepared) -> bool:
        """Only recordings of one shard share windows with other requests."""
        return len(prepared.shards) <= 1

    async def transcribe(self, prepared, options: TranscribeOptions, hook: ProgressHook) -> Transcript:
        """The transcript of ``prepared``, decoded in a group with other requests' recordings."""
        request = _Request(prepared, hook, asyncio.get_running_loop().create_future())
        self.pending.setdefault(msgspec.json.encode(options), []).append(request)
        if self.active < self.running:
            self.active += 1
            asyncio.ensure_future(self._drain())
        return await request.future

    async def _drain(self) -> None:
        try:
            await asyncio.sleep(self.wait_s)  # let a burst arrive
            while self.pending:
                key = next(iter(self.pending))
                group, rest = self.pending[key][: self.max_files], self.pending[key][self.max_files :]
                if rest:
                    self.pending[key] = rest
                else:
                    del self.pending[key]
                await self._run(group, msgspec.json.decode(key, type=TranscribeOptions))
        finally:
            self.active -= 1

    async def _run(self, group: list[_Request], options: TranscribeOptions) -> None:
        try:
            transcripts = await asyncio.to_thread(self.finish, [r.prepared for r in group], options,
                                                  _shared_hook(group))
        except Exception as exc:  # noqa: BLE001 - decided per request below
            if len(group) > 1 and not isinstance(exc, _AllCancelled):
                # One recording's failure must not fail the others: each is decoded again alone.
                log.warning("packed requests failed together; decoding them one by one",
                            requests=len(group), error=repr(exc))
                for request in group:
                    await self._run([request], options)
                return
            for request in group:
                if not request.future.done():
                    request.future.set_exception(exc)
            return
        for request, transcript in zip(group, transcripts):
            if not request.future.done():
                request.future.set_result(transcript)


def _shared_hook(group: list[_Request]) -> ProgressHook:
    """Progress of the group, to every request still waiting; a request whose caller went away
    (its hook raises) stops getting it, and the work stops only when all of them went away."""

    def hook(step: str, completed: int, total: int) -> None:
        for request in group:
            if request.cancelled:
                continue
            try:
                request.hook(step, completed, total)
            except IAMError:
                request.cancelled = True
        if all(r.cancelled for r in group):
            raise _AllCancelled("every caller of the group went away")

    return hook
