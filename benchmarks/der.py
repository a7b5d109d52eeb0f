"""Diarization error rate of a diarizer against RTTM references, and its cost next to transcription.

Every audio file with a ``.rttm`` beside it (files given, or found under folders given) is decoded
and VAD-scanned once, then transcribed and diarized in this one process; both are timed (after
one untimed warm-up of each on the first file) and the diarization is scored with
``pyannote.metrics`` at two collars, overlapped speech included. Files without a reference can
still be checked for their speaker count with ``--speakers FILE=N``.

``--cv`` scores the embedded diarizer without letting a file tune itself: see ``der_cv.py``.

Examples::

    python benchmarks/der.py --audio /work/shared/data --diarizer embedded --label dev-embedded \\
        --speakers stereo_diarization.wav=2
    python benchmarks/der.py --audio /work/shared/data --cv --encoders campp resemblyzer --label cv-cpu
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from common import AUDIO_EXTS, code_version, cpu_name, settings_for

RESULTS_DIR = Path(__file__).resolve().parent / "results"
#: pyannote's collar is the *total* width removed around each reference boundary (±collar/2).
COLLARS = (0.0, 0.25)
COMPONENTS = ("missed detection", "false alarm", "confusion")
WARM_UP_SECONDS = 10.0


@dataclass
class FileResult:
    path: Path
    duration: float
    ref_speakers: int | None
    found_speakers: int
    asr_s: float
    diar_s: float
    #: collar -> pyannote's detailed components for this file (empty without a reference).
    der: dict[float, dict[str, float]] = field(default_factory=dict)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--audio", nargs="+", required=True, help="audio files and/or folders (recursive)")
    p.add_argument("--diarizer", default="embedded", choices=("embedded", "pyannote"))
    p.add_argument("--pipeline", help="pyannote pipeline folder or hub id (pyannote diarizer only)")
    p.add_argument("--encoder", default="resemblyzer", help="speaker encoder of the embedded diarizer")
    p.add_argument("--cv", action="store_true",
                   help="cross-validate the embedded diarizer's settings (leave one file, and every "
                        "file sharing a speaker with it, out); no transcription")
    p.add_argument("--encoders", nargs="+", default=["resemblyzer"], help="encoders compared by --cv")
    p.add_argument("--float32", action="store_true",
                   help="the embedded diarizer's speaker encoder in float32 (default on CPU: resemblyzer's "
                        "LSTM layers after the first in int8)")
    p.add_argument("--segmentation-step", type=float,
                   help="seconds between 10-s chunks (default: the encoder's own, SEGMENTATION_STEP)")
    p.add_argument("--model", default="tiny.en", help="Whisper model: tiny.en, base or a folder")
    p.add_argument("--device", default="auto", help="ASR device: auto, cpu or cuda")
    p.add_argument("--threads", type=int, default=2, help="CTranslate2 and torch intra-op threads")
    p.add_argument("--speakers", nargs="*", default=[], metavar="FILE=N",
                   help="expected speaker count of files without an RTTM (count check only)")
    p.add_argument("--shard-seconds", type=float,
                   help="diarize as the pipeline does a recording this long or longer: in shards cut at "
                        "silences (pipeline/shard.py), their speakers joined (merge.join_shards); "
                        "default: the whole recording at once")
    p.add_argument("--delivered", action="store_true",
                   help="score what a diarized transcript delivers (its RTTM export: the diarizer's turns of "
                        "the speakers who say at least one word) instead of the diarizer's own turns")
    p.add_argument("--decision", nargs="*", default=[], metavar="KEY=VALUE",
                   help="the embedded diarizer's decision otherwise than its defaults (Decision fields: "
                        "speech_threshold, similarity, min_cluster_seconds, min_share, overlap, method)")
    p.add_argument("--oracle-speakers", action="store_true",
                   help="give the diarizer the reference speaker count (num_speakers)")
    p.add_argument("--label", help="name of the run (default: date and time)")
    p.add_argument("--out", type=Path, help="Markdown report (default benchmarks/results/der-LABEL.md)")
    return p.parse_args(argv)


def parse_expectations(items: list[str]) -> dict[str, int]:
    """``FILE=N`` pairs, keyed by the file's name (a path given is reduced to its name)."""
    out: dict[str, int] = {}
    for item in items:
        name, sep, count = item.rpartition("=")
        if not sep or not name or not count.isdigit() or int(count) < 1:
            raise SystemExit(f"--speakers expects FILE=N with N >= 1, not {item!r}")
        out[Path(name).name] = int(count)
    return out


