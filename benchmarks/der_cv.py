"""Cross-validated DER of the embedded diarizer: every file scored with settings chosen without it.

Each file is analysed once per speaker encoder (normalisation, segmentation, embeddings: the
expensive part), then every setting of the grid (``Decision``: speech threshold, clustering
method and similarity, minimum clean speech to found a speaker, overlap labels) is decided and
scored on every file. For each file, the setting with the lowest DER over the files *unrelated*
to it is the one it is scored with. Two files are related when their RTTMs share a speaker id:
recordings of one meeting (AMI ids are per person) and a concatenation of excerpts (which keeps
its parts' ids) never tune each other.

Given several folders (the excerpts of ``shared/data``, the dense meetings and long recordings of
``make_longform.py``), a setting is chosen by the mean of each folder's DER rather than by their
pooled DER: ten minutes of one kind must not outvote thirty seconds of another. The report then
also gives each folder's cross-validated figures on their own.
"""

from __future__ import annotations

import itertools
import os
import sys
import time
from dataclasses import dataclass, replace

import numpy as np
from der import COMPONENTS, delivered, reference_turns, to_annotation

#: ``spectral`` (eigengap) is left out: never chosen in the earlier runs (``der-cv-cpu.md`` before
#: issue 12, ``der-cv-step10-cpu.md``) and most of the grid's scoring time.
GRID = {
    "speech_threshold": (0.3, 0.4, 0.5, 0.6, 0.7),
    "method": ("ahc",),
    "similarity": (0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85),
    "min_cluster_seconds": (0.5, 1.0, 2.0),
    "overlap": (True, False),
    "min_share": (0.0, 0.02, 0.04, 0.08),
    "founding_in_speech": (False, True),
}
COLLAR = 0.25


@dataclass
class Scored:
    """One file decided with one setting."""

    parts: dict[str, float]
    found: int
    #: seconds of reference speech, of labelled speech, and of both
    speech: tuple[float, float, float]

    @property
    def recall(self) -> float:
        return self.speech[2] / max(self.speech[0], 1e-9)

    @property
    def precision(self) -> float:
        return self.speech[2] / max(self.speech[1], 1e-9)


def related_groups(references: dict[str, list]) -> dict[str, set[str]]:
    """For each file, the files sharing at least one speaker id with it (itself included)."""
    ids = {name: {t.speaker for t in turns} for name, turns in references.items()}
    return {a: {b for b in ids if ids[a] & ids[b] or a == b} for a in ids}


def speech_overlap(reference, hypothesis, duration: float) -> tuple[float, float, float]:
    """Seconds of reference speech, of ``hypothesis`` speech and of both (10-ms grid, no collar):
    speech recall is both / reference, precision both / hypothesis."""
    def mask(turns):
        m = np.zeros(int(duration * 100) + 1, bool)
        for t in turns:
            m[int(t.start * 100) : int(t.end * 100)] = True
        return m

    ref, hyp = mask(reference), mask(hypothesis)
    return ref.sum() / 100, hyp.sum() / 100, (ref & hyp).sum() / 100


def piece_shares(analysis, reference) -> list[dict[str, float]]:
    """Per embedded piece of ``analysis``, the seconds of each reference speaker's turns that
    overlap the piece's span."""
    seg, out = analysis.seg, []
    half = seg.step / 2
    for c, lo, hi in zip(analysis.chunk.tolist(), analysis.lo.tolist(), analysis.hi.tolist()):
        start = float(seg.times(seg.chunk_frames[c] + lo)) - half
        end = float(seg.times(seg.chunk_frames[c] + hi)) + half
        share: dict[str, float] = {}
        for t in reference:
            both = min(t.end, end) - max(t.start, start)
            if both > 0:
                share[t.speaker] = share.get(t.speaker, 0.0) + both
        out.append(share)
    return out


def embedded_speakers(analysis, reference) -> set[str]:
    """The reference speakers that own at least one embedded piece (the piece's frames overlap
    their turns more than anyone else's): a speaker without one cannot be found by any clustering,
    whatever its setting."""
    return {max(share, key=share.get) for share in piece_shares(analysis, reference) if share}


def settings(grid: dict) -> list:
    from iam_cluster.pipeline.diarize.embedded import Decision

    keys = list(grid)
    return [replace(Decision(), **dict(zip(keys, values))) for values in itertools.product(*grid.values())]


