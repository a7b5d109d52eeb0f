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