def collect(items: list[str], expected: dict[str, int]) -> list[tuple[Path, Path | None, int | None]]:
    """``(audio, rttm or None, expected count or None)`` for each file that can be checked."""
    found: dict[Path, bool] = {}  # audio file -> named explicitly
    for item in items:
        path = Path(item)
        if path.is_dir():
            for f in sorted(path.rglob("*")):
                if f.suffix.lower() in AUDIO_EXTS and f.is_file():
                    found.setdefault(f, False)
        elif path.is_file():
            found[path] = True
        else:
            raise SystemExit(f"no such audio file or folder: {item}")
    files = []
    for audio, explicit in found.items():
        rttm = audio.with_suffix(".rttm")
        if rttm.is_file() or audio.name in expected:
            files.append((audio, rttm if rttm.is_file() else None, expected.get(audio.name)))
        elif explicit:
            print(f"[der] skipped {audio}: no .rttm beside it and no --speakers count", file=sys.stderr)
    if not files:
        raise SystemExit("no audio file with a .rttm beside it (or a --speakers count) found")
    return files


def reference_turns(rttm: Path, audio: Path):
    """The turns of ``audio`` in ``rttm``: its stem's file id, or the only one there is."""
    from iam_cluster.pipeline.export import load_rttm

    by_file = load_rttm(rttm.read_text(encoding="utf-8"))
    if audio.stem in by_file:
        return by_file[audio.stem]
    if len(by_file) == 1:
        return next(iter(by_file.values()))
    raise SystemExit(f"{rttm}: no turns for file id {audio.stem!r} (has {', '.join(by_file) or 'none'})")


def to_annotation(turns, uri: str):
    from pyannote.core import Annotation, Segment

    annotation = Annotation(uri=uri)
    for i, turn in enumerate(turns):
        if turn.end > turn.start:
            annotation[Segment(turn.start, turn.end), i] = turn.speaker
    return annotation


def delivered(transcript, diarization) -> list:
    """The turns a diarized transcript delivers: ``merge`` gives the words speakers and keeps the
    diarizer's turns of the speakers who say something; the RTTM export writes them (or, where the
    diarizer heard no voice, the one speaker's segments). Read back from that export."""
    from iam_cluster.pipeline.export import load_rttm, to_rttm
    from iam_cluster.pipeline.merge import merge

    rttm = load_rttm(to_rttm(merge(transcript, diarization)))
    return next(iter(rttm.values()), [])


def decision_overrides(items: list[str]) -> dict:
    """``KEY=VALUE`` items as keyword arguments of ``EmbeddedDiarizer`` (typed as the Decision's fields)."""
    from dataclasses import fields

    from iam_cluster.pipeline.diarize.embedded import Decision

    types = {f.name: type(getattr(Decision(), f.name)) for f in fields(Decision) if f.name != "min_silence"}
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        if key not in types or not value:
            raise SystemExit(f"--decision {item!r}: expected KEY=VALUE with KEY one of {', '.join(types)}")
        kind = types[key]
        try:
            out[key] = value.lower() in ("1", "true", "yes", "on") if kind is bool else kind(value)
        except ValueError:
            raise SystemExit(f"--decision {item!r}: {key} takes a {kind.__name__}") from None
    return out


