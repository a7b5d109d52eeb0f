"""``iam-cluster transcribe`` end to end: folders, formats, bad files and exit status."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import srt
import webvtt

from iam_cluster.cli import main
from iam_cluster.pipeline.export import transcript_from_json
from tests.fixtures.audio import is_transcript_of


def test_folder_with_a_bad_file(tmp_path, harvard, data_dir, capsys):
    src = tmp_path / "in"
    (src / "nested").mkdir(parents=True)
    for p in harvard[:3]:
        shutil.copy(p, src / p.name)
    shutil.copy(data_dir / "jfk.flac", src / "nested" / "jfk.flac")
    (src / "nested" / "broken.mp3").write_bytes(b"\x00garbage" * 100)
    (src / "readme.txt").write_text("ignored: not media")
    out = tmp_path / "out"

    status = main(["transcribe", str(src), "--output-dir", str(out), "--format", "json,srt,vtt,txt", "-q"])

    assert status == 1  # one file failed
    err = capsys.readouterr().err
    assert "broken.mp3" in err and "4 transcribed, 1 failed" in err
    assert not list(out.rglob("broken*"))
    jfk = transcript_from_json((out / "nested" / "jfk.json").read_bytes())
    assert is_transcript_of(jfk.text, data_dir / "jfk.flac"), jfk.text
    assert json.loads((out / "nested" / "jfk.json").read_text())["text"] == jfk.text

    cues = list(srt.parse((out / "nested" / "jfk.srt").read_text()))
    assert len(cues) == len(jfk.segments)
    for cue, seg in zip(cues, jfk.segments):
        assert abs(cue.start.total_seconds() - seg.start) < 0.002
        assert abs(cue.end.total_seconds() - seg.end) < 0.002
        assert cue.content == seg.text.strip()
    captions = webvtt.from_string((out / "nested" / "jfk.vtt").read_text())
    assert [c.text for c in captions] == [s.text.strip() for s in jfk.segments]
    assert abs(captions[0].start_in_seconds - jfk.segments[0].start) < 0.002
    for p in harvard[:3]:
        assert (out / p.with_suffix(".txt").name).read_text().strip()


def test_all_good_exits_zero_and_honours_options(tmp_path, harvard):
    out = tmp_path / "out"
    status = main(["transcribe", str(harvard[0]), "--output-dir", str(out), "--format", "json",
                   "--beam-size", "1", "--batch-size", "2", "--no-word-timestamps", "-q"])
    assert status == 0
    t = transcript_from_json((out / harvard[0].with_suffix(".json").name).read_bytes())
    assert t.segments and all(not s.words for s in t.segments)
    assert not (out / harvard[0].with_suffix(".srt").name).exists()


def test_usage_errors_exit_two(tmp_path, harvard):
    assert main(["transcribe", str(harvard[0]), "--format", "docx", "-q"]) == 2
    assert main(["transcribe", str(tmp_path), "-q"]) == 2  # empty folder: nothing to do
    assert main(["transcribe", str(harvard[0]), "--model", str(tmp_path), "-q"]) == 2


def test_console_script_runs_as_a_module(tmp_path, harvard):
    proc = subprocess.run(
        [sys.executable, "-m", "iam_cluster.cli", "transcribe", str(harvard[1]), "--output-dir", str(tmp_path),
         "--format", "txt", "-q"], capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / harvard[1].with_suffix(".txt").name).read_text()
    assert is_transcript_of(text, harvard[1]), text


def test_configuration_errors_are_one_line_and_exit_two(tmp_path, harvard, capsys):
    import ctranslate2

    cases = [(["--language", "de"], "transcribes English only"), (["--language", "xx"], "unknown language"),
             (["--num-speakers", "2", "--min-speakers", "1"], "either num_speakers"),
             (["--beam-size", "0"], "beam_size")]
    if ctranslate2.get_cuda_device_count() == 0:
        cases.append((["--device", "cuda"], "no CUDA device"))
    for args, words in cases:
        assert main(["transcribe", str(harvard[0]), "--output-dir", str(tmp_path), "-q", *args]) == 2, args
        err = capsys.readouterr().err.strip()
        assert words in err and len(err.splitlines()) == 1, err
    assert main(["transcribe", str(tmp_path / "missing.wav"), "-q"]) == 2
    assert "missing.wav: no such file" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing written
