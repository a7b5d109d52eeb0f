"""Merge: give each word the speaker whose turn it overlaps most; split segments where speakers change.

A pure function over sorted intervals (``numpy.searchsorted``), so it runs the same in process, in a
Ray task or in a test.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from iam_cluster.pipeline.types import Diarization, Segment, Transcript, Turn


#: The label of all speech when the diarizer told no voice apart.
ONE_SPEAKER = "SPEAKER_00"


def speaker_labels(turns: list[Turn]) -> dict[str, str]:
    """Map raw speaker ids to ``SPEAKER_00``, ``SPEAKER_01``... in order of first appearance."""
    order = dict.fromkeys(t.speaker for t in sorted(turns, key=lambda t: (t.start, t.end)))
    return {raw: f"SPEAKER_{i:02d}" for i, raw in enumerate(order)}


def assign_speakers(starts: np.ndarray, ends: np.ndarray, turns: list[Turn]) -> list[str | None]:
    """The speaker of each interval ``[starts[i], ends[i]]``: most overlap, else the nearest turn.

    Turns may overlap each other (pyannote's overlapped speech); ties go to the earlier turn.
    Returns ``None`` for every interval when there are no turns.
    """
    if not turns:
        return [None] * len(starts)
    turns = sorted(turns, key=lambda t: (t.start, t.end))
    t_start = np.array([t.start for t in turns])
    t_end = np.array([t.end for t in turns])
    # Turns that can overlap word i start before ends[i]; with turns sorted by start and a running
    # maximum of their ends, the first that can reach starts[i] is found by binary search too.
    reach = np.maximum.accumulate(t_end)
    hi = np.searchsorted(t_start, ends, side="left")
    lo = np.searchsorted(reach, starts, side="right")
    out: list[str | None] = []
    for i, (s, e) in enumerate(zip(starts, ends)):
        best, best_overlap = -1, 0.0
        for k in range(lo[i], hi[i]):
            overlap = min(e, t_end[k]) - max(s, t_start[k])
            if overlap > best_overlap:
                best, best_overlap = k, overlap
        if best < 0:  # in a gap (or a zero-length word): nearest turn by distance
            mid = (s + e) / 2
            distance = np.maximum(t_start - mid, 0) + np.maximum(mid - t_end, 0)
            best = int(np.argmin(distance))
        out.append(turns[best].speaker)
    return out


def merge(transcript: Transcript, diarization: Diarization) -> Transcript:
    """A copy of ``transcript`` whose words and segments carry speakers, with the diarizer's turns
    of the speakers who say something (``Transcript.speaker_turns``).

    Segments are split where the speaker changes between words (each piece spans its words);
    a segment with one speaker throughout, or without word timings, keeps its span and text.
    Labels become ``SPEAKER_00``... in order of first appearance in the diarization. A diarization
    without turns (the diarizer told no voice apart: speech too quiet or too short for it, as in
    AMI's far-field trn01, where the ASR still writes words) gives all the speech one speaker:
    every word asked to carry a speaker carries one.
    """
    labels = speaker_labels(diarization.turns)
    turns = [Turn(t.start, t.end, labels[t.speaker]) for t in diarization.turns]
    if not turns and transcript.segments:
        labels = {ONE_SPEAKER: ONE_SPEAKER}
        turns = [Turn(transcript.segments[0].start, transcript.segments[-1].end, ONE_SPEAKER)]
    segments: list[Segment] = []
    for seg in transcript.segments:
        if not seg.words:
            (spk,) = assign_speakers(np.array([seg.start]), np.array([seg.end]), turns)
            segments.append(Segment(**{**_fields(seg), "speaker": spk}))
            continue
        who = assign_speakers(
            np.array([w.start for w in seg.words]), np.array([w.end for w in seg.words]), turns
        )
        runs: list[list] = []
        for word, spk in zip(seg.words, who):
            word = type(word)(**{**_fields(word), "speaker": spk})
            if not runs or spk != runs[-1][-1].speaker:
                runs.append([])
            runs[-1].append(word)
        if len(runs) == 1:
            # One speaker throughout: the segment keeps its own span and text (Whisper's, which
            # need not equal its words' span or their concatenation).
            segments.append(Segment(**{**_fields(seg), "words": runs[0], "speaker": runs[0][0].speaker}))
        else:
            segments.extend(_piece(seg, run) for run in runs)
    for i, s in enumerate(segments):
        s.id = i
    present = [label for label in labels.values() if any(s.speaker == label for s in segments)]
    # A voice that never says a word (a laugh, a cough, a door) is no speaker the transcript can
    # show: its turns are left out with it (dev01's third "speaker", 2 s of laughter, FA 18 %).
    kept = [t for t in turns if t.speaker in present] if diarization.turns else []
    kept.sort(key=lambda t: (t.start, t.end))
    return Transcript(**{**_fields(transcript), "segments": segments, "speakers": present, "speaker_turns": kept})


def _fields(struct) -> dict:
    return {f: getattr(struct, f) for f in struct.__struct_fields__}


def _piece(seg: Segment, words: list) -> Segment:
    """The part of ``seg`` made of ``words`` (all one speaker)."""
    return Segment(
        **{
            **_fields(seg),
            "start": words[0].start,
            "end": words[-1].end,
            "text": "".join(w.word for w in words),
            "words": words,
            "speaker": words[0].speaker,
        }
    )


#: Cosine distance under which speakers of different shards are joined when the diarizations say
#: nothing of their own scale (``Diarization.same_voice``): the first embedded diarizer's.
JOIN_DISTANCE = 0.4


def join_shards(parts: Sequence[tuple[float, Diarization]], threshold: float | None = None) -> Diarization:
    """Put the diarizations of a recording's shards on one timeline with one set of speakers.

    Each shard labels its speakers on its own; here every (shard, speaker) pair becomes the
    duration-weighted mean of its turn embeddings, and those are clustered across shards
    (complete linkage on cosine distance). Two speakers of the same shard never merge: their
    distance is set beyond any threshold. Without embeddings, labels stay per shard.

    Args:
        parts: ``(offset in seconds, diarization with shard-relative times)`` per shard.
        threshold: cosine distance under which speakers of different shards are the same person
            (None: ``1 - same_voice`` of the shards' diarizer, the similarity it merges one
            recording's clusters at, else ``JOIN_DISTANCE``). The embedded diarizer's similarity
            moves with its encoder and embedding (resemblyzer 0.7, CAM++ 0.55); on five long AMI
            mixes cut into 120-s shards, joining at resemblyzer's own 0.25 (its similarity was
            0.75 then) scored DER 31.9 % against 33.8 % at the fixed 0.4 (whole recordings: 32.3 %).
    """
    scales = [d.same_voice for _, d in parts if d.same_voice is not None]
    if threshold is None:
        threshold = 1.0 - min(scales) if scales else JOIN_DISTANCE
    keys: list[tuple[int, str]] = []
    vectors: list[np.ndarray] = []
    for shard, (_, d) in enumerate(parts):
        for speaker in d.speakers:
            idx = [i for i, t in enumerate(d.turns) if t.speaker == speaker]
            if len(d.embeddings) != len(d.turns) or not idx:
                continue
            weights = np.array([d.turns[i].end - d.turns[i].start for i in idx]) + 1e-3
            v = (np.array([d.embeddings[i] for i in idx]) * weights[:, None]).sum(0)
            if np.linalg.norm(v) > 0:
                keys.append((shard, speaker))
                vectors.append(v / np.linalg.norm(v))
    label = {key: f"shard{key[0]}-{key[1]}" for key in keys}
    if len(keys) > 1:
        from sklearn.cluster import AgglomerativeClustering

        x = np.stack(vectors)
        distance = np.clip(1.0 - x @ x.T, 0.0, 2.0)
        shards = np.array([k[0] for k in keys])
        distance[shards[:, None] == shards[None, :]] = 4.0  # cannot-link inside a shard
        np.fill_diagonal(distance, 0.0)
        groups = AgglomerativeClustering(
            n_clusters=None, metric="precomputed", linkage="complete", distance_threshold=threshold
        ).fit(distance).labels_
        label = {key: f"G{g}" for key, g in zip(keys, groups)}
    turns, embeddings = [], []
    for shard, (offset, d) in enumerate(parts):
        for i, t in enumerate(d.turns):
            speaker = label.get((shard, t.speaker), f"shard{shard}-{t.speaker}")
            turns.append(Turn(round(t.start + offset, 3), round(t.end + offset, 3), speaker))
            if len(d.embeddings) == len(d.turns):
                embeddings.append(d.embeddings[i])
    order = sorted(range(len(turns)), key=lambda i: (turns[i].start, turns[i].end))
    return Diarization(
        turns=[turns[i] for i in order],
        embeddings=[embeddings[i] for i in order] if len(embeddings) == len(turns) else [],
        same_voice=min(scales) if scales else None,
    )
