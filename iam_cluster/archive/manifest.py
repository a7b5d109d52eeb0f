"""``manifest.jsonl``: one line per input (status, error, figures, output keys) that makes reruns resume,
and the run's summary (files, audio hours, failures by code, speed)."""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence

import msgspec

from iam_cluster.archive.outputs import Sink
from iam_cluster.archive.sources import Item
from iam_cluster.errors import MediaError

MANIFEST_KEY = "manifest.jsonl"
#: Each ASR worker writes its pack's records here right after the pack's outputs, so a run killed
#: before the driver heard of them does not redo them; merged into the manifest and removed.
PARTS_PREFIX = ".manifest-parts/"
SUMMARY_KEY = "summary.json"
OK, FAILED = "ok", "failed"
#: Failures that another run would repeat (the input itself is at fault): a rerun skips them too.
FINAL_CODES = MediaError.CODES | {"unsafe_member", "member_too_large", "bad_archive"}
#: An S3 manifest (which cannot be appended to) is rewritten at most this often during a run.
S3_FLUSH_SECONDS = 10.0


class Record(msgspec.Struct, omit_defaults=True):
    """One input's line in the manifest."""

    key: str
    fingerprint: str
    status: str
    error_code: str | None = None
    error_message: str | None = None
    #: Seconds of audio (0 when it could not be decoded).
    duration: float = 0.0
    language: str | None = None
    words: int = 0
    speakers: int = 0
    #: Seconds this input cost: its decode + VAD, plus its share (by speech) of its pack's ASR time.
    seconds: float = 0.0
    outputs: list[str] = []

    def final(self) -> bool:
        """Whether a rerun keeps this line (done, or failed in a way that would fail again)."""
        return self.status == OK or self.error_code in FINAL_CODES


class Summary(msgspec.Struct):
    """What a run did, over every input of the source (earlier runs' results included)."""

    files: int
    ok: int
    failed: int
    skipped: int
    audio_hours: float
    failures_by_code: dict[str, int]
    wall_seconds: float
    #: Audio seconds transcribed in this run per second of wall time.
    x_real_time: float
    #: Audio hours transcribed in this run per hour of one ASR worker.
    audio_hours_per_worker_hour: float
    workers: int
    #: Seconds from the run's start to the first file read (listing, Ray start-up, readers starting).
    startup_seconds: float = 0.0
    #: Seconds from the first file read to the last output written.
    processing_seconds: float = 0.0


class Manifest:
    """The manifest of one output location: earlier lines read back, new ones appended as they come.

    A local manifest is appended and synced after each batch of results, so a killed run loses only
    its in-flight batches; an S3 one is rewritten every few seconds and at ``close``.
    """

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.records: dict[str, Record] = {}
        data = sink.read(MANIFEST_KEY)
        for line in (data or b"").splitlines():
            try:
                rec = msgspec.json.decode(line, type=Record)
            except msgspec.DecodeError:  # a line cut short by a kill: its input is simply redone
                continue
            self.records[rec.key] = rec
        parts = sink.keys(PARTS_PREFIX)
        for part in parts:  # written by the workers of a run that was killed
            for line in (sink.read(part) or b"").splitlines():
                try:
                    rec = msgspec.json.decode(line, type=Record)
                except msgspec.DecodeError:
                    continue
                self.records[rec.key] = rec
        self._flushed = time.monotonic()
        path = sink.local_file(MANIFEST_KEY)
        self._file = None
        if path is not None or parts:
            self.compact()
        for part in parts:  # now in the manifest
            sink.delete(part)
        if path is not None:
            self._file = path.open("ab")

    def done(self, item: Item) -> bool:
        """Whether ``item`` (with this fingerprint) has a final line already."""
        rec = self.records.get(item.key)
        return rec is not None and rec.fingerprint == item.fingerprint and rec.final()

    def append(self, records: Iterable[Record]) -> None:
        """Records results (a later line for the same key replaces the earlier one)."""
        lines = []
        for rec in records:
            self.records[rec.key] = rec
            lines.append(msgspec.json.encode(rec) + b"\n")
        if self._file is not None:
            self._file.write(b"".join(lines))
            self._file.flush()
            os.fsync(self._file.fileno())
        elif time.monotonic() - self._flushed > S3_FLUSH_SECONDS:
            self.compact()

    def compact(self, keys: Sequence[str] | None = None) -> None:
        """Rewrites the manifest with one line per input (in ``keys`` order when given)."""
        order = list(keys) if keys is not None else list(self.records)
        listed = set(order)
        extra = [k for k in self.records if k not in listed]
        data = b"".join(msgspec.json.encode(self.records[k]) + b"\n" for k in [*order, *extra] if k in self.records)
        if self._file_open():
            self._file.close()
        self.sink.write(MANIFEST_KEY, data)
        if self._file is not None:
            self._file = self.sink.local_file(MANIFEST_KEY).open("ab")
        self._flushed = time.monotonic()

    def _file_open(self) -> bool:
        return getattr(self, "_file", None) is not None and not self._file.closed

    def close(self, keys: Sequence[str]) -> None:
        """Final rewrite: one line per input, in the source's order; the workers' parts go."""
        self.compact(keys)
        if self._file is not None:
            self._file.close()
        for part in self.sink.keys(PARTS_PREFIX):
            self.sink.delete(part)

    def summary(self, keys: Sequence[str], skipped: int, wall: float, audio_this_run: float,
                workers: int) -> Summary:
        recs = [self.records[k] for k in keys if k in self.records]
        ok = sum(r.status == OK for r in recs)
        codes = Counter(r.error_code or "internal" for r in recs if r.status != OK)
        worker_hours = max(wall, 1e-9) * max(workers, 1) / 3600
        return Summary(
            files=len(keys), ok=ok, failed=len(recs) - ok, skipped=skipped,
            audio_hours=round(sum(r.duration for r in recs) / 3600, 4),
            failures_by_code=dict(sorted(codes.items())), wall_seconds=round(wall, 2),
            x_real_time=round(audio_this_run / max(wall, 1e-9), 2),
            audio_hours_per_worker_hour=round(audio_this_run / 3600 / worker_hours, 2), workers=workers)

    def write_summary(self, summary: Summary) -> None:
        self.sink.write(SUMMARY_KEY, msgspec.json.format(msgspec.json.encode(summary)) + b"\n")


def write_part(sink: Sink, records: Sequence[Record]) -> None:
    """An ASR worker's records of one pack, written (whole) once the pack's outputs are."""
    if records:
        data = b"".join(msgspec.json.encode(r) + b"\n" for r in records)
        sink.write(f"{PARTS_PREFIX}{uuid.uuid4().hex}.jsonl", data)
