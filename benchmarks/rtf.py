"""Real-time factor, peak memory and WER of our pipeline against faster-whisper, on one model.

Every system transcribes the same file list with the same model files, device, compute type,
thread count and beam size. Each runs in its own subprocess (this script re-invoked with
``--_worker SYSTEM``) so that its peak RSS is its own; model load and one warm-up call on the
first file are not timed. The systems take turns, a file (or the whole list) and a round at a
time, so a host whose speed drifts during the run (a shared VM) slows each of them alike.

Example::

    python benchmarks/rtf.py --audio /work/shared/data/meeting_long_dev.wav --threads 2 --label long-cpu
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import (code_version, collect_audio, cpu_name, gpu_memory_mb, normalise, our_runner, peak_rss_mb,
                    settings_for, whisper_normalise)
from rtf_files import per_file_report

#: ``ours_tokens`` / ``ours_notokens``: ours with IAM_TIMESTAMP_TOKENS=on / off (``ours``: the
#: settings' value, ``auto`` by default: off on a GPU, on on CPU).
#: ``ours_onecopy``: ours on ONE CPU copy of the model with all the threads, fed half the batch
#: (what each of the default two single-thread copies gets): one encoder at work at a time.
#: ``ours_oneencode`` / ``ours_twoencodes``: ours with the copies taking turns at the encoder or not
#: (``IAM_CPU_ONE_ENCODE`` on / off; ``ours``: unset, on with the window-by-window schedule).
#: ``ours_window`` / ``ours_part``: ours with IAM_CPU_SCHEDULE=window / part (``ours``: auto).
#: ``ours_keepheap`` / ``ours_mmapheap``: ours with IAM_MALLOC_KEEP_MB=256 / 0 (large buffers kept in
#: the C heap, or mapped and unmapped by glibc each time; ``ours``: the settings' value).
#: ``ours_blas1`` / ``ours_blasall``: ours with IAM_BLAS_THREADS=1 / 0 (numpy's BLAS on one thread, or
#: on its own, one per core).
SYSTEMS = ("ours", "ours_nowords", "ours_tokens", "ours_notokens", "ours_onecopy", "ours_oneencode", "ours_twoencodes",
           "ours_window", "ours_part", "ours_keepheap", "ours_mmapheap",
           "ours_blas1", "ours_blasall", "fw_sequential", "fw_sequential_vad", "fw_batched",
           "fw_batched_words")
#: What runs without ``--systems``: ours against the three faster-whisper pipelines users compare
#: with (sequential beam search, the batched pipeline, the batched pipeline with word timestamps).
#: The ``ours_*`` variants are A/B runs of one setting, named when wanted.
DEFAULT_SYSTEMS = ("ours", "fw_sequential", "fw_batched", "fw_batched_words")
RESULT_TAG = "RTF-RESULT "
STEP_TAG = "RTF-STEP "
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--audio", nargs="+", required=True, help="audio files and/or folders (recursive)")
    p.add_argument("--model", default="tiny.en", help="tiny.en, base or a CTranslate2 folder")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--compute-type", default="auto", help="auto (int8 on CPU, float16 on CUDA) or a type")
    p.add_argument("--threads", type=int, default=2, help="CTranslate2 intra-op threads for every system")
    p.add_argument("--beam-size", type=int, default=5)
    p.add_argument("--batch-size", type=int, help="for ours and fw_batched (default: the settings', IAM_BATCH_SIZE)")
    p.add_argument("--repeat", type=int, default=1, help="repeat the file list N times")
    p.add_argument("--rounds", type=int, default=1, help="time the whole list N times; report the median")
    p.add_argument("--per-file", action="store_true",
                   help="time each file on its own: per-file ratios, their minimum and median, stages")
    p.add_argument("--systems", default=",".join(DEFAULT_SYSTEMS),
                   help=f"comma-separated subset of {SYSTEMS} (default: {','.join(DEFAULT_SYSTEMS)})")
    p.add_argument("--label", help="name of the run (default: date and time)")
    p.add_argument("--out", type=Path, help="Markdown report (default benchmarks/results/rtf-LABEL.md)")
    p.add_argument("--texts", type=Path, help="also write each system's text of each file to TEXTS/SYSTEM/N-NAME.txt")
    p.add_argument("--_worker", choices=SYSTEMS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.batch_size = args.batch_size or settings_for(args.model).engine.batch_size
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = set(args.systems) - set(SYSTEMS)
    if unknown:
        p.error(f"unknown systems {sorted(unknown)}; choose from {SYSTEMS}")
    return args


def resolved_setup(args: argparse.Namespace) -> tuple[Path, str, str]:
    """The model folder, device and compute type every system will use."""
    from iam_cluster.pipeline.models import resolve_compute_type, resolve_device, resolve_model

    ref = resolve_model(args.model, settings_for(args.model).models.cache_dir)
    device = resolve_device(args.device)
    return ref.path, device, resolve_compute_type(args.compute_type, device)


def make_system(system: str, args: argparse.Namespace):
    """Load the model once and return ``run(paths) -> list of texts`` for one system."""
    model_path, device, compute_type = resolved_setup(args)
    if system.startswith("ours"):
        from iam_cluster.pipeline.types import TranscribeOptions

        tokens = {"ours_tokens": "on", "ours_notokens": "off"}.get(system)
        one = system == "ours_onecopy"
        runner = our_runner(str(model_path), device, compute_type, args.threads,
                            batch_size=max(1, args.batch_size // 2) if one else args.batch_size,
                            timestamp_tokens=tokens, cpu_replicas=1 if one else None,
                            cpu_one_encode={"ours_oneencode": True, "ours_twoencodes": False}.get(system),
                            cpu_schedule={"ours_window": "window", "ours_part": "part"}.get(system),
                            malloc_keep_mb={"ours_keepheap": 256, "ours_mmapheap": 0}.get(system),
                            blas_threads={"ours_blas1": 1, "ours_blasall": 0}.get(system))
        stats = runner.pipeline.stats
        options = TranscribeOptions(beam_size=args.beam_size, word_timestamps=system != "ours_nowords")

        def run(paths: list[Path]) -> list[str]:
            texts = []
            for path, result in runner.run_many(paths, options):
                if not hasattr(result, "text"):
                    raise RuntimeError(f"{path}: {result}")
                texts.append(result.text)
            return texts

        run.stats = stats
        return run

    from faster_whisper import BatchedInferencePipeline, WhisperModel

    model = WhisperModel(str(model_path), device=device, compute_type=compute_type, cpu_threads=args.threads)
    if system in ("fw_batched", "fw_batched_words"):
        batched = BatchedInferencePipeline(model)
        words = system == "fw_batched_words"

        def one(path: Path) -> str:
            segments, _ = batched.transcribe(
                str(path), batch_size=args.batch_size, beam_size=args.beam_size, word_timestamps=words
            )
            return " ".join(s.text.strip() for s in segments if s.text.strip())
    else:
        vad = system == "fw_sequential_vad"

        def one(path: Path) -> str:
            segments, _ = model.transcribe(str(path), beam_size=args.beam_size, vad_filter=vad)
            return " ".join(s.text.strip() for s in segments if s.text.strip())

    return lambda paths: [one(p) for p in paths]


def worker(args: argparse.Namespace) -> None:
    """Child process: load, warm up on the first file, then time one group (the whole list, or
    one file with ``--per-file``) each time the parent names one on stdin; at the end of stdin,
    print JSON: per group its times, texts and (ours) time per stage and counts, averaged over
    its runs. The parent takes the systems in turn, so a host whose speed drifts (a shared VM)
    slows every system alike."""
    paths = collect_audio(args.audio, args.repeat)
    run = make_system(args._worker, args)
    stats = getattr(run, "stats", None)
    run(paths[:1])
    groups = [[p] for p in paths] if args.per_file else [paths]
    walls: list[list[float]] = [[] for _ in groups]
    texts: list[list[str]] = [[] for _ in groups]
    sums: list[dict] = [{} for _ in groups]
    print(STEP_TAG + "ready", flush=True)
    for line in sys.stdin:
        i = int(line)
        if stats is not None:
            stats.reset()
        start = time.perf_counter()
        texts[i] = run(groups[i])
        walls[i].append(time.perf_counter() - start)
        if stats is not None:
            for kind, values in stats.snapshot().items():
                for name, v in values.items():
                    sums[i].setdefault(kind, {})[name] = sums[i].get(kind, {}).get(name, 0) + v
        print(STEP_TAG + f"{walls[i][-1]:.3f}", flush=True)
    stages = [{k: {n: v / max(1, len(w)) for n, v in d.items()} for k, d in s.items()} for s, w in zip(sums, walls)]
    gpu_mb = gpu_memory_mb() if resolved_setup(args)[1] == "cuda" else None
    result = {"wall": sum(statistics.median(t) for t in walls), "walls": walls, "peak_mb": peak_rss_mb(),
              "gpu_mb": gpu_mb, "texts": [t for ts in texts for t in ts],
              "stages": stages if stats is not None else []}
    print(RESULT_TAG + json.dumps(result), flush=True)


class Worker:
    """One system's worker process, driven a group at a time."""

    def __init__(self, system: str) -> None:
        self.system = system
        cmd = [sys.executable, str(Path(__file__).resolve()), *sys.argv[1:], "--_worker", system]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.seen: list[str] = []

    def _line(self, tag: str) -> str:
        for line in self.proc.stdout:
            self.seen.append(line)
            if line.startswith(tag):
                return line[len(tag):].strip()
        self.proc.wait()
        raise SystemExit(f"{self.system} failed (exit {self.proc.returncode}):\n{''.join(self.seen)[-2000:]}")

    def ready(self) -> None:
        self._line(STEP_TAG)

    def time(self, group: int) -> float:
        self.proc.stdin.write(f"{group}\n")
        self.proc.stdin.flush()
        return float(self._line(STEP_TAG))

    def result(self) -> dict:
        self.proc.stdin.close()
        out = json.loads(self._line(RESULT_TAG))
        self.proc.wait()
        return out


