"""Packing stress: do files packed together keep their own words, whoever sits beside them?

A folder run packs short files into shared windows, so a file's words can depend on its
neighbours: Whisper may write one file's words into the silence before the next, alignment may
carry them across, or a file may come out empty. ``recall.py`` checks one or a few orders of a
set; this draws many small random groups (every file beside many different neighbours, in both
orders, some of them turned down to far-field level) and compares each file's packed
transcript with its transcript alone:

- **moved words**: words of a packed transcript that neither its own reference nor its alone
  transcript holds, but another file of its group does (reference or alone transcript);
- **empty**: files that came out empty packed although they had words alone;
- **changed**: files whose packed words differ from their alone words at all, and the WER of the
  packed run against the alone run's, over the files with references.

``--pairs`` packs every ordered pair of the files instead.

Example::

    python benchmarks/packing.py --audio ../shared/data/asr --groups 150 --size 2-4 --quiet 0.3 \\
        --label packing-stress
"""

from __future__ import annotations

import argparse
import difflib
import random
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from common import code_version, collect_audio, command_line, cpu_name, normalise, our_runner, save_report

RESULTS_DIR = Path(__file__).resolve().parent / "results"
#: Far-field meeting speech sits near this level (dBFS); ``--quiet`` turns files down to it.
QUIET_DBFS = -40.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--audio", nargs="+", required=True, help="files or folders (a .txt beside a file is its reference)")
    p.add_argument("--groups", type=int, default=100, help="random groups to pack")
    p.add_argument("--pairs", action="store_true",
                   help="instead of random groups, every ordered pair of the files (as given, none turned down)")
    p.add_argument("--size", default="2-4", help="files per group, N or MIN-MAX")
    p.add_argument("--quiet", type=float, default=0.25,
                   help=f"share of the files also used turned down to {QUIET_DBFS:.0f} dBFS")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--model", default="tiny.en")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--label", help="name of the run (default: date and time)")
    p.add_argument("--out", type=Path, help="Markdown report (default benchmarks/results/packing-LABEL.md)")
    return p.parse_args(argv)


def words(text: str) -> list[str]:
    return normalise(text).split()


def moved_words(own: set[str], packed: str, others: set[str]) -> list[str]:
    """Words of ``packed`` that only another file of the group explains. Numbers are left out:
    Whisper writes "one two three" or "1 2 3" depending on what it heard around them."""
    return [w for w in words(packed) if w not in own and w in others and not w.isdigit()]


