"""The pyannote diarizer without pyannote.audio or weights: output conversion, errors, hand-off."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass

import numpy as np
import pytest

from iam_cluster.errors import ConfigError, ModelNotFoundError, OptionsError
from iam_cluster.pipeline.diarize import make_diarizer
from iam_cluster.pipeline.diarize.pyannote import (
    PyannoteDiarizer,
    adapt_hook,
    to_diarization,
    unpack_output,
)
from iam_cluster.pipeline.types import Audio, SpeechRegion, Turn

core = pytest.importorskip("pyannote.core")


def _annotation(*tracks: tuple[float, float, str]):
    ann = core.Annotation(uri="test")
    for start, end, label in tracks:
        ann[core.Segment(start, end), ann.new_track(core.Segment(start, end))] = label
    return ann


def _turns(d) -> list[tuple[float, float, str]]:
    return [(t.start, t.end, t.speaker) for t in d.turns]


@dataclass
class DiarizeOutput:
    """What pyannote 4's speaker-diarization pipeline returns."""

    speaker_diarization: object
    exclusive_speaker_diarization: object
    speaker_embeddings: np.ndarray | None = None


def _audio(seconds: float = 2.0) -> Audio:
    samples = np.random.default_rng(0).uniform(-0.5, 0.5, int(seconds * 16000)).astype(np.float32)
    samples.setflags(write=False)  # decoded audio may be read-only; the hand-off must cope
    return Audio(source="/tmp/meeting one.wav", samples=samples)


REGIONS = [SpeechRegion(0.0, 2.0)]


# -- conversion -----------------------------------------------------------------------------


def test_overlapping_turns_are_kept_and_sorted():
    ann = _annotation((4.0, 8.0, "SPEAKER_01"), (0.0, 5.0, "SPEAKER_00"), (8.0, 10.0, "SPEAKER_00"))
    d = to_diarization(ann)
    assert _turns(d) == [(0.0, 5.0, "SPEAKER_00"), (4.0, 8.0, "SPEAKER_01"), (8.0, 10.0, "SPEAKER_00")]
    assert d.embeddings == []
    assert d.speakers == ["SPEAKER_00", "SPEAKER_01"]


def test_non_string_labels_become_strings():
    ann = core.Annotation()
    ann[core.Segment(0, 1)] = 3
    assert _turns(to_diarization(ann)) == [(0.0, 1.0, "3")]


def test_embeddings_follow_each_turns_speaker_normalised():
    ann = _annotation((0, 1, "B"), (1, 2, "A"), (2, 3, "B"))
    rows = np.array([[3.0, 4.0], [0.0, 2.0]])  # labels() is sorted: A, B
    d = to_diarization(ann, rows)
    assert d.embeddings == [[0.0, 1.0], [0.6, 0.8], [0.0, 1.0]]


def test_unusable_embedding_rows_become_zero_vectors():
    ann = _annotation((0, 1, "A"), (1, 2, "B"), (2, 3, "C"))
    rows = np.array([[np.nan, 1.0], [0.0, 0.0]])  # C has no row at all (pyannote pads with zeros)
    d = to_diarization(ann, rows)
    assert d.embeddings == [[0.0, 1.0], [0.0, 0.0], [0.0, 0.0]]


def test_exclusive_output_uses_embeddings_in_full_label_order():
    # SPEAKER_01 only ever overlaps: absent from the exclusive turns, yet it has an embedding row.
    full = _annotation((0, 4, "SPEAKER_00"), (2, 3, "SPEAKER_01"), (4, 6, "SPEAKER_02"))
    exclusive = _annotation((0, 4, "SPEAKER_00"), (4, 6, "SPEAKER_02"))
    rows = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 2.0]])
    d = unpack_output(DiarizeOutput(full, exclusive, rows))
    assert _turns(d) == [(0.0, 4.0, "SPEAKER_00"), (4.0, 6.0, "SPEAKER_02")]
    assert d.embeddings == [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]


def test_pyannote3_outputs():
    ann = _annotation((0, 1, "SPEAKER_00"), (0.5, 2, "SPEAKER_01"))
    assert _turns(unpack_output(ann)) == _turns(to_diarization(ann))
    d = unpack_output((ann, np.array([[2.0, 0.0], [0.0, 5.0]])))
    assert d.embeddings == [[1.0, 0.0], [0.0, 1.0]]
    assert unpack_output((ann, None)).embeddings == []