def run_systems(systems: list[str], groups: int, rounds: int) -> dict[str, dict]:
    """Time every group ``rounds`` times on every system, the systems taking turns (their order
    turning each round), and return each system's result."""
    workers = {s: Worker(s) for s in systems}
    for w in workers.values():
        w.ready()
    for g in range(groups):
        for r in range(max(1, rounds)):
            order = systems[r % len(systems):] + systems[: r % len(systems)]
            for s in order:
                workers[s].time(g)
    return {s: workers[s].result() for s in systems}


def word_errors(references: list[str | None], hypotheses: list[str], norm=normalise) -> tuple[int, int] | None:
    """Total word errors and total reference words over the files that have a reference."""
    import jiwer

    errors = words = 0
    for ref, hyp in zip(references, hypotheses):
        if ref is None:
            continue
        ref_n, hyp_n = norm(ref), norm(hyp)
        n = len(ref_n.split())
        if n == 0:
            continue
        m = jiwer.process_words(ref_n, hyp_n)
        errors += m.substitutions + m.deletions + m.insertions
        words += n
    return (errors, words) if words else None


def audio_seconds(paths: list[Path]) -> float:
    """Total duration of the list (each distinct file decoded once)."""
    from faster_whisper.audio import decode_audio

    cache: dict[Path, float] = {}
    for p in paths:
        if p not in cache:
            cache[p] = len(decode_audio(str(p), sampling_rate=16000)) / 16000
    return sum(cache[p] for p in paths)


