"""ASR: CTranslate2 Whisper (through faster-whisper's model, features and tokenizer), one batched
``generate`` per batch of windows, with temperature fallback, timestamps and word alignment."""

from __future__ import annotations

import functools
import itertools
import math
import os
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Protocol

import msgspec
import numpy as np

from iam_cluster.errors import ConfigError
from iam_cluster.pipeline.copies import CopyPool, PartQueue, PoolCall, Stages, chain, cpu_parts, run_stages, settled
from iam_cluster.pipeline.models import (
    DEFAULT_CACHE_DIR,
    DEFAULT_MODEL,
    resolve_compute_type,
    resolve_device,
    resolve_model,
)
from iam_cluster.pipeline.stats import Stats
from iam_cluster.pipeline.types import TranscribeOptions, WindowText

# faster-whisper's own defaults for merging punctuation into words.
_PREPEND = "\"'“¿([{-"
_APPEND = "\"'.。,，!！?？:：”)]}、"
_MAX_INITIAL_TIMESTAMP_INDEX = 50  # first timestamp no later than 1.0 s, as sequential transcribe
_WINDOW_FRAMES = 3000  # Whisper encodes exactly 30 s of 10-ms mel frames
#: Windows are aligned on a virtual timeline this far apart (faster-whisper's word timing carries
#: state from one segment to the next and wants time moving forward). faster-whisper shortens a
#: long first word "after a pause" (more than four median word lengths since the last speech);
#: with windows 30 s apart that pause ran from the end of the previous window's speech, so it
#: depended on the batch-mates: the first window of a worker's part saw none, the others from
#: under a second to 30 s, and a window's word times, and with them what counted as skipped speech,
#: changed with the windows decoded beside it (a file's words in a folder or a Serve batch). At
#: 60 s apart, and the first window given a previous one, every window's first words come after a
#: pause.
_SPACING = 60.0
_SPACING_FRAMES = 6000
#: A window of skipped speech (``decode(..., fit_input=True)``) is encoded as its audio plus this
#: tail of silence, at least ``FIT_MIN_SECONDS``, not padded to 30 s: such windows hold a few
#: seconds (the engine spreads a pass of them over the model's workers) and the encoder's cost
#: grows faster than its input (30 s cost 3.3x 15 s, ``results/encoder-frames-cpu.md``). Not for
#: first passes: there Whisper's no-speech probability, which the silence guards rest on, needs
#: the 30-s input it was trained on (8 s of noise beside 11 s of speech became "Thank you for
#: watching" at 15-25 s). The floor is the middle of those measured on the long-form set (10, 15,
#: 20 s: WER 7.00 / 7.04 / 7.00 % against 7.13 % at 30 s; ``results/rtf-longform-fit-retries-cpu.md``).
FIT_TAIL_SECONDS = 2.0
FIT_MIN_SECONDS = 15.0
#: A window whose words stop this long before its audio does is decoded on (``_tail_stages``).
#: Less than the unwritten tail the window decoder takes for skipped speech (``windows.WORD_PAD``
#: + ``windows.MIN_TAIL_MISS``, 1.1 s): decoding on, on the window's own encoder output, costs
#: a short ``generate``; a retry costs an encode as well.
TAIL_GAP = 0.8
#: A tail's decode is bounded by the tokens its unwritten audio allows (``new_tokens``; CTranslate2
#: writes half of the ``max_length`` so made, ``written_cap``: 33 tokens for 4 s), rounded
#: up to this many seconds; tails whose bounds round alike share a ``generate``. Unbounded (the
#: 30-s window's budget), a continuation looping "I'm not sure what you're saying, but" from
#: 22.8 s of a 30-s window ran to 163 tokens before it ended, 68 past what could be kept, and held
#: its part 1.9 s (ami_mix_b); the bound depends on the window alone, never on its batch mates.
TAIL_BOUND_STEP = 2.0
# Tokens a window may produce per second of its audio (timestamps included), plus a few: real
# speech stays far below (fast speech with a timestamp pair every few seconds: about 6/s), so only
# a decoder stuck repeating itself reaches the bound, and its text is cut there.
_TOKENS_PER_SECOND = 10.0
_MIN_NEW_TOKENS = 24
# CTranslate2's ``max_length`` for every window: the budget of a whole 30-s window (of which it
# writes at most half, ``written_cap``: 162 tokens). A window's own
# budget (``new_tokens``) is cut out of its result after, never passed as the batch's bound: beam
# search with a lower bound ends otherwise (hypotheses still open at the bound are closed there and
# compete with the finished ones), so a batch-wide bound taken from the longest window made a short
# window's words depend on its batch mates (measured with MKL, where the numbers themselves do not:
# 2 windows of 14 in the tests' 4-minute ``long_recording`` differed, decoded in a batch against
# alone; none with one bound).
_MAX_NEW_TOKENS = _MIN_NEW_TOKENS + int(_TOKENS_PER_SECOND * 30)


def written_cap(max_length: int) -> int:
    """The most new tokens CTranslate2's Whisper ``generate`` writes for a ``max_length``: half
    of it, whatever the prompt's length (Whisper's own ``sample_len`` rule; CTranslate2 4.8.5:
    max_length 60, 100, 200, 325, 448 -> 30, 50, 100, 162, 224 tokens). So a first-pass window
    stops at 162 tokens (5.4 per second of a 30-s window), not at its 30-s budget: a decoding
    loop ends there, and so does a window of the fastest speech, whose end is then decoded on
    (``_tail_stages``). faster-whisper's batched pipeline asks for 448: its loops run to 224."""
    return max_length // 2
# Seed of CTranslate2's sampling generators (fallbacks). Each of its worker threads seeds its own
# generator once, at its first sampling, and draws from it after: a fresh process gives a file the
# same fallbacks run after run when one worker decodes (GPU, or one CPU copy); with several CPU
# copies a fallback may draw other samples, depending on which worker was free.
_FALLBACK_SEED = 1234
# CPU model copies by default: one per thread, at most this many (see ``cpu_layout``).
_MAX_AUTO_CPU_REPLICAS = 4
# A window Whisper calls silent whose words are also this unsure is a hallucination, even when
# its log-probability passes Whisper's own test (which lets short made-up words through).
_MIN_WORD_PROBABILITY_IF_NO_SPEECH = 0.5
#: More words than this per second of a window's audio (plus two) cannot have been said in it:
#: fast speech stays near 4. Whisper writes such text on noise ("Thank you for watching, see you
#: in the next video..." over 1.3 s of a far-field murmur) and in decoding loops.
MAX_WORDS_PER_SECOND = 6.0
#: Decoding without timestamp tokens, Whisper sometimes jumps over a sentence, and the aligner
#: stretches the next words over its audio ("he" over 1.6 s where "What joy there is in living"
#: was said), so no gap is left for a retry to find. A word longer than STRETCH_FLOOR seconds and
#: than STRETCH_BASE + STRETCH_PER_SOUND per letter (a digit: three, it is said as a word) marks
#: such a window; it is decoded again with timestamp tokens (``WhisperASR.decode``). Set on the
#: long-form set's ten_minutes, where every sentence lost without the tokens sat under such a
#: word ("he" 1.58 s, "little" 1.65 s, "never" 1.58 s, "might" 2.83 s) and long words said
#: slowly stay under it ("typography" 1.77 s). On read speech few windows are flagged; on
#: meetings most are (drawn-out words, cross-talk: ami_mix_a four first-pass windows in six).
STRETCH_FLOOR = 1.2
STRETCH_BASE = 0.5
STRETCH_PER_SOUND = 0.15


