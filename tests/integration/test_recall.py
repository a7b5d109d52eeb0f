"""Speech recall and packing on real audio: no file loses its words, no file gets another's."""

from __future__ import annotations

import io
import wave
from collections import Counter

import numpy as np
import pytest

from iam_cluster.pipeline.decode import decode_audio
from iam_cluster.pipeline.level import speech_level
from iam_cluster.pipeline.types import SAMPLE_RATE, Audio, TranscribeOptions
from tests.fixtures.audio import DATA, HARVARD, foreign_words, layout_slack, normalise, reference, wer

ASR = DATA / "asr"
CLIPS = [*HARVARD, DATA / "jfk.flac", *sorted(p for p in ASR.iterdir() if p.suffix in (".wav", ".flac"))]
#: Read speech back to back: about 48 s without a pause longer than a breath.
PASSAGE = ["lj_LJ001-0001.flac", "lj_LJ001-0003.flac", "lj_LJ001-0004.flac", "lj_LJ001-0005.flac",
           "lj_LJ001-0007.flac", "psx_sense_and_sensibility_01_austen_64kb-0870.wav"]
QUIET = ["spk1_snt1.wav", "spk2_snt2.wav", "psx_cards_001.wav"]


def at_dbfs(audio: Audio, dbfs: float, name: str) -> Audio:
    """``audio`` with its speech level at ``dbfs`` (far-field meeting speech sits near -40)."""
    return Audio(name, audio.samples * np.float32(10 ** ((dbfs - speech_level(audio.samples)) / 20)))


