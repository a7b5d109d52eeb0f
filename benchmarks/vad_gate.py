"""The VAD's quiet-stretch gate: how much audio it leaves unscanned, and whether the speech changes.

For each setting of ``vad.GATE_DB`` / ``GATE_SECONDS`` / ``GATE_MARGIN`` (and the shipped one),
every file is scanned with the gate and without it (``SileroVad(gate=False)``: every sample, as
faster-whisper scans). Printed per setting: the share of audio scanned, the VAD's CPU seconds, how
many files come out with exactly the unskipped scan's regions, the speech seconds each other
file gains or loses, and, over the files with an ``.rttm`` beside them, the speech recall and
precision of the regions against the reference turns (10-ms grid, no collar). A setting is worth
shipping when it skips audio and changes no file, or changes them for the better by the RTTMs;
choose it on some files and report it on others.

Example::

    python benchmarks/vad_gate.py --audio /tmp/longform /work/shared/data --label cpu
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import code_version, collect_audio, command_line, cpu_name, save_report
from der import reference_turns
from speech_detect import grid_mask

RESULTS_DIR = Path(__file__).resolve().parent / "results"
GRID = ((30.0, 5.0, 2.0), (35.0, 3.0, 1.0), (35.0, 4.0, 1.5), (35.0, 5.0, 2.0), (35.0, 8.0, 3.0), (40.0, 5.0, 2.0))


def main(argv: list[str] | None = None) -> None:
    import iam_cluster.pipeline.vad as vad
    from iam_cluster.pipeline.decode import decode_audio
    from iam_cluster.pipeline.level import gain_and_power
    from iam_cluster.pipeline.types import VadOptions

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--audio", nargs="+", required=True, help="audio files or folders")
    ap.add_argument("--label", default="cpu")
    ap.add_argument("--out", type=Path, help="report path (default results/vad-gate-<label>.md)")
    args = ap.parse_args(argv)

    paths = collect_audio(args.audio)
    audios = [decode_audio(p, pcm16=True) for p in paths]
    options, limit = VadOptions(), 29.0
    shipped = (vad.GATE_DB, vad.GATE_SECONDS, vad.GATE_MARGIN)

    def scan(audio, gate: bool):
        start = time.process_time()
        regions = vad.SileroVad(workers=1, gate=gate)(audio, options, limit)
        return regions, time.process_time() - start

    scan(audios[0], False)  # load the model outside the timings
    plain = [scan(a, False) for a in audios]
    refs = {k: grid_mask([(t.start, t.end) for t in reference_turns(p.with_suffix(".rttm"), p)], a.duration)
            for k, (p, a) in enumerate(zip(paths, audios)) if p.with_suffix(".rttm").exists()}

    def accuracy(found: list) -> str:
        """Speech recall / precision (%) of the regions of the files with RTTMs."""
        if not refs:
            return "–"
        hit = marked = speech = 0
        for k, ref in refs.items():
            mask = grid_mask([(r.start, r.end) for r in found[k]], audios[k].duration)
            hit, marked, speech = hit + (mask & ref).sum(), marked + mask.sum(), speech + ref.sum()
        return f"{100 * hit / max(1, speech):.1f} / {100 * hit / max(1, marked):.1f}"
    lines = [
        f"# VAD quiet-stretch gate: {args.label}", "",
        f"Command: `{command_line()}`", "",
        f"Environment: CPU {cpu_name()}, {len(paths)} files, {sum(a.duration for a in audios):.0f} s of audio, "
        f"code {code_version()}; shipped setting {shipped} (dB below the speech level / shortest stretch s / "
        "margin s)", "",
        f"Unskipped scan: {sum(t for _, t in plain):.2f} CPU s; speech recall / precision against the "
        f"RTTMs of {len(refs)} files: {accuracy([r for r, _ in plain])} %.", "",
        "| gate dB | min s | margin s | scanned % | VAD CPU s | files unchanged | recall / precision % (RTTM files) "
        "| changed files (speech s gained) |",
        "|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    grid = list(GRID) if shipped in GRID else [*GRID, shipped]
    try:
        for setting in grid:
            vad.GATE_DB, vad.GATE_SECONDS, vad.GATE_MARGIN = setting
            scanned = seconds = 0.0
            same, changed, found = 0, [], []
            for path, audio, (ref, _) in zip(paths, audios, plain):
                g, power = gain_and_power(audio.samples)
                scanned += sum(b - a for a, b in vad._audible(power, g, 0, len(audio.samples)))
                got, t = scan(audio, True)
                seconds += t
                found.append(got)
                if got == ref:
                    same += 1
                else:
                    gained = vad.speech_duration(got) - vad.speech_duration(ref)
                    changed.append(f"{path.name} {gained:+.1f}")
            share = 100 * scanned / sum(len(a.samples) for a in audios)
            mark = " (shipped)" if setting == shipped else ""
            lines.append(f"| {setting[0]:g}{mark} | {setting[1]:g} | {setting[2]:g} | {share:.1f} | {seconds:.2f} | "
                         f"{same}/{len(paths)} | {accuracy(found)} | {', '.join(changed) or '–'} |")
            print(lines[-1], flush=True)
    finally:
        vad.GATE_DB, vad.GATE_SECONDS, vad.GATE_MARGIN = shipped
    save_report("\n".join(lines) + "\n", args.out or RESULTS_DIR / f"vad-gate-{args.label}.md")


if __name__ == "__main__":
    main()