class SpeechRecognizer(Protocol):
    """What the engine needs of a model: a loaded ``WhisperASR`` or the Serve cluster's replicas."""

    @property
    def name(self) -> str: ...

    @property
    def is_multilingual(self) -> bool: ...

    def detect_languages(self, audios: Sequence[np.ndarray]) -> list[tuple[str, float]]: ...

    def decode(self, audios: Sequence[np.ndarray], language: str, options: TranscribeOptions,
               align: bool = True, timestamps: bool = True, fit_input: bool = False,
               tails: Sequence[bool] | None = None,
               sources: Sequence[Hashable | None] | None = None) -> list[WindowText]: ...

    def submit(self, audios: Sequence[np.ndarray], language: str, options: TranscribeOptions,
               align: bool = True, timestamps: bool = True, fit_input: bool = False,
               tails: Sequence[bool] | None = None,
               sources: Sequence[Hashable | None] | None = None) -> Future:
        """``decode`` without waiting: a future (``.result()``) of its texts. Calls submitted
        together are decoded in the order submitted, the next one's work starting as the model
        comes free of the last one's (``Recognizer`` makes it of a synchronous ``decode``)."""
        ...


class Recognizer:
    """A ``SpeechRecognizer`` that decodes in the caller's thread: ``submit`` is ``decode`` done now."""

    def submit(self, audios: Sequence[np.ndarray], language: str, options: TranscribeOptions,
               align: bool = True, timestamps: bool = True, fit_input: bool = False,
               tails: Sequence[bool] | None = None, sources: Sequence[Hashable | None] | None = None) -> Future:
        return settled(lambda: self.decode(audios, language, options, align, timestamps, fit_input, tails, sources))


