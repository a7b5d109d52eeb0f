"""segmentation-3.0 on CPU runs from an onnxruntime copy exported once into the model cache; it
says what the torch module says, and the diarizer keeps torch where no copy can be made."""

from __future__ import annotations

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


def test_the_export_is_made_once_and_named_by_the_weights(tmp_path):
    from iam_cluster.pipeline.diarize.models import _segmentation_onnx

    first = _segmentation_onnx(tmp_path)
    stamp = first.stat().st_mtime_ns
    again = _segmentation_onnx(tmp_path)
    assert again == first and again.stat().st_mtime_ns == stamp
    assert first.name.startswith("segmentation-3.0-") and first.suffix == ".onnx"
    assert [p.name for p in first.parent.iterdir()] == [first.name]  # no partial file left behind


def test_a_cache_that_cannot_be_written_keeps_torch(data_dir, tmp_path):
    from iam_cluster.pipeline.diarize.embedded import EmbeddedDiarizer

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    diarizer = EmbeddedDiarizer(cache_dir=blocker / "models")  # mkdir fails, even for root
    assert diarizer.segmenter.session is None
    assert diarizer(decode_audio(data_dir / "dev00.wav"), None).speakers


def test_the_diarizer_gives_the_same_turns_on_either_runtime(data_dir, tmp_path):
    from iam_cluster.pipeline.diarize.embedded import EmbeddedDiarizer

    audio = decode_audio(data_dir / "dev00.wav")
    onnx = EmbeddedDiarizer(cache_dir=tmp_path)
    assert onnx.encoder_name == "resemblyzer"  # ``auto`` on the CPU
    assert onnx.segmenter.session is not None
    with_onnx = onnx(audio, None)
    onnx.segmenter.session = None  # the torch module it was exported from
    assert onnx(audio, None).turns == with_onnx.turns
