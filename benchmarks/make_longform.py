"""Build the long-form benchmark set (2-15 min recordings) from the development clips.

Every recording is made from real speech in ``--data`` (the project's ``shared/data``), with
references beside it where its parts have them: ``.txt`` (the parts' transcripts, in order) and
``.rttm`` (the AMI excerpts' speaker turns, shifted; for read clips one turn per clip over its
speech, labelled with its reader, ``VOICES``: ten_minutes holds 8 voices, long_silences those of
its 14 clips). The set is rebuilt identically from the same
data (fixed seeds), so it is committed as this script, not as audio.

| file | what | reference |
|---|---|---|
| ami_mix_a | the eight meeting excerpts back to back (4 min) | rttm |
| ami_mix_b | the excerpts twice, other orders, 1-6 s pauses of room noise (8.5 min) | rttm |
| long_silences | read clips separated by 8-45 s of near-silence (about 5 min) | txt, rttm |
| ten_minutes | the read clips shuffled, at -35 to -18 dBFS, 0.3-3 s pauses (10 min) | txt, rttm |
| harvard_gaps | the Harvard sentences four times, 1-4 s gaps (2.3 min) | txt, rttm |
| stereo_meeting | the meeting excerpts in stereo: far channel 6 dB down and 3 ms late (4 min) | rttm |
| quiet_read | read clips back to back (continuous speech) at -40 dBFS (2.5 min) | txt, rttm |
| phone_read | the same passage band-limited to 8 kHz sampling, written at 8 kHz | txt, rttm |
| stress/passage* | 50 s of continuous read speech: as is, at -40 dBFS, at 8 kHz | txt |
| stress/quiet_* | the Harvard sentences and jfk at -40 dBFS (recall checks, not timing) | txt |
| perturbed/meeting_room | the meeting excerpts in another order, in a reverberant room (RT60 0.6 s), pink noise 15 dB under the speech, at -35 dBFS | rttm |
| perturbed/meeting_fast | the meeting excerpts played 1.2x faster (pitch kept) | rttm |
| perturbed/read_noisy | the read clips shuffled, pink noise 10 dB under the speech, 0.5-2 s pauses | txt |
| perturbed/read_slow_room | the read clips 0.85x slower, reverberant room, at -30 dBFS | txt |
| perturbed/ten_minutes_noisy | ten_minutes with pink noise 10 dB under its speech (its quietest clips under the noise) | txt, rttm |
| perturbed/harvard_gaps_room | harvard_gaps in a reverberant room (RT60 0.6 s) | txt, rttm |
| meetings/ami_{2,3,4}spk_N | dense 18-33 s meetings of 2-4 AMI voices (solo turns cut from the excerpts' RTTMs): turns of 1-4 s, some overlapping, unequal talk shares, at -40 dBFS | rttm |
| meetings/ami_*_room | the same in a reverberant room (RT60 0.4 s), pink noise 20 dB under the speech | rttm |
| meetings/read_{3,4}spk_N(_room) | the same from the read clips' voices | rttm |

The ``meetings`` group is for the diarizer: the excerpts in ``shared/data`` are mostly silence
(trn01 holds 4.5 s of speech in 30 s), where people in real meetings talk through most of an
excerpt. Its files use the voices of the excerpts (and, in ``read_*``, of the read clips), so
``der.py --cv`` keeps each file away from the files that share a voice with it (its folds are by
RTTM speaker id); the two pools tune each other.

The ``perturbed`` group holds conditions no setting of the engine or the diarizer was chosen on
(other rooms, noise, speech rates): a check that speed and words hold beyond the files they were
measured on.

Example::

    python benchmarks/make_longform.py --data /work/shared/data --out /tmp/longform
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

SR = 16_000
AMI = ["dev00", "dev01", "trn01", "trn02", "trn03", "trn04", "trn05", "sample"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=Path("/work/shared/data"))
    p.add_argument("--out", type=Path, required=True)
    return p.parse_args(argv)


class Builder:
    """Lays clips one after another, keeping their references on the new timeline."""

    def __init__(self, name: str, seed: int = 0) -> None:
        self.name, self.parts, self.texts, self.turns = name, [], [], []
        self.length = 0
        self.rng = np.random.default_rng(seed)

    def clip(self, samples: np.ndarray, text: str | None = None, rttm: Path | None = None,
             voice: str | None = None) -> None:
        """Append ``samples``; ``text`` joins the transcript, ``rttm``'s turns (the clip's own
        reference) or one turn of ``voice`` over the clip's speech join the speaker reference."""
        offset = self.length / SR
        if rttm is not None:
            for line in rttm.read_text().splitlines():
                f = line.split()
                if len(f) > 7 and f[0] == "SPEAKER":
                    self.turns.append((offset + float(f[3]), float(f[4]), f[7]))
        if voice is not None:
            first, last = speech_span(samples)
            if last > first:
                self.turns.append((offset + first, last - first, voice))
        if text:
            self.texts.append(" ".join(text.split()))
        self.parts.append(samples.astype(np.float32))
        self.length += len(samples)

    def pause(self, seconds: float, noise_dbfs: float = -65.0) -> None:
        n = int(seconds * SR)
        self.parts.append((self.rng.standard_normal(n) * 10 ** (noise_dbfs / 20)).astype(np.float32))
        self.length += n

    def write(self, out: Path, gain_db: float = 0.0, rate: int = SR, stereo: bool = False) -> Path:
        import soundfile as sf

        x = np.concatenate(self.parts) * np.float32(10 ** (gain_db / 20))
        if rate != SR:
            import librosa

            x = librosa.resample(x, orig_sr=SR, target_sr=rate)
        if stereo:
            late = np.concatenate([np.zeros(int(0.003 * rate), np.float32), x])[: len(x)]
            x = np.stack([x, late * np.float32(0.5)], axis=1)
        path = out / f"{self.name}.wav"
        sf.write(path, x, rate, subtype="PCM_16")
        if self.texts:
            path.with_suffix(".txt").write_text(" ".join(self.texts) + "\n")
        if self.turns:
            path.with_suffix(".rttm").write_text("".join(
                f"SPEAKER {self.name} 1 {s:.3f} {d:.3f} <NA> <NA> {spk} <NA> <NA>\n" for s, d, spk in self.turns))
        return path


