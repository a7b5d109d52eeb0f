"""The engine on real audio with the real embedded models."""

from __future__ import annotations

import numpy as np
import pytest

from iam_cluster.errors import MediaError
from iam_cluster.pipeline.decode import decode_audio
from iam_cluster.pipeline.types import SAMPLE_RATE, Audio, TranscribeOptions
from tests.fixtures.audio import layout_slack, normalise, reference, wer, word_changes


def test_tiny_en_wer_on_harvard_sentences(runner, harvard):
    results = dict(runner.run_many(harvard, TranscribeOptions()))
    assert all(not isinstance(r, Exception) for r in results.values())
    score = wer([reference(p) for p in harvard], [results[p].text for p in harvard])
    assert score <= 0.10, f"WER {score:.3f}"


def test_packing_many_recordings_matches_one_by_one(runner, harvard):
    audios = [decode_audio(p) for p in harvard]
    packed = runner.run_together(audios, TranscribeOptions())
    alone = runner.run_together(audios, TranscribeOptions(pack_recordings=False))
    refs = [reference(p) for p in harvard]
    words = sum(len(normalise(r).split()) for r in refs)
    # one word of slack; more where CTranslate2's results move with the batch (batch_invariant_cpu)
    assert wer(refs, [t.text for t in packed]) <= wer(refs, [t.text for t in alone]) + (1 + layout_slack(words)) / words
    for audio, t in zip(audios, packed):
        assert t.source == audio.source and t.segments
        assert all(0 <= s.start <= s.end <= audio.duration + 1e-6 for s in t.segments)


def test_jfk_words_times_and_confidence(runner, data_dir):
    t = runner.run(data_dir / "jfk.flac", TranscribeOptions())
    assert normalise(t.text) == normalise(reference(data_dir / "jfk.flac"))
    assert t.language == "en" and t.model == "tiny.en" and 0.7 < t.confidence <= 1
    assert 10.9 < t.duration < 11.1 and 0 < t.speech_duration <= t.duration
    words = [w for s in t.segments for w in s.words]
    assert normalise("".join(w.word for w in words)) == normalise(t.text)
    country = [w for w in words if "country" in w.word]
    assert len(country) == 2 and country[0].start < 7.0 < country[1].start
    for s in t.segments:
        assert s.avg_logprob <= 0 and 0 <= s.no_speech_prob <= 1
        assert s.start == s.words[0].start and s.end == s.words[-1].end


def test_several_minutes_have_monotonic_times_within_duration(runner, long_recording):
    assert long_recording.duration > 180
    t = runner.run(long_recording, TranscribeOptions())
    assert len(t.segments) > 20
    assert [s.id for s in t.segments] == list(range(len(t.segments)))
    last_start, last_word_end = 0.0, 0.0
    for s in t.segments:
        assert last_start <= s.start <= s.end <= long_recording.duration
        last_start = s.start
        for w in s.words:
            assert s.start <= w.start <= w.end <= s.end
            assert w.start >= last_word_end - 1e-6
            last_word_end = w.end
    # the clips' words sit where the clips are: "country" from JFK after the first sample.wav
    assert any("country" in w.word for s in t.segments for w in s.words if 30 < w.start < 45)


def test_silence_and_noise_give_empty_transcripts(runner):
    rng = np.random.default_rng(0)
    silence = Audio("silence", np.zeros(10 * SAMPLE_RATE, np.float32))
    noise = Audio("noise", (rng.standard_normal(10 * SAMPLE_RATE) * 0.1).astype(np.float32))
    hum = Audio("hum", (0.3 * np.sin(2 * np.pi * 120 * np.arange(10 * SAMPLE_RATE) / SAMPLE_RATE))
                .astype(np.float32))
    for t in runner.run_together([silence, noise, hum], TranscribeOptions()):
        assert t.segments == [] and t.text == "" and t.confidence == 0.0, t.source


def test_empty_audio_gives_empty_transcript(runner):
    t = runner.run(Audio("empty", np.zeros(0, np.float32)), TranscribeOptions())
    assert t.segments == [] and t.duration == 0


def test_bad_inputs_fail_alone(runner, harvard, tmp_path):
    bad = tmp_path / "notes.wav"
    bad.write_text("this is not audio")
    results = dict(runner.run_many([harvard[0], bad, harvard[1]], TranscribeOptions()))
    assert isinstance(results[bad], MediaError) and results[bad].code == "unsupported_media"
    assert "notes.wav" in str(results[bad])
    assert results[harvard[0]].text and results[harvard[1]].text
    with pytest.raises(MediaError):
        runner.run(b"", TranscribeOptions())


