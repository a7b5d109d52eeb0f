"""Command line: ``iam-cluster transcribe PATH...`` (more commands join as the service grows)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from iam_cluster.errors import IAMError

#: Extensions picked up when a folder is given (a file named explicitly is always tried).
MEDIA_EXTENSIONS = frozenset(
    ".wav .flac .mp3 .ogg .oga .opus .m4a .aac .wma .aif .aiff .webm .mp4 .m4v .mkv .mov .avi".split()
)

log = logging.getLogger("iam_cluster")


def find_media(paths: Iterable[str]) -> list[tuple[Path, Path]]:
    """Expand files and folders (recursively) into ``(file, path relative to its root)`` pairs."""
    found: list[tuple[Path, Path]] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file() and f.suffix.lower() in MEDIA_EXTENSIONS:
                    found.append((f, f.relative_to(p)))
        else:
            found.append((p, Path(p.name)))
    return found


def output_stem(rel: Path, taken: set[Path], output_dir: Path) -> Path:
    """Where a file's outputs go: its relative path without suffix, made unique."""
    stem = output_dir / rel.with_suffix("")
    candidate, n = stem, 1
    while candidate in taken:
        candidate = stem.with_name(f"{stem.name}-{n}")
        n += 1
    taken.add(candidate)
    return candidate