class WhisperASR:
    """A loaded Whisper model that decodes many windows per CTranslate2 call.

    Args:
        model: model name or folder (see ``resolve_model``).
        device: ``auto``, ``cpu`` or ``cuda``.
        compute_type: ``auto`` (int8 on CPU, float16 on CUDA) or a CTranslate2 compute type.
        cpu_threads: CPU threads in all (0: the process's cores).
        cpu_replicas: copies of the model on CPU, each decoding its share of every batch in
            parallel on ``cpu_threads / cpu_replicas`` threads (0: see ``cpu_layout``).
        cache_dir: where assembled/cached models live.
        allow_download: let faster-whisper fetch a named model that is not cached.
        stats: where encode/generate/fallback/alignment times and counts accumulate.
        malloc_arenas: cap on the process's glibc malloc arenas, set before the model loads
            (``pipeline.heap``; 0: glibc's default).
        malloc_keep_mb: on CPU, once the model has loaded, large buffers come from the heap and up
            to this many MB of freed memory are kept for reuse (``heap.keep_freed``; 0: glibc's
            default, an ``mmap`` and page faults for each encoder buffer over 32 MB).
        blas_threads: on CPU, threads of numpy's BLAS in this process (``limit_blas``; 0: as numpy
            set them up, one per core).
        timestamp_tokens: ``on``: a decode asked for with timestamp tokens writes Whisper's timestamp
            tokens; ``off``: it is decoded without them (the whole window; segments cut from the
            aligned words), and the windows with a stretched word (``stretched``: speech Whisper
            jumped over) are decoded again with them; ``auto`` (default): off on a GPU, on on CPU.
            CTranslate2 applies Whisper's timestamp rules to one hypothesis at a time, each a
            device round trip, at every decoding step: on an H200, with them, ``generate`` was
            88 % of our wall time. Off, with the windows decoded again, ran the long-form set
            1.5x faster there at the same WER (6.92 -> 7.00 %; off without the second decode:
            3.4x faster, WER 9.36 %, whole sentences lost;
            ``benchmarks/results/rtf-longform-gpu-h200-tiny.en.md``). On CPU the second decodes
            cost more than the tokens do (ami_mix_a 1.6x slower: four windows in six flagged, on
            meetings' drawn-out words and cross-talk), though WER fell 7.39 -> 6.57 %.
        one_encode: on CPU, let the copies take turns at the encoder (``CopyPool``): a bound on
            peak memory for some speed. None (default): whenever a batch goes window by window.
            There an encode (the attention of a 30-s window) is the largest transient and two at
            once are the folder's peak; taking turns, a copy's encode runs beside the other's
            ``generate``/``align``. AMX Xeon, one run taking turns with faster-whisper's batched
            pipeline: the 120-clip folder 407 -> 368 MB (x1.40 -> x1.27 the peer's), 5.53x -> 4.76x
            its speed; the long-form set 2 % slower over the set (per file -9 % to +7 %), its peak
            502 -> 470 MB (``benchmarks/results/rtf-short-spr-intel-cpu-a77a470.md``,
            ``rtf-longform-oneencode-spr-intel-cpu-f70fab3.md``); model-207 Xeon: long recordings
            3-11 % slower. Not with the part schedule: there the peak is a part's 4-window
            ``generate``/``align``, not the encoder, so turns saved nothing on the folder (503 ->
            509 MB) and cost it 27 % (``benchmarks/results/oneencode-part-schedule-spr-intel-cpu.md``).
        cpu_schedule: how the CPU copies share a batch (``_submit_batch``, ``cpu_parts``):
            ``window`` (each copy takes the next window, one ``generate`` per window), ``part``
            (each copy decodes a contiguous part of the batch in one ``generate``) or ``auto``:
            ``window`` where CTranslate2 computes with Intel MKL (same speed there, less memory);
            elsewhere (oneDNN, e.g. AMD: one window per ``generate`` ran the long-form set 20 %
            slower) each recording's windows in parts, and windows packed from several recordings
            one by one, taking turns at the encoder.
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        device: str = "auto",
        compute_type: str = "auto",
        cpu_threads: int = 0,
        cpu_replicas: int = 0,
        cache_dir: Path | None = None,
        allow_download: bool = False,
        stats: Stats | None = None,
        malloc_arenas: int = 1,
        malloc_keep_mb: int = 256,
        blas_threads: int = 1,
        timestamp_tokens: str = "auto",
        one_encode: bool | None = None,
        cpu_schedule: str = "auto",
    ) -> None:
        from faster_whisper import WhisperModel

        from iam_cluster.pipeline.heap import keep_freed, limit_arenas

        limit_arenas(malloc_arenas)

        ref = resolve_model(model, cache_dir or DEFAULT_CACHE_DIR, allow_download)
        self.device = resolve_device(device)
        self.compute_type = resolve_compute_type(compute_type, self.device)
        self.name = ref.name
        if cpu_schedule not in ("auto", "window", "part"):
            raise ConfigError(f"cpu_schedule must be auto, window or part, not {cpu_schedule!r}")
        if timestamp_tokens not in ("auto", "on", "off"):
            raise ConfigError(f"timestamp_tokens must be auto, on or off, not {timestamp_tokens!r}")
        #: Whether a decode asked for with timestamp tokens gets them at once (``timestamp_tokens``).
        self.timestamp_tokens = timestamp_tokens == "on" or (timestamp_tokens == "auto" and self.device == "cpu")
        replicas, threads = cpu_layout(cpu_threads, cpu_replicas) if self.device == "cpu" else (1, cpu_threads)
        #: Copies of the model decoding at once: CTranslate2 workers of ONE model, which share its
        #: weights (two single-thread copies of tiny.en int8: +69 MB resident as workers, +123 MB as
        #: two models). Each call runs on whichever worker is free; every worker computes alike.
        self.replicas = replicas
        self.whisper = WhisperModel(str(ref.path), device=self.device, compute_type=self.compute_type,
                                    cpu_threads=threads, num_workers=replicas)
        if self.device == "cpu":
            keep_freed(malloc_keep_mb)
            limit_blas(blas_threads)
        self._tokenizers: dict[tuple[str, str], object] = {}
        self.stats = stats or Stats()
        #: Whether the CPU copies take a batch window by window, else in contiguous parts.
        self.window_by_window = cpu_schedule == "window" or (cpu_schedule == "auto" and ct2_uses_mkl())
        #: ``window``, ``part`` or ``by_recording`` (``auto`` with oneDNN): see ``cpu_parts``.
        self.cpu_schedule = "window" if self.window_by_window else "part" if cpu_schedule == "part" else "by_recording"
        #: Whether the CPU copies take turns at the encoder: True / False, or None (``one_encode``
        #: unset): in a batch that goes window by window.
        self.one_encode = None if self.device == "cpu" and one_encode is None else self.device == "cpu" and one_encode
        #: The CPU copies' worker threads, which take the work of every call in flight (None: one copy).
        self._pool = CopyPool(replicas) if self.device == "cpu" and replicas > 1 else None

    @property
    def is_multilingual(self) -> bool:
        return bool(self.whisper.model.is_multilingual)

    def tokenizer(self, language: str, task: str = "transcribe"):
        """faster-whisper's tokenizer for a language and task (cached)."""
        from faster_whisper.tokenizer import Tokenizer

        key = (language, task)
        if key not in self._tokenizers:
            self._tokenizers[key] = Tokenizer(
                self.whisper.hf_tokenizer, self.is_multilingual, task=task, language=language
            )
        return self._tokenizers[key]

    def features(self, audios: Sequence[np.ndarray], frames: int = _WINDOW_FRAMES) -> np.ndarray:
        """Log-mel features of each (<= 30 s) audio, padded to ``frames`` (Whisper's 30-s input)."""
        from faster_whisper.audio import pad_or_trim

        fe = self.whisper.feature_extractor
        return np.stack([pad_or_trim(fe(a)[..., :-1], frames) for a in audios]).astype(np.float32)

    def detect_languages(self, audios: Sequence[np.ndarray]) -> list[tuple[str, float]]:
        """Most likely language and its probability for each audio, in one detection batch."""
        if not self.is_multilingual:
            return [("en", 1.0)] * len(audios)
        encoded = self._encode(self.features(audios))
        results = self.whisper.model.detect_language(encoded)
        return [(r[0][0][2:-2], float(r[0][1])) for r in results]

    def decode(
        self, audios: Sequence[np.ndarray], language: str, options: TranscribeOptions, align: bool = True,
        timestamps: bool = True, fit_input: bool = False, tails: Sequence[bool] | None = None,
        sources: Sequence[Hashable | None] | None = None,
    ) -> list[WindowText]:
        """Decode a batch of windows of one language with ONE ``generate`` call (on CPU copies, one
        per part: ``cpu_parts``).

        Windows whose output looks like a failure (repetition, low log-probability, more words
        than the audio can hold) are decoded again, together, at the next temperature, as
        Whisper's sequential decoder does; text still too dense after the last temperature is
        dropped.
        Windows that Whisper judges silent come back with no segments.

        Args:
            audios: up to 30 s of samples per window.
            language: the language token to decode with.
            options: beam size, temperatures and thresholds.
            align: compute word timings (needed to split windows holding several recordings).
            timestamps: let Whisper write timestamp tokens (only without them when ``align``).
                With them Whisper decodes as its sequential decoder does, and often leaves out
                the last words of a window, expecting the next window to carry on; without them
                it writes the whole window (faster-whisper's batched pipeline decodes so), with
                segments cut from the aligned words.
            fit_input: encode the audio plus a short tail (``input_frames``) instead of 30 s: for
                windows of speech a first pass skipped, never for a first pass.
            tails: per window, whether text that stops before its audio does is decoded on
                (``_tail_stages``; with timestamp tokens only): a window of one recording (the
                shards of one file count as one). None: every window.
            sources: per window, a key of the one recording it holds, None for a window packed from
                several (``cpu_parts``: only one recording's windows share a CPU ``generate``).
                None: the whole call is one recording.
        """
        return self.submit(audios, language, options, align, timestamps, fit_input, tails, sources).result()

    def submit(
        self, audios: Sequence[np.ndarray], language: str, options: TranscribeOptions, align: bool = True,
        timestamps: bool = True, fit_input: bool = False, tails: Sequence[bool] | None = None,
        sources: Sequence[Hashable | None] | None = None,
    ) -> Future:
        """``decode`` without waiting for it: a future of its result. On several CPU copies the
        call's work queues behind every call submitted before it (``CopyPool``), so a caller with
        several calls to make submits them together and the copies go on from one batch to the
        next; with one copy (a GPU) the call is decoded at once, in the caller's thread."""
        # Each window's own input length (``input_frames`` of it alone), not the batch's longest.
        frames = [input_frames([a]) if fit_input else _WINDOW_FRAMES for a in audios]
        tails = [True] * len(audios) if tails is None else list(tails)
        sources = [0] * len(audios) if sources is None else list(sources)
        if not (timestamps and align) or self.timestamp_tokens:
            return self._submit_batch(audios, language, options, align, timestamps, frames, tails, sources)
        # Timestamp tokens asked for, and turned off: windows where Whisper jumped over speech
        # (a stretched word, ``stretched``) are decoded again with them, all in one batch.

        def again(texts: list[WindowText]) -> Future:
            redo = [i for i, text in enumerate(texts) if stretched(text)]
            if not redo:
                return settled(lambda: texts)
            self.stats.count("stretched_windows", len(redo))

            def put(redone: list[WindowText]) -> Future:
                for i, text in zip(redo, redone):
                    texts[i] = text
                return settled(lambda: texts)

            return chain(self._submit_batch([audios[i] for i in redo], language, options, align, True,
                                            [frames[i] for i in redo], [tails[i] for i in redo],
                                            [sources[i] for i in redo]), put)

        return chain(self._submit_batch(audios, language, options, align, False, frames, tails, sources), again)

    def _submit_batch(self, audios: Sequence[np.ndarray], language: str, options: TranscribeOptions,
                      align: bool, timestamps: bool, frames: Sequence[int], tails: Sequence[bool],
                      sources: Sequence[Hashable | None]) -> Future:
        """``submit`` with timestamp tokens as given; ``frames``: each window's encoder input length.

        On several CPU copies the batch goes in parts (``cpu_parts``), each encoded, decoded
        (``generate``, fallbacks, continuation) and aligned by whichever copy is free
        (``_part_call``, ``CopyPool``). With MKL every window is a part of its own, so a copy that
        finishes early takes the next window and the words of a window never depend on the others
        in its batch. Against each copy decoding a contiguous part of the batch in one
        ``generate`` (the engine before 2026-12-05): the same words on the long-form set and the
        120-clip folder, the same time (long-form: one-window ``generate`` calls cost what
        4-window ones did per window), and the folder's peak RSS 518 -> 413 MB, as a copy's
        one-window ``generate`` holds +37 MB where a 4-window one held +127 MB (model-207 Xeon,
        ``benchmarks/results/rtf-short-perwindow-emr-intel-cpu.md``).

        One copy (a GPU, one CPU copy) decodes the batch in one call per input length; on a GPU
        in one call at the longest (padding moves its arithmetic anyway, and one call keeps it busy).
        A window of skipped speech encoded at the length of the longest in its batch got other
        words than alone, so its words depended on what was batched beside it.
        """
        if self._pool is None:
            return settled(lambda: self._decode_alone(audios, language, options, align, timestamps, frames, tails))
        parts = cpu_parts(self.cpu_schedule, frames, sources, self.replicas, [len(a) for a in audios])
        turns = all(len(part) == 1 for part in parts) if self.one_encode is None else self.one_encode
        return self._pool.submit(self._part_call(audios, language, options, align, timestamps, frames, tails, parts,
                                                 turns))

    def _decode_alone(self, audios: Sequence[np.ndarray], language: str, options: TranscribeOptions, align: bool,
                      timestamps: bool, frames: Sequence[int], tails: Sequence[bool]) -> list[WindowText]:
        """A batch on one copy: one ``_decode_part`` per input length (on a GPU one in all)."""
        if self.device != "cpu" or len(set(frames)) == 1:
            return self._decode_part(audios, language, options, align, timestamps, tails, max(frames))
        texts: list[WindowText | None] = [None] * len(audios)
        for length in sorted(set(frames)):
            group = [i for i, f in enumerate(frames) if f == length]
            for i, text in zip(group, self._decode_part([audios[i] for i in group], language, options, align,
                                                        timestamps, [tails[i] for i in group], length)):
                texts[i] = text
        return texts

    def _part_call(self, audios: Sequence[np.ndarray], language: str, options: TranscribeOptions,
                   align: bool, timestamps: bool, frames: Sequence[int], tails: Sequence[bool],
                   parts: Sequence[Sequence[int]], turns: bool) -> PoolCall:
        """A batch's work for the CPU copies (``CopyPool``) in ``parts`` (lists of window indices of
        one input length; ``cpu_parts``), each in one ``generate``. With oneDNN (AMD EPYC, Zen 4) a
        ``generate`` over four windows costs much less than four of one: the long-form set's
        meetings and ten_minutes ran 20-26 % faster so than window by window, with the same words
        (``benchmarks/results/cpu-schedule-amd-cpu.md``); with MKL the two cost the same and one
        window at a time holds less memory. ``turns``: the copies take turns at the encoder for
        30-s windows (one encoded at its own few seconds, a later pass's, holds a fraction of it:
        the attention grows with the square of the length).

        The encodes are shared (``PartQueue``): a copy takes the next window to encode from the
        part with the most windows left, and a part's decode as soon as its windows are encoded.
        Each copy used to encode its own part: five windows went as two and three, and the copy
        with two idled while the other encoded its third (harvard_gaps on a Zen 3 EPYC: one core
        idle for 1.3 s of 4.8 s). The parts, and so every window's words, are the same. A part's
        encoder output is let go once it is decoded. A part's alignment and tails are tasks any
        free copy takes (``_decode_stages``)."""
        import ctranslate2

        order = [i for part in parts for i in part]
        cuts = [0, *itertools.accumulate(len(part) for part in parts)]
        rows: list = [None] * len(order)
        texts: list[list[WindowText] | None] = [None] * len(parts)

        def encode(x: int) -> None:
            rows[x] = self._encode(self.features([audios[order[x]]], frames[order[x]]))

        def decode(j: int) -> Stages:
            part, a, b = parts[j], cuts[j], cuts[j + 1]
            encoded = rows[a] if b - a == 1 else ctranslate2.StorageView.from_array(
                np.concatenate([np.asarray(row) for row in rows[a:b]]))
            rows[a:b] = [None] * (b - a)
            texts[j] = yield from self._decode_stages([audios[i] for i in part], language, options, align, timestamps,
                                                      [tails[i] for i in part], frames[part[0]], encoded)

        def finish() -> list[WindowText]:
            out: list[WindowText | None] = [None] * len(audios)
            for part, got in zip(parts, texts):
                for i, text in zip(part, got):
                    out[i] = text
            return out

        # a window encoded at its own few seconds is small: it never waits for the turn
        turn = [turns and frames[i] == _WINDOW_FRAMES for i in order]
        return PoolCall(PartQueue(cuts, turn), encode, decode, finish)

    def _decode_part(self, audios: Sequence[np.ndarray], language: str, options: TranscribeOptions,
                     align: bool, timestamps: bool, tails: Sequence[bool], frames: int = _WINDOW_FRAMES,
                     encoded=None) -> list[WindowText]:
        """``decode`` of one part of a batch, every stage in the caller's thread (``_decode_stages``)."""
        return run_stages(self._decode_stages(audios, language, options, align, timestamps, tails, frames, encoded))

    def _decode_stages(self, audios: Sequence[np.ndarray], language: str, options: TranscribeOptions,
                       align: bool, timestamps: bool, tails: Sequence[bool], frames: int = _WINDOW_FRAMES,
                       encoded=None) -> Stages:
        """``decode`` of one part of a batch, as stages (``copies.Stages``): its ``generate`` and
        fallbacks in the thread that starts it, then each window's alignment and the tails'
        ``generate`` calls as tasks any free copy may take (``CopyPool``). One copy used to do all of
        a part while the other, done with its own part, idled: ami_mix_a's first pass, parts of three
        windows, left a copy idle 1.1 s of 6.3 s while the other aligned and decoded on its part's
        tails (Zen 3 EPYC). Every task computes what it did in one thread: the words do not change.
        ``encoded``: the part's encoder output when already computed (CPU only). Returns its texts."""
        import ctranslate2
        from faster_whisper.transcribe import get_compression_ratio, get_suppressed_tokens

        whisper = self.whisper
        tok = self.tokenizer(language, options.task)
        if encoded is None:
            features = self.features(audios, frames)
            encoded = self._encode(features)
        else:
            features = None  # only a GPU encodes fallback rows again (``_rows``)
        prompt = whisper.get_prompt(
            tok,
            previous_tokens=tok.encode(" " + options.initial_prompt.strip()) if options.initial_prompt else [],
            without_timestamps=align and not timestamps,
            hotwords=options.hotwords,
        )
        suppress = get_suppressed_tokens(tok, [-1])
        n = len(audios)
        seconds = [len(a) / 16000 for a in audios]
        budget = [new_tokens(t) for t in seconds]
        best: list[dict | None] = [None] * n
        pending = list(range(n))
        for t_index, temperature in enumerate(options.temperatures):
            if not pending:
                break
            source = encoded if t_index == 0 else self._rows(whisper, encoded, features, pending)
            kwargs = (
                dict(beam_size=options.beam_size, patience=1.0)
                if temperature == 0
                else dict(beam_size=1, num_hypotheses=5, sampling_topk=0, sampling_temperature=temperature)
            )
            if t_index:
                self.stats.count("fallback_windows", len(pending))
                ctranslate2.set_random_seed(_FALLBACK_SEED)
            # One bound for every window, whatever its batch mates (see ``_MAX_NEW_TOKENS``).
            max_length = min(whisper.max_length, len(prompt) + _MAX_NEW_TOKENS)
            with self.stats.time("fallback" if t_index else "generate"):
                results = self._generate(whisper, source, prompt, pending, suppress, max_length, kwargs)
            still = []
            cap = written_cap(max_length)
            for i, result in zip(pending, results):
                tokens = result.sequences_ids[0]
                looped = len(tokens) >= min(budget[i], cap)  # a window of over 13.8 s only meets the cap
                avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
                tokens = tokens[: budget[i]]  # where it would have stopped decoded alone
                text = tok.decode([t for t in tokens if t < tok.eot])
                attempt = dict(
                    tokens=tokens,
                    avg_logprob=avg_logprob,
                    no_speech_prob=result.no_speech_prob,
                    compression_ratio=get_compression_ratio(text) if text.strip() else 0.0,
                    temperature=temperature,
                    words=len(text.split()),
                )
                attempt["dense"] = too_dense(attempt["words"], seconds[i])
                silent = (
                    attempt["no_speech_prob"] > options.no_speech_threshold
                    and avg_logprob < options.log_prob_threshold
                )
                failed = looped or attempt["dense"] or attempt["compression_ratio"] > options.compression_ratio_threshold or (
                    avg_logprob < options.log_prob_threshold
                )
                previous = best[i]
                if previous is None or _better(attempt, previous, options):
                    best[i] = attempt
                if failed and not silent:
                    still.append(i)
            pending = still
        # Windows whose text Whisper closed well before their audio ends are decoded on before they
        # are aligned: aligned once, with the continuation, not once without it and again with it.
        later = closed_early(best, seconds, tok, whisper.time_precision, tails, options) if align and timestamps else set()
        now = [i for i in range(n) if i not in later]
        texts: list[WindowText | None] = [None] * n
        if now:
            rows = encoded if len(now) == n else self._rows(whisper, encoded, features, now)
            got = yield from self._segment_stages(whisper, [audios[i] for i in now], rows, tok, [best[i] for i in now],
                                                  options, align)
            for i, text in zip(now, got):
                texts[i] = text
        if align and timestamps and any(tails):
            yield from self._tail_stages(whisper, audios, encoded, features, tok, best, options, suppress, texts, tails,
                                         later)
        return texts

    def _tail_stages(self, whisper, audios, encoded, features, tok, best, options, suppress, texts,
                     tails, later: set[int] = frozenset()) -> Stages:
        """Let Whisper finish the windows whose text stops before their audio does (in place; as
        stages: each ``generate`` of tails alike in bound, then each window's alignment, a task).

        Writing timestamp tokens, Whisper often ends its text before speech in the last seconds of
        a window, expecting a next window to carry on (at least ``TAIL_GAP`` of audio after the
        last word). Such a window is decoded again on the same encoder output from its last
        timestamp: the prompt ends with that timestamp token, so Whisper writes from there (a
        continuation with the whole text as prefix cost as much as the first ``generate``:
        CTranslate2 steps through a prefix token by token). What it adds after repeating the end
        of the text is kept (``new_words``), and the window is aligned again with it. Such tails
        used to go to the skipped-speech pass, in a collage of other stretches, where Whisper heard
        them without their window's context: in a reverberant room it wrote nothing for a 5-s
        sentence that led a collage. A continuation that goes back over older words, loops, holds
        more words than its audio can or scores under ``log_prob_threshold`` is dropped; speech
        still after its words is decoded again as skipped speech (``_until_stretched``). Only
        windows of one recording (``tails``): in a window of many short files, text written after
        the others' could be placed in a neighbour's audio.

        ``later``: windows not aligned yet (``closed_early``: their last timestamp token says the
        text stops early); they are decoded on from there and aligned once, with what the
        continuation adds, or without it when it is dropped (``texts[i]`` is None until then).
        The others are decoded on when their aligned words stop early, and aligned again.
        """
        from faster_whisper.transcribe import get_compression_ratio

        todo = []
        for i, text in enumerate(texts):
            if i in later:
                todo.append(i)
                continue
            words = [w for s in text.segments for w in s.get("words", [])]
            if tails[i] and words and len(audios[i]) / 16000 - words[-1]["end"] >= TAIL_GAP:
                todo.append(i)
        if not todo:
            return
        self.stats.count("tail_windows", len(todo))
        prompt = whisper.get_prompt(
            tok,
            previous_tokens=tok.encode(" " + options.initial_prompt.strip()) if options.initial_prompt else [],
            without_timestamps=False,
            hotwords=options.hotwords,
        )
        starts, rest = [], []
        for i in todo:
            marks = [t for t in best[i]["tokens"] if t >= tok.timestamp_begin]
            if i in later:  # where Whisper closed its text (no words yet)
                end = (marks[-1] - tok.timestamp_begin) * whisper.time_precision
            else:
                end = max(w["end"] for s in texts[i].segments for w in s["words"])
            # where Whisper itself put the end of its last segment, else the end of the last word
            start = marks[-1] if marks else tok.timestamp_begin + int(round(end / whisper.time_precision))
            starts.append(start)
            rest.append(len(audios[i]) / 16000 - end)
        bounds: dict[int, list[int]] = {}  # tails by bound (``TAIL_BOUND_STEP``)
        for k, r in enumerate(rest):
            bounds.setdefault(math.ceil(r / TAIL_BOUND_STEP), []).append(k)
        results: list = [None] * len(todo)

        def continue_from(step: int, members: list[int]) -> None:
            with self.stats.time("tail"):
                max_length = min(whisper.max_length, len(prompt) + 1 + new_tokens(step * TAIL_BOUND_STEP))
                out = whisper.model.generate(
                    self._rows(whisper, encoded, features, [todo[k] for k in members]),
                    [list(prompt) + [starts[k]] for k in members],
                    beam_size=options.beam_size,
                    patience=1.0,
                    length_penalty=1.0,
                    max_length=max_length,
                    suppress_blank=False,  # the text may end at once: nothing more was said
                    suppress_tokens=suppress,
                    max_initial_timestamp_index=_WINDOW_FRAMES // 2,
                    return_scores=True,
                )
            for k, result in zip(members, out):
                results[k] = result

        yield [functools.partial(continue_from, step, members) for step, members in sorted(bounds.items())]
        redo, attempts, ends = [], [], {}
        for i, start, r, result in zip(todo, starts, rest, results):
            first = tok.decode([t for t in best[i]["tokens"] if t < tok.eot])
            written = [t for t in result.sequences_ids[0][1 : 1 + new_tokens(r)] if t < tok.eot]
            added = new_words(first, tok.decode(written))
            if added is None or not any(c.isalnum() for c in added):
                self.stats.count("tail_rejected" if added is None else "tail_empty")
                continue
            if result.scores[0] < options.log_prob_threshold:  # as unsure as a failed decode: made up
                self.stats.count("tail_rejected")
                continue
            whole = first + added
            if too_dense(len(added.split()), r) or get_compression_ratio(whole) > options.compression_ratio_threshold:
                self.stats.count("tail_rejected")
                continue
            more = [start] + tok.encode(added)
            attempts.append(dict(best[i], tokens=list(best[i]["tokens"]) + more, words=len(whole.split())))
            redo.append(i)
            ends[i] = len(audios[i]) / 16000 - r
            self.stats.count("tail_words", len(added.split()))
        # Windows aligned with their continuation, and those not aligned yet whose continuation was
        # dropped (aligned as first decoded), in one batch.
        plain = [i for i in todo if i in later and i not in ends]
        if not redo and not plain:
            return
        again = yield from self._segment_stages(whisper, [audios[i] for i in redo + plain],
                                                self._rows(whisper, encoded, features, redo + plain),
                                                tok, attempts + [best[i] for i in plain], options, True)
        for i, text in zip(redo + plain, again):
            if i not in ends:
                texts[i] = text
                continue
            if i in later:  # the words of segments opened before the continuation's (at ``ends[i]``)
                before = sum(len(seg["words"]) for seg in text.segments if seg["start"] < ends[i] - 1e-6)
            else:
                before = sum(len(seg["words"]) for seg in texts[i].segments)
            texts[i] = _until_stretched(text, before)

    def _encode(self, features: np.ndarray):
        """Whisper's encoder output for a batch of features: on a GPU in one call, on CPU one window
        at a time. The encoder's attention holds heads x 1500 x 1500 floats per window (tiny.en: 54
        MB), so four windows at once took 216 MB more at the peak, per copy of the model, for
        nothing: on CPU the encoder costs the same per window in a batch or alone. With
        ``one_encode`` the copies take turns (``CopyPool``): an encode (+78-100 MB at its peak)
        then only ever runs beside other copies' ``generate``/``align`` calls."""
        import ctranslate2

        with self.stats.time("encode"):
            if self.device != "cpu" or len(features) == 1:
                return self.whisper.encode(features)
            rows = [np.asarray(self.whisper.encode(features[i : i + 1])) for i in range(len(features))]
            return ctranslate2.StorageView.from_array(np.concatenate(rows))

    def _align_tasks(self, whisper, per_window, tok, encoded, num_frames) -> list[Callable[[], None]]:
        """Tasks that fill in the word timings of every window (faster-whisper's
        ``add_word_timestamps``, which fills ``per_window`` in place): on a GPU one call for all, on
        CPU one task per window (each may run on another copy, ``CopyPool``). CTranslate2's
        ``align`` holds every window's cross-attention at once, about 23 MB per window of
        tiny.en, the largest transient of a decode (a batch of 4 windows on one copy: +94 MB,
        against +39 MB for its beam-5 ``generate``); on CPU it costs the same per window either
        way. Every window's first words come after a pause (``_SPACING``), whatever its place in
        the batch, in either path.
        """
        import ctranslate2

        def timed(*args, **kwargs) -> Callable[[], None]:
            def run() -> None:
                with self.stats.time("align"):
                    whisper.add_word_timestamps(*args, **kwargs)
            return run

        if self.device != "cpu" or len(per_window) == 1:
            return [timed(per_window, tok, encoded, num_frames, _PREPEND, _APPEND, last_speech_timestamp=-_SPACING)]
        rows = np.asarray(encoded)
        return [timed([segs], tok, ctranslate2.StorageView.from_array(rows[i : i + 1]), [num_frames[i]], _PREPEND,
                      _APPEND, last_speech_timestamp=segs[0]["seek"] / whisper.frames_per_second - _SPACING)
                for i, segs in enumerate(per_window) if any(s["tokens"] for s in segs)]

    def _generate(self, whisper, source, prompt, pending, suppress, max_length, kwargs):
        """One CTranslate2 ``generate`` over the ``pending`` windows."""
        return whisper.model.generate(
            source,
            [list(prompt) for _ in pending],
            length_penalty=1.0,
            max_length=max_length,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=suppress,
            max_initial_timestamp_index=_MAX_INITIAL_TIMESTAMP_INDEX,
            **kwargs,
        )

    def _rows(self, whisper, encoded, features: np.ndarray, rows: list[int]):
        """The encoder output of some windows: sliced on CPU, encoded again on a GPU (cheap there)."""
        import ctranslate2

        if self.device == "cpu":
            return ctranslate2.StorageView.from_array(np.ascontiguousarray(np.asarray(encoded)[rows]))
        return whisper.encode(features[rows])

    def _segment(self, whisper, audios, encoded, tok, best, options, align) -> list[WindowText]:
        """Split each window's tokens at timestamps and align words to the audio."""
        return run_stages(self._segment_stages(whisper, audios, encoded, tok, best, options, align))

    def _segment_stages(self, whisper, audios, encoded, tok, best, options, align) -> Stages:
        """``_segment`` as stages: the alignment a task per window (``_align_tasks``)."""
        per_window: list[list[dict]] = []
        num_frames: list[int] = []
        # Windows sit on a virtual timeline ``_SPACING`` apart so that the word-timing heuristics
        # of faster-whisper, which carry state from one segment to the next, see time moving
        # forward, and a pause before every window.
        # On CPU every window is aligned in a call of its own (``_align``), at the timeline's
        # start: faster-whisper's word-timing rules compare sums of rounded times (a first word
        # 0.82 s long against twice a median of 0.41 s), and at other offsets the floats rounded
        # otherwise, so a word's time depended on the window's place in its batch (ten_minutes:
        # " 90210." at 3.42 s alone and at 1.24 s in a folder, which sent other speech to a retry).
        spaced = self.device != "cpu" and len(audios) > 1
        for i, (audio, attempt) in enumerate(zip(audios, best)):
            duration = len(audio) / 16000
            frames = min(_WINDOW_FRAMES, math.ceil(duration * whisper.frames_per_second))
            num_frames.append(frames)
            silent = (
                attempt["no_speech_prob"] > options.no_speech_threshold
                and attempt["avg_logprob"] < options.log_prob_threshold
            )
            if silent and attempt["words"]:
                self.stats.count("guard_silent_words", attempt["words"])
            elif attempt["dense"]:
                # Every temperature wrote more words than the audio can hold: none of them is kept.
                self.stats.count("guard_dense_words", attempt["words"])
            tokens = [] if silent or attempt["dense"] else attempt["tokens"]
            at = i if spaced else 0
            subsegments = [
                {"seek": at * _SPACING_FRAMES, "start": at * _SPACING + start, "end": at * _SPACING + end, "tokens": text}
                for start, end, text in split_at_timestamps(
                    tokens, tok.timestamp_begin, tok.eot, whisper.time_precision, duration
                )
            ]
            if not subsegments:  # faster-whisper's word timing reads every window's first segment
                subsegments.append({"seek": at * _SPACING_FRAMES, "start": at * _SPACING,
                                    "end": at * _SPACING + duration, "tokens": []})
            per_window.append(subsegments)
        if align and any(s["tokens"] for segs in per_window for s in segs):
            yield self._align_tasks(whisper, per_window, tok, encoded, num_frames)
        out = []
        for i, (segs, attempt) in enumerate(zip(per_window, best)):
            shift = i * _SPACING if spaced else 0.0
            kept = []
            probs = [w["probability"] for s in segs for w in s.get("words", [])]
            if (
                probs
                and attempt["no_speech_prob"] > options.no_speech_threshold
                and float(np.mean(probs)) < _MIN_WORD_PROBABILITY_IF_NO_SPEECH
            ):
                self.stats.count("guard_unsure_words", len(probs))
                segs = []  # Whisper thinks there is no speech and is unsure of every word it wrote
            if align:
                unheard = unheard_repeats([w for s in segs for w in s.get("words", [])])
                if unheard:
                    self.stats.count("guard_repeated_words", len(unheard))
                if attempt["compression_ratio"] > options.compression_ratio_threshold:
                    # Still looping at the last temperature: the loop's copies go, and the speech
                    # under them, left without words, is decoded again as skipped speech.
                    looped = looped_copies([w for s in segs for w in s.get("words", [])])
                    self.stats.count("guard_looped_words", len(looped))
                    unheard |= looped
                if unheard:
                    segs = [dict(s, words=[w for w in s.get("words", []) if id(w) not in unheard]) for s in segs]
            for s in segs:
                words = [
                    dict(w, start=w["start"] - shift, end=w["end"] - shift) for w in s.get("words", [])
                ]
                text = "".join(w["word"] for w in words) if align else tok.decode(
                    [t for t in s["tokens"] if t < tok.eot]
                )
                if text.strip() and (words or not align):
                    kept.append(dict(start=s["start"] - shift, end=s["end"] - shift, text=text, words=words))
            out.append(
                WindowText(
                    segments=kept,
                    avg_logprob=attempt["avg_logprob"],
                    no_speech_prob=attempt["no_speech_prob"],
                    temperature=attempt["temperature"],
                )
            )
        return out


