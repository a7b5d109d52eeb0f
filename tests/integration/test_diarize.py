"""The embedded diarizer on real meeting recordings (AMI excerpts), and speakers through the pipeline."""

from __future__ import annotations

import numpy as np
import pytest

from iam_cluster.errors import OptionsError
from iam_cluster.pipeline.decode import decode_audio
from iam_cluster.pipeline.diarize import make_diarizer
from iam_cluster.pipeline.types import Audio, SpeechRegion, TranscribeOptions
from tests.fixtures.audio import wer

#: The 3- and 4-speaker excerpts: file -> people talking in it.
MEETINGS = {"trn04": 3, "trn05": 4, "trn01": 4}


def rttm_annotation(path):
    from pyannote.core import Annotation, Segment

    ann = Annotation()
    for line in path.read_text().splitlines():
        p = line.split()
        ann[Segment(float(p[3]), float(p[3]) + float(p[4])), len(ann)] = p[7]
    return ann


def as_annotation(diarization):
    from pyannote.core import Annotation, Segment

    ann = Annotation()
    for i, t in enumerate(diarization.turns):
        ann[Segment(t.start, t.end), i] = t.speaker
    return ann


def der(reference, hypothesis, duration: float) -> float:
    from pyannote.core import Segment, Timeline
    from pyannote.metrics.diarization import DiarizationErrorRate

    metric = DiarizationErrorRate(collar=0.25, skip_overlap=False)
    return metric(reference, hypothesis, uem=Timeline([Segment(0, duration)]))


@pytest.fixture(scope="module")
def diarizer():
    return make_diarizer("embedded")


@pytest.fixture(scope="module")
def recordings(data_dir):
    return {name: decode_audio(data_dir / f"{name}.wav") for name in ["sample", "dev00", "dev01", *MEETINGS]}


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    [
        "trn04",
        pytest.param("trn05", marks=pytest.mark.xfail(
            strict=True, reason="known limit: three of its four people say 0.4-1.4 s each, mostly while "
            "the fourth talks; segmentation-3.0 gives every chunk one local speaker, so no piece of "
            "theirs is ever embedded and no clustering can count them")),
        pytest.param("trn01", marks=pytest.mark.xfail(
            strict=True, reason="known limit: 3.6 s of speech in 30 s, four people in sub-second "
            "bursts under room noise; segmentation-3.0 peaks at 0.4 speech probability on it (at "
            "either level normalisation) and Silero finds 12 % of it: no speaker is ever heard")),
    ],
)
def test_speaker_count_within_one_on_meetings(diarizer, recordings, name):
    found = diarizer(recordings[name], None)
    assert abs(len(found.speakers) - MEETINGS[name]) <= 1, found.speakers


@pytest.fixture(scope="module")
def dense_meetings(data_dir, tmp_path_factory):
    """``benchmarks/make_longform.py``'s dense meetings of 3 and 4 voices, built from the test
    excerpts' solo turns (turns of 1-4 s, some overlapping; as mixed and in a noisy room; -40 dBFS):
    ``[(path, voices)]``."""
    import importlib.util

    from tests.fixtures.benchmarks import BENCHMARKS

    spec = importlib.util.spec_from_file_location("make_longform_meetings", BENCHMARKS / "make_longform.py")
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    ami = [data_dir / f"{name}.wav" for name in ("dev00", "dev01", "trn04", "trn05", "sample")]
    made = builder.meetings(tmp_path_factory.mktemp("meetings"), lambda p: decode_audio(p).samples, ami, [])
    voices = {p: len({line.split()[7] for line in p.with_suffix(".rttm").read_text().splitlines()}) for p in made}
    return [(p, n) for p, n in voices.items() if n >= 3]


@pytest.mark.slow
def test_speaker_count_within_one_on_dense_meetings(diarizer, dense_meetings):
    """Where people talk through the recording, the voices are neither split nor merged away:
    within one of the true count on at least 70 % of the meetings (16 of 20 when this was
    written; with the setting chosen on the sparse excerpts alone, similarity 0.75, 13), and
    never off by more than two."""
    off = [len(diarizer(decode_audio(path), None).speakers) - voices for path, voices in dense_meetings]
    assert len(off) == 20
    assert sum(abs(d) <= 1 for d in off) >= 14, off
    assert max(abs(d) for d in off) <= 2, off


def test_two_speaker_excerpts(diarizer, recordings, data_dir):
    for name in ["sample", "dev00", "dev01"]:
        found = diarizer(recordings[name], None)
        assert len(found.speakers) in (2, 3), name
        assert len(found.embeddings) == len(found.turns)
        assert all(abs(np.linalg.norm(e) - 1) < 1e-3 for e in found.embeddings)
        assert der(rttm_annotation(data_dir / f"{name}.rttm"), as_annotation(found), 30.0) <= 0.45, name


def quiet_copy(audio: Audio) -> Audio:
    """``audio`` with its peak brought to -35 dBFS (dev00: RMS about -55 dBFS, far-field quiet)."""
    gain = 10 ** (-35 / 20) / np.abs(audio.samples).max()
    return Audio("quiet", (audio.samples * gain).astype(np.float32))