#: Who reads each clip of ``shared/data`` (file-name prefix -> speaker id): the read-speech files
#: get RTTMs from it, so their speaker counts are known (ten_minutes holds 8 voices).
VOICES = {"cathy_": "cathy", "lj_": "ljspeech", "speechbrain_LJ": "ljspeech", "psx_": "librivox_sense",
          "s4_": "an4_census", "speech_recognition_english": "sr_english", "spk1_": "harvard_spk1",
          "spk2_": "harvard_spk2", "jfk": "jfk"}


def voice_of(path: Path) -> str:
    """The speaker of a read clip, by its file name (``VOICES``; else the file's own name)."""
    return next((v for prefix, v in VOICES.items() if path.name.startswith(prefix)), path.stem)


def speech_span(samples: np.ndarray, floor_db: float = 35.0) -> tuple[float, float]:
    """Seconds from the first to the last 25-ms frame of a clip whose level is within
    ``floor_db`` of its loudest frame's: the read clips' leading and trailing silence left out."""
    frame = SR // 40
    n = len(samples) // frame
    if n == 0:
        return 0.0, 0.0
    rms = np.sqrt(np.mean(samples[: n * frame].reshape(n, frame).astype(np.float64) ** 2, axis=1)) + 1e-12
    loud = np.flatnonzero(20 * np.log10(rms / rms.max()) > -floor_db)
    return float(loud[0] * frame / SR), float((loud[-1] + 1) * frame / SR)


def scaled(samples: np.ndarray, dbfs: float) -> np.ndarray:
    """``samples`` with their gated speech level at ``dbfs`` (see ``iam_cluster.pipeline.level``)."""
    from iam_cluster.pipeline.level import speech_level

    level = speech_level(samples)
    return samples if level is None else samples * np.float32(10 ** ((dbfs - level) / 20))