#: A word the aligner gives less time than this was not heard in the audio (see ``unheard_repeats``).
_UNHEARD_SECONDS = 0.02


def _said(word: dict) -> str:
    """A written word as said: lower case, letters, digits and apostrophes only."""
    return "".join(c for c in word["word"].lower() if c.isalnum() or c == "'")


def unheard_repeats(words: Sequence[dict]) -> set[int]:
    """``id``s of words that repeat the words just before them and that the aligner found no
    audio for (each shorter than ``_UNHEARD_SECONDS``): a decoder writing a phrase again, not a
    speaker saying it twice ("And he's Ed. And he's Ed." is aligned to audio twice). A phrase
    of two words or more; seen on a window of skipped speech that wrote "basically have an idea
    what's involved" twice, the second copy aligned to the window's last instant. Also a run of
    ``MIN_UNHEARD_ECHO`` unheard words or more that writes again, but for its first word, a phrase
    of the ``ECHO_WORDS`` words before it, with the words after the run that go on as that phrase
    went on (``unheard_echo``)."""
    unheard = [w["end"] - w["start"] < _UNHEARD_SECONDS for w in words]
    out: set[int] = set()
    i = 0
    while i < len(words):
        run = 0  # unheard words from i on
        while i + run < len(words) and unheard[i + run]:
            run += 1
        step = 1
        for n in range(min(run, i), 1, -1):  # the longest such phrase that repeats the one before
            if [_said(w) for w in words[i : i + n]] == [_said(w) for w in words[i - n : i]]:
                out.update(id(w) for w in words[i : i + n])
                step = n
                break
        else:
            echo = unheard_echo(words, i, run)
            if echo:
                out.update(id(w) for w in words[i : i + echo])
                step = echo
        i += step
    return out


