"""Wall time the meeting insights add to a transcription job, measured against the transcription itself.

One recording is built by concatenating the given files ``--repeat`` times (about ten minutes from
``meeting_long_dev.wav`` x 4). It is transcribed once, as the worker does, then insights are
computed on that transcript: first in a fresh state (imports, lexicon and stop-word loading
included: what the first job of a worker process pays), then ``--rounds`` more times (warm).
Speakers come from the RTTM files beside the audio when there are (shifted along the
concatenation), so per-speaker statistics work on real turns; ``--diarize`` runs the embedded
diarizer instead (and adds its time to the transcription side).

Example::

    flock /work/bench.lock python benchmarks/insights.py --audio /work/shared/data/meeting_long_dev.wav --repeat 4
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import time
from pathlib import Path

from common import code_version, command_line, cpu_name, save_report

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--audio", nargs="+", required=True, help="audio files, concatenated in order")
    p.add_argument("--repeat", type=int, default=4, help="concatenate the files N times")
    p.add_argument("--model", default="tiny.en")
    p.add_argument("--threads", type=int, default=2, help="CTranslate2 threads")
    p.add_argument("--diarize", action="store_true", help="run the embedded diarizer (default: RTTM speakers)")
    p.add_argument("--rounds", type=int, default=5, help="warm insights runs; the median is reported")
    p.add_argument("--label", help="name of the run (default: date and time)")
    p.add_argument("--out", type=Path, help="Markdown report (default benchmarks/results/insights-LABEL.md)")
    return p.parse_args(argv)


def build_recording(paths: list[Path], repeat: int):
    """The concatenated audio and the reference turns shifted along it (empty without RTTMs)."""
    import numpy as np

    from iam_cluster.pipeline.decode import decode_audio
    from iam_cluster.pipeline.types import SAMPLE_RATE, Audio, Turn

    parts, turns, offset = [], [], 0.0
    for _ in range(repeat):
        for path in paths:
            audio = decode_audio(path)
            parts.append(audio.samples)
            rttm = path.with_suffix(".rttm")
            if rttm.exists():
                for line in rttm.read_text().splitlines():
                    f = line.split()
                    if len(f) >= 8 and f[0] == "SPEAKER":
                        start = float(f[3])
                        turns.append(Turn(offset + start, offset + start + float(f[4]), f[7]))
            offset += audio.duration
    samples = np.concatenate(parts)
    return Audio(f"{len(paths)} file(s) x {repeat}", samples), sorted(turns, key=lambda t: t.start), len(
        samples) / SAMPLE_RATE


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from iam_cluster.pipeline.merge import merge
    from iam_cluster.pipeline.types import SAMPLE_RATE, Audio, Diarization, TranscribeOptions
    from iam_cluster.runner import make_runner
    from iam_cluster.settings import ModelSettings, Settings

    audio, turns, duration = build_recording([Path(a) for a in args.audio], args.repeat)
    # The worker's path: the runner its settings build (in process here), the job's options.
    runner = make_runner(Settings(models=ModelSettings(name=args.model, device="cpu", compute_type="int8",
                                                       cpu_threads=args.threads)))
    options = TranscribeOptions(diarize=args.diarize)
    # Loads the model (and the diarizer) on 20 s of the recording: not timed, as in a running worker.
    runner.run(Audio("warm-up", audio.samples[: 20 * SAMPLE_RATE]), options)
    t0 = time.perf_counter()
    transcript = runner.run(audio, options)
    transcribe_s = time.perf_counter() - t0
    if not args.diarize and turns:
        transcript = merge(transcript, Diarization(turns=turns))

    t0 = time.perf_counter()
    from iam_cluster.insights import compute_insights

    insights = compute_insights(transcript)
    cold_s = time.perf_counter() - t0
    warm = []
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        compute_insights(transcript)
        warm.append(time.perf_counter() - t0)
    warm_s = statistics.median(warm) if warm else cold_s

    label = args.label or dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    lines = [
        f"# Insights vs transcription: {label}", "",
        f"- command: `{command_line()}`",
        f"- code: {code_version()}; CPU: {cpu_name()}; model {args.model}, {args.threads} threads, int8",
        f"- recording: {duration:.1f} s ({audio.source}); speakers: "
        f"{'embedded diarizer' if args.diarize else 'reference RTTM' if turns else 'none'}",
        f"- transcript: {len(transcript.segments)} segments, {insights.words} words, "
        f"{len(insights.speakers)} speakers; insights: {len(insights.summary)} summary sentences, "
        f"{len(insights.keywords)} keywords, {len(insights.action_items)} action items, "
        f"{len(insights.questions)} questions", "",
        "| step | seconds | share of transcription |", "|---|---:|---:|",
        f"| transcription{' + diarization' if args.diarize else ''} | {transcribe_s:.2f} | 100% |",
        f"| insights, cold (imports and lexicons loaded) | {cold_s:.3f} | {100 * cold_s / transcribe_s:.2f}% |",
        f"| insights, warm (median of {args.rounds}) | {warm_s:.3f} | {100 * warm_s / transcribe_s:.2f}% |",
        "", f"RATIO insights/transcription: cold {cold_s / transcribe_s:.4f}, warm {warm_s / transcribe_s:.4f} "
        f"(target <= 0.05)",
    ]
    save_report("\n".join(lines) + "\n", args.out or RESULTS_DIR / f"insights-{label}.md")


if __name__ == "__main__":
    main()