def analyse_all(encoder: str, files, step: float, int8: bool = True, asr=None):
    """``name -> (analysis, reference turns, duration, seconds spent, transcript)`` for every file,
    analysed as in the pipeline: the VAD's speech regions spare the segmentation the chunks it found
    silent. ``asr``: a ``Pipeline`` that transcribes each file once (``--delivered``), else None."""
    from iam_cluster.pipeline.decode import decode_audio
    from iam_cluster.pipeline.diarize.embedded import EmbeddedDiarizer

    from iam_cluster.pipeline.run import find_speech
    from iam_cluster.pipeline.types import TranscribeOptions
    from iam_cluster.pipeline.vad import SileroVad

    diarizer = EmbeddedDiarizer(encoder=encoder, segmentation_step=step, int8=int8)
    vad, options = SileroVad(), TranscribeOptions()
    out = {}
    for index, (path, rttm, _) in enumerate(files):
        audio = decode_audio(path, max_duration=None)
        regions = find_speech(audio, options, vad)  # as the pipeline hands them to the diarizer
        if index == 0:
            diarizer.analyse(audio, speech_regions=regions)  # warm-up: lazy imports, first allocations
        start = time.perf_counter()
        analysis = diarizer.analyse(audio, speech_regions=regions)
        seconds = time.perf_counter() - start
        transcript = asr.transcribe_regions([audio], [regions], options)[0] if asr is not None else None
        out[path.stem] = (analysis, reference_turns(rttm, path), audio.duration, seconds, transcript)
        print(f"[cv] {encoder}: analysed {path.name} in {seconds:.2f} s", file=sys.stderr, flush=True)
    return out


def score_grid(analysed: dict, grid: list, workers: int = 1) -> dict[tuple[int, str], Scored]:
    """Every file decided and scored with every setting; ``workers`` processes share the files
    (forked: the analyses are not copied)."""
    global _SCORING
    _SCORING = (analysed, grid)
    if workers <= 1 or len(analysed) < 2:
        parts = [_score_file(name) for name in analysed]
    else:
        import multiprocessing

        with multiprocessing.get_context("fork").Pool(workers) as pool:
            parts = pool.map(_score_file, list(analysed), chunksize=1)
    return {key: value for part in parts for key, value in part.items()}


_SCORING: tuple = ({}, [])


def _score_file(name: str) -> dict[tuple[int, str], Scored]:
    from pyannote.core import Segment, Timeline
    from pyannote.metrics.diarization import DiarizationErrorRate

    from iam_cluster.pipeline.diarize.embedded import decide

    analysed, grid = _SCORING
    metric = DiarizationErrorRate(collar=COLLAR, skip_overlap=False)
    analysis, reference, duration, _, transcript = analysed[name]
    ref_ann = to_annotation(reference, name)
    uem = Timeline([Segment(0.0, duration)])
    table = {}
    for i, decision in enumerate(grid):
        found = decide(analysis, decision)
        turns = found.turns if transcript is None else delivered(transcript, found)
        parts = metric(ref_ann, to_annotation(turns, name), uem=uem, detailed=True)
        speech = speech_overlap(reference, turns, duration)
        table[i, name] = Scored(parts, len({t.speaker for t in turns}), speech)
    return table


def _der(table, i: int, names) -> float:
    errors = sum(table[i, n].parts[c] for n in names for c in COMPONENTS)
    return errors / max(sum(table[i, n].parts["total"] for n in names), 1e-9)


def objective(table, i: int, names, groups: dict[str, str] | None = None) -> float:
    """What a setting is chosen by on ``names``: their DER, or with ``groups`` (file -> folder)
    the mean of each folder's DER, so that a folder of short, sparse excerpts and one of long or
    dense recordings weigh alike, however much speech each holds."""
    if not groups:
        return _der(table, i, names)
    by_group: dict[str, list[str]] = {}
    for n in names:
        by_group.setdefault(groups[n], []).append(n)
    return float(np.mean([_der(table, i, members) for members in by_group.values()]))


def cross_validate(analysed: dict, grid: list, table, groups: dict[str, str] | None = None
                   ) -> list[tuple[str, int, list[str]]]:
    """``(file, chosen setting, files it was chosen on)`` for every file (``objective``)."""
    related = related_groups({name: ref for name, (_, ref, *_) in analysed.items()})
    out = []
    for name in analysed:
        train = [n for n in analysed if n not in related[name]]
        best = min(range(len(grid)), key=lambda i: (objective(table, i, train, groups), i))
        out.append((name, best, train))
    return out