#: Fewest unheard words in a row that ``unheard_echo`` judges.
MIN_UNHEARD_ECHO = 3
#: How far back (in words) ``unheard_echo`` looks for the phrase a run writes again.
ECHO_WORDS = 12


def unheard_echo(words: Sequence[dict], i: int, run: int) -> int:
    """How many words from ``i`` on (0: none) write again a phrase of the ``ECHO_WORDS`` words before
    them: ``run`` unheard words (at least ``MIN_UNHEARD_ECHO``) equal to an earlier phrase but for
    their first word, and the words after them that go on as that phrase went on. A window of
    skipped speech in a noisy reading wrote "... rather selfish as to be all disposed. As selfish as
    to be all disposed.", the second copy's first five words aligned to one instant and its last
    two to 0.2 s."""
    if run < MIN_UNHEARD_ECHO:
        return 0
    said = [_said(w) for w in words]
    for j in range(max(0, i - ECHO_WORDS), i - run + 1):
        if said[j + 1 : j + run] == said[i + 1 : i + run]:
            n = run
            while i + n < len(words) and j + n < i and said[i + n] == said[j + n]:
                n += 1
            return n
    return 0


#: A phrase written this many times in a row, in a window Whisper's own test finds repetitive
#: (compression ratio over ``compression_ratio_threshold``), is a decoding loop: on a meeting
#: played 1.2x fast "Thank you." came out sixteen times over someone else's talk, on one in a
#: reverberant room "was a reason I" eleven times; people say "hello hello", "no, no".
LOOP_COPIES = 3
#: Longest phrase, in words, looked for as a loop.
LOOP_WORDS = 8


