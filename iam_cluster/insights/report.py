"""Insights as a Markdown report, and as JSON (what the CLI writes beside a transcript)."""

from __future__ import annotations

import msgspec

from iam_cluster.insights.types import Insights


def _clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def to_json(insights: Insights) -> str:
    """Indented JSON of the insights."""
    return msgspec.json.format(msgspec.json.encode(insights), indent=2).decode("utf-8") + "\n"


def to_markdown(insights: Insights, title: str = "Meeting insights") -> str:
    """A readable report: overview, summary, action items, keywords, speakers, questions, mood over time."""
    i = insights
    out = [f"# {_cell(title)}", "",
           f"{_clock(i.duration)} recorded, {_clock(i.speech_time)} of speech, {i.words} words "
           f"({i.words_per_minute:.0f} per minute), {len(i.speakers)} speaker(s); overall tone "
           f"{i.sentiment_label} ({i.sentiment:+.2f}).", ""]
    if i.abstract:
        out += ["## Summary", "", i.abstract.strip(), ""]
    if i.summary:
        out += ["## Key moments" if i.abstract else "## Summary", ""]
        out += [f"- **{_clock(s.start)}** {s.speaker}: {_cell(s.text)}" for s in i.summary]
        out.append("")
    out += ["## Action items", ""]
    if i.action_items:
        for a in i.action_items:
            extra = ", ".join(x for x in (f"owner: {a.owner}" if a.owner else "", f"due: {a.due}" if a.due else "") if x)
            where = f"**{_clock(a.start)}** {a.speaker}: " if a.speaker else ""
            out.append(f"- [ ] {where}{_cell(a.text)}" + (f" ({extra})" if extra else ""))
    else:
        out.append("None found.")
    out.append("")
    if i.keywords:
        out += ["## Keywords", "", ", ".join(f"{k.text} ({k.count})" for k in i.keywords), ""]
    if i.speakers:
        out += ["## Speakers", "",
                "| speaker | talk time | share | turns | words/min | questions | tone | keywords |",
                "|---|---:|---:|---:|---:|---:|---|---|"]
        for s in i.speakers:
            out.append(f"| {_cell(s.speaker)} | {_clock(s.talk_time)} | {100 * s.talk_share:.0f}% | {s.turns} | "
                       f"{s.words_per_minute:.0f} | {s.questions} | {s.sentiment_label} ({s.sentiment:+.2f}) | "
                       f"{_cell(', '.join(s.keywords))} |")
        out.append("")
    if i.questions:
        out += ["## Questions asked", ""]
        out += [f"- **{_clock(q.start)}** {q.speaker}: {_cell(q.text)}" for q in i.questions]
        out.append("")
    if i.segment_sentiment and len(i.timeline) > 1:
        out += ["## Tone over time", "", "| from | to | tone | speech |", "|---|---|---|---:|"]
        out += [f"| {_clock(b.start)} | {_clock(b.end)} | {b.label} ({b.compound:+.2f}) | {_clock(b.speech_seconds)} |"
                for b in i.timeline if b.speech_seconds > 0]
        out.append("")
    if i.warnings:
        out += ["## Notes", ""] + [f"- {_cell(w)}" for w in i.warnings] + [""]
    return "\n".join(out)
