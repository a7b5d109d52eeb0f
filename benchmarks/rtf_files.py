"""The per-file part of ``rtf.py --per-file``: ratios per recording, their minimum and median, words written,
round-to-round spread, and where our time went (stages) on each recording."""

from __future__ import annotations

import statistics
from pathlib import Path

from common import normalise

STAGES = ("decode", "vad", "encode", "generate", "fallback", "tail", "align", "unpack", "asr_again")
COUNTS = ("windows", "again_windows", "fallback_windows", "tail_windows", "tail_words", "retry_pieces",
          "suspect_recordings", "stretched_windows", "guard_looped_words")
#: The stages the model's copies work in (on CPU each is timed on the copy's own thread, none inside another).
MODEL_STAGES = ("encode", "generate", "fallback", "tail", "align")


def _seconds(path: Path) -> float:
    from faster_whisper.audio import decode_audio

    return len(decode_audio(str(path), sampling_rate=16000)) / 16000


def _wer(path: Path, hyp: str) -> str:
    import jiwer

    ref = path.with_suffix(".txt")
    if not ref.is_file():
        return "–"
    r, h = normalise(ref.read_text(encoding="utf-8")), normalise(hyp)
    return f"{100 * jiwer.wer(r, h):.1f}" if r else "–"


def _spread(walls: list[float]) -> float:
    """Round-to-round spread of one file's wall times: (slowest - fastest) / median, in %."""
    return 100 * (max(walls) - min(walls)) / statistics.median(walls) if len(walls) > 1 else 0.0


def per_file_report(paths: list[Path], results: dict[str, dict]) -> str:
    """Markdown tables: per file speeds and ratios to ours, WER, spread; stages; summary."""
    ours = "ours" if "ours" in results else next(iter(results))
    peers = [s for s in results if s not in (ours, "ours_nowords")]
    secs = [_seconds(p) for p in paths]
    med = {s: [statistics.median(t) for t in r["walls"]] for s, r in results.items()}
    ratios = {peer: [o / w if w else 0.0 for o, w in zip(med[peer], med[ours])] for peer in peers}
    # Every system's round-to-round spread, so that a host whose speed moves within the run shows
    # on the peers too (they run no fallbacks, no retries: their spread is the host's).
    spreads = {s: [_spread(w) for w in r["walls"]] for s, r in results.items()}
    head = ["file", "audio s", *(f"{s} x-RT" for s in results), *(f"ours/{p}" for p in peers),
            *(f"WER {s}" for s in results), *(f"words {s}" for s in results), *(f"{s} spread %" for s in results)]
    lines = ["", "## Per file", "", "| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for i, (path, sec) in enumerate(zip(paths, secs)):
        cells = [path.name, f"{sec:.0f}", *(f"{sec / med[s][i]:.1f}" for s in results),
                 *(f"{ratios[p][i]:.2f}" for p in peers),
                 *(_wer(path, results[s]["texts"][i]) for s in results),
                 *(str(len(normalise(results[s]["texts"][i]).split())) for s in results),
                 *(f"{spreads[s][i]:.0f}" for s in results)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "`words`: how many words each system wrote for the file (normalised as for WER). Where there is "
              "no reference, it tells a peer that is fast because it wrote less (skipped speech) from one that "
              "is fast at the same work."]
    lines += ["", "| ours vs | min ratio (file) | median ratio |", "|---|---:|---:|"]
    for p in peers:
        worst = min(range(len(paths)), key=lambda i: ratios[p][i])
        lines.append(f"| {p} | {ratios[p][worst]:.2f} ({paths[worst].name}) | {statistics.median(ratios[p]):.2f} |")
    lines += ["", "| system | largest spread % (file) | median spread % |", "|---|---:|---:|"]
    for s in results:
        worst = max(range(len(paths)), key=lambda i: spreads[s][i])
        lines.append(f"| {s} | {spreads[s][worst]:.0f} ({paths[worst].name}) | {statistics.median(spreads[s]):.0f} |")
    stages = results[ours].get("stages") or []
    if stages:
        lines += ["", f"### Where {ours}'s time goes (seconds per run; counts per run)", "",
                  "| file | wall | copies busy | " + " | ".join(STAGES) + " | " + " | ".join(COUNTS) + " |",
                  "|---|" + "---:|" * (2 + len(STAGES) + len(COUNTS))]
        for i, (path, st) in enumerate(zip(paths, stages)):
            sec, cnt = st.get("seconds", {}), st.get("counts", {})
            busy = sum(sec.get(k, 0.0) for k in MODEL_STAGES) / med[ours][i] if med[ours][i] else 0.0
            lines.append(f"| {path.name} | {med[ours][i]:.2f} | {busy:.2f} | "
                         + " | ".join(f"{sec.get(k, 0):.2f}" for k in STAGES)
                         + " | " + " | ".join(f"{cnt.get(k, 0):g}" for k in COUNTS) + " |")
        lines += ["", "`encode`, `generate`, `fallback`, `tail` (windows decoded on past where their text stopped) and "
                  "`align` are inside `asr` (first pass) and `asr_again` "
                  "(later passes: speech a window skipped, recordings whose words were in doubt); `decode` "
                  "and `vad` run in a background thread while the model works. `copies busy`: the seconds of "
                  "those five stages (summed over the model's copies) per second of wall, how many copies were at "
                  "work on average (two single-thread copies on a 2-thread CPU: 2.00 would be no idle time)."]
    return "\n".join(lines) + "\n"