def looped_copies(words: Sequence[dict]) -> set[int]:
    """``id``s of the words of every copy but the first of a phrase (up to ``LOOP_WORDS`` words)
    written ``LOOP_COPIES`` times or more in a row, a last copy cut short included."""
    text = [_said(w) for w in words]
    out: set[int] = set()
    i = 0
    while i < len(words):
        step = 1
        for n in range(1, LOOP_WORDS + 1):
            copies = 1
            while text[i + copies * n : i + (copies + 1) * n] == text[i : i + n] and i + (copies + 1) * n <= len(text):
                copies += 1
            if copies >= LOOP_COPIES:
                end = i + copies * n
                while end < len(words) and end - i - copies * n < n and text[end] == text[i + (end - i) % n]:
                    end += 1  # a last copy cut short
                out.update(id(w) for w in words[i + n : end])
                step = end - i
                break
        i += step
    return out


def spoken_letters(word: str) -> int:
    """Letters of a word as said: digits count three (a digit is said as a word)."""
    return sum(3 if c.isdigit() else 1 for c in word if c.isalnum())


def stretched_word(word: dict) -> bool:
    """Whether an aligned word is too long to have been said alone (see ``STRETCH_FLOOR``)."""
    longest = max(STRETCH_FLOOR, STRETCH_BASE + STRETCH_PER_SOUND * spoken_letters(word["word"]))
    return word["end"] - word["start"] > longest


