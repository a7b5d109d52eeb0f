"""Speech recall of our engine against references and faster-whisper sequential, file by file.

For every set of files (``NAME=PATH[,PATH...]``, folders searched recursively) it transcribes each
file three ways with the same model: faster-whisper ``WhisperModel.transcribe`` (beam search, no
VAD: the peer), ours on each file alone (``runner.run``), and ours on the whole set as one
folder (``runner.run_many``, the packing path). ``--union`` adds every file of every set
as one more folder run, ``--shuffles N`` that folder in N more seeded orders. It prints, per
file, the word counts (reference, sequential, ours alone, ours folder), WER of each, files that
came out empty although sequential wrote words, words of the folder run found in another file's
reference but in neither this file's reference nor its alone run ("foreign" words: a sign of
words moved between packed files), and the time ranges of reference speech with no output of
ours (reference speech: the RTTM's turns beside the audio, otherwise sequential's segments).

Example::

    D=/work/shared/data
    python benchmarks/recall.py --set dev=$D/jfk.flac,$D/spk1_snt1.wav --set asr=$D/asr --union \\
        --label dev-recall
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

from common import (
    code_version,
    collect_audio,
    command_line,
    cpu_name,
    normalise,
    our_runner,
    save_report,
    settings_for,
)

RESULTS_DIR = Path(__file__).resolve().parent / "results"
CACHE_DIR = Path(__file__).resolve().parent / ".cache"
#: Reference speech left without any word of ours for at least this long is listed as a gap.
MIN_GAP = 1.5


@dataclass
class FileRun:
    """One system's output on one file: text and the (start, end) of each word or segment."""

    text: str
    spans: list[tuple[float, float]] = field(default_factory=list)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--set", dest="sets", action="append", required=True, metavar="NAME=PATH[,PATH...]")
    p.add_argument("--union", action="store_true", help="also run every file of every set as one folder")
    p.add_argument("--shuffles", type=int, default=0, metavar="N",
                   help="also run the union (or the last set) as a folder in N more seeded random orders: "
                        "which files share a window, and who sits next to whom, changes with the order")
    p.add_argument("--model", default="tiny.en")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--beam-size", type=int, default=5)
    p.add_argument("--option", action="append", default=[], metavar="KEY=JSON",
                   help="TranscribeOptions override, e.g. vad.threshold=0.3 (repeatable)")
    p.add_argument("--label", help="name of the run (default: date and time)")
    p.add_argument("--out", type=Path, help="Markdown report (default benchmarks/results/recall-LABEL.md)")
    p.add_argument("--json", type=Path, help="also write every output as JSON here")
    return p.parse_args(argv)


def model_folder(model: str) -> str:
    """The folder of ``model`` as the settings resolve it (every system loads the same files)."""
    from iam_cluster.pipeline.models import resolve_model

    return str(resolve_model(model, settings_for(model).models.cache_dir).path)


def transcribe_options(overrides: list[str], beam_size: int):
    """TranscribeOptions with ``key=json`` overrides (``vad.x`` reaches the VAD options)."""
    import msgspec

    from iam_cluster.pipeline.types import TranscribeOptions

    raw = msgspec.to_builtins(TranscribeOptions(beam_size=beam_size))
    for item in overrides:
        key, _, value = item.partition("=")
        target = raw
        *parents, last = key.split(".")
        for part in parents:
            target = target[part]
        target[last] = json.loads(value)
    return msgspec.convert(raw, TranscribeOptions)


def sequential(model, paths: list[Path], beam_size: int, model_name: str) -> dict[Path, FileRun]:
    """faster-whisper sequential beam search per file (cached by file content, model and beam)."""
    out = {}
    for path in paths:
        key = hashlib.sha1(f"{model_name}|{beam_size}|".encode() + path.read_bytes()).hexdigest()[:16]
        cached = CACHE_DIR / f"seq-{key}.json"
        if cached.is_file():
            data = json.loads(cached.read_text())
        else:
            segments, _ = model.transcribe(str(path), beam_size=beam_size)
            segs = [s for s in segments if s.text.strip()]
            data = {"text": " ".join(s.text.strip() for s in segs), "spans": [(s.start, s.end) for s in segs]}
            CACHE_DIR.mkdir(exist_ok=True)
            cached.write_text(json.dumps(data))
        out[path] = FileRun(data["text"], [tuple(s) for s in data["spans"]])
    return out