def through_8khz(audio: Audio) -> Audio:
    """``audio`` as a telephone line carries it: written as an 8-kHz WAV and decoded again."""
    from scipy.signal import resample_poly

    pcm = np.clip(resample_poly(audio.samples, 1, 2) * 32767, -32768, 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(pcm.tobytes())
    return decode_audio(buf.getvalue(), name=audio.source + "@8k")


@pytest.fixture(scope="module")
def clip_set():
    """Every clip of tests/data with a transcript, plus three of them at -40 dBFS."""
    audios = [decode_audio(p) for p in CLIPS]
    refs = [reference(p) for p in CLIPS]
    for name in QUIET:
        i = [p.name for p in CLIPS].index(name)
        audios.append(at_dbfs(audios[i], -40.0, f"quiet-{name}"))
        refs.append(refs[i])
    return audios, refs


@pytest.fixture(scope="module")
def folder_and_alone(runner, clip_set):
    audios, _ = clip_set
    options = TranscribeOptions()
    return runner.run_together(audios, options), [runner.run(a, options) for a in audios]


def test_no_clip_comes_out_empty(clip_set, folder_and_alone):
    audios, _ = clip_set
    for name, transcripts in zip(("folder", "alone"), folder_and_alone):
        empty = [a.source for a, t in zip(audios, transcripts) if not t.text.strip()]
        assert not empty, f"{name}: {empty}"


def test_packed_clips_keep_only_their_own_words(clip_set, folder_and_alone):
    """Words that only one clip's reference holds must not turn up in another clip's transcript."""
    audios, refs = clip_set
    folder, _ = folder_and_alone
    for audio, t, foreign in zip(audios, folder, foreign_words(refs, [t.text for t in folder])):
        assert not foreign, f"{audio.source}: {foreign} in {t.text!r}"


@pytest.mark.parametrize("names", [("asr/psx_cards_001.wav", "asr/lj_LJ001-0001.flac"),
                                   ("spk1_snt4.wav", "asr/lj_LJ001-0004.flac"),
                                   ("read/speechbrain_LJ050-0131.wav", "jfk.flac", "read/cathy_arctic_b0303_1592532155.wav")],
                         ids=["cards-lj", "harvard-lj", "lj-jfk-arctic"])
def test_clips_side_by_side_keep_their_own_words(runner, names):
    """Groups of clips that moved words when packed into one window (tiny.en, AMD CPU). Found by
    packing every ordered pair of the clips above: "ten of clubs" came out as one segment aligned
    into the silence before LJ001-0001 and was split between the two by nearness; "the middle" of
    a Harvard sentence was one segment with LJ001-0004's first words. Found by the union folder in
    shuffled orders: LJ050-0131's last word "regard..." was aligned 0.7 s into jfk's speech."""
    paths = [DATA / name for name in names]
    transcripts = runner.run_together([decode_audio(p) for p in paths], TranscribeOptions())
    texts = [t.text for t in transcripts]
    assert all(normalise(t) for t in texts), texts
    assert foreign_words([reference(p) for p in paths], texts) == [[] for _ in paths], texts


def test_folder_and_alone_agree(clip_set, folder_and_alone):
    _, refs = clip_set
    folder, alone = folder_and_alone
    w_folder = wer(refs, [t.text for t in folder])
    w_alone = wer(refs, [t.text for t in alone])
    # 0.5 points of this set's 264 words is one word; tiny.en writes "10" or "ten" depending on
    # what it heard before, so two words of slack (the benchmark's sets are larger).
    # (More where CTranslate2's results move with the batch: see batch_invariant_cpu.)
    words = sum(len(normalise(r).split()) for r in refs)
    assert round(abs(w_folder - w_alone) * words) <= max(2, 0.005 * words, layout_slack(words)), (w_folder, w_alone)
    assert w_folder <= 0.15  # spelled digits and card names: "10" for "ten" counts as an error


@pytest.fixture(scope="module")
def passage() -> tuple[Audio, str]:
    parts = [decode_audio(ASR / name) for name in PASSAGE]
    samples = np.concatenate([at_dbfs(a, -20.0, a.source).samples for a in parts])
    return Audio("passage", samples), " ".join(reference(ASR / name) for name in PASSAGE)


@pytest.mark.parametrize("variant", ["as-is", "-40dBFS", "8kHz", "twice at -40dBFS"])
def test_long_read_passage_has_no_gap(runner, passage, variant):
    audio, ref = passage
    if variant == "-40dBFS":
        audio = at_dbfs(audio, -40.0, "passage-quiet")
    elif variant == "twice at -40dBFS":  # more skipped stretches than one retry window writes
        audio = at_dbfs(Audio("passage-twice", np.concatenate([audio.samples] * 2)), -40.0, "passage-twice")
        ref = f"{ref} {ref}"
    elif variant == "8kHz":
        audio = through_8khz(audio)
    t = runner.run(audio, TranscribeOptions())
    words = [w for s in t.segments for w in s.words]
    assert words and words[0].start < 1.5 and words[-1].end > audio.duration - 2.0
    gaps = [(a.end, b.start) for a, b in zip(words, words[1:]) if b.start - a.end > 2.0]
    assert not gaps, f"no output from {gaps}"
    # Sequential faster-whisper: 3-5% here. At 8 kHz ours still loses a few words inside the
    # passage (an aligned neighbour stretched over them hides the skip): 14% (see README).
    assert wer([ref], [t.text]) <= 0.15, t.text


def test_quiet_read_passage_twice_has_no_gap(runner, tmp_path):
    """The long-form set's ``quiet_read``: every read clip of the development set back to back,
    twice, at -40 dBFS, as a 16-bit WAV file. Its skipped stretches fill one retry window, which
    Whisper (writing no timestamp tokens) ended after the first two: two sentences were lost
    (WER 9.3 % against sequential faster-whisper's 3.2 %) until stretches after the end of a
    retry window's text were decoded again."""
    clips = sorted([p for folder in (ASR, DATA / "read") for p in folder.iterdir()
                    if p.suffix in (".wav", ".flac") and p.name.startswith(("lj_", "psx_sense", "speechbrain_LJ"))],
                   key=lambda p: p.name)
    assert len(clips) == 14
    parts = [at_dbfs(decode_audio(p), -20.0, p.name).samples for p in clips] * 2
    import soundfile as sf

    audio = tmp_path / "quiet_read.wav"  # 20 dB down, as 16-bit PCM
    sf.write(audio, np.concatenate(parts) * np.float32(0.1), SAMPLE_RATE, subtype="PCM_16")
    ref = " ".join([reference(p) for p in clips] * 2)
    t = runner.run(audio, TranscribeOptions())
    words = [w for s in t.segments for w in s.words]
    gaps = [(round(a.end, 1), round(b.start, 1)) for a, b in zip(words, words[1:]) if b.start - a.end > 2.0]
    assert not gaps, f"no output from {gaps}"
    assert wer([ref], [t.text]) <= 0.08, t.text


def test_same_file_same_transcript_every_run(runner, passage):
    audio, _ = passage
    runs = Counter(runner.run(at_dbfs(audio, -40.0, "again"), TranscribeOptions()).text for _ in range(2))
    assert len(runs) == 1, runs


def test_meeting_excerpts_keep_their_words_in_a_folder(runner):
    """trn04 opens with 10 s of quiet talk that Whisper passes over in its first window; decoded
    again beside trn05's skipped speech it was passed over again, and a folder run lost half of
    trn04's words. Skipped speech is decoded again beside its own file's only."""
    audios = [decode_audio(DATA / name) for name in ("trn04.wav", "trn05.wav", "dev00.wav")]
    options = TranscribeOptions()
    folder = runner.run_together(audios, options)
    for audio, together in zip(audios, folder):
        alone = runner.run(audio, options)
        n_alone, n_folder = len(alone.text.split()), len(together.text.split())
        assert n_folder >= 0.85 * n_alone, (audio.source, together.text, alone.text)
