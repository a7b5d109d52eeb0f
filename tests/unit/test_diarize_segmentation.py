"""segmentation-3.0 and resemblyzer on CPU run from onnxruntime copies exported once into the model
cache; they say what the torch modules say (resemblyzer with its later LSTM layers in int8: nearly
so); the diarizer keeps torch where no copy can be made."""

from __future__ import annotations

import re

import numpy as np
import pytest

from iam_cluster.pipeline.decode import decode_audio
from iam_cluster.pipeline.level import normalised

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def chunks(data_dir):
    """Three 10-s chunks of a real meeting excerpt (two voices, quiet far-field speech)."""
    samples = normalised(decode_audio(data_dir / "dev00.wav").samples)
    return np.stack([samples[s : s + 160_000] for s in (0, 80_000, 140_000)]).astype(np.float32)


def test_the_onnx_copy_says_what_the_torch_module_says(chunks, tmp_path):
    from iam_cluster.pipeline.diarize.models import segmentation_model, segmentation_session

    session = segmentation_session(tmp_path)
    assert session is not None
    model, _ = segmentation_model("cpu")
    with torch.inference_mode():
        expected = model(torch.from_numpy(chunks[:, None])).numpy()
    got = session.run(None, {"waveform": chunks[:, None]})[0]
    assert got.shape == expected.shape == (3, 589, 7)
    assert np.abs(np.exp(got) - np.exp(expected)).max() < 1e-3
    assert (got.argmax(-1) == expected.argmax(-1)).mean() > 0.999


def test_the_exports_are_made_once_and_named_by_the_weights(tmp_path):
    from iam_cluster.pipeline.diarize import models

    models.segmentation_session(tmp_path)
    models.resemblyzer_session(tmp_path, int8=True)
    folder = tmp_path / "diarize"
    stamps = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    patterns = [r"segmentation-3\.0-[0-9a-f]{12}-opset17-r2\.onnx", r"resemblyzer-[0-9a-f]{12}-opset17-r1\.onnx",
                r"resemblyzer-[0-9a-f]{12}-opset17-r1-int8\.onnx"]  # named by the weights' digests
    assert sorted(stamps) == sorted(n for n in stamps if any(re.fullmatch(p, n) for p in patterns))
    assert len(stamps) == 3
    models._CACHE.clear()  # a new process: the files are found, not made again
    try:
        assert models.segmentation_session(tmp_path) is not None
        assert models.resemblyzer_session(tmp_path, int8=True) is not None
    finally:
        models._CACHE.clear()
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == stamps  # no partial file left


def test_a_cache_that_cannot_be_written_gets_the_exports_in_the_temporary_folder(tmp_path, monkeypatch):
    """A read-only model volume (the GPU overlay mounts one) still gets onnxruntime on CPU."""
    import tempfile

    from iam_cluster.pipeline.diarize import models
    from iam_cluster.pipeline.diarize.embedded import EmbeddedDiarizer

    spare = tmp_path / "tmp"
    spare.mkdir()
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(spare))
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    diarizer = EmbeddedDiarizer(cache_dir=blocker / "models")  # mkdir fails, even for root
    assert diarizer.segmenter.session is not None and diarizer.encoder.session is not None
    folder = spare / models.ONNX_SPARE / "diarize"
    exported = sorted(p.name.split("-opset")[0].rsplit("-", 1)[0] for p in folder.iterdir())
    assert exported == ["resemblyzer", "resemblyzer", "segmentation-3.0"]  # float and int8 resemblyzer


def test_an_export_that_fails_keeps_torch(data_dir, tmp_path, monkeypatch):
    from iam_cluster.pipeline.diarize import models
    from iam_cluster.pipeline.diarize.embedded import EmbeddedDiarizer

    def broken(path, write):
        raise RuntimeError("the exporter changed")

    monkeypatch.setattr(models, "_written_once", broken)
    diarizer = EmbeddedDiarizer(cache_dir=tmp_path)
    assert diarizer.segmenter.session is None and diarizer.encoder.session is None
    assert diarizer(decode_audio(data_dir / "dev00.wav"), None).speakers


def test_the_diarizer_gives_the_same_turns_on_either_runtime(data_dir, tmp_path):
    from iam_cluster.pipeline.diarize.embedded import EmbeddedDiarizer

    audio = decode_audio(data_dir / "dev00.wav")
    onnx = EmbeddedDiarizer(cache_dir=tmp_path, int8=False)
    assert onnx.encoder_name == "resemblyzer"  # ``auto`` on the CPU
    assert onnx.segmenter.session is not None and onnx.encoder.session is not None
    with_onnx = onnx(audio, None)
    onnx.segmenter.session = onnx.encoder.session = None  # the torch modules they were exported from
    assert onnx(audio, None).turns == with_onnx.turns


def test_the_int8_diarizer_finds_the_same_speakers_and_turns(data_dir, tmp_path):
    from iam_cluster.pipeline.diarize.embedded import EmbeddedDiarizer

    audio = decode_audio(data_dir / "dev00.wav")
    exact = EmbeddedDiarizer(cache_dir=tmp_path, int8=False)(audio, None)
    int8 = EmbeddedDiarizer(cache_dir=tmp_path)(audio, None)  # the default on CPU
    assert len(int8.speakers) == len(exact.speakers) == 2

    def frames(d, speaker):
        mask = np.zeros(3000, bool)
        for t in d.turns:
            if t.speaker == speaker:
                mask[int(t.start * 100) : int(t.end * 100)] = True
        return mask

    # Same speech, and each speaker's frames matched to the other run's (either naming): 97 % agree.
    a, b = [[frames(d, s) for s in sorted(d.speakers)] for d in (exact, int8)]
    agree = max(sum((x == y).mean() for x, y in zip(a, order)) / 2 for order in (b, b[::-1]))
    assert agree > 0.97