def environment(args: argparse.Namespace) -> str:
    """One line: CPU, cores, threads, library versions, model, compute type, device (and GPU)."""
    import ctranslate2
    import faster_whisper

    cpu = cpu_name()
    model_path, device, compute_type = resolved_setup(args)
    parts = [
        f"CPU {cpu}", f"{os.cpu_count()} cores", f"threads {args.threads}",
        f"ctranslate2 {ctranslate2.__version__}", f"faster-whisper {faster_whisper.__version__}",
        f"model {args.model} ({model_path})", f"compute {compute_type}", f"device {device}",
        f"beam {args.beam_size}", f"batch {args.batch_size}", f"wall = median of {args.rounds} round(s)",
        f"code {args.code}",
    ]
    if device == "cuda":
        gpu = f"{ctranslate2.get_cuda_device_count()} CUDA device(s)"
        if shutil.which("nvidia-smi"):
            names = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                                   capture_output=True, text=True).stdout.strip().replace("\n", ", ")
            gpu += f": {names}"
        parts.append(gpu)
    return ", ".join(parts)


def report(args: argparse.Namespace, paths: list[Path], results: dict[str, dict]) -> str:
    """The Markdown report: command, environment, per-system table, ratios to ours."""
    refs = []
    for p in paths:
        ref = p.with_suffix(".txt")
        refs.append(ref.read_text(encoding="utf-8") if ref.is_file() else None)
    seconds = audio_seconds(paths)
    rows, xrt, wer, wer_w = [], {}, {}, {}
    gpu_head = " GPU MB held at the end |" if any(r.get("gpu_mb") is not None for r in results.values()) else ""
    for system, r in results.items():
        xrt[system] = seconds / r["wall"]
        counts = word_errors(refs, r["texts"])
        wer[system] = 100.0 * counts[0] / counts[1] if counts else None
        wer_cell = f"{wer[system]:.2f} ({counts[0]}/{counts[1]})" if counts else ""
        counts_w = word_errors(refs, r["texts"], whisper_normalise)
        wer_w[system] = 100.0 * counts_w[0] / counts_w[1] if counts_w else None
        wer_cell += f" | {wer_w[system]:.2f} ({counts_w[0]}/{counts_w[1]})" if counts_w else " |"
        gpu = (" – |" if r.get("gpu_mb") is None else f" {r['gpu_mb']:.0f} |") if gpu_head else ""
        rows.append(f"| {system} | {len(paths)} | {seconds:.1f} | {r['wall']:.2f} "
                    f"| {r['wall'] / seconds:.4f} | {xrt[system]:.1f} | {r['peak_mb']:.0f} |{gpu} {wer_cell} |")
    lines = [
        f"# RTF benchmark: {args.label}", "",
        "Command: `" + " ".join(shlex.quote(a) for a in ["python", *sys.argv]) + "`", "",
        f"Environment: {environment(args)}", "",
        "| system | files | audio s | wall s | RTF | x real time | peak RSS MB |" + gpu_head
        + " WER % (errors/words) | WER % Whisper-normalised |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|" + "---:|" * bool(gpu_head), *rows,
    ]
    if "ours" in results and len(results) > 1:
        lines += ["", "| ours vs | speed ratio (x-RT ours / peer) | WER ours − peer (points) "
                  "| Whisper-normalised WER ours − peer |", "|---|---:|---:|---:|"]
        for system in results:
            if system in ("ours", "ours_nowords"):
                continue
            both = wer["ours"] is not None and wer[system] is not None
            diff = f"{wer['ours'] - wer[system]:+.2f}" if both else ""
            both = wer_w["ours"] is not None and wer_w[system] is not None
            diff += f" | {wer_w['ours'] - wer_w[system]:+.2f}" if both else " |"
            lines.append(f"| {system} | {xrt['ours'] / xrt[system]:.2f} | {diff} |")
    return "\n".join(lines) + "\n"