def stretched(text: WindowText) -> bool:
    """Whether a window's aligned words hold one too long to have been said alone (see
    ``STRETCH_FLOOR``): speech Whisper jumped over, under the word after it."""
    return any(stretched_word(w) for s in text.segments for w in s.get("words", []))


def _until_stretched(text: WindowText, first: int) -> WindowText:
    """``text`` without its words from the first one after the ``first`` words that is stretched
    (``stretched``): a continuation that ends its text early leaves its last word aligned over the
    speech after it ("been" over the 2 s of "made amiable himself"), hiding that speech from the
    skipped-speech pass; without the word, the speech is decoded again with it."""
    words = [w for seg in text.segments for w in seg["words"]]
    cut = next((k for k in range(first, len(words)) if stretched_word(words[k])), None)
    if cut is None:
        return text
    keep = {id(w) for w in words[:cut]}
    segments = []
    for seg in text.segments:
        ws = [w for w in seg["words"] if id(w) in keep]
        if ws:
            segments.append(dict(seg, end=min(seg["end"], ws[-1]["end"]), text="".join(w["word"] for w in ws),
                                 words=ws))
    return msgspec.structs.replace(text, segments=segments)


def _said_words(text: str) -> list[str]:
    return ["".join(c for c in w.lower() if c.isalnum() or c == "'") for w in text.split()]