def test_word_timestamps_can_be_left_out(runner, harvard):
    t = runner.run(harvard[0], TranscribeOptions(word_timestamps=False))
    assert t.segments and all(s.words == [] for s in t.segments)


def test_base_model_detects_a_non_english_language(base_asr, engine_settings, data_dir):
    from iam_cluster.pipeline.run import Pipeline
    from iam_cluster.pipeline.runner import InProcessRunner, Limits

    german = decode_audio(data_dir / "multilingual.mp3").samples[30 * SAMPLE_RATE :]
    english = decode_audio(data_dir / "jfk.flac")
    e = engine_settings.engine
    base = InProcessRunner(lambda: Pipeline(base_asr, e.batch_size), None, Limits(None), e.shard_seconds)
    de, en = base.run_together([Audio("german", german), english], TranscribeOptions())
    assert de.language == "de" and de.language_probability > 0.5 and de.text
    assert en.language == "en" and "country" in en.text.lower()
    assert de.model == "base"


def test_model_level_guard_drops_hallucinations_on_silence(tiny_asr, data_dir):
    """Even when silence reaches the model (VAD bypassed), nothing is written."""
    rng = np.random.default_rng(1)
    silence = np.zeros(3 * SAMPLE_RATE, np.float32)
    noise = (rng.standard_normal(8 * SAMPLE_RATE) * 0.02).astype(np.float32)
    speech = decode_audio(data_dir / "jfk.flac").samples
    out = tiny_asr.decode([silence, noise, speech], "en", TranscribeOptions())
    assert out[0].segments == [] and out[1].segments == []
    assert out[2].segments and out[2].no_speech_prob < 0.5


def test_no_more_words_than_the_audio_can_hold(runner, data_dir):
    """trn01 (AMI) is a far-field murmur with a few fragments of speech. Whisper used to write
    "Thank you for watching, see you in the next video, see you in the next video, see you in"
    (19 words) over 1.3 s of it; faster-whisper's sequential decoder writes nothing. Text denser
    than any speech is decoded again at higher temperatures, then dropped."""
    from iam_cluster.pipeline.asr import too_dense

    t = runner.run(data_dir / "trn01.wav", TranscribeOptions())
    assert "watching" not in t.text.lower() and "video" not in t.text.lower()
    assert all(not too_dense(len(s.words), s.end - s.start) for s in t.segments)


def test_quiet_speech_with_a_dc_offset_keeps_its_words(runner, harvard, tmp_path):
    """Far-field speech (-45 dBFS) recorded with a DC offset of 0.05, as cheap sound cards add one.
    Before the offset was taken off at decoding, these clips and jfk lost 21 of their 80 words
    (WER 2.5 -> 28.7 %); now each clip decodes to the samples, and the words, it has without one."""
    import soundfile as sf

    plain, offset = [], []
    for path in harvard:
        x = decode_audio(path).samples
        quiet = np.round(x / np.sqrt(np.mean(x**2)) * 10 ** (-45 / 20) * 32768)
        quiet -= np.round(quiet.mean())  # no offset of its own: with one, the two copies differ by a step
        for suffix, shift, out in (("plain", 0, plain), ("dc", 1638, offset)):
            target = tmp_path / f"{path.stem}-{suffix}.wav"
            sf.write(target, (quiet + shift).astype(np.int16), SAMPLE_RATE, subtype="PCM_16")
            out.append(target)
    assert all(np.array_equal(decode_audio(a).samples, decode_audio(b).samples) for a, b in zip(plain, offset))
    texts = [[normalise(t.text) for _, t in runner.run_many(paths, TranscribeOptions())] for paths in (plain, offset)]
    assert sum(len(t.split()) for t in texts[0]) >= 50
    assert texts[1] == texts[0]