def run(args: argparse.Namespace, files, metrics: dict) -> list[FileResult]:
    """Transcribe, diarize and score every file; ``metrics`` (collar -> DER metric) accumulate."""
    from pyannote.core import Segment, Timeline

    from iam_cluster.pipeline.asr import WhisperASR
    from iam_cluster.pipeline.decode import decode_audio
    from iam_cluster.pipeline.diarize import make_diarizer
    from iam_cluster.pipeline.merge import join_shards
    from iam_cluster.pipeline.run import Pipeline
    from iam_cluster.pipeline.shard import shard
    from iam_cluster.pipeline.types import SAMPLE_RATE, Audio, SpeechRegion, TranscribeOptions
    from iam_cluster.pipeline.vad import SileroVad

    options = TranscribeOptions()
    pipe = Pipeline(WhisperASR(args.model, device=args.device, cpu_threads=args.threads),
                    settings_for(args.model).engine.batch_size)
    if args.diarizer == "pyannote":
        kwargs = {"pipeline": args.pipeline} if args.pipeline else {}
    else:
        kwargs = {"encoder": args.encoder, "segmentation_step": args.segmentation_step, "int8": not args.float32,
                  **decision_overrides(args.decision)}
    diarizer = make_diarizer(args.diarizer, **kwargs)
    vad = SileroVad()
    results: list[FileResult] = []
    for index, (path, rttm, expected) in enumerate(files):
        audio = decode_audio(path, max_duration=None)
        regions = vad(audio, options.vad, max_region=29.0)
        reference = reference_turns(rttm, path) if rttm else None
        ref_count = len({t.speaker for t in reference}) if reference is not None else expected
        if index == 0:
            # Model loads and first-call costs (lazy imports, allocations) are not timed.
            end = min(audio.duration, (regions[0].start if regions else 0.0) + WARM_UP_SECONDS)
            head = Audio(source=audio.source, samples=audio.samples[: int(end * SAMPLE_RATE)])
            head_regions = [SpeechRegion(r.start, min(r.end, end)) for r in regions if r.start < end - 0.1]
            pipe.transcribe_regions([head], [head_regions], options)
            diarizer(head, head_regions)
        start = time.perf_counter()
        (transcript,) = pipe.transcribe_regions([audio], [regions], options)
        asr_s = time.perf_counter() - start
        counts = {"num_speakers": ref_count} if args.oracle_speakers and ref_count else {}
        start = time.perf_counter()
        if args.shard_seconds:
            parts = [(s.offset, diarizer(s.audio, s.regions, **counts))
                     for s in shard(audio, regions, args.shard_seconds)]
            diarization = join_shards(parts)
        else:
            diarization = diarizer(audio, regions, **counts)
        diar_s = time.perf_counter() - start
        turns = delivered(transcript, diarization) if args.delivered else diarization.turns
        result = FileResult(path, audio.duration, ref_count, len({t.speaker for t in turns}), asr_s, diar_s)
        if reference is not None:
            uem = Timeline([Segment(0.0, audio.duration)])
            ref_ann = to_annotation(reference, path.stem)
            hyp_ann = to_annotation(turns, path.stem)
            for collar, metric in metrics.items():
                result.der[collar] = metric(ref_ann, hyp_ann, uem=uem, detailed=True)
        results.append(result)
        der0 = result.der.get(0.0, {}).get("diarization error rate")
        print(f"[der] {path.name}: {audio.duration:.1f} s, speakers {ref_count} -> {result.found_speakers}, "
              f"DER {'-' if der0 is None else f'{100 * der0:.1f} %'} (collar 0), ASR {asr_s:.2f} s, "
              f"diarization {diar_s:.2f} s", file=sys.stderr, flush=True)
    return results


def _pct(part: float, total: float) -> str:
    return f"{100 * part / total:.1f}" if total > 0 else "–"


def _der_cells(parts: dict[str, float] | None) -> list[str]:
    if not parts:
        return ["–"] * 4
    total = parts["total"]
    errors = sum(parts[c] for c in COMPONENTS)
    return [_pct(errors, total), *(_pct(parts[c], total) for c in COMPONENTS)]


