"""Transcription options against each other, in ONE process with the model loaded once.

Each variant is a set of ``TranscribeOptions`` overrides (``KEY=JSON``, ``vad.x`` reaches the VAD
options). Every file is transcribed by every variant in turn, the order reversed each round, so a
host whose speed drifts slows each variant alike; small differences (a few per cent) that separate
subprocess runs (``rtf.py``) drown in a shared VM's drift show here. Reports, per variant: the sum
over files of each file's median wall time, word errors against the ``.txt`` next to each file
(plain and Whisper-normalised; first round), and the engine's window counts.

Example::

    python benchmarks/options_ab.py --audio /tmp/longform/quiet_read.wav --rounds 2 \\
        --variant beam5= --variant beam1=beam_size=1
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import time
from pathlib import Path

from common import code_version, collect_audio, command_line, cpu_name, normalise, our_runner, whisper_normalise
from recall import transcribe_options

COUNTS = ("windows", "again_windows", "tail_windows", "fallback_windows", "numeral_echoes")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--audio", nargs="+", required=True, help="audio files and/or folders (recursive)")
    p.add_argument("--variant", action="append", required=True, metavar="NAME=[KEY=JSON[;KEY=JSON...]]",
                   help="a named set of option overrides; 'NAME=' is the defaults")
    p.add_argument("--model", default="tiny.en")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--label", help="name of the run (default: date and time)")
    p.add_argument("--out", type=Path, help="Markdown report (default benchmarks/results/options-LABEL.md)")
    return p.parse_args(argv)


def variants(specs: list[str]) -> dict[str, object]:
    out = {}
    for spec in specs:
        name, _, rest = spec.partition("=")
        out[name] = transcribe_options([s for s in rest.split(";") if s], beam_size=5)
    return out


def main(argv: list[str] | None = None) -> None:
    import jiwer

    args = parse_args(argv)
    files = collect_audio(args.audio)
    options = variants(args.variant)
    runner = our_runner(args.model, "cpu", "int8", args.threads, batch_size=args.batch_size)
    stats = runner.pipeline.stats
    walls = {v: {f: [] for f in files} for v in options}
    errors = {v: {} for v in options}
    counts = {v: dict.fromkeys(COUNTS, 0) for v in options}
    for r in range(max(1, args.rounds)):
        for f in files:
            for v in (list(options) if r % 2 == 0 else list(options)[::-1]):
                stats.reset()
                start = time.perf_counter()
                result = [t for _, t in runner.run_many([f], options[v])][0]
                walls[v][f].append(time.perf_counter() - start)
                if r or isinstance(result, Exception):
                    continue
                snap = stats.snapshot()["counts"]
                for k in COUNTS:
                    counts[v][k] += snap.get(k, 0)
                ref = f.with_suffix(".txt")
                if ref.exists():
                    per = []
                    for norm in (normalise, whisper_normalise):
                        m = jiwer.process_words(norm(ref.read_text()), norm(result.text))
                        per.append((m.substitutions + m.deletions + m.insertions, len(norm(ref.read_text()).split())))
                    errors[v][f] = per
                print(f"[ab] round {r + 1} {v} {f.name} {walls[v][f][-1]:.2f} s", flush=True)
    label = args.label or dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    lines = [f"# Options A/B: {label}", "", f"Command: `{command_line()}`", "",
             f"Environment: CPU {cpu_name()}, threads {args.threads}, model {args.model} int8, batch "
             f"{args.batch_size}, rounds {args.rounds}, code {code_version()}", "",
             "| variant | overrides | wall s (sum of per-file medians) | vs first | WER % (errors/words) "
             "| Whisper-normalised WER % | " + " | ".join(COUNTS) + " |",
             "|---|---|---:|---:|---:|---:|" + "---:|" * len(COUNTS)]
    base = None
    for v, spec in zip(options, args.variant):
        wall = sum(statistics.median(w) for w in walls[v].values())
        base = base or wall
        e = [sum(x[k][0] for x in errors[v].values()) for k in (0, 1)]
        n = [sum(x[k][1] for x in errors[v].values()) for k in (0, 1)]
        wer = [f"{100 * e[k] / n[k]:.2f} ({e[k]}/{n[k]})" if n[k] else "–" for k in (0, 1)]
        lines.append(f"| {v} | `{spec.partition('=')[2] or 'defaults'}` | {wall:.2f} | {wall / base:.3f} | "
                     f"{wer[0]} | {wer[1]} | " + " | ".join(str(counts[v][k]) for k in COUNTS) + " |")
    lines += ["", "| file | " + " | ".join(f"{v} s | {v} errors" for v in options) + " |",
              "|---|" + "---:|---:|" * len(options)]
    for f in files:
        cells = []
        for v in options:
            cells.append(f"{statistics.median(walls[v][f]):.2f}")
            cells.append(str(errors[v][f][0][0]) if f in errors[v] else "–")
        lines.append(f"| {f.name} | " + " | ".join(cells) + " |")
    out = args.out or Path(__file__).resolve().parent / "results" / f"options-{label}.md"
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"[report] written {out}")


if __name__ == "__main__":
    main()