def write_texts(folder: Path, paths: list[Path], results: dict[str, dict]) -> None:
    """Each system's text of each file (numbered, as a file may appear twice), to diff systems."""
    for system, result in results.items():
        (folder / system).mkdir(parents=True, exist_ok=True)
        for i, (path, text) in enumerate(zip(paths, result["texts"])):
            (folder / system / f"{i:03d}-{path.stem}.txt").write_text(text + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args._worker:
        worker(args)
        return
    args.label = args.label or dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or RESULTS_DIR / f"rtf-{args.label}.md"
    paths = collect_audio(args.audio, args.repeat)
    args.code = code_version()
    print(f"[rtf] {', '.join(args.systems)}: {len(paths)} files, taking turns ...", file=sys.stderr, flush=True)
    results = run_systems(args.systems, len(paths) if args.per_file else 1, args.rounds)
    for system, result in results.items():
        print(f"[rtf] {system}: {result['wall']:.2f} s", file=sys.stderr, flush=True)
    text = report(args, paths, results)
    if args.per_file:
        text += per_file_report(paths, results)
    if code_version() != args.code:
        text += f"\n**Warning:** iam_cluster changed during the run (now {code_version()}); rerun.\n"
    print(text)
    if args.texts:
        write_texts(args.texts, paths, results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(f"[rtf] written {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