def ours_run(transcript) -> FileRun:
    spans = [(w.start, w.end) for s in transcript.segments for w in s.words] or [
        (s.start, s.end) for s in transcript.segments
    ]
    return FileRun(transcript.text, spans)


def rttm_speech(path: Path) -> list[tuple[float, float]] | None:
    rttm = path.with_suffix(".rttm")
    if not rttm.is_file():
        return None
    turns = []
    for line in rttm.read_text().splitlines():
        f = line.split()
        if len(f) > 4 and f[0] == "SPEAKER":
            turns.append((float(f[3]), float(f[3]) + float(f[4])))
    return turns


def gaps(speech: list[tuple[float, float]], output: list[tuple[float, float]], pad: float = 0.5):
    """Parts of ``speech`` at least MIN_GAP long that no output span (widened by ``pad``) touches."""
    covered = sorted((s - pad, e + pad) for s, e in output)
    found = []
    for start, end in sorted(speech):
        cursor = start
        for s, e in covered:
            if e <= cursor or s >= end:
                continue
            if s - cursor >= MIN_GAP:
                found.append((cursor, s))
            cursor = max(cursor, e)
        if end - cursor >= MIN_GAP:
            found.append((cursor, end))
    merged: list[tuple[float, float]] = []
    for s, e in sorted(found):
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(e, merged[-1][1]))
        else:
            merged.append((s, e))
    return merged


def wer_counts(ref: str, hyp: str) -> tuple[int, int]:
    import jiwer

    r, h = normalise(ref), normalise(hyp)
    if not r:
        return (len(h.split()), 0)
    m = jiwer.process_words(r, h)
    return (m.substitutions + m.deletions + m.insertions, len(r.split()))


def reference(path: Path) -> str | None:
    txt = path.with_suffix(".txt")
    return txt.read_text(encoding="utf-8") if txt.is_file() else None


def foreign_words(path: Path, folder: str, alone: str, refs: dict[Path, str | None]) -> list[str]:
    """Words of ``path``'s folder output that only another file's reference explains."""
    own = set(normalise(refs[path] or "").split()) | set(normalise(alone).split())
    others = set()
    for p, r in refs.items():
        if p != path and r:
            others |= set(normalise(r).split())
    return [w for w in normalise(folder).split() if w not in own and w in others]


def pct(counts: tuple[int, int]) -> str:
    return f"{100.0 * counts[0] / counts[1]:.2f}" if counts[1] else "–"


