"""Helpers the benchmark scripts share: file lists, text normalisation, CPU name, code version."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from pathlib import Path

AUDIO_EXTS = {".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".webm", ".mp4"}
ROOT = Path(__file__).resolve().parent.parent


def collect_audio(items: list[str], repeat: int = 1) -> list[Path]:
    """Files given, plus audio files found recursively under folders given; the list ``repeat`` times."""
    files: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            files.extend(sorted(f for f in path.rglob("*") if f.suffix.lower() in AUDIO_EXTS and f.is_file()))
        elif path.is_file():
            files.append(path)
        else:
            raise SystemExit(f"no such audio file or folder: {item}")
    if not files:
        raise SystemExit("no audio files found")
    return files * max(1, repeat)


def normalise(text: str) -> str:
    """Lowercase, drop punctuation (keeping in-word apostrophes), collapse whitespace."""
    text = re.sub(r"[^\w\s']|(?<!\w)'|'(?!\w)", " ", text.lower())
    return " ".join(text.split())


_WHISPER_NORMALISER = None


def whisper_normalise(text: str) -> str:
    """Whisper's English text normaliser (the Open ASR Leaderboard's and the Whisper paper's):
    also maps spoken numbers and numerals to one form ("one two three" / "1 2 3"), British and
    American spellings, contractions and fillers, which :func:`normalise` counts as errors."""
    global _WHISPER_NORMALISER
    if _WHISPER_NORMALISER is None:
        from whisper_normalizer.english import EnglishTextNormalizer

        _WHISPER_NORMALISER = EnglishTextNormalizer()
    return " ".join(_WHISPER_NORMALISER(text).split())


def cpu_name() -> str:
    """The CPU's model name and what tells hosts of one name apart: a VM's "Intel Xeon Processor"
    was a model-167 Xeon with AMX in one run and a model-207 one without it in another, and the
    engine's speed against its peers differed between them (``README``); and which backend
    CTranslate2 computes with there (MKL on Intel, oneDNN elsewhere, ``CT2_USE_MKL``)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown CPU"
    found = re.search(r"^model name\s*:\s*(.+)$", info, re.M)
    name = found.group(1).strip() if found else "unknown CPU"
    family = re.search(r"^cpu family\s*:\s*(\d+)$", info, re.M)
    model = re.search(r"^model\s*:\s*(\d+)$", info, re.M)
    listed = re.search(r"^flags\s*:\s*(.+)$", info, re.M)
    flags = set(listed.group(1).split()) if listed else set()
    isa = [label for flag, label in (("avx512_vnni", "AVX-512 VNNI"), ("avx512f", "AVX-512"), ("avx2", "AVX2"))
           if flag in flags][:1] + (["AMX"] if "amx_int8" in flags else [])
    from iam_cluster.pipeline.asr import ct2_uses_mkl

    details = [f"family {family.group(1)} model {model.group(1)}" if family and model else None,
               ", ".join(isa) or None, "CTranslate2 on MKL" if ct2_uses_mkl() else "CTranslate2 on oneDNN",
               *(f"{k}={os.environ[k]}" for k in ("CT2_FORCE_CPU_ISA", "ONEDNN_MAX_CPU_ISA") if os.environ.get(k))]
    return f"{name} ({'; '.join(d for d in details if d)})"


def code_version() -> str:
    """Git commit of this checkout, ``+dirty`` and a hash of ``iam_cluster/*.py`` if edited."""
    git = ["git", "-C", str(ROOT)]
    try:
        head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        head = head.stdout.strip()
        dirty = subprocess.run([*git, "status", "--porcelain", "--", "iam_cluster"],
                               capture_output=True, text=True).stdout.strip()
    except OSError:
        head, dirty = "", "?"
    if not dirty:
        return head or "unknown"
    digest = hashlib.sha1()
    for f in sorted((ROOT / "iam_cluster").rglob("*.py")):
        digest.update(f.read_bytes())
    return f"{head or 'unknown'}+dirty:{digest.hexdigest()[:8]}"


def command_line() -> str:
    """The command that ran this benchmark, for its report."""
    import shlex
    import sys

    return " ".join(shlex.quote(a) for a in ["python", *sys.argv])


def free_port() -> int:
    """A TCP port free on loopback now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_rss_mb() -> float:
    """This process's own peak resident memory (VmHWM). Not ``ru_maxrss``: Linux carries that across
    ``exec``, so a child started from a big process reports its parent's peak."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    """This process's resident memory now (VmRSS), in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return 0.0


def gpu_memory_mb() -> float | None:
    """GPU memory this process holds now (``nvidia-smi``'s per-process figure; CTranslate2's caching
    allocator keeps what it took at the peak), or None without a GPU or where the driver hides it."""
    import shutil

    if not shutil.which("nvidia-smi"):
        return None
    out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                         capture_output=True, text=True).stdout
    used = [float(m) for pid, m in (ln.split(",") for ln in out.splitlines() if "," in ln)
            if pid.strip() == str(os.getpid()) and m.strip().replace(".", "", 1).isdigit()]
    return sum(used) if used else None


def save_report(text: str, out: Path | None) -> Path | None:
    """Print a Markdown report and write it to ``out`` (folders created; None: print only)."""
    print(text)
    if out is None:
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(f"[report] written {out}")
    return out


def settings_for(model: str, device: str = "auto", compute_type: str = "auto", threads: int = 0,
                 timestamp_tokens: str | None = None, cpu_replicas: int | None = None,
                 cpu_one_encode: bool | None = None, cpu_schedule: str | None = None,
                 malloc_keep_mb: int | None = None, blas_threads: int | None = None, **engine):
    """The environment's settings with a benchmark's model, device, threads and engine knobs.

    Knobs left as None keep the settings' values (their one home).
    """
    import msgspec

    from iam_cluster.settings import get_settings

    base = get_settings()
    replace = msgspec.structs.replace
    return replace(
        base, models=replace(base.models, name=model, device=device, compute_type=compute_type, cpu_threads=threads,
                            timestamp_tokens=timestamp_tokens or base.models.timestamp_tokens,
                            cpu_replicas=base.models.cpu_replicas if cpu_replicas is None else cpu_replicas,
                            cpu_one_encode=base.models.cpu_one_encode if cpu_one_encode is None else cpu_one_encode,
                            cpu_schedule=cpu_schedule or base.models.cpu_schedule,
                            malloc_keep_mb=base.models.malloc_keep_mb if malloc_keep_mb is None else malloc_keep_mb,
                            blas_threads=base.models.blas_threads if blas_threads is None else blas_threads),
        engine=replace(base.engine, **{k: v for k, v in engine.items() if v is not None}),
    )


def our_runner(model: str, device: str = "auto", compute_type: str = "auto", threads: int = 0, **engine):
    """Our in-process runner (the one path the CLI and the worker use) for a benchmark's setup."""
    from iam_cluster.runner import in_process_runner

    return in_process_runner(settings_for(model, device, compute_type, threads, **engine))


#: Server the benchmarks create their throw-away databases on.
ADMIN_URL = os.environ.get("IAM_BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def create_database() -> tuple[str, str]:
    """A fresh database with every migration applied; returns ``(name, url)``."""
    import uuid

    import psycopg

    from iam_cluster.db.migrate import apply_migrations

    name = f"iam_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    apply_migrations(url)
    return name, url


def drop_database(name: str) -> None:
    import psycopg

    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
