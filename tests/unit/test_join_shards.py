"""Speakers clustered across the shards of one recording (pure function)."""

from __future__ import annotations

import numpy as np

from iam_cluster.pipeline.merge import join_shards
from iam_cluster.pipeline.shard import join_transcripts
from iam_cluster.pipeline.types import Diarization, Segment, Transcript, Turn, Word


def unit(seed: int) -> list[float]:
    v = np.random.default_rng(seed).standard_normal(16)
    return (v / np.linalg.norm(v)).tolist()


ALICE, BOB, CAROL = unit(1), unit(2), unit(3)


def test_same_voice_gets_one_label_across_shards_and_times_are_shifted():
    first = Diarization([Turn(0, 5, "S0"), Turn(5, 9, "S1")], [ALICE, BOB])
    second = Diarization([Turn(1, 4, "S1"), Turn(4, 8, "S0")], [ALICE, CAROL])  # labels swapped
    joined = join_shards([(0.0, first), (60.0, second)])
    assert [(t.start, t.end) for t in joined.turns] == [(0, 5), (5, 9), (61, 64), (64, 68)]
    speakers = [t.speaker for t in joined.turns]
    assert speakers[0] == speakers[2]  # Alice in both shards
    assert len(set(speakers)) == 3 and len(joined.embeddings) == 4


def test_shards_are_joined_at_the_similarity_their_diarizer_merges_voices_at():
    # Alice's voice in the second shard is 0.7 alike to the first shard's (cosine).
    other = np.array(BOB) - np.dot(BOB, ALICE) * np.array(ALICE)
    drifted = (0.7 * np.array(ALICE) + np.sqrt(1 - 0.7**2) * other / np.linalg.norm(other)).tolist()

    def joined(same_voice):
        first = Diarization([Turn(0, 5, "S0")], [ALICE], same_voice=same_voice)
        second = Diarization([Turn(0, 5, "S0")], [drifted], same_voice=same_voice)
        return join_shards([(0.0, first), (60.0, second)])

    assert len(joined(0.75).speakers) == 2  # a diarizer that merges only at 0.75 alike
    assert len(joined(0.65).speakers) == 1
    assert joined(0.65).same_voice == 0.65
    assert len(joined(None).speakers) == 1  # no scale given: the fixed 0.4 distance (0.6 alike)
    first = Diarization([Turn(0, 5, "S0")], [ALICE], same_voice=0.75)
    assert len(join_shards([(0.0, first), (60.0, Diarization([Turn(0, 5, "S0")], [drifted]))], 0.4).speakers) == 1


def test_two_speakers_of_one_shard_never_merge():
    same = Diarization([Turn(0, 5, "S0"), Turn(5, 9, "S1")], [ALICE, ALICE])
    joined = join_shards([(0.0, same)])
    assert len({t.speaker for t in joined.turns}) == 2


def test_without_embeddings_labels_stay_per_shard():
    joined = join_shards([(0.0, Diarization([Turn(0, 1, "S0")])), (10.0, Diarization([Turn(0, 1, "S0")]))])
    assert [t.speaker for t in joined.turns] == ["shard0-S0", "shard1-S0"]


def test_join_transcripts_shifts_segments_and_words():
    def part(text: str) -> Transcript:
        w = Word(1.0, 1.5, text, 0.9)
        return Transcript("x", 60.0, "en", 1.0, [Segment(0, 1.0, 1.5, text, [w])], speech_duration=10, confidence=0.9)

    t = join_transcripts([(0.0, part(" a")), (60.0, part(" b"))], "long.wav", 120.0)
    assert [(s.id, s.start, s.words[0].start) for s in t.segments] == [(0, 1.0, 1.0), (1, 61.0, 61.0)]
    assert t.source == "long.wav" and t.duration == 120.0 and t.speech_duration == 20