def report_rows(analysed, grid, table, folds) -> tuple[list[list[str]], dict]:
    """Markdown rows per file plus totals for the cross-validated choice."""
    rows = []
    for name, best, train in folds:
        s, (_, ref, _, seconds, _) = table[best, name], analysed[name]
        d = grid[best]
        total = max(s.parts["total"], 1e-9)
        embedded = len(embedded_speakers(analysed[name][0], ref))
        rows.append([
            name, f"{len({t.speaker for t in ref})}", f"{embedded}", f"{s.found}",
            *(f"{100 * s.parts[c] / total:.1f}" for c in COMPONENTS),
            f"{100 * sum(s.parts[c] for c in COMPONENTS) / total:.1f}",
            f"{100 * s.recall:.1f}", f"{100 * s.precision:.1f}", f"{seconds:.2f}",
            f"{d.speech_threshold}/{d.method}/{d.similarity}/{d.min_cluster_seconds}/{'ov' if d.overlap else '-'}"
            f"/{d.min_share}{'/sp' if d.founding_in_speech else ''}",
            ", ".join(sorted(train)),
        ])
    return rows, summarise(analysed, table, folds)


def summarise(analysed, table, folds, names=None) -> dict:
    """Totals of the cross-validated choice over ``names`` (None: every file): DER components,
    speaker counts (multi-speaker files) and speech seconds (reference, labelled, both)."""
    totals = {c: 0.0 for c in (*COMPONENTS, "total")}
    counts = {"exact": 0, "within1": 0, "multi": 0}
    speech = np.zeros(3)
    for name, best, _ in folds:
        if names is not None and name not in names:
            continue
        s = table[best, name]
        true = len({t.speaker for t in analysed[name][1]})
        for c in totals:
            totals[c] += s.parts[c]
        if true > 1:
            counts["multi"] += 1
            counts["exact"] += s.found == true
            counts["within1"] += abs(s.found - true) <= 1
        speech += s.speech
    return {"totals": totals, "counts": counts, "speech": speech}


def summary_line(summary: dict, files: int) -> str:
    """One sentence of a summary's figures."""
    t, c, sp = summary["totals"], summary["counts"], summary["speech"]
    total = max(t["total"], 1e-9)
    der = 100 * sum(t[k] for k in COMPONENTS) / total
    return (f"**Cross-validated DER {der:.1f} %** (missed {100 * t['missed detection'] / total:.1f} %, "
            f"false alarm {100 * t['false alarm'] / total:.1f} %, confusion {100 * t['confusion'] / total:.1f} %) "
            f"over {files} files; speaker count exact on {c['exact']}/{c['multi']} multi-speaker files, within "
            f"±1 on {c['within1']}/{c['multi']}; speech recall {100 * sp[2] / max(sp[0], 1e-9):.1f} %, precision "
            f"{100 * sp[2] / max(sp[1], 1e-9):.1f} %.")


def run_cv(args, files) -> str:
    """Analyse, score the grid, cross-validate; the Markdown report."""
    from der import environment

    grid = settings(GRID)
    files = [f for f in files if f[1] is not None]  # scored files need an RTTM
    groups = {path.stem: str(path.parent) for path, _, _ in files}
    asr = None
    if args.delivered:  # every file transcribed once; each setting's turns kept for its speakers with words
        from common import settings_for

        from iam_cluster.pipeline.asr import WhisperASR
        from iam_cluster.pipeline.run import Pipeline

        asr = Pipeline(WhisperASR(args.model, device=args.device, cpu_threads=args.threads),
                       settings_for(args.model).engine.batch_size)
    sections = []
    for encoder in args.encoders:
        analysed = analyse_all(encoder, files, args.segmentation_step, not args.float32, asr)
        table = score_grid(analysed, grid, min(os.cpu_count() or 1, 4))  # untimed: every core
        balance = groups if len(set(groups.values())) > 1 else None
        folds = cross_validate(analysed, grid, table, balance)
        rows, summary = report_rows(analysed, grid, table, folds)
        sections.append(_section(encoder, rows, summary, analysed, grid, table, folds, groups))
    head = [
        f"# Cross-validated DER: {args.label}", "",
        "Command: `" + " ".join(["python", *sys.argv]) + "`", "",
        f"Environment: {environment(args)}", "",
        f"Scoring: `pyannote.metrics` DiarizationErrorRate, collar {COLLAR} (total width), overlapped "
        "speech scored, UEM = whole file. "
        + ("Scored: what a diarized transcript delivers (`--delivered`: its RTTM export, the diarizer's turns "
           "of the speakers who say at least one word; each file transcribed once, tiny.en). "
           if args.delivered else "Scored: the diarizer's own turns. ") +
        "Each file is decided with the grid setting that has the "
        "lowest total DER over the files unrelated to it (no shared RTTM speaker id"
        + ("; with several folders given, the mean of each folder's DER over those files" if len(set(groups.values())) > 1 else "")
        + "); speech "
        "recall/precision: the union of the diarizer's turns against the RTTM's, 10-ms grid, no "
        f"collar. Grid: {', '.join(f'{k} {list(v)}' for k, v in GRID.items())} "
        f"({len(grid)} settings). Analysis s: normalisation + segmentation + embeddings, wall "
        "seconds after a warm-up.", "",
    ]
    return "\n".join(head + sections)


