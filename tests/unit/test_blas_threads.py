"""A CPU decoding process holds numpy's BLAS to one thread once its model loads (``asr.limit_blas``):
OpenBLAS's idle threads spun on the cores the model's copies decode on."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

CHILD = textwrap.dedent("""
    from threadpoolctl import threadpool_info
    from iam_cluster.pipeline.asr import WhisperASR
    WhisperASR('tiny.en', 'cpu', 'int8', cpu_threads=2{extra})
    print(max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"))
""")


def _blas_threads(extra: str = "") -> int:
    env = {"PATH": "/usr/bin:/bin", "OPENBLAS_NUM_THREADS": "2"}  # numpy's own on two cores
    out = subprocess.run([sys.executable, "-c", CHILD.format(extra=extra)], capture_output=True, text=True,
                         check=True, timeout=120, env=env)
    return int(out.stdout.strip().splitlines()[-1])


def test_the_engine_holds_numpys_blas_to_one_thread():
    assert _blas_threads() == 1


def test_zero_leaves_numpys_own_threads():
    assert _blas_threads(", blas_threads=0") == min(2, os.cpu_count() or 1)