def build(data: Path, out: Path) -> list[Path]:
    """Write every recording of the set into ``out``; returns their paths."""
    from iam_cluster.pipeline.decode import decode_audio

    out.mkdir(parents=True, exist_ok=True)
    load = {}

    def audio(path: Path) -> np.ndarray:
        if path not in load:
            load[path] = decode_audio(path).samples
        return load[path]

    ami = [data / f"{n}.wav" for n in AMI]
    read = sorted(p for p in (data / "asr").glob("*.*") if p.suffix in (".wav", ".flac"))
    harvard = sorted(data.glob("spk*_snt*.wav"))
    texted = [*read, *harvard, data / "jfk.flac"]
    text = {p: p.with_suffix(".txt").read_text() for p in texted}
    made = []

    b = Builder("ami_mix_a")
    for p in ami:
        b.clip(audio(p), rttm=p.with_suffix(".rttm"))
    made.append(b.write(out))

    b = Builder("ami_mix_b", seed=1)
    for _ in range(2):
        for i in b.rng.permutation(len(ami)):
            b.clip(audio(ami[i]), rttm=ami[i].with_suffix(".rttm"))
            b.pause(b.rng.uniform(1, 6), noise_dbfs=-55)
    made.append(b.write(out))

    b = Builder("long_silences", seed=2)
    for k, i in enumerate(b.rng.permutation(len(texted))[:14]):
        b.clip(audio(texted[i]), text[texted[i]], voice=voice_of(texted[i]))
        b.pause(b.rng.uniform(8, 15) if k % 3 else b.rng.uniform(30, 45))
    made.append(b.write(out))

    b = Builder("ten_minutes", seed=3)
    while b.length < 600 * SR:
        for i in b.rng.permutation(len(texted)):
            b.clip(scaled(audio(texted[i]), b.rng.uniform(-35, -18)), text[texted[i]], voice=voice_of(texted[i]))
            b.pause(b.rng.uniform(0.3, 3.0), noise_dbfs=-60)
            if b.length >= 600 * SR:
                break
    made.append(b.write(out))

    b = Builder("harvard_gaps", seed=4)
    for _ in range(4):
        for i in b.rng.permutation(len(harvard)):
            b.clip(audio(harvard[i]), text[harvard[i]], voice=voice_of(harvard[i]))
            b.pause(b.rng.uniform(1, 4))
    while b.length < 120 * SR:
        i = int(b.rng.integers(len(harvard)))
        b.clip(audio(harvard[i]), text[harvard[i]], voice=voice_of(harvard[i]))
        b.pause(b.rng.uniform(1, 4))
    made.append(b.write(out))

    b = Builder("stereo_meeting", seed=5)
    for i in b.rng.permutation(len(ami)):
        b.clip(audio(ami[i]), rttm=ami[i].with_suffix(".rttm"))
    made.append(b.write(out, stereo=True))

    passage = [p for p in read if p.name.startswith(("lj_", "psx_sense", "speechbrain_LJ"))]
    for name, rate in (("quiet_read", SR), ("phone_read", 8000)):
        b = Builder(name, seed=6)
        for _ in range(2):
            for p in passage:
                b.clip(scaled(audio(p), -20.0), text[p], voice=voice_of(p))
        made.append(b.write(out, gain_db=-20.0 if name == "quiet_read" else 0.0, rate=rate))
    made += stress(data, out / "stress", audio, text, passage, [*harvard, data / "jfk.flac"])
    made += meetings(out / "meetings", audio, ami, texted)
    return made + perturbed(out / "perturbed", audio, text, ami, texted, out)


#: Meetings per (pool, number of voices) in ``meetings/``.
MEETINGS = {("ami", 2): 3, ("ami", 3): 5, ("ami", 4): 5, ("read", 3): 3, ("read", 4): 3}


def solo_pieces(samples: np.ndarray, rttm: Path, rng: np.random.Generator) -> dict[str, list[np.ndarray]]:
    """Each speaker's stretches of ``rttm`` in which no one else talks, 0.1 s clear of every
    turn's edge (the references' boundaries are not exact), cut into pieces of 1-4 s; shorter
    stretches are left out."""
    turns = [(float(f[3]), float(f[3]) + float(f[4]), f[7]) for f in map(str.split, rttm.read_text().splitlines())
             if len(f) > 7 and f[0] == "SPEAKER"]
    out: dict[str, list[np.ndarray]] = {}
    for start, end, who in turns:
        spans = [(start + 0.1, end - 0.1)]
        for s2, e2, other in turns:
            if other != who:
                s2, e2 = s2 - 0.1, e2 + 0.1
                spans = [piece for a, b in spans for piece in
                         ([(a, b)] if e2 <= a or s2 >= b else [(a, s2), (e2, b)])]
        for a, b in spans:
            while b - a >= 1.0:
                length = min(b - a, rng.uniform(1.0, 4.0))
                out.setdefault(who, []).append(samples[int(a * SR): int((a + length) * SR)])
                a += length
    return out