def _section(encoder, rows, summary, analysed, grid, table, folds, groups) -> str:
    head = ["file", "ref spk", "ref spk embedded", "found spk", "miss %", "FA %", "conf %", "DER %", "speech recall %",
            "speech precision %", "analysis s", "setting (thr/method/sim/min s/overlap/min share[/sp: founding in speech])", "chosen on"]
    t, c, sp = summary["totals"], summary["counts"], summary["speech"]
    total = max(t["total"], 1e-9)
    worst = max(rows, key=lambda r: float(r[7]))
    lines = [f"## Encoder `{encoder}`", "", "| " + " | ".join(head) + " |", "|---|" + "---:|" * 10 + "---|---|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    der = 100 * sum(t[k] for k in COMPONENTS) / total
    lines += [
        "", f"**Cross-validated DER {der:.1f} %** (missed {100 * t['missed detection'] / total:.1f} %, "
        f"false alarm {100 * t['false alarm'] / total:.1f} %, confusion {100 * t['confusion'] / total:.1f} %) "
        f"over {len(rows)} files; worst file {worst[0]} at {worst[7]} %. Speaker count exact on "
        f"{c['exact']}/{c['multi']} multi-speaker files, within ±1 on {c['within1']}/{c['multi']}. "
        f"Speech recall {100 * sp[2] / max(sp[0], 1e-9):.1f} %, precision {100 * sp[2] / max(sp[1], 1e-9):.1f} % "
        f"(all files together).",
    ]
    if len(set(groups.values())) > 1:  # each folder given on its own, chosen as above
        lines += ["", "Per folder:", ""]
        for group in dict.fromkeys(groups.values()):
            names = {n for n, g in groups.items() if g == group}
            lines.append(f"- `{group}`: " + summary_line(summarise(analysed, table, folds, names), len(names)))
    names = list(analysed)
    balance = groups if len(set(groups.values())) > 1 else None
    best_all = min(range(len(grid)), key=lambda i: (objective(table, i, names, balance), i))
    d = grid[best_all]
    lines += ["", _count_ceiling(analysed, grid, table)]
    lines += ["", f"Setting chosen on all files (the shipped default; its in-sample DER "
              f"{100 * _der(table, best_all, names):.1f} % is NOT a generalisation figure): {d}."]
    if balance:
        lines.append("In-sample DER of that setting per folder: " + ", ".join(
            f"`{g}` {100 * _der(table, best_all, [n for n in names if balance[n] == g]):.1f} %"
            for g in dict.fromkeys(balance.values())) + ".")
    lines.append("")
    return "\n".join(lines)


def _count_ceiling(analysed, grid, table) -> str:
    """The most multi-speaker files any ONE setting of the grid counts exactly, chosen in-sample:
    what the cross-validated count could reach at best with this analysis."""
    true = {n: len({t.speaker for t in ref}) for n, (_, ref, *_) in analysed.items()}
    multi = [n for n in analysed if true[n] > 1]
    names = list(analysed)

    def exact(i: int) -> int:
        return sum(table[i, n].found == true[n] for n in multi)

    best = max(range(len(grid)), key=lambda i: (exact(i), -_der(table, i, names), -i))
    found = ", ".join(f"{n} {table[best, n].found}/{true[n]}" for n in multi)
    heard = sum(len(embedded_speakers(analysed[n][0], analysed[n][1])) for n in multi)
    return (f"Count ceiling: the best single setting of the grid, chosen on all files (in-sample), "
            f"counts {exact(best)}/{len(multi)} multi-speaker files exactly (DER "
            f"{100 * _der(table, best, names):.1f} %; found/true: {found}). Of the "
            f"{sum(true[n] for n in multi)} reference speakers of those files, {heard} own an embedded "
            f"piece (column 'ref spk embedded'); the others are never heard apart by the segmentation.")
