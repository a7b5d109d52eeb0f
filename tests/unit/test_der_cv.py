"""``benchmarks/der_cv.py``: how a setting is chosen when folders of different kinds are tuned on."""

from __future__ import annotations

import pytest


@pytest.fixture()
def der_cv(benchmark_module):
    return benchmark_module("der_cv")


def scored(der_cv, errors: float, total: float, found: int = 2):
    parts = {"missed detection": errors, "false alarm": 0.0, "confusion": 0.0, "total": total}
    return der_cv.Scored(parts, found, (total, total - errors, total - errors))


def test_each_folder_weighs_alike_however_much_speech_it_holds(der_cv):
    # setting 0 is better on the long file, setting 1 on the two short excerpts
    table = {(0, "long"): scored(der_cv, 100.0, 1000.0), (1, "long"): scored(der_cv, 150.0, 1000.0),
             (0, "a"): scored(der_cv, 10.0, 20.0), (1, "a"): scored(der_cv, 2.0, 20.0),
             (0, "b"): scored(der_cv, 10.0, 20.0), (1, "b"): scored(der_cv, 2.0, 20.0)}
    names = ["long", "a", "b"]
    pooled = [der_cv.objective(table, i, names) for i in (0, 1)]
    assert pooled[0] < pooled[1]  # the long file's seconds outvote the excerpts
    groups = {"long": "longform", "a": "data", "b": "data"}
    balanced = [der_cv.objective(table, i, names, groups) for i in (0, 1)]
    assert balanced == pytest.approx([(0.1 + 0.5) / 2, (0.15 + 0.1) / 2])
    assert balanced[1] < balanced[0]


def test_a_summary_covers_only_the_files_named(der_cv):
    table = {(0, "a"): scored(der_cv, 5.0, 20.0, found=2), (0, "b"): scored(der_cv, 0.0, 10.0, found=1)}
    analysed = {"a": (None, [_turn("x"), _turn("y")], 30.0, 0.0, None), "b": (None, [_turn("z")], 30.0, 0.0, None)}
    folds = [("a", 0, ["b"]), ("b", 0, ["a"])]
    only_a = der_cv.summarise(analysed, table, folds, {"a"})
    assert only_a["totals"]["missed detection"] == 5.0 and only_a["totals"]["total"] == 20.0
    assert only_a["counts"] == {"exact": 1, "within1": 1, "multi": 1}
    line = der_cv.summary_line(der_cv.summarise(analysed, table, folds), 2)
    assert "DER 16.7 %" in line and "exact on 1/1" in line


def _turn(speaker: str):
    from types import SimpleNamespace

    return SimpleNamespace(speaker=speaker, start=0.0, end=1.0)


def test_folder_settings_start_from_the_encoders_default(benchmark_module):
    der_folders = benchmark_module("der_folders")
    from iam_cluster.pipeline.diarize.embedded import DEFAULTS

    default, changed = der_folders.decisions("resemblyzer", [["default"], ["similarity=0.75", "min_share=0.02"]])
    assert default == DEFAULTS["resemblyzer"]
    assert (changed.similarity, changed.min_share) == (0.75, 0.02)
    assert changed.speech_threshold == default.speech_threshold
    with pytest.raises(SystemExit, match="similarity"):
        der_folders.decisions("resemblyzer", [["similarity"]])


def test_folder_settings_refuse_a_folder_without_references(benchmark_module, tmp_path):
    der_folders = benchmark_module("der_folders")
    (tmp_path / "a.wav").write_bytes(b"")  # audio without an .rttm beside it
    with pytest.raises(SystemExit, match="no audio file with a .rttm"):
        der_folders.main(["--audio", str(tmp_path), "--setting", "default"])
    assert not list(tmp_path.glob("*.md"))


def test_every_decision_der_py_takes_is_a_diarizer_keyword_and_every_grid_field_a_decision(benchmark_module, der_cv):
    """``der.py --decision KEY=VALUE`` builds the diarizer with those keywords, and the CV grid
    replaces ``Decision`` fields: a field one of them lacks would fail a run, not a test."""
    import inspect
    from dataclasses import fields

    from iam_cluster.pipeline.diarize.embedded import Decision, EmbeddedDiarizer

    der = benchmark_module("der")
    items = [f"{f.name}={getattr(Decision(), f.name)}" for f in fields(Decision) if f.name != "min_silence"]
    overrides = der.decision_overrides(items)
    assert overrides["founding_in_speech"] is True and overrides["halves"] is True
    assert set(overrides) <= set(inspect.signature(EmbeddedDiarizer).parameters)
    assert set(der_cv.GRID) <= {f.name for f in fields(Decision)}
    assert len(der_cv.settings({"founding_in_speech": (False, True)})) == 2
