"""Insights on real transcripts (tiny.en on the dev recordings, RTTM speakers), in the worker and the CLI."""

from __future__ import annotations

import json
import re

import msgspec
import pytest
from psycopg.rows import dict_row

from iam_cluster.cli import main
from iam_cluster.insights import InsightsOptions, compute_insights
from iam_cluster.insights.sentences import split_sentences
from iam_cluster.insights.types import Insights
from iam_cluster.pipeline.merge import merge
from iam_cluster.pipeline.types import Diarization, TranscribeOptions, Turn
from iam_cluster.queue import Jobs
from iam_cluster.settings import InsightsSettings
from iam_cluster.worker.loop import Worker
from tests.fixtures.worker import add_meeting, enqueue

RECORDINGS = ["dev00.wav", "dev01.wav", "sample.wav"]


def rttm_turns(path) -> list[Turn]:
    turns = []
    for line in path.with_suffix(".rttm").read_text().splitlines():
        f = line.split()
        turns.append(Turn(float(f[3]), float(f[3]) + float(f[4]), f[7]))
    return sorted(turns, key=lambda t: t.start)


@pytest.fixture(scope="session")
def real_transcripts(runner, data_dir):
    """The dev recordings transcribed by tiny.en, words given the reference speakers."""
    out = {}
    for name in RECORDINGS:
        path = data_dir / name
        transcript = runner.run(path, TranscribeOptions(language="en"))
        out[name] = merge(transcript, Diarization(turns=rttm_turns(path)))
    return out


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


@pytest.mark.parametrize("name", RECORDINGS)
@pytest.mark.parametrize("n", [1, 3])
def test_summary_is_at_most_n_transcript_sentences_in_order(real_transcripts, name, n):
    transcript = real_transcripts[name]
    ins = compute_insights(transcript, InsightsOptions(summary_sentences=n))
    sentences = split_sentences(transcript)
    assert 1 <= len(ins.summary) <= n
    assert [s.index for s in ins.summary] == sorted({s.index for s in ins.summary})
    whole = _squash(" ".join(s.text for s in transcript.segments))
    for s in ins.summary:
        assert s.text == sentences[s.index].text and s.speaker == sentences[s.index].speaker
        assert s.text in whole  # a sentence as spoken, not rewritten
        assert 0 <= s.start <= s.end <= transcript.duration + 0.5


@pytest.mark.parametrize("name", RECORDINGS)
def test_talk_time_sums_to_speech_time_on_real_speakers(real_transcripts, name):
    transcript = real_transcripts[name]
    ins = compute_insights(transcript)
    speech = sum(s.end - s.start for s in transcript.segments if s.text.strip())
    assert ins.speech_time == pytest.approx(speech, abs=1e-3)
    assert sum(s.talk_time for s in ins.speakers) == pytest.approx(ins.speech_time, abs=1e-2)
    assert {s.speaker for s in ins.speakers} == {s.speaker for s in transcript.segments if s.text.strip()}
    assert sum(s.words for s in ins.speakers) == ins.words > 0
    assert sum(s.turns for s in ins.speakers) >= len(ins.speakers)
    # Sentences tile the segments' text in order, each inside its speaker's time span.
    sentences = split_sentences(transcript)
    assert _squash(" ".join(s.text for s in sentences)) == _squash(" ".join(
        s.text for s in transcript.segments if s.text.strip()))
    assert all(a.start <= b.start for a, b in zip(sentences, sentences[1:]))


def _row(conn, meeting_id) -> dict | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT * FROM meeting_insights WHERE meeting_id = %s", [meeting_id]).fetchone()


def _run_job(conn, settings, storage, runner, data_dir, name="dev00.wav"):
    user_id, meeting_id = add_meeting(conn, storage, (data_dir / name).read_bytes())
    job = enqueue(conn, user_id, meeting_id, {"language": "en", "beam_size": 1})
    steps = []
    worker = Worker(settings, runner=runner, storage=storage)
    hook = worker._progress_hook
    worker._progress_hook = lambda job, hb: (lambda s, d, t: (steps.append(s), hook(job, hb)(s, d, t)))
    try:
        assert worker.run_once()
    finally:
        worker.close()
    assert Jobs(conn).get(job.id).status == "completed"
    return meeting_id, steps


def test_worker_stores_insights_with_the_transcript(conn, settings, storage, runner, data_dir):
    meeting_id, steps = _run_job(conn, settings, storage, runner, data_dir)
    assert "insights" in steps and steps.index("insights") > steps.index("asr")
    row = _row(conn, meeting_id)
    assert (row["status"], row["backend"], row["error"]) == ("completed", "offline", None)
    ins = msgspec.convert(row["insights"], Insights)
    assert ins.summary and ins.speech_time > 0 and ins.words > 0
    text = conn.execute("SELECT transcription_text FROM meetings WHERE id = %s", [meeting_id]).fetchone()[0]
    assert all(s.text in text for s in ins.summary)


def test_an_insights_error_is_recorded_and_the_job_still_completes(conn, settings, storage, runner, data_dir):
    broken = msgspec.structs.replace(settings, insights=InsightsSettings(summary_sentences=0))  # out of range
    meeting_id, _ = _run_job(conn, broken, storage, runner, data_dir)
    row = _row(conn, meeting_id)
    assert row["status"] == "failed" and row["insights"] is None and "summary_sentences" in row["error"]
    m = conn.execute("SELECT processing_status, transcription_text FROM meetings WHERE id = %s",
                     [meeting_id]).fetchone()
    assert m[0] == "completed" and m[1]


def test_disabled_insights_store_nothing(conn, settings, storage, runner, data_dir):
    off = msgspec.structs.replace(settings, insights=InsightsSettings(enabled=False))
    meeting_id, steps = _run_job(conn, off, storage, runner, data_dir)
    assert _row(conn, meeting_id) is None and "insights" not in steps


def test_worker_falls_back_when_the_chat_endpoint_times_out(conn, settings, storage, runner, data_dir,
                                                          fake_llm):
    fake_llm.delay(2.0)
    llm = InsightsSettings(llm_base_url=fake_llm.url, llm_model="m", llm_timeout_seconds=0.3)
    meeting_id, _ = _run_job(conn, msgspec.structs.replace(settings, insights=llm), storage, runner, data_dir)
    row = _row(conn, meeting_id)
    assert (row["status"], row["backend"]) == ("completed", "offline")
    assert any("no answer within 0.3 s" in w for w in row["insights"]["warnings"])
    assert len(fake_llm.requests) == 1


def test_cli_writes_insights_json_and_markdown(tmp_path, data_dir, capsys):
    out = tmp_path / "out"
    status = main(["transcribe", str(data_dir / "sample.wav"), "--output-dir", str(out), "--format", "json",
                   "--insights", "-q", "--beam-size", "1"])
    assert status == 0, capsys.readouterr().err
    ins = msgspec.json.decode((out / "sample.insights.json").read_bytes(), type=Insights)
    transcript = json.loads((out / "sample.json").read_text())
    assert ins.summary and all(s.text in _squash(transcript["text"]) for s in ins.summary)
    md = (out / "sample.insights.md").read_text()
    assert md.startswith("# Meeting insights: sample.wav") and "## Summary" in md and "## Action items" in md