def test_stereo_in_opposite_polarity_keeps_its_words(runner, harvard, tmp_path):
    """A stereo recording of one microphone with one channel's polarity swapped: the mono mix
    every decoder makes cancels to near silence, and these clips gave no words at all. Decoded
    from the louder channel, each gives the words of its mono original."""
    import soundfile as sf

    mono, stereo = [], []
    for path in harvard:
        x = decode_audio(path).samples
        quiet = np.round(x / np.sqrt(np.mean(x**2)) * 10 ** (-45 / 20) * 32768).astype(np.int16)
        sf.write(tmp_path / f"{path.stem}-mono.wav", quiet, SAMPLE_RATE, subtype="PCM_16")
        anti = np.stack([quiet, np.round(-0.9 * quiet).astype(np.int16)], axis=1)
        sf.write(tmp_path / f"{path.stem}-stereo.wav", anti, SAMPLE_RATE, subtype="PCM_16")
        mono.append(tmp_path / f"{path.stem}-mono.wav")
        stereo.append(tmp_path / f"{path.stem}-stereo.wav")
    assert all(np.array_equal(decode_audio(a).samples, decode_audio(b).samples) for a, b in zip(mono, stereo))
    texts = [[normalise(t.text) for _, t in runner.run_many(paths, TranscribeOptions())] for paths in (mono, stereo)]
    assert sum(len(t.split()) for t in texts[0]) >= 50
    assert texts[1] == texts[0]


@pytest.mark.parametrize("level_db", [-55.0, -65.0, -75.0])
def test_quiet_noise_alone_gives_no_words(runner, level_db):
    """Hiss far below speech is amplified by up to 40 dB like quiet speech; it still gives no words."""
    rng = np.random.default_rng(7)
    hiss = rng.standard_normal(20 * SAMPLE_RATE)
    hiss = (hiss / np.sqrt(np.mean(hiss**2)) * 10 ** (level_db / 20)).astype(np.float32)
    assert runner.run(Audio("hiss", hiss), TranscribeOptions()).text == ""


def test_option_languages_are_the_models(base_asr, tiny_asr, model_cache):
    """Options are checked against Whisper's language list without loading a model; it must be the
    list a loaded multilingual model reports."""
    from iam_cluster.pipeline.models import is_multilingual, resolve_model
    from iam_cluster.pipeline.types import whisper_languages

    assert whisper_languages() == frozenset(base_asr.whisper.supported_languages)
    assert is_multilingual("base") and base_asr.is_multilingual
    assert not is_multilingual("tiny.en") and not tiny_asr.is_multilingual
    # A folder is judged by its vocabulary, as Whisper does (the embedded tiny.en's folder is "model").
    assert not is_multilingual(str(resolve_model("tiny.en", model_cache).path))
    assert is_multilingual(str(resolve_model("base", model_cache).path))


def test_model_copies_give_the_words_of_one_copy(tiny_asr, model_cache, harvard):
    """A batch split over CPU copies of the model (the default with several threads) gives each
    window the words one copy decoding the whole batch gives it, in order."""
    from iam_cluster.pipeline.asr import WhisperASR

    assert tiny_asr.replicas == 2  # 2 threads: two single-thread workers sharing the weights
    one = WhisperASR("tiny.en", device="cpu", compute_type="int8", cpu_threads=2, cpu_replicas=1,
                     cache_dir=model_cache)
    assert one.replicas == 1
    audios = [decode_audio(p).samples for p in harvard[:7]]
    split = [" ".join(s["text"] for s in w.segments) for w in tiny_asr.decode(audios, "en", TranscribeOptions())]
    whole = [" ".join(s["text"] for s in w.segments) for w in one.decode(audios, "en", TranscribeOptions())]
    assert all(split) and len(split) == len(audios)
    changes = sum(word_changes(a, b) for a, b in zip(split, whole))
    assert changes <= layout_slack(sum(len(t.split()) for t in whole))


