"""``benchmarks/rtf.py``'s command line: what runs when a user names no systems, and how reports name the host."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture()
def rtf(benchmark_module):
    return benchmark_module("rtf")


def test_without_systems_ours_runs_against_the_three_faster_whisper_pipelines(rtf):
    args = rtf.parse_args(["--audio", "x.wav"])
    assert args.systems == ["ours", "fw_sequential", "fw_batched", "fw_batched_words"]
    assert set(args.systems) <= set(rtf.SYSTEMS)


def test_named_systems_run_as_named_and_unknown_ones_are_refused(rtf, capsys):
    assert rtf.parse_args(["--audio", "x.wav", "--systems", "ours,ours_mmapheap"]).systems == ["ours", "ours_mmapheap"]
    with pytest.raises(SystemExit):
        rtf.parse_args(["--audio", "x.wav", "--systems", "ours,whisperx"])
    assert "unknown systems ['whisperx']" in capsys.readouterr().err


def test_reports_name_the_host_class_and_ctranslate2s_backend(rtf, monkeypatch):
    from common import cpu_name

    monkeypatch.setenv("CT2_USE_MKL", "0")
    monkeypatch.setenv("CT2_FORCE_CPU_ISA", "AVX2")
    name = cpu_name()
    assert "CTranslate2 on oneDNN" in name and "CT2_FORCE_CPU_ISA=AVX2" in name
    if Path("/proc/cpuinfo").exists() and "cpu family" in Path("/proc/cpuinfo").read_text():
        assert "family " in name and " model " in name
    monkeypatch.setenv("CT2_USE_MKL", "1")
    assert "CTranslate2 on MKL" in cpu_name()
