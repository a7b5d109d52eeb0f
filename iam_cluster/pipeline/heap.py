"""The C heap of a process that decodes: few glibc malloc arenas, and large buffers kept for reuse.

glibc gives a thread that finds the heap's lock taken an arena of its own, up to eight per core,
and memory freed in one arena serves only the threads that use it. A decoding process has many
such threads (CTranslate2's workers, onnxruntime's VAD, the pipeline's pools), so each arena
grows to its own peak and the process's resident memory to the sum of them. Capping the arenas
lets one thread reuse what another freed.

Measured on a 2-core AMD EPYC, tiny.en int8, two model workers, capped at one arena against
glibc's default (``benchmarks/results/rtf-heap-arenas-amd-cpu.md``): peak RSS on the 120-clip
folder 607 -> 547 MB (medians of three), on the long-form set 930 / 918 -> 694 / 710 MB, with the
same wall time and words.

glibc serves a request of over 32 MB (its largest mmap threshold) from a fresh ``mmap`` and gives
it back at ``free``. A 30-s window's encoder holds its attention scores in such buffers (tiny.en:
6 heads x 1500 x 1500 floats, 54 MB, per layer), so every encode had the kernel map, zero and unmap
some 300 MB: a quarter of an encode's time was page faults (76,000 per encode, one thread,
``benchmarks/results/malloc-options-spr-intel-cpu.md``). ``keep_freed`` serves them from the heap
and keeps what they free for the next encode, up to a bound.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

#: ``mallopt`` parameters of glibc's ``<malloc.h>``.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8


def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def limit_arenas(count: int) -> bool:
    """Cap the process's malloc arenas at ``count`` (0: leave glibc's default). True when the C
    library took it (glibc on Linux); elsewhere nothing changes.

    glibc fixes its cap once eight arenas exist, so this is called before the model loads; in a
    process that already holds more (a Ray worker), ``MALLOC_ARENA_MAX`` in its environment is
    what caps them.
    """
    libc = _libc() if count > 0 else None
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(M_ARENA_MAX, count))


def keep_freed(megabytes: int) -> bool:
    """Serve every allocation from the heap (no ``mmap`` per large buffer) and give freed memory
    back to the system only past ``megabytes`` of free space at the heap's top (0: leave glibc's
    defaults). True when the C library took it (glibc on Linux).

    Called once the model has loaded: ``malloc_trim`` first returns what the loading freed, so
    only the decoding's own buffers are kept. What is kept is what the decoding's peak needed
    anyway (a 30-s encode: +80 MB per copy of the model, the same with or without this); the
    process's memory stays near that peak between recordings instead of falling back.
    """
    libc = _libc() if megabytes > 0 else None
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    trim = getattr(libc, "malloc_trim", None)
    if trim is not None:
        trim.argtypes = (ctypes.c_size_t,)
        trim(0)
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, min(megabytes, 2047) << 20))


def arenas() -> int | None:
    """How many arenas the heap has now (glibc's ``malloc_info``), or None where it cannot tell."""
    import os
    import re
    import tempfile

    libc = _libc()
    if libc is None or not hasattr(libc, "malloc_info"):
        return None
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = (ctypes.c_char_p, ctypes.c_char_p)
    libc.malloc_info.argtypes = (ctypes.c_int, ctypes.c_void_p)
    libc.fclose.argtypes = (ctypes.c_void_p,)
    fd, path = tempfile.mkstemp(suffix=".xml")
    os.close(fd)
    try:
        stream = libc.fopen(path.encode(), b"w")
        if not stream:
            return None
        libc.malloc_info(0, stream)
        libc.fclose(stream)
        with open(path) as f:
            return len(re.findall(r"<heap nr=", f.read()))
    finally:
        os.unlink(path)