def test_the_cpu_schedules_give_the_same_words(tiny_asr, harvard, monkeypatch):
    """``window``: one ``generate`` per window, whichever copy is free; ``part``: one per copy
    over a contiguous part of the batch; ``by_recording`` (``auto`` with oneDNN): a recording's
    windows in parts, windows packed from several recordings one by one. The words are the same
    (to the word where the numbers do not move with the batch), and ``auto`` picks ``window``
    exactly where CTranslate2 uses MKL."""
    from iam_cluster.errors import ConfigError
    from iam_cluster.pipeline.asr import WhisperASR, ct2_uses_mkl
    from tests.fixtures.audio import batch_invariant_cpu

    assert tiny_asr.cpu_schedule == ("window" if ct2_uses_mkl() else "by_recording")
    with pytest.raises(ConfigError, match="cpu_schedule"):
        WhisperASR("tiny.en", device="cpu", cpu_schedule="sometimes")
    audios = [np.concatenate([decode_audio(p).samples for p in harvard[k : k + 2]]) for k in range(0, 8, 2)]
    calls = []
    generate = tiny_asr._generate
    monkeypatch.setattr(tiny_asr, "_generate", lambda w, src, *a: calls.append(len(a[1])) or generate(w, src, *a))
    texts = {}
    n = len(audios)
    for schedule, sources, want in (("window", None, [1] * n), ("part", [None] * n, [n // 2] * 2),
                                    ("by_recording", None, [n // 2] * 2), ("by_recording", [None] * n, [1] * n),
                                    ("by_recording", ["a", "b", "a", "b"], [1] * n)):
        monkeypatch.setattr(tiny_asr, "cpu_schedule", schedule)
        calls.clear()
        got = tiny_asr.decode(audios, "en", TranscribeOptions(), sources=sources)
        texts[schedule, str(sources)] = [" ".join(s["text"] for s in t.segments) for t in got]
        assert sorted(calls) == want, (schedule, sources, calls)
    alone = texts["window", "None"]
    assert all(alone)
    for other in texts.values():
        if batch_invariant_cpu():
            assert other == alone
        else:
            changes = sum(word_changes(a, b) for a, b in zip(alone, other))
            assert changes <= layout_slack(sum(len(t.split()) for t in alone))


def _decode_counting_encodes(asr, audios, monkeypatch, **kwargs) -> tuple[list[str], int]:
    """Each window's text, and the most encoder calls that ran at once in the decode."""
    import threading
    import time

    real, lock, now, most = asr.whisper.encode, threading.Lock(), [0], [0]

    def encode(features, *args, **kw):
        with lock:
            now[0] += 1
            most[0] = max(most[0], now[0])
        try:
            time.sleep(0.05)  # widen the window in which a second encode would overlap
            return real(features, *args, **kw)
        finally:
            with lock:
                now[0] -= 1

    monkeypatch.setattr(asr.whisper, "encode", encode)
    texts = [" ".join(s["text"] for s in t.segments) for t in asr.decode(audios, "en", TranscribeOptions(), **kwargs)]
    monkeypatch.setattr(asr.whisper, "encode", real)
    return texts, most[0]


def test_copies_taking_turns_at_the_encoder_never_encode_at_once_and_give_the_same_words(tiny_asr, model_cache,
                                                                                        harvard, monkeypatch):
    """``one_encode``: an encode (the largest transient, the attention of a 30-s window) never runs
    beside another, while the other copy decodes; the words are those of the default."""
    from iam_cluster.pipeline.asr import WhisperASR

    turns = WhisperASR("tiny.en", device="cpu", compute_type="int8", cpu_threads=2, cache_dir=model_cache,
                       one_encode=True)
    assert turns.replicas == 2
    audios = [decode_audio(p).samples for p in harvard[:5]]
    got, most = _decode_counting_encodes(turns, audios, monkeypatch)
    want = [" ".join(s["text"] for s in t.segments) for t in tiny_asr.decode(audios, "en", TranscribeOptions())]
    assert most == 1 and got == want and all(got)
    assert turns.stats.snapshot()["seconds"]["encode"] > 0


def test_copies_take_turns_at_the_encoder_by_default_where_a_batch_goes_window_by_window(model_cache, harvard,
                                                                                          monkeypatch):
    """Unset, ``one_encode`` follows the batch: turns where it goes window by window (two encodes at
    once were the 120-clip folder's memory peak), none where it goes in parts (a part's 4-window
    ``generate`` is the peak there, so turns save nothing); a value given wins. The words do not
    depend on it."""
    from iam_cluster.pipeline.asr import WhisperASR

    kw = dict(device="cpu", compute_type="int8", cpu_threads=2, cache_dir=model_cache)
    auto = WhisperASR("tiny.en", **kw)
    both = WhisperASR("tiny.en", cpu_schedule="window", one_encode=False, **kw)
    assert auto.one_encode is None and both.one_encode is False
    assert WhisperASR("tiny.en", cpu_schedule="part", one_encode=True, **kw).one_encode is True
    audios = [decode_audio(p).samples for p in harvard[:4]]
    packed = [None] * len(audios)
    texts, most = _decode_counting_encodes(both, audios, monkeypatch, sources=packed)
    assert most == 2 and all(texts)
    for schedule in ("window", "by_recording"):
        monkeypatch.setattr(auto, "cpu_schedule", schedule)
        assert _decode_counting_encodes(auto, audios, monkeypatch, sources=packed) == (texts, 1)  # one by one: turns
    assert _decode_counting_encodes(auto, audios, monkeypatch)[1] == 2  # one recording in parts: no turns


def test_decode_calls_at_once_share_the_copies_and_give_the_words_they_give_alone(tiny_asr, harvard):
    """Calls of other settings submitted together (a window decoded again whole beside a batch of
    skipped speech), or made from several threads at once (the Serve replica's groups), share the
    copies (``copies.CopyPool``): they all finish, and each window gets the words it gets when
    its call runs alone."""
    from concurrent.futures import ThreadPoolExecutor

    options = TranscribeOptions()
    whole = [np.concatenate([decode_audio(p).samples for p in harvard[k : k + 2]]) for k in (0, 2, 4)]
    short = [decode_audio(p).samples for p in harvard[:4]]
    calls = [(whole, dict(timestamps=True)), (short, dict(timestamps=False, fit_input=True)), (whole[:1], {})]

    def text(texts):
        return [" ".join(s["text"] for s in t.segments) for t in texts]

    alone = [text(tiny_asr.decode(audios, "en", options, **kwargs)) for audios, kwargs in calls]
    submitted = [tiny_asr.submit(audios, "en", options, **kwargs) for audios, kwargs in calls]
    assert [text(f.result(timeout=120)) for f in submitted] == alone
    with ThreadPoolExecutor(len(calls)) as pool:
        futures = [pool.submit(lambda c: text(tiny_asr.decode(c[0], "en", options, **c[1])), c) for c in calls]
        at_once = [f.result(timeout=120) for f in futures]
    assert all(all(t) for t in alone)
    assert at_once == alone


def test_words_are_aligned_one_window_at_a_time_on_cpu_as_in_one_call(tiny_asr, harvard, monkeypatch):
    """On CPU the word timings come from one ``align`` per window (its cross-attention is the
    largest transient of a decode); they are the timings one call over the batch gives."""
    audios = [np.concatenate([decode_audio(p).samples for p in harvard[k : k + 3]]) for k in (0, 3, 5)]
    options = TranscribeOptions()

    def words(texts):
        return [[(w["word"], round(w["start"], 2), round(w["end"], 2)) for s in t.segments for w in s["words"]]
                for t in texts]

    calls = []
    real = tiny_asr.whisper.add_word_timestamps
    monkeypatch.setattr(tiny_asr.whisper, "add_word_timestamps", lambda segs, *a, **k: calls.append(len(segs))
                        or real(segs, *a, **k))
    one_by_one = words(tiny_asr.decode(audios, "en", options))
    assert calls and set(calls) == {1}
    monkeypatch.setattr(tiny_asr, "device", "cuda")  # the GPU's path: one call per batch (on the CPU here)
    monkeypatch.setattr(tiny_asr, "replicas", 1)  # one model on a GPU
    monkeypatch.setattr(tiny_asr, "_pool", None)  # and no pool of CPU copies: the batch in one call
    together = words(tiny_asr.decode(audios, "en", options))
    assert max(calls) > 1
    assert all(one_by_one) and one_by_one == together


def test_a_windows_word_times_do_not_depend_on_its_batch_mates(tiny_asr, harvard):
    """A window gets the same words and times whatever is decoded beside it: faster-whisper's word
    timing shortens a long first word "after a pause", and that pause ran from the previous
    window's last speech, so the second window of a worker's part had its first word cut where
    the same window alone (or first in its part) kept it (a file's words in a folder or in a Serve
    batch then differed from its words alone)."""
    pad = np.zeros(int(0.6 * SAMPLE_RATE), np.float32)  # the VAD's padding before speech
    audios = [np.concatenate([pad, decode_audio(p).samples]) for p in harvard[:4]]
    options = TranscribeOptions()

    def words(text):
        return [(w["word"], round(w["start"], 2), round(w["end"], 2)) for s in text.segments for w in s["words"]]

    together = [words(t) for t in tiny_asr.decode(audios, "en", options)]
    alone = [words(tiny_asr.decode([a], "en", options)[0]) for a in audios]
    assert all(together) and together == alone


def test_a_short_windows_words_do_not_depend_on_the_longest_window_in_its_batch(tiny_asr, monkeypatch):
    """One ``generate`` over a batch (a GPU, one CPU copy) bounds every window by the same length,
    not by the longest window's budget: beam search closes at a lower bound otherwise, and 12 s of
    German read to tiny.en looped to its own bound alone ("t-d-t-t-t-...") where beside a 30-s window
    it ended ("t-d-t-"), so a file's words changed with its batch mates (the Serve and in-process
    runners disagreed on the tests' long recording)."""
    from iam_cluster.pipeline import asr as asr_module
    from tests.fixtures.audio import DATA, batch_invariant_cpu

    german = decode_audio(DATA / "multilingual.mp3").samples
    full = decode_audio(DATA / "sample.wav").samples[: 30 * SAMPLE_RATE]
    windows = [german[k * SAMPLE_RATE : (k + 12) * SAMPLE_RATE] for k in (30, 40)]
    monkeypatch.setattr(tiny_asr, "replicas", 1)  # the whole batch in one generate
    bounds = []
    generate = tiny_asr._generate
    monkeypatch.setattr(tiny_asr, "_generate", lambda w, src, prompt, pending, sup, max_length, kw:
                        bounds.append(max_length) or generate(w, src, prompt, pending, sup, max_length, kw))
    options = TranscribeOptions()

    def text(window):
        return " ".join(s["text"] for s in window.segments)

    together = [text(w) for w in tiny_asr.decode([full, *windows], "en", options)][1:]
    alone = [text(tiny_asr.decode([w], "en", options)[0]) for w in windows]
    assert len(set(bounds)) == 1  # the same bound in every call
    assert all(len(tiny_asr.tokenizer("en", "transcribe").encode(t)) <= asr_module.new_tokens(12) for t in alone)
    if batch_invariant_cpu():
        assert together == alone
    else:  # oneDNN: the numbers move with the padding (see batch_invariant_cpu)
        assert sum(word_changes(a, b) for a, b in zip(together, alone)) <= layout_slack(len(" ".join(alone).split()))


def test_skipped_speech_is_encoded_as_its_audio_not_30_s(tiny_asr, harvard, monkeypatch):
    """``fit_input`` (windows of speech a first pass skipped) encodes the audio plus a tail, at
    least 15 s, not 30 s; a sentence decoded so keeps its words."""
    from iam_cluster.pipeline.asr import FIT_MIN_SECONDS, input_frames

    sentence = decode_audio(harvard[0]).samples
    assert input_frames([sentence]) == int(FIT_MIN_SECONDS * 100)
    assert input_frames([np.zeros(20 * 16000, np.float32)]) == 2200
    assert input_frames([np.zeros(30 * 16000, np.float32)]) == 3000
    shapes = []
    encode = tiny_asr.whisper.encode
    monkeypatch.setattr(tiny_asr.whisper, "encode", lambda f: shapes.append(f.shape[-1]) or encode(f))
    options = TranscribeOptions()

    def words(texts):
        return [w["word"].strip().lower() for t in texts for s in t.segments for w in s["words"]]

    full = words(tiny_asr.decode([sentence], "en", options, True, False))
    assert shapes == [3000]
    fitted = words(tiny_asr.decode([sentence], "en", options, True, False, fit_input=True))
    assert shapes[1:] == [int(FIT_MIN_SECONDS * 100)]
    assert fitted == full and len(full) >= 5


def test_skipped_speech_is_encoded_at_its_own_length_whatever_is_beside_it(tiny_asr, harvard, monkeypatch):
    """``fit_input`` encodes each window at its own length (``input_frames`` of it alone), on the
    CPU copies and on one worker (one call per length), so a sentence of skipped speech gets the
    words it gets alone when a longer stretch shares its batch (it was encoded at the longest's)."""
    from iam_cluster.pipeline.asr import input_frames
    from tests.fixtures.audio import DATA

    sentence = decode_audio(harvard[0]).samples
    longer = decode_audio(DATA / "sample.wav").samples[: 22 * SAMPLE_RATE]
    assert input_frames([sentence]) < input_frames([longer])
    shapes = []
    encode = tiny_asr.whisper.encode
    monkeypatch.setattr(tiny_asr.whisper, "encode", lambda f: shapes.append(f.shape[-1]) or encode(f))
    options = TranscribeOptions()

    def words(text):
        return [(w["word"], round(w["start"], 2), round(w["end"], 2)) for s in text.segments for w in s["words"]]

    alone = words(tiny_asr.decode([sentence], "en", options, True, False, fit_input=True)[0])
    for replicas in (2, 1):
        monkeypatch.setattr(tiny_asr, "replicas", replicas)
        shapes.clear()
        beside = tiny_asr.decode([sentence, longer], "en", options, True, False, fit_input=True)
        assert sorted(shapes) == [input_frames([sentence]), input_frames([longer])], replicas
        assert words(beside[0]) == alone and alone, replicas


def test_timestamp_tokens_off_decodes_every_window_without_them(tiny_asr, harvard, monkeypatch):
    """``timestamp_tokens=off`` (a GPU's fast path) makes a decode asked for with timestamp tokens
    the decode without them (same words and times), except for windows with a stretched word,
    decoded again with them; the default writes them."""
    from iam_cluster.errors import ConfigError
    from iam_cluster.pipeline import asr as asr_module
    from iam_cluster.pipeline.asr import WhisperASR

    audios = [np.concatenate([decode_audio(p).samples for p in harvard[k : k + 3]]) for k in (0, 3)]
    options = TranscribeOptions()

    def words(texts):
        return [[(w["word"], round(w["start"], 2), round(w["end"], 2)) for s in t.segments for w in s["words"]]
                for t in texts]

    assert tiny_asr.timestamp_tokens
    without = words(tiny_asr.decode(audios, "en", options, True, False))
    with_them = words(tiny_asr.decode(audios, "en", options, True, True))
    monkeypatch.setattr(tiny_asr, "timestamp_tokens", False)
    before = tiny_asr.stats.counts.get("stretched_windows", 0)
    assert words(tiny_asr.decode(audios, "en", options, True, True)) == without
    assert all(without) and tiny_asr.stats.counts.get("stretched_windows", 0) == before
    # A window whose words show speech Whisper jumped over is decoded again with the tokens.
    monkeypatch.setattr(asr_module, "stretched", lambda text: text.segments is not None)
    assert words(tiny_asr.decode(audios, "en", options, True, True)) == with_them
    assert tiny_asr.stats.counts["stretched_windows"] == before + 2
    with pytest.raises(ConfigError, match="timestamp_tokens"):
        WhisperASR("tiny.en", device="cpu", timestamp_tokens="sometimes")


def test_a_window_whose_text_stops_early_is_decoded_on(tiny_asr, harvard, monkeypatch):
    """Writing timestamp tokens, Whisper stops before the sentence that ends the window (cut at
    29 s here); the window is decoded on from where its text stopped, on the same encoder output:
    the sentence's words follow the others in time, inside the audio. Without it they are missing."""
    from iam_cluster.pipeline import asr as asr_module

    pause = np.zeros(SAMPLE_RATE, np.float32)
    audio = np.concatenate([x for p in harvard for x in (decode_audio(p).samples, pause)])[: 29 * SAMPLE_RATE]
    options = TranscribeOptions()

    def words():
        return [w for s in tiny_asr.decode([audio], "en", options)[0].segments for w in s["words"]]

    before = dict(tiny_asr.stats.counts)
    continued = words()
    added = tiny_asr.stats.counts["tail_words"] - before.get("tail_words", 0)
    assert tiny_asr.stats.counts["tail_windows"] == before.get("tail_windows", 0) + 1 and added >= 2
    monkeypatch.setattr(asr_module, "TAIL_GAP", 1e9)
    stopped = words()
    assert len(continued) == len(stopped) + added
    assert [w["word"] for w in continued[: len(stopped)]] == [w["word"] for w in stopped]
    tail = continued[len(stopped):]
    assert tail[0]["start"] >= stopped[-1]["end"] and tail[-1]["end"] <= len(audio) / SAMPLE_RATE
    assert {"thin", "sheet"} <= set(normalise(" ".join(w["word"] for w in tail)).split())  # "Tear a thin sheet"
    assert "sheet" not in normalise(" ".join(w["word"] for w in stopped)).split()


def test_a_tail_is_decoded_within_the_tokens_its_own_audio_allows(tiny_asr, harvard, monkeypatch):
    """A continuation is bounded by what its unwritten audio may hold (``new_tokens`` of it,
    rounded up to ``TAIL_BOUND_STEP`` s), not by a whole window's budget: a looping continuation
    stops there (ami_mix_b: 163 tokens for 7 s, 68 of them past what could be kept). The bound
    only cuts text that could never be kept: the words are those of the unbounded decode."""
    from iam_cluster.pipeline import asr as asr_module

    pause = np.zeros(SAMPLE_RATE, np.float32)
    audio = np.concatenate([x for p in harvard for x in (decode_audio(p).samples, pause)])[: 29 * SAMPLE_RATE]
    model, bounds = tiny_asr.whisper.model, []

    class Recorder:
        def __getattr__(self, name):
            return getattr(model, name)

        def generate(self, features, prompts, **kwargs):
            if prompts[0][-1] >= tiny_asr.tokenizer("en").timestamp_begin:  # a continuation
                bounds.append((len(prompts[0]), kwargs["max_length"]))
            return model.generate(features, prompts, **kwargs)

    monkeypatch.setattr(tiny_asr.whisper, "model", Recorder())

    def words():
        return [w["word"] for s in tiny_asr.decode([audio], "en", TranscribeOptions())[0].segments for w in s["words"]]

    bounded = words()
    (prompt, bound), = bounds
    assert bound - prompt <= asr_module.new_tokens(10.0) < asr_module.new_tokens(29.0)
    monkeypatch.setattr(asr_module, "TAIL_BOUND_STEP", 30.0)
    assert words() == bounded and bounds[-1][1] - prompt > asr_module.new_tokens(29.0)


def test_a_window_whose_text_closes_early_is_aligned_once_with_its_continuation(tiny_asr, harvard, monkeypatch):
    """A window whose last timestamp token closes its text well before its audio ends is decoded
    on before it is aligned: one alignment, with the continuation, instead of one without it and
    one again with it; its words and times are those of aligning first."""
    from iam_cluster.pipeline import asr as asr_module

    pause = np.zeros(SAMPLE_RATE, np.float32)
    audio = np.concatenate([x for p in harvard for x in (decode_audio(p).samples, pause)])[: 29 * SAMPLE_RATE]
    calls = []
    real = tiny_asr.whisper.add_word_timestamps
    monkeypatch.setattr(tiny_asr.whisper, "add_word_timestamps", lambda segs, *a, **k: calls.append(len(segs))
                        or real(segs, *a, **k))

    def decode():
        calls.clear()
        before = tiny_asr.stats.counts.get("tail_windows", 0)
        text = tiny_asr.decode([audio], "en", TranscribeOptions())[0]
        assert tiny_asr.stats.counts["tail_windows"] == before + 1
        return [(w["word"], round(w["start"], 2), round(w["end"], 2)) for s in text.segments for w in s["words"]], len(calls)

    once, aligned = decode()
    monkeypatch.setattr(asr_module, "closed_early", lambda *a, **k: set())  # align first, decide by the words
    twice, aligned_twice = decode()
    assert (aligned, aligned_twice) == (1, 2)
    assert once == twice and len(once) > 20


def test_a_failed_encode_on_one_copy_fails_the_batch_without_a_hang(tiny_asr, harvard, monkeypatch):
    """The copies take the windows of a batch in turn; an encode that fails raises its own error
    from ``decode`` instead of leaving the other copy waiting."""
    import threading

    audios = [decode_audio(p).samples for p in harvard[:3]]
    real, calls, lock = tiny_asr.whisper.encode, [], threading.Lock()

    def encode(features, *args, **kwargs):
        with lock:
            calls.append(1)
            if len(calls) == 1:
                raise RuntimeError("encoder broke")
        return real(features, *args, **kwargs)

    monkeypatch.setattr(tiny_asr.whisper, "encode", encode)
    result: list[BaseException] = []
    worker = threading.Thread(target=lambda: result.append(
        pytest.raises(RuntimeError, tiny_asr.decode, audios, "en", TranscribeOptions()).value))
    worker.start()
    worker.join(timeout=120)
    assert not worker.is_alive() and str(result[0]) == "encoder broke"
    monkeypatch.undo()
    texts = tiny_asr.decode(audios, "en", TranscribeOptions())  # the copies still decode afterwards
    assert all(t.segments for t in texts)


def test_generate_writes_at_most_half_its_max_length(tiny_asr):
    """CTranslate2's Whisper ``generate`` stops at ``max_length // 2`` new tokens whatever the
    prompt (Whisper's own rule): the bound every window's decode really runs to (``written_cap``)."""
    import ctranslate2

    from iam_cluster.pipeline.asr import written_cap

    whisper = tiny_asr.whisper
    tok = tiny_asr.tokenizer("en")
    encoded = whisper.model.encode(ctranslate2.StorageView.from_array(np.zeros((1, 80, 3000), np.float32)))
    for prompt in ([tok.sot], [tok.sot, tok.timestamp_begin + 100]):
        for max_length in (40, 101):
            out = whisper.model.generate(encoded, [prompt], beam_size=1, max_length=max_length,
                                         suppress_blank=False, suppress_tokens=[-1, tok.eot])  # never ends
            assert len(out[0].sequences_ids[0]) == written_cap(max_length) == max_length // 2