def evaluate(name: str, paths: list[Path], seq, alone, folder, refs) -> tuple[list[str], list[str], dict]:
    """Per-file rows, notes and the set's totals."""
    rows, notes = [], []
    tot = {"seq": [0, 0], "alone": [0, 0], "folder": [0, 0]}
    summary = {"empty": 0, "foreign": 0, "differ": 0, "gap_s": 0.0, "words": {"seq": 0, "alone": 0, "folder": 0}}
    for p in paths:
        ref = refs[p]
        cells = []
        for key, run in (("seq", seq[p]), ("alone", alone[p]), ("folder", folder[p])):
            summary["words"][key] += len(normalise(run.text).split())
            if ref is not None:
                e, n = wer_counts(ref, run.text)
                tot[key][0] += e
                tot[key][1] += n
                cells.append(pct((e, n)))
            else:
                cells.append("–")
        n_words = [len(normalise(x).split()) for x in (ref or "", seq[p].text, alone[p].text, folder[p].text)]
        empty = [k for k, r in (("alone", alone[p]), ("folder", folder[p])) if not r.text.strip() and seq[p].text.strip()]
        summary["empty"] += len(empty)
        foreign = foreign_words(p, folder[p].text, alone[p].text, refs)
        summary["foreign"] += len(foreign)
        differ = normalise(alone[p].text) != normalise(folder[p].text)
        summary["differ"] += differ
        speech = rttm_speech(p) or seq[p].spans
        holes = gaps(speech, alone[p].spans)
        summary["gap_s"] += sum(e - s for s, e in holes)
        flags = [f"EMPTY({','.join(empty)})" if empty else "", f"FOREIGN{foreign}" if foreign else "",
                 "folder≠alone" if differ else ""]
        rows.append(f"| {p.name} | {n_words[0] if ref is not None else '–'} | {n_words[1]} | {n_words[2]} "
                    f"| {n_words[3]} | {cells[0]} | {cells[1]} | {cells[2]} "
                    f"| {' '.join(f'{s:.1f}–{e:.1f}' for s, e in holes)} | {' '.join(f for f in flags if f)} |")
        if differ or empty or foreign:
            notes.append(f"- `{p.name}`\n  - ref: {ref and normalise(ref)}\n  - seq: {normalise(seq[p].text)}\n"
                         f"  - alone: {normalise(alone[p].text)}\n  - folder: {normalise(folder[p].text)}")
    summary.update({k: tuple(v) for k, v in tot.items()})
    return rows, notes, summary


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from faster_whisper import WhisperModel

    label = args.label or dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    sets = {}
    for spec in args.sets:
        name, _, items = spec.partition("=")
        sets[name] = collect_audio(items.split(","))
    if args.union:
        sets["union"] = list(dict.fromkeys(p for ps in list(sets.values()) for p in ps))
    base_name, base = list(sets.items())[-1]
    for k in range(1, args.shuffles + 1):
        sets[f"{base_name}~{k}"] = random.Random(k).sample(base, len(base))
    every = list(dict.fromkeys(p for ps in sets.values() for p in ps))
    refs = {p: reference(p) for p in every}
    runner = our_runner(args.model, "cpu", "int8", args.threads)
    stats = runner.pipeline.stats
    options = transcribe_options(args.option, args.beam_size)
    print(f"[recall] sequential on {len(every)} files", file=sys.stderr, flush=True)
    fw = WhisperModel(model_folder(args.model), device="cpu", compute_type="int8", cpu_threads=args.threads)
    seq = sequential(fw, every, args.beam_size, args.model)
    print("[recall] ours, each file alone", file=sys.stderr, flush=True)
    alone = {p: ours_run(runner.run(p, options)) for p in every}
    lines = [f"# Recall: {label}", "", f"Command: `{command_line()}`", "",
             f"Environment: CPU {cpu_name()}, threads {args.threads}, model {args.model} int8, beam "
             f"{args.beam_size}, code {code_version()}, options {args.option or 'defaults'}", ""]
    totals, dump = [], {}
    for name, paths in sets.items():
        print(f"[recall] ours, set {name} as one folder ({len(paths)} files)", file=sys.stderr, flush=True)
        stats.reset()
        folder = {p: ours_run(t) for p, t in runner.run_many(paths, options)}
        c = stats.snapshot()["counts"]
        rows, notes, s = evaluate(name, paths, seq, alone, folder, refs)
        totals.append(f"| {name} | {len(paths)} | {pct(s['seq'])} | {pct(s['alone'])} | {pct(s['folder'])} "
                      f"| {s['words']['seq']} / {s['words']['alone']} / {s['words']['folder']} "
                      f"| {s['empty']} | {s['foreign']} | {s['differ']} | {s['gap_s']:.1f} "
                      f"| {c.get('windows', 0)} / {c.get('again_windows', 0)} / {c.get('suspect_recordings', 0)} "
                      f"/ {c.get('retry_pieces', 0)} / {c.get('fallback_windows', 0)} "
                      f"| {c.get('guard_silent_words', 0)} / {c.get('guard_unsure_words', 0)} |")
        lines += [f"## Set `{name}`", "", "| file | ref words | seq | alone | folder | WER seq | WER alone "
                  "| WER folder | speech without output (alone), s | flags |", "|---|" + "---:|" * 8 + "---|",
                  *rows, "", *notes, ""]
        dump[name] = {str(p): {"ref": refs[p], "seq": seq[p].text, "alone": alone[p].text,
                               "folder": folder[p].text} for p in paths}
    lines[8:8] = ["| set | files | WER seq % | WER alone % | WER folder % | words seq / alone / folder "
                  "| empty | foreign words | folder≠alone files | speech without output s "
                  "| folder windows: all / later passes; suspect recordings; skipped pieces; fallbacks "
                  "| words the guards dropped: silent window / unsure words |",
                  "|---|" + "---:|" * 11, *totals, ""]
    save_report("\n".join(lines) + "\n", args.out or RESULTS_DIR / f"recall-{label}.md")
    if args.json:
        args.json.write_text(json.dumps(dump, indent=1))


if __name__ == "__main__":
    main()