def test_empty_annotation():
    empty = _annotation()
    assert to_diarization(empty).turns == []
    d = unpack_output(DiarizeOutput(empty, empty, np.zeros((0, 256))))
    assert d.turns == [] and d.embeddings == []


def test_hook_adaptation_keeps_only_progress():
    seen = []
    hook = adapt_hook(lambda *a: seen.append(a))
    hook("segmentation", None, file={}, total=10, completed=4)
    hook("segmentation", object(), file={})  # end-of-step call with an artifact only
    hook("embeddings", None, total=3, completed=0)
    assert seen == [("segmentation", 4, 10), ("embeddings", 0, 3)]


# -- the diarizer with a stand-in pipeline ------------------------------------------------------


class FakePipeline4:
    """Mimics pyannote 4: ``pipeline(file, num_speakers=..., hook=...)`` -> DiarizeOutput."""

    def __init__(self):
        self.calls = []

    def __call__(self, file, num_speakers=None, min_speakers=None, max_speakers=None, hook=None, **kw):
        self.calls.append((file, dict(num_speakers=num_speakers, min_speakers=min_speakers,
                                      max_speakers=max_speakers, **kw)))
        hook("segmentation", None, file=file, total=4, completed=4)
        hook("segmentation", "artifact", file=file)
        hook("embeddings", None, file=file, total=2, completed=1)
        full = _annotation((0.0, 1.2, "SPEAKER_00"), (1.0, 2.0, "SPEAKER_01"))
        exclusive = _annotation((0.0, 1.1, "SPEAKER_00"), (1.1, 2.0, "SPEAKER_01"))
        return DiarizeOutput(full, exclusive, np.array([[1.0, 1.0], [0.0, 3.0]]))


class FakePipeline3:
    """Mimics pyannote 3.3: flags named on ``apply``; a tuple when embeddings are asked for."""

    def __init__(self):
        self.kwargs = None

    def apply(self, file, num_speakers=None, min_speakers=None, max_speakers=None,
              exclusive_diarization=False, return_embeddings=False, hook=None):
        self.kwargs = dict(exclusive_diarization=exclusive_diarization,
                           return_embeddings=return_embeddings, max_speakers=max_speakers)
        ann = _annotation((0.0, 2.0, "SPEAKER_00"))
        return (ann, np.array([[0.0, 2.0]])) if return_embeddings else ann

    def __call__(self, file, **kwargs):
        return self.apply(file, **kwargs)


def test_waveform_hand_off_and_hook():
    torch = pytest.importorskip("torch")
    fake = FakePipeline4()
    seen = []
    audio = _audio()
    d = PyannoteDiarizer(pipeline_obj=fake)(audio, REGIONS, num_speakers=2, hook=lambda *a: seen.append(a))
    (file, kwargs), = fake.calls
    waveform = file["waveform"]
    assert isinstance(waveform, torch.Tensor)
    assert tuple(waveform.shape) == (1, len(audio.samples)) and waveform.dtype == torch.float32
    assert np.array_equal(waveform[0].numpy(), audio.samples)
    assert file["sample_rate"] == 16000 and file["uri"] == "meeting one"
    # pyannote 4 warns about unknown arguments: no pyannote 3 flags for it.
    assert kwargs == {"num_speakers": 2, "min_speakers": None, "max_speakers": None}
    assert seen == [("segmentation", 4, 4), ("embeddings", 1, 2)]
    assert _turns(d) == [(0.0, 1.1, "SPEAKER_00"), (1.1, 2.0, "SPEAKER_01")]  # the exclusive turns
    assert np.allclose(d.embeddings, [[2**-0.5, 2**-0.5], [0.0, 1.0]])


def test_pyannote3_flags_are_passed_when_named():
    pytest.importorskip("torch")
    fake = FakePipeline3()
    d = PyannoteDiarizer(pipeline_obj=fake)(_audio(), REGIONS, min_speakers=1, max_speakers=3)
    assert fake.kwargs == {"exclusive_diarization": True, "return_embeddings": True, "max_speakers": 3}
    assert _turns(d) == [(0.0, 2.0, "SPEAKER_00")] and d.embeddings == [[0.0, 1.0]]


def test_no_speech_runs_nothing():
    fake = FakePipeline4()
    d = PyannoteDiarizer(pipeline_obj=fake)(_audio(), [])
    assert d.turns == [] and fake.calls == []


