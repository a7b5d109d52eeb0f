"""Command line: ``iam-cluster transcribe PATH...`` (more commands join as the service grows)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from iam_cluster.errors import ConfigError, IAMError

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


def _settings(args: argparse.Namespace):
    """The environment's settings with this command line's overrides."""
    import msgspec

    from iam_cluster.settings import get_settings

    s = get_settings()
    replace = msgspec.structs.replace
    models = {k: v for k, v in dict(name=args.model, device=args.device, compute_type=args.compute_type,
                                    cpu_threads=args.cpu_threads).items() if v is not None}
    engine = {"batch_size": args.batch_size} if args.batch_size is not None else {}
    return replace(
        s, models=replace(s.models, **models), engine=replace(s.engine, **engine),
        diarization=replace(s.diarization, backend=args.diarizer or s.diarization.backend),
        serve=replace(s.serve, address=args.cluster) if args.cluster else s.serve,
    )


def _options(args: argparse.Namespace, model: str):
    from iam_cluster.pipeline.models import is_multilingual
    from iam_cluster.pipeline.types import parse_options

    counts = (args.num_speakers, args.min_speakers, args.max_speakers)
    given = dict(language=args.language, task=args.task, beam_size=args.beam_size, chunk_length=args.chunk_length,
                 num_speakers=args.num_speakers, min_speakers=args.min_speakers, max_speakers=args.max_speakers)
    options = parse_options({
        **{k: v for k, v in given.items() if v is not None}, "word_timestamps": not args.no_word_timestamps,
        "diarize": args.diarize or args.diarizer is not None or any(c is not None for c in counts),
    })
    options.check_model(model, is_multilingual(model))
    return options


def _transcribe(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from iam_cluster.pipeline.export import parse_formats, write
    from iam_cluster.runner import make_runner

    settings = _settings(args)
    try:
        formats = parse_formats(args.format)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    options = _options(args, settings.models.name)
    if "rttm" in formats and not options.diarize:
        raise ConfigError("--format rttm needs --diarize")
    media = find_media(args.paths)
    if not media:
        raise ConfigError("no media files found")
    missing = [f for f, _ in media if not f.exists()]
    if missing:
        raise ConfigError(f"{missing[0]}: no such file or folder")

    output_dir = Path(args.output_dir)
    taken: set[Path] = set()
    stems = {f: output_stem(rel, taken, output_dir) for f, rel in media}
    quiet = args.quiet or not sys.stderr.isatty()
    files_bar = tqdm(total=len(media), desc="files", unit="file", disable=quiet, position=0)
    chunks_bar = tqdm(total=0, desc="chunks", unit="chunk", disable=quiet, position=1)
    last_done = {"n": 0}

    def chunk_hook(step: str, completed: int, total: int) -> None:
        if step != "asr":
            return
        if completed == 0:
            last_done["n"] = 0
            chunks_bar.total += total
            chunks_bar.refresh()
        else:
            chunks_bar.update(completed - last_done["n"])
            last_done["n"] = completed

    failed = insights_failed = 0
    for path, result in make_runner(settings).run_many([f for f, _ in media], options, chunk_hook):
        files_bar.update(1)
        if isinstance(result, IAMError):
            failed += 1
            tqdm.write(f"error: {result.message} [{result.code}]", file=sys.stderr)
            continue
        for fmt in formats:
            write(result, fmt, stems[path].with_suffix(stems[path].suffix + f".{fmt}"))
        if args.insights and not _write_insights(result, stems[path], settings.insights):
            insights_failed += 1
        if quiet and not args.quiet:
            print(f"{path}: {len(result.segments)} segments, {result.duration:.1f} s", file=sys.stderr)
    files_bar.close()
    chunks_bar.close()
    print(f"{len(media) - failed} transcribed, {failed} failed; outputs in {output_dir}", file=sys.stderr)
    return 1 if failed or insights_failed else 0


def _write_insights(transcript, stem: Path, settings) -> bool:
    """Writes ``STEM.insights.json`` and the Markdown report ``STEM.insights.md``; False if they failed."""
    import msgspec

    from iam_cluster.insights import service
    from iam_cluster.insights.report import to_json, to_markdown

    outcome = service.compute(transcript, msgspec.structs.replace(settings, enabled=True))
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

    applied = apply_migrations(args.database_url or get_settings().database.require_url())
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
    t.add_argument("--task", choices=["transcribe", "translate"])
    t.add_argument("--format", default="json,txt,srt,vtt", help="comma-separated: json,txt,srt,vtt,rttm")
    t.add_argument("--output-dir", default=".", help="where outputs go (default: current folder)")
    t.add_argument("--batch-size", type=int, help="30-s windows per model call (default: IAM_BATCH_SIZE, 8)")
    t.add_argument("--beam-size", type=int, help="default 5")
    t.add_argument("--chunk-length", type=float, help="longest window, seconds (default 30)")
    t.add_argument("--device", choices=["auto", "cpu", "cuda"], help="default: auto")
    t.add_argument("--compute-type", help="auto (int8 on CPU, float16 on CUDA), int8, float16, ...")
    t.add_argument("--cpu-threads", type=int,
                   help="0: all cores; one model copy per thread, up to 4 (default: IAM_CPU_THREADS, 0)")
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
    """Run a command; a configuration or usage error is one line on stderr and exit status 2."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except IAMError as exc:
        print(f"iam-cluster: {exc.message} [{exc.code}]", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
