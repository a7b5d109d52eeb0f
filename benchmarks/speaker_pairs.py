"""How well speaker embeddings tell voices apart, free of any clustering threshold.

Every RTTM-labelled file is analysed as the embedded diarizer does it (level normalisation,
segmentation-3.0, the clean pieces of each chunk's local speakers); each piece whose frames lie at
least ``--purity`` within one reference speaker's turns is kept with that speaker as its owner.
Every pair of kept pieces of one file is then a trial (same voice or not), scored by the cosine
similarity of the pieces' embeddings. The report gives the equal error rate (EER) of those trials
per way of embedding a piece, over all files and per file: a lower EER is an embedding that any
threshold separates better, so the comparison does not hinge on which similarity the
cross-validation picks (``der.py --cv``), which moves with a few pieces on 9 files.

Ways of embedding a piece with resemblyzer (its 1.6-s partials of 160 mel frames):

- ``first``: the first partial (the diarizer before 2026-12-06);
- ``last``, ``middle``: one partial at the end or in the middle;
- ``firstlast``: the mean of the first and the last partial (the diarizer now);
- ``hopN``: partials every N frames from the first, and the last; their mean;
- ``firstlast-int8``: ``firstlast`` through the diarizer's onnxruntime copy of resemblyzer with
  its LSTM layers after the first in int8 (the CPU default since 2026-12-06; the ways above run
  the float32 torch network);

and ``campp``: CAM++ over the whole piece (the same pieces, for comparison).

Example::

    python benchmarks/speaker_pairs.py --audio /work/shared/data --label partials-zen3-amd-cpu
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from common import code_version, command_line, cpu_name, save_report
from der import collect, reference_turns
from der_cv import piece_shares

PARTIAL = 160
WAYS = ("first", "last", "middle", "firstlast", "hop80", "hop40", "hop20", "firstlast-int8", "campp")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--audio", nargs="+", required=True, help="audio files and/or folders (recursive)")
    p.add_argument("--ways", nargs="+", default=list(WAYS), choices=WAYS)
    p.add_argument("--purity", type=float, default=0.8,
                   help="least share of a piece's time inside its owner's turns (default 0.8)")
    p.add_argument("--label", help="name of the run")
    p.add_argument("--out", type=Path, help="Markdown report (default benchmarks/results/pairs-LABEL.md)")
    return p.parse_args(argv)


def partials(mel: np.ndarray, way: str) -> list[np.ndarray]:
    """The 160-frame partials a piece's mel frames are embedded from, for one way."""
    if len(mel) <= PARTIAL:
        return [np.resize(mel, (PARTIAL, mel.shape[1]))]
    last = len(mel) - PARTIAL
    if way == "first":
        starts = [0]
    elif way == "last":
        starts = [last]
    elif way == "middle":
        starts = [last // 2]
    elif way == "firstlast":
        starts = [0, last]
    else:
        starts = list(range(0, last + 1, int(way[3:])))
        if starts[-1] != last:
            starts.append(last)
    return [mel[a : a + PARTIAL] for a in starts]


def owners(analysis, turns, purity: float) -> list[str | None]:
    """Per piece, the reference speaker holding at least ``purity`` of its time, else None."""
    out = []
    for share in piece_shares(analysis, turns):
        best = max(share, key=share.get) if share else None
        out.append(best if best is not None and share[best] >= purity * sum(share.values()) else None)
    return out


def eer(same: np.ndarray, other: np.ndarray) -> float:
    """Equal error rate: the threshold where misses of same-voice pairs and accepts of
    other-voice pairs are closest, the larger of the two there."""
    if len(same) == 0 or len(other) == 0:
        return float("nan")
    best = 1.0
    for t in np.sort(np.concatenate([same, other])):
        best = min(best, max(float((same < t).mean()), float((other >= t).mean())))
    return best


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import torch

    from iam_cluster.pipeline.decode import decode_audio
    from iam_cluster.pipeline.diarize.embedded import EmbeddedDiarizer

    files = [(path, rttm) for path, rttm, _ in collect(args.audio, {}) if rttm is not None]
    if not files:
        raise SystemExit("no audio file with an .rttm beside it")
    diarizer = EmbeddedDiarizer(encoder="resemblyzer", int8=False)  # the pieces of the float32 diarizer
    encoder = diarizer.encoder
    captured: list[list[np.ndarray]] = []

    class Capture:  # the diarizer's own clips, embedded below in every way
        dim = encoder.dim

        def __call__(self, clips):
            captured.append(list(clips))
            return encoder(clips)

    pieces = {}
    diarizer.encoder = Capture()
    for path, rttm in files:
        captured.clear()
        analysis = diarizer.analyse(decode_audio(path))
        clips = captured[0] if captured else []
        pieces[path.stem] = (clips, owners(analysis, reference_turns(rttm, path), args.purity))
        print(f"[pairs] {path.name}: {len(clips)} pieces", file=sys.stderr, flush=True)
    diarizer.encoder = encoder

    rows, per_file_rows, campp, int8 = [], [], None, None
    for way in args.ways:
        same_all, other_all, per_file = [], [], {}
        for name, (clips, who) in pieces.items():
            if len(clips) < 2:
                continue
            if way == "campp":
                if campp is None:
                    from iam_cluster.pipeline.diarize.models import CamppEncoder

                    campp = CamppEncoder()
                vectors = list(campp(clips))
            elif way == "firstlast-int8":
                if int8 is None:
                    from iam_cluster.pipeline.diarize.models import ResemblyzerEncoder
                    from iam_cluster.pipeline.models import DEFAULT_CACHE_DIR

                    int8 = ResemblyzerEncoder(cache_dir=DEFAULT_CACHE_DIR, int8=True)
                vectors = list(int8(clips))
            else:
                vectors = []
                for mel in encoder.mels(clips):
                    with torch.inference_mode():
                        v = encoder.model(torch.from_numpy(np.stack(partials(mel, way)))).numpy().mean(0)
                    vectors.append(v / np.linalg.norm(v))
            sim = np.array(vectors) @ np.array(vectors).T
            same, other = [], []
            for i in range(len(clips)):
                for j in range(i + 1, len(clips)):
                    if who[i] is not None and who[j] is not None:
                        (same if who[i] == who[j] else other).append(sim[i, j])
            same_all += same
            other_all += other
            if same and other:
                per_file[name] = eer(np.array(same), np.array(other))
        s, o = np.array(same_all), np.array(other_all)
        rows.append(f"| {way} | {len(s)} | {len(o)} | {100 * eer(s, o):.1f} | {s.mean():.3f} | {o.mean():.3f} |")
        per_file_rows.append(f"| {way} | " + " | ".join(f"{100 * v:.0f}" for v in per_file.values()) + " |")
        names = list(per_file)
    text = "\n".join([
        f"# Speaker-embedding pairs: {args.label or 'run'}",
        "",
        f"Command: `{command_line()}`",
        "",
        f"Environment: CPU {cpu_name()}, encoder resemblyzer, purity {args.purity}, code {code_version()}",
        "",
        "Trials: every pair of owned pieces of one file (same voice / another voice); EER over all files.",
        "",
        "| way | same-voice pairs | other-voice pairs | EER % | mean similarity, same | mean similarity, other |",
        "|---|---:|---:|---:|---:|---:|",
        *rows,
        "",
        "Per file (files with pairs of both kinds), EER %:",
        "",
        "| way | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
        *per_file_rows,
        "",
    ])
    save_report(text, args.out or Path(__file__).resolve().parent / "results" / f"pairs-{args.label or 'run'}.md")


if __name__ == "__main__":
    main()
