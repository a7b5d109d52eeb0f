"""Archive job on Ray Data vs the CLI folder run vs faster-whisper file by file, on one zipped set.

    flock /work/bench.lock python benchmarks/archive.py tests/data/spk*_snt*.wav --repeat 50
    flock /work/bench.lock python benchmarks/archive.py tests/data/spk*_snt*.wav --rss-sizes 100,2000 --only archive
    flock /work/bench.lock python benchmarks/archive.py tests/data/spk*_snt*.wav --resume 200
    flock /work/bench.lock python benchmarks/archive.py tests/data/spk*_snt*.wav --on-cluster --rounds 3 --only archive,cli

Prints wall time, x real time and WER of each system and the ratios of the archive job to the two
peers (the issue's targets: >= 3x faster-whisper BatchedInferencePipeline file by file, >= 0.9x the
CLI folder run), and with ``--rss-sizes`` the peak RSS of the job's driver and of its largest Ray
worker for each archive size (flat: within 20 % from the smallest to the largest), and with
``--resume N`` how many files a rerun redoes after the job was killed half-way (target: <= 10 %).
Each system runs in its own process. The archive job's wall time includes starting its local Ray;
its summary also gives the time from the first file read to the last output written, and the
ratios are printed both ways. With ``--on-cluster`` the job is submitted the way ``ray job submit``
runs it: to a Ray cluster already running on this machine (``ray start --head``, started and stopped
by the benchmark, one small warm-up job first), so Ray's own start-up and shut-down are not in its
wall time; the job's Ray workers are then the cluster's, and their RSS is not measured.
``--rounds N`` runs the systems in turn N times and reports the median wall time of each.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

from common import (
    code_version,
    collect_audio,
    command_line,
    cpu_name,
    free_port,
    normalise,
    save_report,
)

ROOT = Path(__file__).resolve().parents[1]


def _zip(paths: list[Path], out: Path) -> None:
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        for i, p in enumerate(paths):
            zf.write(p, f"part{i % 7}/{i:05d}_{p.name}")


def _folder(paths: list[Path], out: Path) -> None:
    for i, p in enumerate(paths):
        dst = out / f"part{i % 7}" / f"{i:05d}_{p.name}"
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(p.read_bytes())


def _shmem(pid: int) -> int:
    """Bytes of a process's RSS that are shared memory (for a Ray worker: the object store's pages)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("RssShmem:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class RssWatch:
    """Peak RSS of a process and, separately, of the largest of its descendants (Ray's workers); also
    the largest descendant's peak without shared memory (the object store's pages it has touched)."""

    def __init__(self, pid: int) -> None:
        import psutil

        self.proc, self.driver, self.worker, self.own = psutil.Process(pid), 0, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.wait(0.2):
            try:
                self.driver = max(self.driver, self.proc.memory_info().rss)
                kids = self.proc.children(recursive=True)
            except psutil.Error:
                return
            for k in kids:
                try:
                    if "python" in k.name() or "ray::" in " ".join(k.cmdline()[:1]):
                        rss = k.memory_info().rss
                        self.worker = max(self.worker, rss)
                        self.own = max(self.own, rss - _shmem(k.pid))
                except psutil.Error:
                    pass

    def stop(self) -> tuple[int, int, int]:
        self._stop.set()
        self._thread.join()
        return self.driver, self.worker, self.own


def _archive_cmd(zpath: Path, out: Path, args) -> list[str]:
    cmd = [sys.executable, str(ROOT / "jobs" / "transcribe_archive.py"), str(zpath), "--output", str(out), "-q",
           "--format", "json,txt", "--workers", str(args.workers), "--cpu-threads", str(args.threads)]
    cmd += ["--object-store-mb", str(args.object_store_mb)] if args.object_store_mb else []
    return cmd + (["--num-cpus", str(args.num_cpus)] if args.num_cpus else [])


def run_archive(paths: list[Path], work: Path, args) -> dict:
    zpath, out = work / "in.zip", work / "archive-out"
    _zip(paths, zpath)
    cmd = _archive_cmd(zpath, out, args)
    env = {**os.environ, "PYTHONPATH": str(ROOT), **args.cluster_env}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    watch = RssWatch(proc.pid)
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - t0
    driver, worker, own = watch.stop()
    if proc.returncode != 0:
        raise RuntimeError(stderr.decode()[-2000:])
    summary = json.loads(stdout)
    texts = {}
    for line in (out / "manifest.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec["status"] == "ok":
            txt = next(k for k in rec["outputs"] if k.endswith(".txt"))
            texts[rec["key"].rsplit("/", 1)[-1]] = (out / txt).read_text()
    return {"wall": wall, "texts": texts, "driver_rss": driver, "worker_rss": worker, "worker_own": own,
            "summary": summary}


@contextlib.contextmanager
def ray_cluster(args, warmup: list[Path]):
    """A one-node Ray cluster on this machine (as ``ray start --head`` makes one), for jobs to be submitted
    to; yields the environment that points a job at it. Stops every Ray process of this machine after."""
    ray = str(Path(sys.executable).with_name("ray"))
    # Ray (2.60 here) turns token authentication on for clusters started with `ray start`; the job's driver
    # must then be told to send the token (kept in ~/.ray/auth_token).
    env = {"RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0"}
    full = {**os.environ, "PYTHONPATH": str(ROOT), **env}  # the cluster's workers import this checkout
    cmd = [ray, "start", "--head", "--port", str(free_port()), "--include-dashboard=false", "--disable-usage-stats"]
    subprocess.run(cmd + (["--num-cpus", str(args.num_cpus)] if args.num_cpus else []), env=full, check=True,
                   stdout=subprocess.DEVNULL)
    try:
        env["RAY_ADDRESS"] = Path("/tmp/ray/ray_current_cluster").read_text().strip()
        args.cluster_env = env
        with tempfile.TemporaryDirectory() as work:
            run_archive(warmup, Path(work), args)  # a cluster that has run a job before, as in service
        yield env
    finally:
        args.cluster_env = {}
        subprocess.run([ray, "stop", "--force"], env=full, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _manifest_keys(path: Path) -> set[str]:
    keys = set()
    for line in path.read_bytes().splitlines() if path.exists() else []:
        try:
            keys.add(json.loads(line)["key"])
        except (ValueError, KeyError):  # a line cut short by the kill
            pass
    return keys


def _outputs(out: Path) -> dict[str, int]:
    """Each transcribed file's .txt output and its modification time (ns)."""
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in out.rglob("*.txt")}


def _finished(out: Path) -> set[str]:
    """Files the manifest or an ASR worker's part records as done."""
    parts = [_manifest_keys(p) for p in (out / ".manifest-parts").glob("*.jsonl")]
    return _manifest_keys(out / "manifest.jsonl").union(*parts)


def run_resume(paths: list[Path], work: Path, args) -> list[str]:
    """Kills the job (driver and its local Ray) once half the files are recorded as done (manifest or
    workers' parts), reruns it, and counts the files whose output the rerun wrote again."""
    zpath, out = work / "in.zip", work / "archive-out"
    _zip(paths, zpath)
    cmd, env = _archive_cmd(zpath, out, args), {**os.environ, "PYTHONPATH": str(ROOT)}
    n = len(paths)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    while len(_finished(out)) < n // 2 and proc.poll() is None:  # what the driver or a worker recorded
        time.sleep(0.05)
    if proc.poll() is not None:
        raise RuntimeError("the job ended before it could be killed: " + proc.stderr.read().decode()[-2000:])
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_after = time.perf_counter() - t0
    time.sleep(1.0)  # let the killed Ray's workers go
    recorded, written = _manifest_keys(out / "manifest.jsonl"), _outputs(out)
    parts = _finished(out) - recorded
    t1 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, check=False)
    rerun = time.perf_counter() - t1
    if done.returncode != 0:
        raise RuntimeError(done.stderr.decode()[-2000:])
    summary = json.loads(done.stdout)
    after = _outputs(out)
    redone = sum(after.get(k) != t for k, t in written.items())
    transcribed = n - summary["skipped"]
    return [(f"- {n} files; killed (SIGKILL to the driver's process group) after {killed_after:.1f} s with "
            f"{len(recorded)} files in the manifest ({100 * len(recorded) / n:.0f} %), {len(parts)} more in the "
            f"workers' parts, and {len(written)} outputs written"),
            (f"- rerun: {rerun:.1f} s, skipped {summary['skipped']}, transcribed {transcribed}; ok {summary['ok']}, "
            f"failed {summary['failed']}, manifest lines {len(_manifest_keys(out / 'manifest.jsonl'))}"),
            (f"- files transcribed again although their outputs were already written: {redone} "
            f"({100 * redone / n:.1f} % of the set; target <= 10 %)"),
            (f"- files transcribed in the two runs together: {len(recorded | parts) + transcribed} for {n} "
            f"({100 * (len(recorded | parts) + transcribed - n) / n:.1f} % redone)")]


def run_cli(paths: list[Path], work: Path, args) -> dict:
    src, out = work / "folder", work / "cli-out"
    src.mkdir()
    _folder(paths, src)
    cmd = [sys.executable, "-m", "iam_cluster.cli", "transcribe", str(src), "--output-dir", str(out), "-q",
           "--format", "json,txt", "--cpu-threads", str(args.threads)]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, check=False)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(done.stderr.decode()[-2000:])
    return {"wall": wall, "texts": {p.name.replace(".txt", ".wav"): p.read_text() for p in out.rglob("*.txt")}}


