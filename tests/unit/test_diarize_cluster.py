"""Speaker clustering and filterbanks of the embedded diarizer (no weights)."""

from __future__ import annotations

import numpy as np
import pytest

from iam_cluster.errors import ConfigError
from iam_cluster.pipeline.diarize.cluster import (
    cluster_speakers,
    merge_similar,
    spectral_labels,
)


def voices(sizes, dim=64, spread=0.35, seed=0):
    """Unit vectors scattered around one random direction per voice; labels beside them."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(sizes), dim))
    x = np.concatenate([c + spread * rng.normal(size=(n, dim)) * np.linalg.norm(c) / np.sqrt(dim)
                        for c, n in zip(centres, sizes)])
    return x / np.linalg.norm(x, axis=1, keepdims=True), np.repeat(np.arange(len(sizes)), sizes)


@pytest.mark.parametrize("method", ["ahc", "spectral"])
@pytest.mark.parametrize("sizes", [(30,), (20, 25), (12, 30, 18), (40, 8, 15, 10)])
def test_speaker_count_found_from_the_data(method, sizes):
    x, truth = voices(sizes)
    centroids = cluster_speakers(x, method, similarity=0.6)
    assert len(centroids) == len(sizes)
    found = np.argmax(x @ centroids.T, axis=1)
    for voice in range(len(sizes)):  # each voice lands on one centroid of its own
        assert len(set(found[truth == voice])) == 1
    assert len(set(found)) == len(sizes)


def test_count_does_not_depend_on_how_long_the_recording_is():
    short, _ = voices((8, 10, 9), seed=1)
    long, _ = voices((80, 100, 90), seed=1)
    for method in ("ahc", "spectral"):
        assert len(cluster_speakers(short, method, 0.6)) == len(cluster_speakers(long, method, 0.6)) == 3


@pytest.mark.parametrize("method", ["ahc", "spectral"])
def test_speaker_count_hints(method):
    x, _ = voices((20, 25, 15))
    assert len(cluster_speakers(x, method, 0.6, num=2)) == 2
    assert len(cluster_speakers(x, method, 0.6, num=5)) == 5
    assert len(cluster_speakers(x, method, 0.6, num=1)) == 1
    assert len(cluster_speakers(x, method, 0.6, low=4)) >= 4
    assert len(cluster_speakers(x, method, 0.6, high=2)) <= 2
    with pytest.raises(ConfigError):
        cluster_speakers(x, "kmeans", 0.6)


def test_few_embeddings_are_one_speaker_and_merges_keep_the_floor():
    x, _ = voices((2, 2))
    assert set(spectral_labels(x)) == {0}
    y, _ = voices((20, 20))
    labels = np.repeat([0, 1], 20)
    assert len(set(merge_similar(y, labels, -1.0))) == 1  # everything is "similar enough"
    assert len(set(merge_similar(y, labels, -1.0, low=2))) == 2


def test_kaldi_filterbanks_are_level_free():
    torch = pytest.importorskip("torch")
    from iam_cluster.pipeline.diarize.models import kaldi_fbank, kaldi_mel_banks

    rng = np.random.default_rng(1)
    wav = torch.from_numpy(rng.normal(size=(2, 16000)).astype(np.float32))
    feats = kaldi_fbank(wav, kaldi_mel_banks())
    assert feats.shape == (2, 98, 80)  # 25-ms frames every 10 ms, edges snipped
    assert torch.allclose(feats, kaldi_fbank(wav * 0.01, kaldi_mel_banks()), atol=1e-3)


def one_chunk_two_voices(similarity: float):
    """An analysis of one 10-s chunk whose two local speakers (first and second half) have
    embeddings ``similarity`` alike."""
    from iam_cluster.pipeline.diarize.embedded import Analysis
    from iam_cluster.pipeline.diarize.segmentation import Segmentation

    frames, step = 589, 0.016875
    local = np.zeros((1, frames, 3), np.float32)
    local[0, : frames // 2, 0] = 1
    local[0, frames // 2 :, 1] = 1
    seg = Segmentation(np.full(frames, 0.9), np.zeros(frames), local, np.array([0]), step / 2, step)
    a = np.array([1.0, 0.0])
    b = np.array([similarity, np.sqrt(1 - similarity**2)])
    return Analysis(seg, np.array([0, 0]), np.array([0, 1]), np.array([0, frames // 2]),
                    np.array([frames // 2 - 1, frames - 1]), np.array([4.9, 4.9]), np.stack([a, b]))


def test_two_local_speakers_of_one_chunk_are_two_speakers_unless_bounded():
    from iam_cluster.pipeline.diarize.embedded import Decision, decide

    alike = one_chunk_two_voices(0.95)  # the embeddings alone would merge them
    assert len(decide(alike, Decision()).speakers) == 2
    assert decide(alike, Decision(similarity=0.7)).same_voice == 0.7  # the scale shards are joined at
    assert len(decide(alike, Decision(), high=1).speakers) == 1
    assert len(decide(alike, Decision(), num=1).speakers) == 1
    assert len(decide(one_chunk_two_voices(0.1), Decision()).speakers) == 2


def test_a_local_speaker_heard_where_the_detector_hears_silence_founds_no_speaker():
    """Two local speakers, each 4.9 s alone, unlike voices; the detector calls the second one's
    span speech only in its last tenth (a murmur, a chair): its piece then holds 0.5 s of
    speech, under the 1 s a speaker needs to be founded, and joins the first."""
    from dataclasses import replace

    from iam_cluster.pipeline.diarize.embedded import Decision, decide, piece_in_speech

    analysis = one_chunk_two_voices(0.1)
    frames = len(analysis.seg.speech)
    speech = analysis.seg.speech.copy()
    speech[frames // 2 : frames - frames // 20] = 0.2
    analysis.seg = replace(analysis.seg, speech=speech)
    mask = speech > 0.5
    assert piece_in_speech(analysis, mask) == pytest.approx([1.0, 0.1], abs=0.02)
    assert len(decide(analysis, Decision(founding_in_speech=False)).speakers) == 2
    assert len(decide(analysis, Decision()).speakers) == 1  # the default


def test_the_auto_speaker_encoder_is_campp_on_a_gpu_and_resemblyzer_on_the_cpu():
    from iam_cluster.pipeline.diarize.models import encoder_for

    assert encoder_for("auto", "cuda") == encoder_for("auto", "cuda:1") == "campp"
    assert encoder_for("auto", "cpu") == "resemblyzer"
    assert encoder_for("campp", "cpu") == "campp" and encoder_for("resemblyzer", "cuda") == "resemblyzer"
    with pytest.raises(ConfigError, match="auto, campp, resemblyzer"):
        encoder_for("ecapa", "cpu")


def test_a_speaker_with_a_small_share_of_the_speech_joins_the_nearest():
    from iam_cluster.pipeline.diarize.embedded import small_speakers

    x, truth = voices((30, 25, 3), seed=2)  # a third "voice" of three short pieces
    clean = np.full(len(x), 3.0)
    centroids = np.stack([x[truth == v].mean(0) for v in range(3)])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    assert small_speakers(x, clean, centroids, 0.0, 1) == [0, 1, 2]
    assert small_speakers(x, clean, centroids, 0.08, 1) == [0, 1]  # 3 of 58 pieces: 5 %
    assert small_speakers(x, clean, centroids, 0.08, 3) == [0, 1, 2]  # a floor (count hint, local speakers) holds
    # shares are of clean seconds, not of pieces: the same three pieces, long, stay a speaker
    assert small_speakers(x, np.where(truth == 2, 40.0, 3.0), centroids, 0.08, 1) == [0, 1, 2]
    # a share is taken again once a smaller speaker's pieces have joined it: C's two pieces go to B
    # (10 %), and B, 43 % before, then holds 52 %
    angle = np.radians(np.repeat([0.0, 60.0, 50.0], [10, 9, 2]))
    y = np.stack([np.cos(angle), np.sin(angle)], axis=1)
    c = np.stack([np.cos(np.radians([0.0, 60.0, 50.0])), np.sin(np.radians([0.0, 60.0, 50.0]))], axis=1)
    assert small_speakers(y, np.ones(len(y)), c, 0.45, 1) == [0, 1]
    assert small_speakers(y, np.ones(len(y)), c, 0.55, 1) == [1]


def test_each_half_of_a_piece_is_labelled_by_its_own_half():
    """One local speaker over a whole 10-s chunk, where the segmentation missed a change of voice:
    its second piece begins with the first voice and ends with another. Labelled by whole pieces
    the change falls between the pieces' centres; by halves, where that piece's second half starts."""
    from iam_cluster.pipeline.diarize.embedded import Analysis, Decision, decide
    from iam_cluster.pipeline.diarize.segmentation import Segmentation

    frames, step = 589, 0.016875
    local = np.zeros((1, frames, 3), np.float32)
    local[0, :, 0] = 1
    seg = Segmentation(np.full(frames, 0.9), np.zeros(frames), local, np.array([0]), step / 2, step)
    a, b = np.eye(2)
    mixed = (a + b) / np.sqrt(2)
    third = frames // 3
    analysis = Analysis(seg, np.array([0, 0]), np.array([0, 0]), np.array([0, third]), np.array([third - 1, frames - 1]),
                        np.array([3.0, 6.0]), np.stack([a, mixed]), np.stack([[a, a], [a, b]]))

    def change(decision):
        turns = decide(analysis, decision, num=2).turns
        assert len({t.speaker for t in turns}) == 2
        return min(t.end for t in turns)

    whole = change(Decision(halves=False))
    halves = change(Decision())
    assert whole == pytest.approx(10 * 5 / 12, abs=0.1)  # between the centres at 1/6 and 2/3 of the chunk
    assert halves == pytest.approx(10 * 2 / 3, abs=0.1)  # where the second piece's second half begins


def test_resemblyzer_halves_are_its_first_and_last_partial(data_dir):
    from iam_cluster.pipeline.decode import decode_audio
    from iam_cluster.pipeline.diarize.models import make_encoder

    encoder = make_encoder("resemblyzer")
    speech = decode_audio(data_dir / "sample.wav").samples
    clips = [speech[: 16000 * 3], speech[16000 * 5: 16000 * 6]]  # two partials; one (1 s)
    halves = encoder.halves(clips)
    assert halves.shape == (2, 2, encoder.dim)
    assert np.allclose(np.linalg.norm(halves, axis=-1), 1.0, atol=1e-5)
    assert np.allclose(halves[1, 0], halves[1, 1])  # a short clip is one partial, both halves
    assert not np.allclose(halves[0, 0], halves[0, 1])
    mean = halves.sum(axis=1)
    assert np.allclose(encoder(clips), mean / np.linalg.norm(mean, axis=1, keepdims=True), atol=1e-6)
    first = encoder([speech[: 16000 * 16 // 10]])[0]  # the first 1.6 s alone: the first half
    assert np.dot(first, halves[0, 0]) > 0.999