def test_quiet_copy_gives_the_same_turns(diarizer, recordings):
    audio = recordings["dev00"]
    loud, soft = diarizer(audio, None), diarizer(quiet_copy(audio), None)
    assert der(as_annotation(loud), as_annotation(soft), audio.duration) <= 0.05


def test_chunks_the_vad_found_silent_are_not_segmented(diarizer, recordings):
    """A meeting with a long silent stretch: the segmentation skips the 10-s chunks in which the
    VAD heard nothing, and the turns of the speech are those found looking everywhere."""
    from iam_cluster.pipeline.types import VadOptions
    from iam_cluster.pipeline.vad import SileroVad

    speech = recordings["sample"].samples
    rng = np.random.default_rng(0)
    hush = (rng.standard_normal(16000 * 40) * 1e-4).astype(np.float32)  # -80 dBFS room hiss
    audio = Audio("gap", np.concatenate([speech, hush, speech]))
    regions = SileroVad()(audio, VadOptions(), max_region=29.0)
    assert regions and all(r.end <= 31.0 or r.start >= 69.0 for r in regions)

    def run(given):
        chunks = []

        def hook(stage, done, total):
            if stage == "segmentation":
                chunks.append(total)

        return diarizer(audio, given, hook=hook), chunks[-1]

    everywhere, all_chunks = run(None)
    gated, run_chunks = run(regions)
    assert run_chunks <= all_chunks - 3  # at least three of the silent stretch's chunks skipped
    assert len(gated.speakers) == len(everywhere.speakers) == 2
    assert der(as_annotation(everywhere), as_annotation(gated), audio.duration) <= 0.02
    assert diarizer(audio, []).turns == []  # the VAD heard nothing: nothing to segment


@pytest.fixture(scope="module")
def float32_runner(engine_settings):
    import msgspec

    from iam_cluster.runner import make_runner

    models = msgspec.structs.replace(engine_settings.models, compute_type="float32")
    return make_runner(msgspec.structs.replace(engine_settings, models=models))


@pytest.mark.slow
def test_quiet_copy_gives_the_same_words(recordings, float32_runner):
    """The quiet copies' speech sits at -52 to -61 dBFS (the +40-dB level cap brings it up; with
    +30 dB, 15 % of dev00's words changed). The level is scale-free, so the model hears a copy as
    it hears its original, to the copy's own float rounding (6e-8), and with float32 compute the
    words are the original's, word for word. With int8 compute (the CPU default) CTranslate2
    quantises activations row by row, and differences that small flip near-ties of the beam
    search (dev00's first token " okay" against " Okay" on an Intel host): over six AMI excerpts,
    16 % of the words differed on that host, and dev00 passed or failed by host."""
    options = TranscribeOptions(diarize=True)
    for name in ["dev00", "dev01", "trn04"]:
        audio = recordings[name]
        a, b = float32_runner.run(audio, options), float32_runner.run(quiet_copy(audio), options)
        assert a.text.split() and wer([a.text], [b.text]) == 0.0, (name, a.text, b.text)
        assert [s.speaker for s in a.segments] == [s.speaker for s in b.segments], name


def test_every_instant_of_speech_is_labelled_once_per_voice(diarizer, recordings, data_dir):
    from pyannote.core import Segment, Timeline

    for name in ["dev00", "sample", "trn04"]:
        turns = diarizer(recordings[name], None).turns
        by_speaker: dict[str, list] = {}
        for t in turns:
            assert 0 <= t.start < t.end <= recordings[name].duration + 1e-6
            by_speaker.setdefault(t.speaker, []).append(t)
        for own in by_speaker.values():  # one voice never has two turns at once
            assert all(a.end <= b.start + 1e-6 for a, b in zip(own, own[1:]))
        grid = np.zeros(int(recordings[name].duration * 100) + 1, int)
        for t in turns:
            grid[int(round(t.start * 100)) : int(round(t.end * 100))] += 1
        assert grid.max() <= 2  # a second label only where two people talk
        assert (grid == 2).sum() <= 0.1 * (grid > 0).sum()
        if name == "trn04":  # its first speaker starts quietly: 77 % of its speech is found
            continue
        reference = rttm_annotation(data_dir / f"{name}.rttm").get_timeline().support()
        labelled = Timeline([Segment(t.start, t.end) for t in turns]).support()
        covered = sum(s.duration for s in reference.crop(labelled, mode="intersection"))
        assert covered >= 0.85 * reference.duration(), name  # the people's speech is labelled


