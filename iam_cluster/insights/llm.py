"""Optional abstractive backend: a written summary and action items from an OpenAI-compatible chat endpoint.

Any server speaking ``POST {base_url}/chat/completions`` works (vLLM, llama.cpp's server, Ollama,
a hosted API). It is asked for one JSON object; whatever goes wrong (timeout, HTTP error, a reply
that is not that object) raises ``LLMError`` and the caller keeps its offline result.
"""

from __future__ import annotations

import re

import msgspec

from iam_cluster.errors import IAMError
from iam_cluster.insights.types import ActionItem, Sentence

SYSTEM_PROMPT = """You read meeting transcripts and write what the participants need afterwards.
Answer with one JSON object and nothing else, of the form:
{"summary": "<a summary of the meeting in at most 120 words>",
 "action_items": [{"text": "<the task>", "owner": "<speaker label or name, or null>", "due": "<deadline as said, or null>"}]}
Action items are tasks someone committed to, was asked to do, or was assigned; leave out anything else.
Use only what the transcript says. Write in the transcript's language."""


class LLMError(IAMError):
    """The chat endpoint gave no usable answer.

    ``message`` is shown to users (no address, no server text); ``detail`` is for the log.
    """

    code = "llm_unavailable"

    def __init__(self, message: str, detail: str = "") -> None:
        self.detail = detail
        super().__init__(message)


class LLMAction(msgspec.Struct, frozen=True):
    text: str
    owner: str | None = None
    due: str | None = None


class LLMReply(msgspec.Struct, frozen=True):
    summary: str
    action_items: list[LLMAction] = []


class ChatClient:
    """A client of one OpenAI-compatible chat endpoint.

    Args:
        base_url: The API root, e.g. ``http://vllm:8000/v1`` (``/chat/completions`` is appended).
        model: Model name the server knows.
        api_key: Sent as a bearer token when given.
        timeout: Seconds allowed to each network step (connecting, sending, waiting for the answer).
        max_input_chars: Longest transcript sent; longer ones are cut (and the reply says less).
    """

    def __init__(self, base_url: str, model: str, api_key: str | None = None, timeout: float = 30.0,
                 max_input_chars: int = 48_000) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.api_key = api_key
        self.timeout = timeout
        self.max_input_chars = max_input_chars

    @property
    def name(self) -> str:
        return f"llm:{self.model}"

    def complete(self, sentences: list[Sentence]) -> LLMReply:
        """Asks for the summary and action items of the meeting made of ``sentences``.

        Raises:
            LLMError: timeout, connection or HTTP error, or a reply that is not the JSON asked for.
        """
        import httpx

        body = {
            "model": self.model,
            "messages": [{"role": "system", "content": SYSTEM_PROMPT},
                         {"role": "user", "content": transcript_prompt(sentences, self.max_input_chars)}],
            "temperature": 0.2,
            "response_format": {"type": "json_object"},
        }
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        try:
            response = httpx.post(self.url, json=body, headers=headers, timeout=self.timeout)
            response.raise_for_status()
        except httpx.TimeoutException:
            raise LLMError(f"no answer within {self.timeout:g} s", self.url) from None
        except httpx.HTTPStatusError as exc:
            raise LLMError(f"HTTP {exc.response.status_code}", f"{self.url}: {exc.response.text[:300]}") from None
        except httpx.HTTPError as exc:
            raise LLMError(f"cannot reach the endpoint ({type(exc).__name__})", f"{self.url}: {exc}") from None
        return parse_reply(response.content, self.url)


def transcript_prompt(sentences: list[Sentence], max_chars: int) -> str:
    """``[mm:ss] SPEAKER: text`` lines, cut at ``max_chars`` (the cut is said in the prompt)."""
    lines, used = [], 0
    for s in sentences:
        line = f"[{int(s.start // 60):02d}:{int(s.start % 60):02d}] {s.speaker}: {s.text}"
        if used + len(line) + 1 > max_chars:
            lines.append("[... the rest of the transcript is cut ...]")
            break
        lines.append(line)
        used += len(line) + 1
    return "Transcript:\n" + "\n".join(lines)


_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


def parse_reply(raw: bytes, source: str) -> LLMReply:
    """The ``LLMReply`` inside a chat completion (a fenced code block is accepted too).

    Raises:
        LLMError: the completion or its content is not what was asked for.
    """
    try:
        completion = msgspec.json.decode(raw)
        content = completion["choices"][0]["message"]["content"]
        if not isinstance(content, str):
            raise TypeError("content is not text")
        fenced = _FENCE.match(content)
        return msgspec.json.decode((fenced.group(1) if fenced else content).encode(), type=LLMReply)
    except (msgspec.DecodeError, msgspec.ValidationError, KeyError, IndexError, TypeError) as exc:
        raise LLMError("unusable reply (not the JSON asked for)", f"{source}: {exc}") from None


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


def anchor(items: list[LLMAction], sentences: list[Sentence]) -> list[ActionItem]:
    """The endpoint's action items, each placed at the sentence it shares most words with."""
    out = []
    vocab = [_words(s.text) for s in sentences]
    for item in items:
        if not item.text.strip():
            continue
        words = _words(item.text)
        best = max(range(len(sentences)), key=lambda i: len(words & vocab[i]) / (len(vocab[i]) or 1),
                   default=None)
        at = sentences[best] if best is not None else None
        out.append(ActionItem(start=at.start if at else 0.0, end=at.end if at else 0.0,
                              speaker=at.speaker if at else "", text=item.text.strip(),
                              kind="assignment" if item.owner else "commitment", confidence=1.0,
                              owner=item.owner or None, due=item.due or None, source="llm"))
    return out
