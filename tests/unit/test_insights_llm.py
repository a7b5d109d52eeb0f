"""The abstractive backend against a fake OpenAI-compatible server: canned answers, errors, timeouts."""

from __future__ import annotations

import json
import time

import pytest

from iam_cluster.insights import InsightsOptions, compute_insights, make_chat_client
from iam_cluster.insights.llm import ChatClient, LLMError, parse_reply
from tests.unit.test_insights import PLANNING

OFFLINE_ITEMS = [a.text for a in compute_insights(PLANNING).action_items]


def test_canned_completion_gives_abstract_and_anchored_action_items(fake_llm):
    client = ChatClient(fake_llm.url, "meeting-model", api_key="sk-test", timeout=5)
    ins = compute_insights(PLANNING, llm=client)
    assert ins.backend == "llm:meeting-model" and ins.warnings == []
    assert ins.abstract == "The team agreed on the launch plan. Ana will send the report by Friday."
    (item,) = ins.action_items
    assert (item.text, item.owner, item.due, item.source) == ("Send the report", "Ana", "Friday", "llm")
    # Placed at the transcript sentence it shares most words with.
    assert (item.speaker, item.start) == ("A", 11.5)
    # The offline summary is still there beside the abstract.
    assert ins.summary
    (request,) = fake_llm.requests
    assert request["headers"]["Authorization"] == "Bearer sk-test"
    body = request["json"]
    assert body["model"] == "meeting-model" and body["response_format"] == {"type": "json_object"}
    assert "[00:11] A: I'll send the report by Friday." in body["messages"][1]["content"]


def test_fenced_json_is_accepted(fake_llm):
    fake_llm.reply("```json\n" + json.dumps({"summary": "Short.", "action_items": []}) + "\n```")
    ins = compute_insights(PLANNING, llm=ChatClient(fake_llm.url, "m", timeout=5))
    assert ins.abstract == "Short." and ins.action_items == [] and ins.backend == "llm:m"
    assert "Authorization" not in fake_llm.requests[0]["headers"]


@pytest.mark.parametrize("status", [500, 429, 401])
def test_http_errors_fall_back_to_offline(fake_llm, status):
    fake_llm.fail_with(status)
    ins = compute_insights(PLANNING, llm=ChatClient(fake_llm.url, "m", timeout=5))
    assert ins.backend == "offline" and ins.abstract is None
    assert [a.text for a in ins.action_items] == OFFLINE_ITEMS
    assert any(f"HTTP {status}" in w for w in ins.warnings)
    assert not any("127.0.0.1" in w or "overloaded" in w for w in ins.warnings)  # for the log, not users


def test_timeout_falls_back_within_the_timeout(fake_llm):
    fake_llm.delay(3.0)
    start = time.monotonic()
    ins = compute_insights(PLANNING, llm=ChatClient(fake_llm.url, "m", timeout=0.5))
    assert time.monotonic() - start < 2.5
    assert ins.backend == "offline" and [a.text for a in ins.action_items] == OFFLINE_ITEMS
    assert any("no answer within 0.5 s" in w for w in ins.warnings)


@pytest.mark.parametrize("content", ["Sure! Here is a summary of the meeting.", '{"action_items": []}',
                                     '{"summary": 3}'])
def test_unusable_content_falls_back(fake_llm, content):
    fake_llm.reply(content)
    ins = compute_insights(PLANNING, llm=ChatClient(fake_llm.url, "m", timeout=5))
    assert ins.backend == "offline" and any("unusable reply" in w for w in ins.warnings)


def test_not_a_completion_falls_back(fake_llm):
    fake_llm.raw(b"<html>gateway</html>")
    ins = compute_insights(PLANNING, llm=ChatClient(fake_llm.url, "m", timeout=5))
    assert ins.backend == "offline" and ins.action_items


def test_unreachable_endpoint_falls_back():
    ins = compute_insights(PLANNING, llm=ChatClient("http://127.0.0.1:9/v1", "m", timeout=1))
    assert ins.backend == "offline" and any("cannot reach the endpoint (ConnectError)" in w for w in ins.warnings)


def test_abstractive_off_sends_nothing(fake_llm):
    ins = compute_insights(PLANNING, InsightsOptions(abstractive=False), llm=ChatClient(fake_llm.url, "m"))
    assert ins.backend == "offline" and fake_llm.requests == []


def test_long_transcripts_are_cut(fake_llm):
    client = ChatClient(fake_llm.url, "m", timeout=5, max_input_chars=80)
    compute_insights(PLANNING, llm=client)
    prompt = fake_llm.requests[0]["json"]["messages"][1]["content"]
    assert "the rest of the transcript is cut" in prompt and len(prompt) < 200


def test_make_chat_client_needs_a_base_url():
    assert make_chat_client(None, "m") is None
    client = make_chat_client("http://h:1/v1/", "m", "k", 7.0)
    assert client.url == "http://h:1/v1/chat/completions" and client.timeout == 7.0


def test_parse_reply_errors():
    with pytest.raises(LLMError):
        parse_reply(b'{"choices": []}', "x")
    with pytest.raises(LLMError):
        parse_reply(b'{"choices": [{"message": {"content": null}}]}', "x")


def test_settings_from_the_environment():
    from iam_cluster.errors import ConfigError
    from iam_cluster.insights.service import client_from, options_from
    from iam_cluster.settings import load_settings

    s = load_settings({"IAM_INSIGHTS": "false", "IAM_INSIGHTS_SUMMARY_SENTENCES": "3",
                       "IAM_LLM_BASE_URL": "http://vllm:8000/v1", "IAM_LLM_MODEL": "qwen",
                       "IAM_LLM_API_KEY": "k", "IAM_LLM_TIMEOUT_SECONDS": "12.5"}).insights
    assert (s.enabled, s.summary_sentences, s.llm_model, s.llm_timeout_seconds) == (False, 3, "qwen", 12.5)
    assert options_from(s, keywords=4) == InsightsOptions(summary_sentences=3, keywords=4)
    client = client_from(s)
    assert (client.url, client.model, client.api_key) == ("http://vllm:8000/v1/chat/completions", "qwen", "k")
    assert client_from(load_settings({}).insights) is None
    with pytest.raises(ConfigError, match="IAM_LLM_MODEL"):
        load_settings({"IAM_LLM_BASE_URL": "http://vllm:8000/v1"})