def meetings(out: Path, audio, ami: list[Path], read: list[Path]) -> list[Path]:
    """Dense meetings for the diarizer (see the module's table). A meeting draws its voices from
    one pool, gives each a share of the talk (one may say little), and lays turns of 1-4 s one
    after another with pauses or overlaps of up to 0.6 s, each turn 3 dB louder or softer at
    random. It is written twice at -40 dBFS: as mixed, and heard in one room (RT60 0.4 s) with
    pink noise 20 dB under its speech (``_room``)."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20)
    pools = {"ami": {}, "read": {}}
    for p in ami:
        for who, pieces in solo_pieces(audio(p), p.with_suffix(".rttm"), rng).items():
            pools["ami"].setdefault(who, []).extend(pieces)
    for p in read:
        first, last = speech_span(audio(p))
        x = audio(p)[int(first * SR): int(last * SR)]
        pieces = [x[i: i + 4 * SR] for i in range(0, len(x) - SR, 4 * SR)]
        pools["read"].setdefault(voice_of(p), []).extend(pieces)
    for pool in pools.values():  # a voice needs three turns' worth to take part
        for who in [w for w, pieces in pool.items() if len(pieces) < 3]:
            del pool[who]
    made = []
    for (pool_name, voices), count in MEETINGS.items():
        pool = pools[pool_name]
        for k in range(count if len(pool) >= voices else 0):  # a folder with fewer voices makes none
            b = Builder(f"{pool_name}_{voices}spk_{k}", seed=100 * voices + k)
            who = [str(w) for w in b.rng.choice(sorted(pool), voices, replace=False)]
            share = np.maximum(b.rng.dirichlet(np.ones(voices)), 0.08)
            share /= share.sum()
            left = {w: list(b.rng.permutation(len(pool[w]))) for w in who}
            order = list(who) + [str(w) for w in b.rng.choice(who, 40, p=share)]  # everyone speaks once
            mix, turns, at, last = np.zeros(60 * SR, np.float32), [], 0, None
            for w in order:
                if w == last or not left[w]:
                    continue
                piece = scaled(pool[w][left[w].pop()], -25.0) * np.float32(10 ** (b.rng.uniform(-3, 3) / 20))
                at = max(0, at + int(b.rng.uniform(-0.6, 0.6) * SR))
                mix[at: at + len(piece)] += piece
                turns.append((at / SR, len(piece) / SR, w))
                at, last = at + len(piece), w
                if at > 30 * SR and len({t[2] for t in turns}) == voices:
                    break
            x = mix[: at + int(0.5 * SR)]
            b.parts, b.length, b.turns = [scaled(x, -40.0)], len(x), turns
            made.append(b.write(out))
            b.name += "_room"
            b.parts = [scaled(noisy(room(x, 0.4, b.rng), 20.0, b.rng), -40.0)]
            made.append(b.write(out))
    return made


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of 1/f noise, unit RMS."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum /= np.sqrt(np.maximum(np.arange(len(spectrum)), 1))
    x = np.fft.irfft(spectrum, n)
    return (x / np.sqrt(np.mean(x**2))).astype(np.float32)


def room(samples: np.ndarray, rt60: float, rng: np.random.Generator) -> np.ndarray:
    """``samples`` heard in a room: a direct path plus an exponentially decaying noise tail
    (energy down 60 dB after ``rt60`` s), at the input's level, no longer than the input."""
    from scipy.signal import fftconvolve

    t = np.arange(int(rt60 * SR)) / SR
    response = rng.standard_normal(len(t)) * np.exp(-6.9 * t / rt60) * 0.3
    response[0] = 1.0
    wet = fftconvolve(samples, response)[: len(samples)].astype(np.float32)
    rms_in, rms_out = np.sqrt(np.mean(samples**2)), np.sqrt(np.mean(wet**2))
    return wet * np.float32(rms_in / rms_out) if rms_out > 0 else wet


