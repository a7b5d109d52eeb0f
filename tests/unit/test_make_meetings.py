"""``benchmarks/make_longform.py``'s dense meetings: solo turns of real voices, references kept."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[1] / "data"
SR = 16_000


@pytest.fixture()
def longform(benchmark_module):
    return benchmark_module("make_longform")


def rttm_turns(path: Path) -> list[tuple[float, float, str]]:
    return [(float(f[3]), float(f[3]) + float(f[4]), f[7]) for f in map(str.split, path.read_text().splitlines())]


def test_solo_pieces_leave_out_overlap_and_keep_each_voice_apart(longform, tmp_path):
    rttm = tmp_path / "two.rttm"
    rttm.write_text("SPEAKER x 1 0.000 6.000 <NA> <NA> A <NA> <NA>\n"
                    "SPEAKER x 1 5.000 4.000 <NA> <NA> B <NA> <NA>\n"
                    "SPEAKER x 1 9.500 0.800 <NA> <NA> A <NA> <NA>\n")
    samples = np.arange(10 * SR, dtype=np.float32)  # sample i holds the value i: pieces show where they came from
    pieces = longform.solo_pieces(samples, rttm, np.random.default_rng(0))
    assert sorted(pieces) == ["A", "B"]  # A's 0.8-s turn is too short to give a piece
    for who, (lo, hi) in {"A": (0.1, 4.9), "B": (6.1, 8.9)}.items():
        for piece in pieces[who]:
            assert 1.0 * SR - 1 <= len(piece) <= 4.0 * SR + 1
            assert lo * SR - 1 <= piece[0] and piece[-1] <= hi * SR + 1, (who, piece[0] / SR, piece[-1] / SR)
    assert sum(len(p) for p in pieces["A"]) >= 3.0 * SR  # most of A's 4.8 s of solo speech


@pytest.mark.slow
def test_meetings_hold_their_voices_turn_by_turn_at_the_far_field_level(longform, tmp_path):
    from iam_cluster.pipeline.decode import decode_audio
    from iam_cluster.pipeline.level import speech_level

    ami = [DATA / f"{name}.wav" for name in ("dev00", "dev01", "trn04", "trn05", "sample")]
    read = sorted(p for p in [*(DATA / "read").glob("*.*"), *(DATA / "asr").glob("*.*")] if p.suffix in (".wav", ".flac"))
    read += sorted(DATA.glob("spk*_snt*.wav"))
    made = longform.meetings(tmp_path, lambda p: decode_audio(p).samples, ami, read)
    assert len(made) == 2 * sum(longform.MEETINGS.values())  # each meeting as mixed and in a room
    for path in made:
        name = path.stem.removesuffix("_room")
        pool, voices = name.split("_")[0], int(name.split("_")[1][0])
        turns = rttm_turns(path.with_suffix(".rttm"))
        assert len({who for *_, who in turns}) == voices, path.name
        samples = decode_audio(path).samples
        assert turns[-1][1] <= len(samples) / SR + 1e-3
        assert abs(speech_level(samples) - (-40.0)) < 0.5, path.name
        if pool == "ami":
            assert {who for *_, who in turns} <= {"MEE009", "MEE012", "MEE075", "FEE078", "speaker90", "speaker91",
                                                  "MEO074", "MEE076"}
        # each turn follows the one before: pauses or overlaps of at most 0.6 s
        for (_, end, _), (start, _, _) in itertools.pairwise(turns):
            assert start - end <= 0.6 + 1e-3 and end - start <= 0.6 + 1e-3
        if path.stem.endswith("_room"):
            assert turns == rttm_turns(tmp_path / f"{name}.rttm")
