"""Ray job: transcribe a folder, zip/tar archive, S3 prefix or manifest of recordings, each file once.

Locally (starts a Ray of its own)::

    python jobs/transcribe_archive.py recordings.zip --output out/

On a cluster::

    ray job submit --working-dir . -- python jobs/transcribe_archive.py s3://bucket/calls/ \\
        --output s3://bucket/transcripts/ --workers 4 --gpus-per-worker 1

Writes ``OUT/<path>.{json,txt,srt,vtt}`` mirroring the input, ``OUT/manifest.jsonl`` (one line per
input) and ``OUT/summary.json``. A rerun skips what the manifest records as done. Exit status 0 once
every input has a line (failures included), 2 when the input is refused (unsafe names, over limits).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing


def _store_mb(text: str) -> int:
    """``--object-store-mb``: Ray refuses an object store under 75 MiB."""
    mb = int(text)
    if mb < 75:
        raise argparse.ArgumentTypeError(f"{mb} MiB is below Ray's smallest object store, 75 MiB")
    return mb


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("input", help="folder, .zip/.tar/.tar.gz archive, s3://bucket/prefix, or .jsonl/.csv manifest")
    p.add_argument("--output", required=True, help="folder or s3://bucket/prefix for outputs and manifest.jsonl")
    p.add_argument("--format", default="json,txt,srt,vtt", help="comma-separated: json,txt,srt,vtt,rttm")
    p.add_argument("--model", help="default: IAM_MODEL (tiny.en)")
    p.add_argument("--language", help="language code; detected per file when omitted (multilingual models)")
    p.add_argument("--diarize", action="store_true", help="attribute words to speakers")
    p.add_argument("--batch-size", type=int, help="windows per model call (default: IAM_BATCH_SIZE)")
    p.add_argument("--cpu-threads", type=int, help="CPU threads per ASR worker, one model copy each up to 4 "
                   "(default: IAM_CPU_THREADS, else the node's cores / workers)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"])
    r = p.add_argument_group("Ray")
    r.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")
    r.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (default: all)")
    r.add_argument("--object-store-mb", type=_store_mb, help="object store of the local Ray, MiB (default: 128; the "
                   "pages the packs touch count in the ASR worker's RSS)")
    r.add_argument("--workers", type=int, default=1, help="ASR actors (one model each)")
    r.add_argument("--gpus-per-worker", type=float, default=0.0, help="num_gpus per ASR actor (0: CPU actors)")
    r.add_argument("--cpus-per-worker", type=float, default=1.0)
    r.add_argument("--group-files", type=int, default=64, help="files read by one task (default: a pack of short files)")
    r.add_argument("--pack-windows", type=int, default=64, help="30-s windows of speech per ASR pack")
    lim = p.add_argument_group("archive limits")
    lim.add_argument("--max-members", type=int, default=10_000)
    lim.add_argument("--max-member-mb", type=float, default=512.0, help="uncompressed MiB per member")
    lim.add_argument("--max-total-gb", type=float, default=50.0, help="uncompressed GiB per archive")
    lim.add_argument("--s3-endpoint", help="S3 endpoint URL (MinIO, moto); default AWS_ENDPOINT_URL")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    return p


def config_from(args: argparse.Namespace):
    import msgspec

    from iam_cluster.archive.job import JobConfig
    from iam_cluster.archive.limits import ArchiveLimits
    from iam_cluster.archive.outputs import Sink
    from iam_cluster.archive.sources import open_source
    from iam_cluster.errors import ConfigError
    from iam_cluster.pipeline.export import parse_formats
    from iam_cluster.pipeline.models import is_multilingual
    from iam_cluster.pipeline.types import parse_options
    from iam_cluster.settings import get_settings

    s = get_settings()
    replace = msgspec.structs.replace
    given = {"name": args.model, "cpu_threads": args.cpu_threads, "device": args.device}
    models = replace(s.models, **{k: v for k, v in given.items() if v is not None})
    engine = replace(s.engine, batch_size=args.batch_size) if args.batch_size else s.engine
    try:
        formats = tuple(parse_formats(args.format))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    options = parse_options({"language": args.language, "diarize": args.diarize} if args.language else
                            {"diarize": args.diarize})
    options.check_model(models.name, is_multilingual(models.name))
    if "rttm" in formats and not options.diarize:
        raise ConfigError("--format rttm needs --diarize")
    limits = ArchiveLimits(args.max_members, int(args.max_member_mb * 1024**2), int(args.max_total_gb * 1024**3))
    return JobConfig(source=open_source(args.input, limits, args.s3_endpoint),
                     sink=Sink(args.output if args.output.startswith("s3://") else str(Path(args.output).resolve()),
                               args.s3_endpoint),
                     options=options, formats=formats, models=models, engine=engine, audio=s.audio,
                     diarization=s.diarization, workers=args.workers, gpus_per_worker=args.gpus_per_worker,
                     cpus_per_worker=args.cpus_per_worker, group_files=args.group_files,
                     pack_windows=args.pack_windows)


def main(argv: list[str] | None = None) -> int:
    import msgspec

    from iam_cluster.archive.job import run
    from iam_cluster.errors import IAMError

    args = build_parser().parse_args(argv)
    try:
        config = config_from(args)
        summary = run(config, None if args.quiet else lambda line: print(line, file=sys.stderr, flush=True),
                      address=args.address, num_cpus=args.num_cpus,
                      object_store_mb=args.object_store_mb)
    except IAMError as exc:
        print(f"transcribe_archive: {exc.message} [{exc.code}]", file=sys.stderr)
        return 2
    print(msgspec.json.format(msgspec.json.encode(summary)).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