def new_words(first: str, continued: str) -> str | None:
    """What ``continued`` (Whisper decoding a window again from the end of its ``first`` text)
    adds: its text after the words it repeats of ``first``'s end (none, or a run that ends where
    ``first`` ends). None when it goes back over earlier words and does not catch up with the end
    (it re-read speech already written)."""
    mine, theirs = _said_words(first), _said_words(continued)
    pieces = continued.split()
    for k in range(min(len(mine), len(theirs)), 0, -1):  # the longest repeat of first's end
        if theirs[:k] == mine[-k:]:
            return (" " + " ".join(pieces[k:])) if pieces[k:] else ""
    head = theirs[:3]
    if head and any(mine[j : j + len(head)] == head for j in range(len(mine))):
        return None  # starts inside what was written, and does not end its repeat at first's end
    return (" " + " ".join(pieces)) if pieces else ""


def split_at_timestamps(
    tokens: Sequence[int], timestamp_begin: int, eot: int, precision: float, duration: float
) -> list[tuple[float, float, list[int]]]:
    """Segments ``(start s, end s, text tokens)`` of one window's output, cut at its timestamp tokens.

    A run of text opens at the timestamp before it (or where the previous segment ended, 0.0 at
    first) and closes at the timestamp after it; text after the last timestamp (Whisper, expecting
    a next window, often leaves its last words unclosed) runs to the end of the window's audio, as
    does all text written without timestamp tokens. Special tokens (end of text and the like) are
    dropped. Times never go backwards and never pass ``duration``.
    """
    out: list[tuple[float, float, list[int]]] = []
    start: float | None = None
    text: list[int] = []
    for t in tokens:
        if t < eot:
            text.append(t)
        elif t >= timestamp_begin:
            at = min(duration, (t - timestamp_begin) * precision)
            if text:
                begin = start if start is not None else (out[-1][1] if out else 0.0)
                out.append((begin, max(begin, at), text))
                text, start = [], None
            else:
                start = at
    if text:
        begin = start if start is not None else (out[-1][1] if out else 0.0)
        out.append((begin, max(begin, duration), text))
    return out


def cpu_layout(threads: int, replicas: int = 0) -> tuple[int, int]:
    """``(model copies, threads each)`` for ``threads`` CPU threads in all (0: the process's cores).

    Whisper's matrices are small next to a CPU's caches (tiny and base: 384 and 512 wide), and
    CTranslate2's intra-op threads scale poorly on them: on 2 cores one batch of 8 windows took
    5.2 s with 2 threads, 6.9 s with 1, and 3.5 s as two batches of 4 on two single-thread copies
    at once (``benchmarks/results/cpu-replicas-cpu.md``). So by default each thread gets a copy of
    its own, up to four copies, which then share the rest of the threads. Measured on 2 cores only;
    the cap of four is not tuned. The copies are workers of one model sharing its weights, so
    memory grows only by each worker's buffers. On a 2-core AMD EPYC the picture differs for small
    batches: one window decoded in 1.9 s on one copy with 2 threads and in 2.5-2.7 s on one
    single-thread copy; copies still won at 8 windows (8.5 s against 10.2-10.9 s).
    """
    threads = threads or len(os.sched_getaffinity(0))
    replicas = max(1, min(replicas or min(threads, _MAX_AUTO_CPU_REPLICAS), threads))
    return replicas, max(1, threads // replicas)


def input_frames(audios: Sequence[np.ndarray]) -> int:
    """Mel frames to encode a batch of skipped speech with: the longest audio plus
    ``FIT_TAIL_SECONDS``, at least ``FIT_MIN_SECONDS``, at most 30 s (an even count: the encoder
    halves it)."""
    longest = max((len(a) for a in audios), default=0) / 16000
    seconds = max(FIT_MIN_SECONDS, longest + FIT_TAIL_SECONDS)
    return min(_WINDOW_FRAMES, 2 * math.ceil(seconds * 50))


def closed_early(best: Sequence[dict | None], seconds: Sequence[float], tok, precision: float,
                 tails: Sequence[bool], options: TranscribeOptions) -> set[int]:
    """Windows (of ``tails``) whose kept text ends with a timestamp token at least ``TAIL_GAP``
    before the end of their audio: Whisper closed its text early, and the window is decoded on
    (``WhisperASR._tail_stages``). Text left open after its last timestamp runs to the end of
    the audio (``split_at_timestamps``) and is judged by its aligned words instead; so are windows
    a silence or density guard empties."""
    out = set()
    for i, attempt in enumerate(best):
        if not tails[i] or attempt is None or attempt["dense"] or (
            attempt["no_speech_prob"] > options.no_speech_threshold and attempt["avg_logprob"] < options.log_prob_threshold
        ):
            continue
        tokens = [t for t in attempt["tokens"] if t != tok.eot]
        if not tokens or tokens[-1] < tok.timestamp_begin or not any(t < tok.eot for t in tokens):
            continue
        if seconds[i] - (tokens[-1] - tok.timestamp_begin) * precision >= TAIL_GAP:
            out.add(i)
    return out


def limit_blas(threads: int) -> bool:
    """Hold numpy's BLAS (OpenBLAS) to ``threads`` threads (0: leave it as it is); True if limited.

    The mel spectrogram of every window is a matrix product in numpy (faster-whisper's feature
    extractor). OpenBLAS runs it on one thread per core, and its threads then spin, waiting for
    more, on the cores the model's copies decode on: 5.9 % of a long recording's CPU samples were
    in ``blas_thread_server`` (``perf``, 2-core Zen 4 EPYC, ami_mix_b). Such products take
    milliseconds; on one thread nothing waits.
    """
    if threads <= 0:
        return False
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads, user_api="blas")
    return True


def ct2_uses_mkl() -> bool:
    """Whether CTranslate2 computes with Intel MKL on this CPU: its default on Intel x86 CPUs
    (oneDNN elsewhere), overridden by ``CT2_USE_MKL``. With MKL a window's numbers do not depend on
    what is batched beside it."""
    given = os.environ.get("CT2_USE_MKL")
    if given is not None:
        return given.strip().lower() in ("1", "true", "yes", "on")
    try:
        return "GenuineIntel" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def new_tokens(seconds: float) -> int:
    """The most tokens a window of ``seconds`` of audio is allowed to produce."""
    return int(_MIN_NEW_TOKENS + _TOKENS_PER_SECOND * seconds)


def too_dense(words: int, seconds: float) -> bool:
    """Whether ``words`` are more than ``seconds`` of audio can hold (``MAX_WORDS_PER_SECOND``)."""
    return words > MAX_WORDS_PER_SECOND * seconds + 2


def _better(attempt: dict, previous: dict, options: TranscribeOptions) -> bool:
    """Prefer attempts with no more words than the audio can hold, then under the repetition
    threshold, then higher average log-probability."""
    if attempt["dense"] != previous["dense"]:
        return not attempt["dense"]
    ok_a = attempt["compression_ratio"] <= options.compression_ratio_threshold
    ok_p = previous["compression_ratio"] <= options.compression_ratio_threshold
    if ok_a != ok_p:
        return ok_a
    return attempt["avg_logprob"] > previous["avg_logprob"]