def main(argv: list[str] | None = None) -> None:
    import jiwer

    from iam_cluster.errors import IAMError
    from iam_cluster.pipeline.decode import decode_audio
    from iam_cluster.pipeline.level import speech_level
    from iam_cluster.pipeline.types import Audio, TranscribeOptions

    args = parse_args(argv)
    label = args.label or time.strftime("%Y%m%d-%H%M%S")
    lo, _, hi = args.size.partition("-")
    sizes = (int(lo), int(hi or lo))
    rng = random.Random(args.seed)
    paths = collect_audio(args.audio)
    audios: dict[str, Audio] = {}
    refs: dict[str, str | None] = {}
    for path in paths:
        try:
            audio = decode_audio(path)
        except IAMError as exc:  # a folder may hold a broken file: say so and go on
            print(f"[packing] skipped {path}: {exc}", file=sys.stderr, flush=True)
            continue
        ref = path.with_suffix(".txt")
        audios[path.name] = audio
        refs[path.name] = ref.read_text(encoding="utf-8") if ref.is_file() else None
    for name in [] if args.pairs else rng.sample(sorted(audios), round(args.quiet * len(audios))):
        audio = audios[name]
        level = speech_level(audio.samples)
        if level is not None:
            quiet = audio.samples * np.float32(10 ** ((QUIET_DBFS - level) / 20))
            audios[f"quiet:{name}"] = Audio(f"quiet:{name}", quiet)
            refs[f"quiet:{name}"] = refs[name]
    names = sorted(audios)
    if len(names) < 2:
        raise SystemExit("packing needs at least two readable audio files")
    runner = our_runner(args.model, "cpu", "int8", args.threads)
    options = TranscribeOptions()
    print(f"[packing] {len(names)} files alone", file=sys.stderr, flush=True)
    alone = {n: runner.run(audios[n], options).text for n in names}
    if args.pairs:
        groups = [[a, b] for a in names for b in names if a != b]
    else:
        groups = [rng.sample(names, rng.randint(*sizes)) for _ in range(args.groups)]
    moved: list[tuple[list[str], str, list[str], str]] = []
    changes: list[tuple[str, str, str]] = []
    empty: list[tuple[list[str], str]] = []
    changed = packed_files = 0
    errors = {"alone": 0, "packed": 0}
    ref_words = 0
    start = time.perf_counter()
    for k, group in enumerate(groups, 1):
        texts = [t.text for t in runner.run_together([audios[n] for n in group], options)]
        for n, text in zip(group, texts):
            packed_files += 1
            own = set(words(refs[n] or "")) | set(words(alone[n]))
            others = {w for m in group if m != n for w in words(refs[m] or "") + words(alone[m])}
            if found := moved_words(own, text, others):
                moved.append((group, n, found, text))
            if not words(text) and words(alone[n]):
                empty.append((group, n))
            if words(text) != words(alone[n]):
                changed += 1
                changes.append((n, alone[n], text))
            if refs[n]:
                ref = normalise(refs[n])
                ref_words += len(ref.split())
                for key, hyp in (("alone", alone[n]), ("packed", text)):
                    m = jiwer.process_words(ref, normalise(hyp) or "<empty>")
                    errors[key] += m.substitutions + m.deletions + m.insertions
        if k % 20 == 0:
            print(f"[packing] {k}/{len(groups)} groups, {len(moved)} with moved words", file=sys.stderr, flush=True)
    seconds = time.perf_counter() - start
    pct = {k: 100.0 * v / max(1, ref_words) for k, v in errors.items()}
    lines = [
        f"# Packing stress: {label}", "", f"Command: `{command_line()}`", "",
        f"Environment: CPU {cpu_name()}, threads {args.threads}, model {args.model} int8, code {code_version()}; "
        f"{len(paths)} files, {len(names) - len(paths)} of them also at {QUIET_DBFS:.0f} dBFS; "
        f"{len(groups)} groups of {'2 (every ordered pair)' if args.pairs else args.size} (seed {args.seed}), "
        f"packed in {seconds:.0f} s", "",
        "| packed files | with moved words | moved words | empty (words alone) | changed | WER alone % | WER packed % |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {packed_files} | {len(moved)} | {sum(len(m[2]) for m in moved)} | {len(empty)} | {changed} "
        f"| {pct['alone']:.2f} | {pct['packed']:.2f} |", "",
    ]
    if moved:
        lines += ["## Moved words", ""]
        for group, n, found, text in moved:
            lines.append(f"- `{n}` in {group}: {found}\n  - alone: {normalise(alone[n])}\n  - packed: {normalise(text)}")
        lines.append("")
    if empty:
        lines += ["## Empty", "", *(f"- `{n}` in {group}; alone: {normalise(alone[n])}" for group, n in empty), ""]
    if changes:
        edits: Counter[tuple[str, str]] = Counter()
        for _, before, after in changes:
            a, b = words(before), words(after)
            for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
                if op != "equal":
                    edits[(" ".join(a[i1:i2]), " ".join(b[j1:j2]))] += 1
        lines += ["## What changed (alone -> packed), most frequent first", "", "| alone | packed | times |",
                  "|---|---|---:|", *(f"| {a or '∅'} | {b or '∅'} | {k} |" for (a, b), k in edits.most_common(40)), ""]
    save_report("\n".join(lines) + "\n", args.out or RESULTS_DIR / f"packing-{label}.md")


if __name__ == "__main__":
    main()