@pytest.mark.parametrize(
    ("counts", "match"),
    [
        ({"num_speakers": 0}, "num_speakers must be at least 1"),
        ({"num_speakers": 2, "max_speakers": 3}, "either num_speakers"),
        ({"min_speakers": 4, "max_speakers": 2}, "greater than max_speakers"),
    ],
)
def test_speaker_count_errors(counts, match):
    fake = FakePipeline4()
    with pytest.raises(OptionsError, match=match):
        PyannoteDiarizer(pipeline_obj=fake)(_audio(), REGIONS, **counts)
    assert fake.calls == []


# -- loading ------------------------------------------------------------------------------------


def test_missing_package_is_a_config_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyannote.audio", None)
    diarizer = make_diarizer("pyannote")
    with pytest.raises(ConfigError, match=r"pip install 'iam-cluster\[pyannote\]'"):
        diarizer(_audio(), REGIONS)
    with pytest.raises(ConfigError, match="pyannote.audio"):
        diarizer.load()


def _fake_pyannote_audio(monkeypatch, from_pretrained):
    module = types.ModuleType("pyannote.audio")
    module.Pipeline = type("Pipeline", (), {"from_pretrained": staticmethod(from_pretrained)})
    monkeypatch.setitem(sys.modules, "pyannote.audio", module)


def test_token_from_environment(monkeypatch):
    monkeypatch.delenv("IAM_PYANNOTE_TOKEN", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    assert PyannoteDiarizer().token is None
    monkeypatch.setenv("HF_TOKEN", "hf_generic")
    assert PyannoteDiarizer().token == "hf_generic"
    monkeypatch.setenv("IAM_PYANNOTE_TOKEN", "hf_ours")
    assert PyannoteDiarizer().token == "hf_ours"
    assert PyannoteDiarizer(token="given").token == "given"


def test_loads_once_with_token_and_moves_to_device(monkeypatch):
    torch = pytest.importorskip("torch")
    loaded = []

    class Loaded(FakePipeline4):
        def to(self, device):
            self.device = device
            return self

    def from_pretrained(checkpoint, hparams_file=None, token=None, cache_dir=None):
        loaded.append((checkpoint, token))
        return Loaded()

    _fake_pyannote_audio(monkeypatch, from_pretrained)
    diarizer = PyannoteDiarizer("org/pipe", token="hf_x", device="cpu")
    diarizer(_audio(), REGIONS)
    diarizer(_audio(), REGIONS)
    assert loaded == [("org/pipe", "hf_x")]
    assert diarizer.load().device == torch.device("cpu") and len(diarizer.load().calls) == 2


def test_pyannote3_token_argument(monkeypatch):
    pytest.importorskip("torch")
    seen = {}

    def from_pretrained(checkpoint_path, hparams_file=None, use_auth_token=None, cache_dir=None):
        seen["token"] = use_auth_token
        return types.SimpleNamespace(to=lambda device: "pipeline")

    _fake_pyannote_audio(monkeypatch, from_pretrained)
    assert PyannoteDiarizer(token="hf_y", device="cpu").load() == "pipeline"
    assert seen == {"token": "hf_y"}


def test_gated_or_unknown_pipeline_is_model_not_found(monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.delenv("IAM_PYANNOTE_TOKEN", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    _fake_pyannote_audio(monkeypatch, lambda checkpoint, token=None: None)
    with pytest.raises(ModelNotFoundError, match=r"'org/gated'.*local pipeline folder.*HF_TOKEN"):
        PyannoteDiarizer("org/gated", device="cpu").load()

    hub_error = type("GatedRepoError", (Exception,), {"__module__": "huggingface_hub.errors"})

    def refuse(checkpoint, token=None):
        raise hub_error("401 Client Error: access to model org/gated is restricted")

    _fake_pyannote_audio(monkeypatch, refuse)
    with pytest.raises(ModelNotFoundError, match="restricted.*IAM_PYANNOTE_TOKEN"):
        PyannoteDiarizer("org/gated", device="cpu").load()


def test_missing_local_folder(monkeypatch, tmp_path):
    pytest.importorskip("torch")
    _fake_pyannote_audio(monkeypatch, lambda checkpoint, token=None: pytest.fail("not called"))
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        PyannoteDiarizer(str(tmp_path / "nowhere"), device="cpu").load()


def test_cuda_without_gpu_is_a_config_error(monkeypatch):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    _fake_pyannote_audio(monkeypatch, lambda checkpoint, token=None: pytest.fail("not called"))
    with pytest.raises(ConfigError, match="no CUDA"):
        PyannoteDiarizer(device="cuda").load()


def test_turn_type():
    assert to_diarization(_annotation((1, 2, "x"))).turns == [Turn(1.0, 2.0, "x")]