def run_fw(paths: list[Path], work: Path, args) -> dict:
    """faster-whisper's BatchedInferencePipeline, one file after another (model load not timed)."""
    code = f"""
import json, sys, time
sys.path.insert(0, {str(ROOT)!r})
from faster_whisper import BatchedInferencePipeline, WhisperModel
from iam_cluster.pipeline.models import resolve_model
from iam_cluster.settings import get_settings
ref = resolve_model("tiny.en", get_settings().models.cache_dir)
model = BatchedInferencePipeline(WhisperModel(str(ref.path), device="cpu", compute_type="int8",
                                              cpu_threads={args.threads}))
paths = json.load(sys.stdin)
t0 = time.perf_counter()
texts = {{}}
for p in paths:
    segs, _ = model.transcribe(p, batch_size=8, beam_size=5)
    texts[p.rsplit("/", 1)[-1]] = " ".join(s.text.strip() for s in segs)
print(json.dumps({{"wall": time.perf_counter() - t0, "texts": texts}}))
"""
    done = subprocess.run([sys.executable, "-c", code], input=json.dumps([str(p) for p in paths]).encode(),
                          capture_output=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.decode()[-2000:])
    return json.loads(done.stdout)


def _wer(paths: list[Path], texts: dict[str, str]) -> float:
    import jiwer

    refs, hyps = [], []
    for i, p in enumerate(paths):
        ref = p.with_suffix(".txt")
        if ref.is_file():
            refs.append(normalise(ref.read_text()))
            hyps.append(normalise(texts.get(f"{i:05d}_{p.name}", texts.get(p.name, ""))))
    return 100 * jiwer.wer(refs, hyps) if refs else float("nan")


