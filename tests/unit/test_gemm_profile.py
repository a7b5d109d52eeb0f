"""``benchmarks/gemm_profile.py``: the backend's log of matrix products, summed by shape."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.benchmarks import BENCHMARKS

DATA = Path(__file__).resolve().parents[1] / "data"
SCRIPT = BENCHMARKS / "gemm_profile.py"


@pytest.fixture()
def gemm_profile(benchmark_module):
    return benchmark_module("gemm_profile")


ONEDNN = [
    "onednn_verbose,info,cpu,isa:Intel AVX2",
    # the encoder's products come before the mark and are not counted
    "onednn_verbose,exec,cpu,gemm_api,,undef,src_u8::blocked:ab:f0 wei_s8::blocked:ba:f0 dst_s32::blocked:ab:f0,,,"
    "1500x384:384x1536,3.1",
    "== generate",
    "onednn_verbose,exec,cpu,gemm_api,,undef,src_u8::blocked:ab:f0 wei_s8::blocked:ba:f0 dst_s32::blocked:ab:f0,,,"
    "4x384:384x51864,4.91919",
    "onednn_verbose,exec,cpu,gemm_api,,undef,src_u8::blocked:ab:f0 wei_s8::blocked:ba:f0 dst_s32::blocked:ab:f0,,,"
    "20x384:384x51864,12.5",
    "onednn_verbose,exec,cpu,gemm_api,,undef,src_f32::blocked:ab:f0 wei_f32::blocked:ba:f0 dst_f32::blocked:ab:f0,"
    "attr-oscale:common:0.125 ,,5x64:64x1500,0.09",
    "== tokens 42",
]

MKL = [
    "== generate",
    "MKL_VERBOSE GEMM_S8U8S32_COMPUTE(P,N,C,51864,5,384,0x1,0x2,384,0x3,0x4,384,0x5,0x6,0x7,51864,0x8) 692.73us "
    "CNR:OFF Dyn:1 FastMM:1 TID:0  NThr:1",
    "MKL_VERBOSE SGEMM_BATCH_STRIDED(T,N,1500,5,64,0x1,0x2,64,96000,0x3,64,320,0x4,0x5,1500,7500,6) 1.2ms "
    "CNR:OFF Dyn:1 FastMM:1 TID:0  NThr:1",
    "== tokens 7",
]


def test_onednn_products_after_the_mark_are_summed_by_shape(gemm_profile):
    shapes, tokens = gemm_profile.parse(ONEDNN)
    assert tokens == 42
    assert set(shapes) == {("u8", 384, 51864), ("f32", 64, 1500)}
    calls, ms, rows = shapes[("u8", 384, 51864)]
    assert (calls, rows) == (2, 24) and ms == pytest.approx(17.41919)
    assert gemm_profile.name_of(384, 51864, 384) == "vocabulary projection"
    assert gemm_profile.name_of(64, 1500, 384).startswith("cross-attention scores")
    assert gemm_profile.name_of(384, 1536, 384) == "feed-forward in"


def test_mkl_products_are_read_in_column_major_order(gemm_profile):
    shapes, tokens = gemm_profile.parse(MKL)
    assert tokens == 7
    assert shapes[("gemm_s8u8s32_compute", 384, 51864)] == [1, pytest.approx(0.69273), 5]
    assert shapes[("sgemm_batch_strided", 64, 1500)] == [1, pytest.approx(1.2), 5]


@pytest.mark.slow
def test_a_real_generate_is_profiled_on_this_hosts_backend(tmp_path):
    """One 30-s window of a meeting: the vocabulary projection and the cross-attention are logged,
    whichever backend (oneDNN or MKL) this CPU gives CTranslate2."""
    out = tmp_path / "profile.md"
    subprocess.run([sys.executable, str(SCRIPT), "--audio", str(DATA / "sample.wav"),
                    "--windows", "1", "--out", str(out)], check=True, capture_output=True, text=True, timeout=600)
    report = out.read_text()
    assert "| vocabulary projection |" in report
    assert "| cross-attention scores" in report
    assert "ms per token written" in report


def test_a_recording_too_short_for_the_windows_is_refused(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), "--audio", str(DATA / "sample.wav"),
                           "--windows", "2", "--out", str(tmp_path / "x.md")], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode != 0
    assert "shorter than 2 windows of 30 s" in done.stderr


def test_a_missing_recording_is_a_usage_error(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), "--audio", str(tmp_path / "nothing.wav")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "no such file" in done.stderr and "Traceback" not in done.stderr