def test_single_speaker_and_speaker_count_hints(diarizer, recordings, data_dir):
    jfk = decode_audio(data_dir / "jfk.flac")
    assert len(diarizer(jfk, None).speakers) == 1
    audio = recordings["sample"]
    assert len(diarizer(audio, None, num_speakers=3).speakers) == 3
    assert len(diarizer(audio, None, num_speakers=1).speakers) == 1
    assert len(diarizer(audio, None, min_speakers=3).speakers) >= 3
    assert len(diarizer(audio, None, max_speakers=1).speakers) == 1
    assert len(diarizer(recordings["trn04"], None, num_speakers=3).speakers) == 3
    with pytest.raises(OptionsError, match="either num_speakers"):
        diarizer(audio, None, num_speakers=2, max_speakers=3)


@pytest.mark.xfail(strict=True, reason="known limit: 5 s, the two voices overlap for half of it; the "
                   "segmentation keeps one local speaker and the clean pieces are too short to split")
def test_stereo_two_speakers_mixed_to_mono(diarizer, data_dir):
    audio = decode_audio(data_dir / "stereo_diarization.wav")
    assert len(diarizer(audio, None).speakers) == 2


def test_no_speech_gives_no_turns(diarizer):
    silence = Audio("silence", np.zeros(16000 * 3, np.float32))
    assert diarizer(silence, []).turns == []
    assert diarizer(silence, [SpeechRegion(0.5, 1.5)]).turns == []


def test_words_in_a_meeting_whose_voices_the_diarizer_cannot_tell_apart_still_get_a_speaker(runner, data_dir):
    """trn01: four far-field speakers with 0.4-1.5 s each; the segmentation hears no one. What the
    ASR writes there depends on the CPU's arithmetic: a fragment on the Intel hosts (MKL), nothing
    on a Zen 3 EPYC (oneDNN), where faster-whisper's sequential decoder writes nothing either
    (Whisper's own silence rule). Whatever it writes carries a speaker."""
    t = runner.run(data_dir / "trn01.wav", TranscribeOptions(diarize=True))
    assert runner.diarizer(decode_audio(data_dir / "trn01.wav"), None).turns == []
    assert bool(t.segments) == bool(t.speakers)
    assert all(s.speaker in t.speakers for s in t.segments)
    assert all(w.speaker in t.speakers for s in t.segments for w in s.words)


def test_every_word_gets_a_speaker_when_the_diarizer_hears_no_one(pipeline, data_dir):
    """The same path on a recording whose words the ASR always writes: the embedded diarizer, set
    so that no frame counts as speech, tells no voice apart; every word still carries the one
    speaker, and the words are those of the run without speakers."""
    from iam_cluster.pipeline.runner import InProcessRunner, Limits

    deaf = InProcessRunner(lambda: pipeline, lambda: make_diarizer("embedded", speech_threshold=1.0),
                           Limits(3600.0, 0.1), 600.0)
    assert deaf.diarizer(decode_audio(data_dir / "jfk.flac"), None).turns == []
    t = deaf.run(data_dir / "jfk.flac", TranscribeOptions(diarize=True))
    plain = deaf.run(data_dir / "jfk.flac", TranscribeOptions())
    assert t.text.split() == plain.text.split() and len(t.text.split()) >= 15
    assert t.speakers == ["SPEAKER_00"]
    assert all(s.speaker == "SPEAKER_00" for s in t.segments)
    assert all(w.speaker == "SPEAKER_00" for s in t.segments for w in s.words)


def test_runner_attributes_words_to_speakers(runner, data_dir):
    t = runner.run(data_dir / "sample.wav", TranscribeOptions(diarize=True))
    assert t.speakers == ["SPEAKER_00", "SPEAKER_01"]
    assert all(s.speaker in t.speakers for s in t.segments)
    assert all(w.speaker == s.speaker for s in t.segments for w in s.words)
    assert t.segments[0].speaker == "SPEAKER_00"
    plain = runner.run(data_dir / "sample.wav", TranscribeOptions())
    assert plain.speakers == [] and all(s.speaker is None for s in plain.segments)
    assert t.text.split() == plain.text.split()  # speakers never change the words


def test_the_transcript_delivers_the_turns_of_the_voices_that_speak(runner, data_dir):
    """dev01: the diarizer hears a third voice in 2 s where the reference has nobody talking and
    the ASR writes nothing (laughter): the transcript shows the two people who speak, and its
    RTTM their turns, speech between their words included."""
    from pyannote.core import Annotation, Segment

    from iam_cluster.pipeline.export import load_rttm, to_rttm

    t = runner.run(data_dir / "dev01.wav", TranscribeOptions(diarize=True))
    assert t.speakers == ["SPEAKER_00", "SPEAKER_01"]
    assert {turn.speaker for turn in t.speaker_turns} == set(t.speakers)
    assert all(a.start <= b.start for a, b in zip(t.speaker_turns, t.speaker_turns[1:]))
    (turns,) = load_rttm(to_rttm(t)).values()
    delivered = Annotation()
    for i, turn in enumerate(turns):
        delivered[Segment(turn.start, turn.end), i] = turn.speaker
    reference = rttm_annotation(data_dir / "dev01.rttm")
    # The diarizer's own turns score 36.7 % here (the third voice is 18 % of false alarm).
    assert der(reference, delivered, 30.0) < 0.30