def report(args: argparse.Namespace, results: list[FileResult], metrics: dict) -> str:
    """The Markdown report: command, environment, per-file table, totals."""
    c0, c1 = COLLARS
    head = ["file", "audio s", "ref spk", "found spk", "count ok",
            f"DER % (c={c0})", "miss %", "FA %", "conf %", f"DER % (c={c1})", "miss %", "FA %", "conf %",
            "ASR s", "diar s", "diar/ASR %"]
    rows = []
    for r in results:
        ok = "" if r.ref_speakers is None else ("yes" if r.ref_speakers == r.found_speakers else "no")
        rows.append([r.path.name, f"{r.duration:.1f}", "" if r.ref_speakers is None else str(r.ref_speakers),
                     str(r.found_speakers), ok, *_der_cells(r.der.get(c0)), *_der_cells(r.der.get(c1)),
                     f"{r.asr_s:.2f}", f"{r.diar_s:.2f}", _pct(r.diar_s, r.asr_s)])
    checked = [r for r in results if r.ref_speakers is not None]
    right = sum(r.ref_speakers == r.found_speakers for r in checked)
    asr, diar = sum(r.asr_s for r in results), sum(r.diar_s for r in results)
    scored = any(r.der for r in results)
    totals = {c: {k: m[k] for k in (*COMPONENTS, "total")} for c, m in metrics.items()} if scored else {}
    rows.append(["**total**", f"{sum(r.duration for r in results):.1f}", "", "", f"{right}/{len(checked)}",
                 *_der_cells(totals.get(c0)), *_der_cells(totals.get(c1)),
                 f"{asr:.2f}", f"{diar:.2f}", _pct(diar, asr)])
    table = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    table += ["| " + " | ".join(row) + " |" for row in rows]
    lines = [
        f"# DER benchmark: {args.label}", "",
        "Command: `" + " ".join(shlex.quote(a) for a in ["python", *sys.argv]) + "`", "",
        f"Environment: {environment(args)}", "",
        "Scoring: `pyannote.metrics` DiarizationErrorRate (optimal speaker mapping), "
        "`skip_overlap=False` (overlapped speech counted), UEM = whole file; pyannote's collar is "
        f"the total width removed around each reference boundary (c={c1}: ±{c1 / 2:g} s). "
        "Components are % of reference speech; totals are summed over files "
        f"({'oracle' if args.oracle_speakers else 'automatic'} speaker count). "
        + ("Scored: the transcript's RTTM export (`--delivered`: the diarizer's turns of speakers who say "
           "a word). " if args.delivered else "Scored: the diarizer's own turns. ") +
        "Times: wall seconds, after an untimed warm-up on the first file.", "",
        *table,
    ]
    if scored:
        lines.append("")
        lines += [f"Total DER at collar {c}: {100 * abs(m):.2f} %  " for c, m in metrics.items()]
    return "\n".join(lines) + "\n"


def environment(args: argparse.Namespace) -> str:
    import ctranslate2
    import pyannote.metrics

    cpu = cpu_name()
    parts = [f"CPU {cpu}", f"{os.cpu_count()} cores", f"threads {args.threads}",
             f"model {args.model}", f"ASR device {args.device}", f"diarizer {args.diarizer}",
             f"encoder {args.encoder if not args.cv else '/'.join(args.encoders)}",
             "encoder float32" if args.float32 else "encoder int8 after its first LSTM layer (CPU)",
             f"segmentation step {_step(args)}",
             *([f"decision {' '.join(args.decision)}"] if getattr(args, "decision", None) else []),
             f"shards of {args.shard_seconds:g} s, joined" if getattr(args, "shard_seconds", None) else "whole recordings",
             f"ctranslate2 {ctranslate2.__version__}", f"pyannote.metrics {pyannote.metrics.__version__}"]
    try:
        import torch

        parts.append(f"torch {torch.__version__}")
    except ImportError:
        pass
    if args.pipeline:
        parts.append(f"pipeline {args.pipeline}")
    return ", ".join(parts + [f"code {code_version()}"])


def _step(args: argparse.Namespace) -> str:
    if args.segmentation_step is not None:
        return f"{args.segmentation_step} s"
    from iam_cluster.pipeline.diarize.embedded import SEGMENTATION_STEP

    names = args.encoders if args.cv else [args.encoder]
    return "/".join(f"{SEGMENTATION_STEP.get(n, 5.0)} s" for n in names) + " (per encoder)"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    args.label = args.label or dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or RESULTS_DIR / f"der-{args.label}.md"
    files = collect(args.audio, parse_expectations(args.speakers))
    try:
        import torch

        # Only when it changes the count: calling it at all (even with torch's own default of one
        # thread per core) made the diarizer 5x slower next to CTranslate2 on a 2-core host
        # (0.73 s against 0.14 s per 30-s file), which the product never does.
        if args.threads != torch.get_num_threads():
            torch.set_num_threads(args.threads)
    except ImportError:
        pass
    if args.cv:
        from der_cv import run_cv

        text = run_cv(args, files)
        print(text)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        print(f"[der] written {out}", file=sys.stderr)
        return
    from pyannote.metrics.diarization import DiarizationErrorRate

    metrics = {c: DiarizationErrorRate(collar=c, skip_overlap=False) for c in COLLARS}
    results = run(args, files, metrics)
    text = report(args, results, metrics)
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(f"[der] written {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