def noisy(samples: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """``samples`` with pink noise ``snr_db`` under their speech level."""
    from iam_cluster.pipeline.level import speech_level

    level = speech_level(samples)
    if level is None:
        return samples
    return samples + pink_noise(len(samples), rng) * np.float32(10 ** ((level - snr_db) / 20))


def stretched(samples: np.ndarray, rate: float) -> np.ndarray:
    """``samples`` played ``rate`` times as fast, pitch kept."""
    import librosa

    return librosa.effects.time_stretch(samples, rate=rate).astype(np.float32)


def perturbed(out: Path, audio, text, ami: list[Path], texted: list[Path], built: Path) -> list[Path]:
    """Conditions nothing was tuned on (see the module's table): rooms, noise, speech rates;
    ``built``: the folder holding the set's other recordings (some are made again here)."""
    out.mkdir(parents=True, exist_ok=True)
    made = []
    for name, seed, change in (("ten_minutes", 11, lambda x, rng: noisy(x, 10.0, rng)),
                               ("harvard_gaps", 12, lambda x, rng: room(x, 0.6, rng))):
        b = Builder(f"{name}_{'noisy' if name == 'ten_minutes' else 'room'}", seed=seed)
        x = change(audio(built / f"{name}.wav"), b.rng)
        b.clip(x * np.float32(min(1.0, 0.99 / max(float(np.abs(x).max()), 1e-9))),
               (built / f"{name}.txt").read_text(), rttm=built / f"{name}.rttm")  # same timeline
        made.append(b.write(out))
    b = Builder("meeting_room", seed=7)
    for i in b.rng.permutation(len(ami)):
        b.clip(audio(ami[i]), rttm=ami[i].with_suffix(".rttm"))
    whole = scaled(noisy(room(np.concatenate(b.parts), 0.6, b.rng), 15.0, b.rng), -35.0)
    b.parts = [whole]
    made.append(b.write(out))

    rate = 1.2
    b = Builder("meeting_fast", seed=8)
    for i in b.rng.permutation(len(ami)):
        offset = b.length / SR
        b.clip(stretched(audio(ami[i]), rate))
        for line in ami[i].with_suffix(".rttm").read_text().splitlines():
            f = line.split()
            if len(f) > 7 and f[0] == "SPEAKER":
                b.turns.append((offset + float(f[3]) / rate, float(f[4]) / rate, f[7]))
    made.append(b.write(out))

    b = Builder("read_noisy", seed=9)
    for i in b.rng.permutation(len(texted)):
        b.clip(audio(texted[i]), text[texted[i]])
        b.pause(b.rng.uniform(0.5, 2.0))
        if b.length >= 200 * SR:
            break
    b.parts = [noisy(np.concatenate(b.parts), 10.0, b.rng)]
    made.append(b.write(out))

    b = Builder("read_slow_room", seed=10)
    for i in b.rng.permutation(len(texted)):
        b.clip(stretched(audio(texted[i]), 0.85), text[texted[i]])
        b.pause(b.rng.uniform(0.3, 1.5))
        if b.length >= 200 * SR:
            break
    b.parts = [scaled(room(np.concatenate(b.parts), 0.5, b.rng), -30.0)]
    made.append(b.write(out))
    return made


def stress(data: Path, out: Path, audio, text, passage: list[Path], clips: list[Path]) -> list[Path]:
    """Short stress cases (``out``): about 50 s of continuous read speech as is, at -40 dBFS and
    through an 8-kHz channel; and the dev clips at -40 dBFS, one file each."""
    out.mkdir(parents=True, exist_ok=True)
    made = []
    for name, gain_db, rate in (("passage", 0.0, SR), ("passage_quiet", -20.0, SR), ("passage_phone", 0.0, 8000)):
        b = Builder(name)
        for p in passage:
            if b.length > 48 * SR:
                break
            b.clip(scaled(audio(p), -20.0), text[p])
        made.append(b.write(out, gain_db=gain_db, rate=rate))
    for p in clips:
        b = Builder(f"quiet_{p.stem}")
        b.clip(scaled(audio(p), -40.0), text[p])
        made.append(b.write(out))
    return made


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    for path in build(args.data, args.out):
        import soundfile as sf

        info = sf.info(path)
        print(f"{path}  {info.duration / 60:.1f} min  {info.samplerate} Hz  {info.channels} ch")


if __name__ == "__main__":
    main()