def _transcribe(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    import msgspec

    from iam_cluster.pipeline.asr import WhisperASR
    from iam_cluster.pipeline.diarize import check_speaker_counts, make_diarizer
    from iam_cluster.pipeline.export import parse_formats, write
    from iam_cluster.pipeline.run import Pipeline
    from iam_cluster.pipeline.types import TranscribeOptions
    from iam_cluster.settings import get_settings

    try:
        formats = parse_formats(args.format)
        options = TranscribeOptions(
            language=args.language, task=args.task, beam_size=args.beam_size, batch_size=args.batch_size,
            word_timestamps=not args.no_word_timestamps, chunk_length=args.chunk_length,
            diarize=args.diarize or args.diarizer is not None or args.num_speakers is not None
            or args.min_speakers is not None or args.max_speakers is not None,
            num_speakers=args.num_speakers, min_speakers=args.min_speakers, max_speakers=args.max_speakers,
        )
        if "rttm" in formats and not options.diarize:
            raise ValueError("--format rttm needs --diarize")
        check_speaker_counts(args.num_speakers, args.min_speakers, args.max_speakers)
    except (ValueError, TypeError, msgspec.ValidationError, IAMError) as exc:
        print(f"iam-cluster: {exc}", file=sys.stderr)
        return 2
    media = find_media(args.paths)
    if not media:
        print("iam-cluster: no media files found", file=sys.stderr)
        return 2

    output_dir = Path(args.output_dir)
    taken: set[Path] = set()
    stems = {f: output_stem(rel, taken, output_dir) for f, rel in media}
    if args.cluster:
        return _transcribe_on_cluster(args, media, options, formats, stems, output_dir)

    settings = get_settings().models
    asr = WhisperASR(
        args.model or settings.name, args.device or settings.device,
        args.compute_type or settings.compute_type, args.cpu_threads or settings.cpu_threads,
        cache_dir=settings.cache_dir, allow_download=settings.allow_download,
    )
    diarizer = None
    if options.diarize:
        backend = args.diarizer or get_settings().diarization.backend
        diarizer = make_diarizer(backend, **get_settings().diarization.diarizer_kwargs(backend))
    pipeline = Pipeline(asr, diarizer=diarizer)
    quiet = args.quiet or not sys.stderr.isatty()
    files_bar = tqdm(total=len(media), desc="files", unit="file", disable=quiet, position=0)
    chunks_bar = tqdm(total=0, desc="chunks", unit="chunk", disable=quiet, position=1)

    failed = insights_failed = 0
    last_done = {"n": 0}

    def chunk_hook(step: str, completed: int, total: int) -> None:
        if step == "asr":
            if completed == 0:
                last_done["n"] = 0
                chunks_bar.total += total
                chunks_bar.refresh()
            else:
                chunks_bar.update(completed - last_done["n"])
                last_done["n"] = completed

    for path, result in pipeline.transcribe_paths([f for f, _ in media], options, chunk_hook):
        files_bar.update(1)
        if isinstance(result, IAMError):
            failed += 1
            tqdm.write(f"error: {result.message} [{result.code}]", file=sys.stderr)
            continue
        for fmt in formats:
            write(result, fmt, stems[path].with_suffix(stems[path].suffix + f".{fmt}"))
        if args.insights and not _write_insights(result, stems[path]):
            insights_failed += 1
        if quiet and not args.quiet:
            print(f"{path}: {len(result.segments)} segments, {result.duration:.1f} s", file=sys.stderr)
    files_bar.close()
    chunks_bar.close()
    ok = len(media) - failed
    print(f"{ok} transcribed, {failed} failed; outputs in {output_dir}", file=sys.stderr)
    return 1 if failed or insights_failed else 0


def _transcribe_on_cluster(args, media, options, formats, stems, output_dir) -> int:
    """Send files to a running Serve application, several at once so that they share batches."""
    from concurrent.futures import ThreadPoolExecutor

    from iam_cluster.pipeline.export import write
    from iam_cluster.serve.client import transcribe_remote

    failed = insights_failed = 0
    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        futures = {f: pool.submit(transcribe_remote, f, options, args.cluster) for f, _ in media}
        for path, future in futures.items():
            try:
                result = future.result()
            except IAMError as exc:
                failed += 1
                print(f"error: {exc.message} [{exc.code}]", file=sys.stderr)
                continue
            for fmt in formats:
                write(result, fmt, stems[path].with_suffix(stems[path].suffix + f".{fmt}"))
            if args.insights and not _write_insights(result, stems[path]):
                insights_failed += 1
    print(f"{len(media) - failed} transcribed, {failed} failed; outputs in {output_dir}", file=sys.stderr)
    return 1 if failed or insights_failed else 0


def _write_insights(transcript, stem: Path) -> bool:
    """Writes ``STEM.insights.json`` and the Markdown report ``STEM.insights.md``; False if they failed."""
    import msgspec

    from iam_cluster.insights import service
    from iam_cluster.insights.report import to_json, to_markdown
    from iam_cluster.settings import get_settings

    outcome = service.compute(transcript, msgspec.structs.replace(get_settings().insights, enabled=True))
    if outcome.insights is None:
        print(f"error: insights of {transcript.source} failed: {outcome.error}", file=sys.stderr)
        return False
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(stem.suffix + ".insights.json").write_text(to_json(outcome.insights), encoding="utf-8")
    title = f"Meeting insights: {Path(transcript.source).name}"
    stem.with_suffix(stem.suffix + ".insights.md").write_text(to_markdown(outcome.insights, title),
                                                             encoding="utf-8")
    return True


def _migrate(args: argparse.Namespace) -> int:
    from iam_cluster.db.migrate import apply_migrations
    from iam_cluster.settings import get_settings

    applied = apply_migrations(args.database_url or get_settings().database.url)
    for label in applied:
        print(f"applied {label}")
    if not applied:
        print("schema up to date; nothing to apply")
    return 0


def _run_api(args: argparse.Namespace) -> int:
    from iam_cluster.api.app import serve_api

    serve_api(args.host, args.port)
    return 0


def _run_worker(args: argparse.Namespace) -> int:
    from iam_cluster.worker.loop import run_worker

    return run_worker(once=args.once)


def _run_billing_sync(args: argparse.Namespace) -> int:
    import asyncio

    from iam_cluster.billing.usage_sync import run_sync
    from iam_cluster.settings import get_settings

    return asyncio.run(run_sync(get_settings(), once=args.once, interval=args.interval))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="iam-cluster", description="IAM Cluster speech transcription")
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("transcribe", help="transcribe audio/video files or folders")
    t.add_argument("paths", nargs="+", metavar="PATH", help="files or folders (searched recursively)")
    t.add_argument("--model", help="tiny.en (default), base, a CTranslate2 folder, or large-v3/turbo/...")
    t.add_argument("--language", help="language code; detected per file when omitted (multilingual models)")
    t.add_argument("--task", choices=["transcribe", "translate"], default="transcribe")
    t.add_argument("--format", default="json,txt,srt,vtt", help="comma-separated: json,txt,srt,vtt,rttm")
    t.add_argument("--output-dir", default=".", help="where outputs go (default: current folder)")
    t.add_argument("--batch-size", type=int, default=8, help="30-s windows per model call")
    t.add_argument("--beam-size", type=int, default=5)
    t.add_argument("--chunk-length", type=float, default=30.0, help="longest window, seconds")
    t.add_argument("--device", choices=["auto", "cpu", "cuda"], help="default: auto")
    t.add_argument("--compute-type", help="auto (int8 on CPU, float16 on CUDA), int8, float16, ...")
    t.add_argument("--cpu-threads", type=int, default=0, help="0: all cores")
    t.add_argument("--no-word-timestamps", action="store_true", help="leave words out of the outputs")
    d = t.add_argument_group("speakers")
    d.add_argument("--diarize", action="store_true", help="attribute words and segments to speakers")
    d.add_argument("--diarizer", choices=["embedded", "pyannote"], help="default: embedded (offline, CPU)")
    d.add_argument("--num-speakers", type=int, help="exact number of speakers, when known")
    d.add_argument("--min-speakers", type=int)
    d.add_argument("--max-speakers", type=int)
    t.add_argument("--insights", action="store_true",
                   help="also write NAME.insights.json and a Markdown report NAME.insights.md (summary, "
                        "action items, keywords, sentiment, speakers)")
    t.add_argument("--cluster", nargs="?", const="http://127.0.0.1:8000", metavar="ADDRESS",
                   help="send files to a running Serve application (default address http://127.0.0.1:8000)")
    t.add_argument("--concurrency", type=int, default=8, help="files in flight with --cluster")
    t.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    t.set_defaults(func=_transcribe)
    a = sub.add_parser("api", help="run the HTTP job API")
    a.add_argument("--host", default="127.0.0.1")
    a.add_argument("--port", type=int, default=8080)
    a.set_defaults(func=lambda args: _run_api(args))
    w = sub.add_parser("worker", help="run a job worker (claims queued transcription jobs)")
    w.add_argument("--once", action="store_true", help="process the jobs queued now, then exit")
    w.set_defaults(func=lambda args: _run_worker(args))
    b = sub.add_parser("billing-sync", help="report metered usage to Stripe (exactly once per ledger row)")
    b.add_argument("--once", action="store_true", help="report what is there now, then exit")
    b.add_argument("--interval", type=float, default=60.0, help="seconds between runs")
    b.set_defaults(func=lambda args: _run_billing_sync(args))
    m = sub.add_parser("migrate", help="apply the database migrations not yet applied")
    m.add_argument("--database-url", help="PostgreSQL URL (default: DATABASE_URL from the environment)")
    m.set_defaults(func=_migrate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except IAMError as exc:
        print(f"iam-cluster: {exc.message} [{exc.code}]", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
