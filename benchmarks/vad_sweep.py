"""Choose the VAD operating point on one set of files, to be reported on others.

Each configuration (a grid over threshold, minimum silence and padding) transcribes every file
alone and the whole set as one folder. Its cost is the number of word errors on files with a
``.txt`` reference plus, on files without one, the words it writes fewer than faster-whisper
sequential (the missing-speech deficit; recordings with an ``.rttm`` only, such as meetings).
The cheapest configuration wins; ties go to the higher threshold (fewer false alarms). Report
the winner on OTHER files with ``recall.py --option vad.threshold=...``.

Example::

    python benchmarks/vad_sweep.py --audio /work/shared/data/jfk.flac /work/shared/data/spk1_snt1.wav \\
        --label choose-dev
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
from pathlib import Path

from common import code_version, collect_audio, command_line, cpu_name, normalise, our_runner, save_report
from recall import model_folder, reference, sequential, transcribe_options, wer_counts

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--audio", nargs="+", required=True)
    p.add_argument("--threshold", type=float, nargs="+", default=[0.5, 0.35, 0.25])
    p.add_argument("--min-silence-ms", type=int, nargs="+", default=[160, 500])
    p.add_argument("--pad-ms", type=int, nargs="+", default=[400, 600])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--beam-size", type=int, default=5)
    p.add_argument("--label")
    p.add_argument("--out", type=Path)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from faster_whisper import WhisperModel

    paths = collect_audio(args.audio)
    refs = {p: reference(p) for p in paths}
    fw = WhisperModel(model_folder("tiny.en"), device="cpu", compute_type="int8", cpu_threads=args.threads)
    seq = sequential(fw, paths, args.beam_size, "tiny.en")
    runner = our_runner("tiny.en", "cpu", "int8", args.threads)
    rows, best = [], None
    grid = list(itertools.product(args.threshold, args.min_silence_ms, args.pad_ms))
    for threshold, silence, pad in grid:
        options = transcribe_options([f"vad.threshold={threshold}", f"vad.min_silence_duration_ms={silence}",
                                      f"vad.speech_pad_ms={pad}"], args.beam_size)
        alone = {p: runner.run(p, options).text for p in paths}
        folder = {p: t.text for p, t in runner.run_many(paths, options)}
        cost = {}
        for name, out in (("alone", alone), ("folder", folder)):
            errors = words = deficit = 0
            for p in paths:
                if refs[p] is not None:
                    e, n = wer_counts(refs[p], out[p])
                    errors, words = errors + e, words + n
                else:
                    deficit += max(0, len(normalise(seq[p].text).split()) - len(normalise(out[p]).split()))
            cost[name] = (errors, words, deficit)
        total = sum(c[0] + c[2] for c in cost.values())
        if best is None or total < best[0]:
            best = (total, threshold, silence, pad)
        a, f = cost["alone"], cost["folder"]
        rows.append(f"| {threshold} | {silence} | {pad} | {100 * a[0] / max(1, a[1]):.2f} | "
                    f"{100 * f[0] / max(1, f[1]):.2f} | {a[2]} | {f[2]} | {total} |")
        print(rows[-1], flush=True)
    seq_err = [wer_counts(refs[p], seq[p].text) for p in paths if refs[p] is not None]
    seq_wer = 100 * sum(e for e, _ in seq_err) / max(1, sum(n for _, n in seq_err))
    label = args.label or dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    text = "\n".join([
        f"# VAD sweep: {label}", "", f"Command: `{command_line()}`", "",
        f"Environment: CPU {cpu_name()}, threads {args.threads}, tiny.en int8, beam {args.beam_size}, "
        f"code {code_version()}; {len(paths)} files; sequential WER {seq_wer:.2f}%", "",
        "| threshold | min silence ms | pad ms | WER alone % | WER folder % | deficit alone | deficit folder "
        "| cost |", "|" + "---:|" * 8, *rows, "",
        f"Chosen: threshold {best[1]}, min silence {best[2]} ms, pad {best[3]} ms (cost {best[0]}).", ""])
    save_report(text, args.out or RESULTS_DIR / f"vad-sweep-{label}.md")


if __name__ == "__main__":
    main()