def _audio_seconds(paths: list[Path]) -> float:
    import soundfile

    return sum(soundfile.info(str(p)).duration for p in paths)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("items", nargs="+", help="audio files or folders (references beside them as .txt)")
    ap.add_argument("--repeat", type=int, default=50, help="the set is repeated this many times")
    ap.add_argument("--only", default="archive,cli,fw", help="systems: archive,cli,fw")
    ap.add_argument("--threads", type=int, default=0, help="CTranslate2 threads (0: all cores)")
    ap.add_argument("--workers", type=int, default=1, help="ASR actors of the archive job")
    ap.add_argument("--num-cpus", type=int, default=0, help="CPUs of the job's local Ray (0: all)")
    ap.add_argument("--object-store-mb", type=int, help="object store of the job's local Ray, MiB (default: the job's)")
    ap.add_argument("--rss-sizes", help="comma-separated archive sizes (files) for the RSS-flatness run")
    ap.add_argument("--resume", type=int, help="files for the kill-at-half-way-then-rerun run")
    ap.add_argument("--on-cluster", action="store_true",
                    help="submit the archive job to a running Ray cluster (started here) instead of a Ray of its own")
    ap.add_argument("--rounds", type=int, default=1, help="runs of each system, in turn; the median is reported")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "archive.md")
    args = ap.parse_args()
    args.cluster_env = {}
    base = collect_audio(args.items)
    systems = args.only.split(",")
    lines = ["# Archive job benchmark", "", f"- command: `{command_line()}`", f"- code: {code_version()}",
             f"- cpu: {cpu_name()} ({os.cpu_count()} cores)", "- model: tiny.en, int8, beam 5", ""]
    if args.resume:
        paths = (base * (args.resume // len(base) + 1))[: args.resume]
        with tempfile.TemporaryDirectory() as work:
            lines += ["## Resume after a kill at half-way", "", *run_resume(paths, Path(work), args), ""]
    elif args.rss_sizes:
        lines += ["## Peak RSS by archive size (archive job)", "",
                  "| files | wall s | driver MB | largest worker MB | largest worker MB without shared memory |",
                  "|---:|---:|---:|---:|---:|"]
        peaks = []
        for n in (int(x) for x in args.rss_sizes.split(",")):
            paths = (base * (n // len(base) + 1))[:n]
            with tempfile.TemporaryDirectory() as work:
                r = run_archive(paths, Path(work), args)
            peaks.append((r["driver_rss"], r["worker_rss"], r["worker_own"]))
            lines.append(f"| {n} | {r['wall']:.1f} | {r['driver_rss'] / 2**20:.0f} | {r['worker_rss'] / 2**20:.0f} "
                         f"| {r['worker_own'] / 2**20:.0f} |")
        d, w, o = (peaks[-1][i] / peaks[0][i] for i in range(3))
        lines += ["", f"largest/smallest archive: driver x{d:.2f}, worker x{w:.2f}, worker without shared memory "
                      f"x{o:.2f} (target: within 20 %)", ""]
    else:
        paths = base * args.repeat
        audio = _audio_seconds(paths)
        lines += [f"- set: {len(paths)} files ({len(base)} distinct x {args.repeat}), {audio / 60:.1f} min of audio",
                  "", "| system | wall s" + (f" (median of {args.rounds}: all)" if args.rounds > 1 else "") + " | x real time | WER % |", "|---|---:|---:|---:|"]
        runs: dict[str, list[dict]] = {name: [] for name in ("archive", "cli", "fw") if name in systems}
        with ray_cluster(args, base[:8]) if args.on_cluster else contextlib.nullcontext():
            for _ in range(args.rounds):
                for name, fn in (("archive", run_archive), ("cli", run_cli), ("fw", run_fw)):
                    if name in runs:
                        with tempfile.TemporaryDirectory() as work:
                            runs[name].append(fn(paths, Path(work), args))
        results = {name: sorted(rs, key=lambda r: r["wall"])[len(rs) // 2] for name, rs in runs.items()}
        for name, r in results.items():
            walls = ", ".join(f"{x['wall']:.1f}" for x in runs[name])
            lines.append(f"| {name} | {r['wall']:.1f}" + (f" ({walls})" if args.rounds > 1 else "")
                         + f" | {audio / r['wall']:.1f} | {_wer(paths, r['texts']):.1f} |")
        if "archive" in results:
            a = results["archive"]["wall"]
            s = results["archive"]["summary"]
            work = s.get("processing_seconds") or a
            where = "on a running Ray cluster" if args.on_cluster else "starting its own Ray"
            lines += ["", (f"- archive job ({where}): {a:.1f} s in all = {s.get('startup_seconds', 0):.1f} s "
                           f"before the first file read (listing, Ray start-up, readers) + {work:.1f} s first read "
                           f"to last output + {max(0.0, a - s.get('startup_seconds', 0) - work):.1f} s for the interpreter, imports and exit")]
            for peer in ("fw", "cli"):
                if peer in results:
                    lines.append(f"- archive job vs {peer}: x{results[peer]['wall'] / a:.2f} faster with Ray's "
                                 f"start-up, x{results[peer]['wall'] / work:.2f} without it")
            if not args.on_cluster:
                lines.append(f"- archive job peak RSS: driver {results['archive']['driver_rss'] / 2**20:.0f} MB, "
                             f"largest worker {results['archive']['worker_rss'] / 2**20:.0f} MB")
    save_report("\n".join(lines) + "\n", args.out)


if __name__ == "__main__":
    main()
