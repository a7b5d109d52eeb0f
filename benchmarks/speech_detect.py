"""Speech detection for diarization against RTTM speech: segmentation-3.0 vs Silero, per threshold.

For every audio file with a ``.rttm`` beside it, each detector marks speech on a 10-ms grid and is
scored against the union of the reference turns (no collar): recall (reference speech found) and
precision (marked time that is reference speech), per file and over all files. Levels are
normalised first (``pipeline/level.py``), as the diarizer does; Silero also runs on the raw level,
as the ASR's VAD did. The diarizer's own threshold is chosen by ``der.py --cv`` (on DER); this
table shows the trade-off around it.

Example::

    python benchmarks/speech_detect.py --audio /work/shared/data --label cpu
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from common import command_line, save_report
from der import collect, reference_turns

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SEGMENTATION = (0.3, 0.4, 0.5, 0.6, 0.7)
SILERO = (0.5, 0.35, 0.2)


def grid_mask(spans, duration: float) -> np.ndarray:
    mask = np.zeros(int(duration * 100) + 1, bool)
    for start, end in spans:
        mask[int(start * 100) : int(end * 100)] = True
    return mask


def detectors(audio):
    """``name -> list of (start, end)`` for every detector and threshold on one recording."""
    from iam_cluster.pipeline.diarize.embedded import _speech_frames
    from iam_cluster.pipeline.diarize.segmentation import Segmenter
    from iam_cluster.pipeline.level import normalised
    from iam_cluster.pipeline.types import Audio, VadOptions
    from iam_cluster.pipeline.vad import _scan

    level = normalised(audio.samples)
    seg = Segmenter(5.0)(level)
    out = {}
    for threshold in SEGMENTATION:
        frames = np.flatnonzero(_speech_frames(seg, threshold, 0.1))
        out[f"segmentation {threshold}"] = [(seg.times(f) - seg.step / 2, seg.times(f) + seg.step / 2) for f in frames]
    for threshold in SILERO:
        for name, samples in (("raw", audio.samples), ("normalised", level)):
            options = VadOptions(threshold=threshold)
            regions = _scan(Audio(audio.source, samples).samples, 0, options, 29.0)
            out[f"silero {threshold} {name}"] = [(r.start, r.end) for r in regions]
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--audio", nargs="+", required=True, help="audio files and/or folders with .rttm beside them")
    p.add_argument("--label", default="cpu")
    args = p.parse_args(argv)
    from iam_cluster.pipeline.decode import decode_audio

    files = [f for f in collect(args.audio, {}) if f[1] is not None]
    per_file: dict[str, dict[str, tuple[float, float, float]]] = {}
    for path, rttm, _ in files:
        audio = decode_audio(path, max_duration=None)
        ref = grid_mask([(t.start, t.end) for t in reference_turns(rttm, path)], audio.duration)
        for name, spans in detectors(audio).items():
            hyp = grid_mask(spans, audio.duration)
            per_file.setdefault(name, {})[path.stem] = (ref.sum(), hyp.sum(), (ref & hyp).sum())
        print(f"[speech] {path.name}", file=sys.stderr, flush=True)
    names = [p.stem for p, _, _ in files]
    head = ["detector", "recall % (all)", "precision % (all)", *(f"{n} R/P" for n in names)]
    rows = []
    for detector, scores in per_file.items():
        ref, hyp, both = (sum(v[i] for v in scores.values()) for i in range(3))
        cells = [f"{100 * b / max(r, 1):.0f}/{100 * b / max(h, 1):.0f}" for r, h, b in (scores[n] for n in names)]
        rows.append([detector, f"{100 * both / max(ref, 1):.1f}", f"{100 * both / max(hyp, 1):.1f}", *cells])
    lines = [f"# Speech detection against RTTM speech: {args.label}", "", f"Command: `{command_line()}`", "",
             "10-ms grid, no collar; segmentation-3.0 on 10-s chunks every 5 s after level normalisation "
             "(gaps under 0.1 s filled); Silero as faster-whisper runs it (400-ms padding, 160-ms "
             "minimum silence) on the raw and on the normalised level.", "",
             "| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    save_report("\n".join(lines) + "\n", RESULTS_DIR / f"speech-detect-{args.label}.md")


if __name__ == "__main__":
    main()
