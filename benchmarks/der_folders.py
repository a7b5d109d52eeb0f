"""Settings of the embedded diarizer side by side, per folder of recordings, on one analysis.

Every RTTM-labelled file under the folders (or files) given is analysed once, as ``der.py --cv``
does it (normalisation, segmentation, embeddings); each setting named with ``--setting`` is then
decided and scored on every file, and the report gives per folder its DER, speaker counts and
speech recall / precision. Nothing is chosen here: it shows how settings (a shipped default and
a candidate, say) compare on kinds of recordings that the cross-validation weighed together, or
on a folder that no setting was chosen on (``make_longform.py``'s ``perturbed``).

Example::

    python benchmarks/der_folders.py --audio /work/shared/data /tmp/longform/meetings \\
        /tmp/longform/perturbed --setting similarity=0.75 min_cluster_seconds=0.5 min_share=0.02 \\
        --setting default --label defaults-zen4-amd-cpu
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from common import code_version, command_line, cpu_name, save_report
from der import collect, decision_overrides
from der_cv import analyse_all, score_grid, summarise, summary_line

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--audio", nargs="+", required=True, help="folders (recursive) and/or audio files with .rttm")
    p.add_argument("--setting", nargs="+", action="append", required=True, metavar="KEY=VALUE",
                   help="one setting: Decision fields changed from the encoder's default, or 'default'; repeat")
    p.add_argument("--encoder", default="resemblyzer", help="speaker encoder of the embedded diarizer")
    p.add_argument("--workers", type=int, default=2, help="processes scoring the settings (untimed)")
    p.add_argument("--label", help="name of the run")
    p.add_argument("--out", type=Path, help="Markdown report (default benchmarks/results/der-folders-LABEL.md)")
    return p.parse_args(argv)


def decisions(encoder: str, settings: list[list[str]]) -> list:
    """The ``Decision`` of each ``--setting`` (the encoder's default with the fields given)."""
    from iam_cluster.pipeline.diarize.embedded import DEFAULTS, Decision

    base = DEFAULTS.get(encoder, Decision())
    return [replace(base, **decision_overrides([] if items == ["default"] else items)) for items in settings]


def report(args: argparse.Namespace, grid: list, analysed: dict, table, groups: dict[str, str]) -> str:
    lines = [f"# Diarizer settings per folder: {args.label}", "", f"Command: `{command_line()}`", "",
             f"Environment: CPU {cpu_name()}, encoder {args.encoder}, code {code_version()}", "",
             ("Scoring as `der.py --cv` (collar 0.25, overlap scored); every figure is in-sample: each "
              "setting scored on every file, nothing chosen."), ""]
    for i, decision in enumerate(grid):
        lines += [f"## {' '.join(args.setting[i])}", "", f"`{decision}`", ""]
        folds = [(name, i, []) for name in analysed]
        for group in dict.fromkeys(groups.values()):
            names = {n for n in analysed if groups[n] == group}
            text = summary_line(summarise(analysed, table, folds, names), len(names))
            lines.append(f"- `{group}`: " + text.replace("Cross-validated DER", "DER"))
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    files = [f for f in collect(args.audio, {}) if f[1] is not None]
    if not files:
        raise SystemExit("no audio file with an .rttm beside it under --audio")
    grid = decisions(args.encoder, args.setting)
    from iam_cluster.pipeline.diarize.embedded import SEGMENTATION_STEP

    analysed = analyse_all(args.encoder, files, SEGMENTATION_STEP.get(args.encoder, 5.0))
    table = score_grid(analysed, grid, args.workers)
    groups = {path.stem: str(path.parent) for path, _, _ in files}
    args.label = args.label or "run"
    save_report(report(args, grid, analysed, table, groups),
                args.out or RESULTS_DIR / f"der-folders-{args.label}.md")


if __name__ == "__main__":
    main()
