"""The decoding process's C heap: the engine caps glibc's malloc arenas before its model loads."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc arenas")

#: Eight threads allocating at once: with glibc's default each finds the lock taken and gets an
#: arena of its own; capped, they share.
CHILD = textwrap.dedent("""
    import sys, threading
    import numpy as np
    from iam_cluster.pipeline.heap import arenas
    {setup}
    def work():
        for _ in range(3000):
            kept = [np.empty(40000) for _ in range(16)]
    threads = [threading.Thread(target=work) for _ in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    print(arenas())
""")


def _arenas_after_threads(setup: str) -> int:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}  # glibc's own default
    out = subprocess.run([sys.executable, "-c", CHILD.format(setup=setup)], capture_output=True, text=True,
                         check=True, timeout=120, env=env)
    return int(out.stdout.strip().splitlines()[-1])


def test_threads_share_one_arena_once_capped():
    assert _arenas_after_threads("from iam_cluster.pipeline.heap import limit_arenas; assert limit_arenas(1)") == 1


def test_the_engine_caps_arenas_when_its_model_loads():
    setup = "from iam_cluster.pipeline.asr import WhisperASR; WhisperASR('tiny.en', 'cpu', 'int8', cpu_threads=2)"
    assert _arenas_after_threads(setup) == 1


def test_zero_leaves_glibcs_default():
    from iam_cluster.pipeline.heap import limit_arenas

    assert limit_arenas(0) is False
    assert _arenas_after_threads("") > 1


#: Allocates and frees a 64 MB buffer (over glibc's largest mmap threshold, as an encoder's
#: attention scores are) ten times and prints the minor page faults of the last nine.
FAULTS = textwrap.dedent("""
    import resource
    import numpy as np
    {setup}
    np.ones(8 << 20).sum()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(9):
        np.ones(8 << 20).sum()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


def _faults(setup: str) -> int:
    out = subprocess.run([sys.executable, "-c", FAULTS.format(setup=setup)], capture_output=True, text=True,
                         check=True, timeout=120)
    return int(out.stdout.strip().splitlines()[-1])


#: The fewest page faults nine fresh 64 MB mappings can take: a fault maps at most a 2 MB huge
#: page on x86-64 (transparent huge pages "always": 297 faults for the nine on an AMX Xeon), 32 a
#: buffer; with 4 kB pages it is 16,384 a buffer (4,896 for the nine on a Zen 4 host, whose kernel
#: maps folios of several pages at a fault).
FRESH_FAULTS = 9 * 32


def test_kept_heap_serves_large_buffers_again_without_page_faults():
    # By default each 64 MB buffer is mapped afresh: the kernel faults in (and zeroes) its pages
    # every time. Kept, the later buffers reuse the first one's pages: no fault at all.
    assert _faults("") >= FRESH_FAULTS
    assert _faults("from iam_cluster.pipeline.heap import keep_freed; assert keep_freed(256)") < 50


def test_the_engine_keeps_its_heap_once_its_model_loads():
    setup = "from iam_cluster.pipeline.asr import WhisperASR; WhisperASR('tiny.en', 'cpu', 'int8', cpu_threads=2)"
    assert _faults(setup) < 50
    off = "from iam_cluster.pipeline.asr import WhisperASR; WhisperASR('tiny.en', 'cpu', 'int8', malloc_keep_mb=0)"
    assert _faults(off) >= FRESH_FAULTS


def test_keeping_nothing_leaves_glibcs_default():
    from iam_cluster.pipeline.heap import keep_freed

    assert keep_freed(0) is False
