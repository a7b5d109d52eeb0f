"""pyannote.audio diarizer (optional extra, best on a GPU): a pretrained pipeline on decoded audio."""

from __future__ import annotations

import inspect
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from iam_cluster.errors import ConfigError, ModelNotFoundError
from iam_cluster.pipeline.diarize import check_speaker_counts
from iam_cluster.pipeline.types import (
    SAMPLE_RATE,
    Audio,
    Diarization,
    ProgressHook,
    SpeechRegion,
    Turn,
    no_progress,
    to_float,
)

DEFAULT_PIPELINE = "pyannote/speaker-diarization-community-1"
#: Environment variables read, in order, when no token is given.
TOKEN_ENV = ("IAM_PYANNOTE_TOKEN", "HF_TOKEN")


def to_diarization(annotation, speaker_embeddings=None, labels=None) -> Diarization:
    """Convert a ``pyannote.core.Annotation`` (and per-speaker embeddings) to a ``Diarization``.

    Args:
        annotation: The turns; overlapping turns are kept as they are.
        speaker_embeddings: Optional ``(num_speakers, dim)`` array, one row per label in
            ``labels`` order. Each turn gets its speaker's row, L2-normalised; a speaker without
            a usable row (pyannote pads missing centroids with zeros) gets a zero vector.
        labels: The label order of ``speaker_embeddings``; default ``annotation.labels()``.
            pyannote 4 orders its embeddings by the *overlapping* diarization's labels, which
            may hold speakers absent from the exclusive one, so pass those labels with it.

    Returns:
        Turns sorted by (start, end), with raw labels as strings.
    """
    tracks = sorted(
        (float(seg.start), float(seg.end), str(label))
        for seg, _, label in annotation.itertracks(yield_label=True)
    )
    turns = [Turn(start=s, end=e, speaker=label) for s, e, label in tracks if e > s]
    if speaker_embeddings is None or not turns:
        return Diarization(turns=turns)
    rows = np.nan_to_num(np.asarray(speaker_embeddings, dtype=np.float64))
    labels = list(annotation.labels() if labels is None else labels)
    dim = rows.shape[1] if rows.ndim == 2 else 0
    by_label: dict[str, list[float]] = {}
    for i, label in enumerate(labels):
        row = rows[i] if i < len(rows) else np.zeros(dim)
        norm = float(np.linalg.norm(row))
        by_label[str(label)] = (row / norm if norm > 0 else np.zeros(dim)).tolist()
    zero = [0.0] * dim
    return Diarization(turns=turns, embeddings=[by_label.get(t.speaker, zero) for t in turns])


def unpack_output(output) -> Diarization:
    """Convert what a pyannote pipeline returned, whichever version produced it.

    pyannote 4 returns an object with ``exclusive_speaker_diarization`` (one speaker at a time,
    which is what word attribution wants) and ``speaker_embeddings``; pyannote 3 returns an
    ``Annotation``, or ``(Annotation, embeddings)`` when asked for embeddings.
    """
    if hasattr(output, "exclusive_speaker_diarization"):
        full = getattr(output, "speaker_diarization", None)
        exclusive = output.exclusive_speaker_diarization
        labels = full.labels() if full is not None else None
        return to_diarization(exclusive if exclusive is not None else full,
                              getattr(output, "speaker_embeddings", None), labels)
    if isinstance(output, tuple):
        annotation, embeddings = output
        return to_diarization(annotation, embeddings)
    return to_diarization(output)


def adapt_hook(hook: ProgressHook) -> Callable[..., None]:
    """Wrap our ``hook(step, completed, total)`` as pyannote's hook.

    pyannote calls ``hook(step_name, step_artifact, file=None, total=None, completed=None)``, also
    once per finished step with only an artifact; those calls carry no progress and are dropped.
    """

    def pyannote_hook(step_name, step_artifact=None, file=None, total=None, completed=None):
        if total is not None and completed is not None:
            hook(str(step_name), int(completed), int(total))

    return pyannote_hook


class PyannoteDiarizer:
    """Speaker turns from a pretrained pyannote.audio pipeline, loaded on first use.

    Args:
        pipeline: A local pipeline folder (or its ``config.yaml``) or a Hugging Face hub id.
        token: Hugging Face token for gated pipelines; default ``$IAM_PYANNOTE_TOKEN`` or
            ``$HF_TOKEN``.
        device: ``auto`` (CUDA when torch sees a GPU), ``cpu``, ``cuda`` or ``cuda:N``.
        pipeline_obj: An already loaded pipeline (or any callable that behaves like one) to use
            as is: nothing is loaded and it is not moved to ``device``.
    """

    def __init__(
        self,
        pipeline: str = DEFAULT_PIPELINE,
        token: str | None = None,
        device: str = "auto",
        pipeline_obj: Any = None,
    ) -> None:
        self.pipeline = str(pipeline)
        self.token = token or next((os.environ[v] for v in TOKEN_ENV if os.environ.get(v)), None)
        self.device = device
        self._pipeline = pipeline_obj
        self._lock = threading.Lock()

    def load(self):
        """Load the pipeline now (first call does it otherwise) and return it."""
        with self._lock:
            if self._pipeline is None:
                self._pipeline = self._load()
            return self._pipeline

    def _load(self):
        try:
            from pyannote.audio import Pipeline
        except ImportError as exc:
            # The cause is kept in the message: an installed but broken pyannote.audio (say, a
            # torchaudio mismatch) fails here too, and reinstalling would not help then.
            raise ConfigError(
                "the pyannote diarizer needs pyannote.audio: pip install 'iam-cluster[pyannote]' "
                f"({exc})"
            ) from exc
        import torch

        device = self._torch_device(torch)
        local = Path(self.pipeline).expanduser()
        looks_local = self.pipeline.startswith((".", "/", "~")) or local.exists()
        if looks_local and not local.exists():
            raise ModelNotFoundError(f"pyannote pipeline folder {self.pipeline!r} does not exist")
        # pyannote 4 calls the argument ``token``; 3.x called it ``use_auth_token``.
        params = inspect.signature(Pipeline.from_pretrained).parameters
        auth = {("token" if "token" in params else "use_auth_token"): self.token}
        try:
            loaded = Pipeline.from_pretrained(str(local) if looks_local else self.pipeline, **auth)
        except Exception as exc:
            if not _is_hub_error(exc):
                raise
            raise self._not_found(f": {exc}") from exc
        # A hub download that fails (gated, unknown, offline) is printed and gives None.
        if loaded is None:
            raise self._not_found()
        return loaded.to(device)

    def _torch_device(self, torch):
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            device = torch.device(self.device)
        except RuntimeError as exc:
            raise ConfigError(f"device must be auto, cpu or cuda[:N], not {self.device!r}") from exc
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device {self.device!r} asked for, but torch sees no CUDA device")
        return device

    def _not_found(self, detail: str = "") -> ModelNotFoundError:
        token = "a token was given" if self.token else "no token was given"
        return ModelNotFoundError(
            f"pyannote pipeline {self.pipeline!r} could not be loaded{detail}. Give a local pipeline "
            f"folder, or a Hugging Face token (env HF_TOKEN or IAM_PYANNOTE_TOKEN) of an account that "
            f"accepted the pipeline's conditions ({token})"
        )

    def __call__(
        self,
        audio: Audio,
        speech_regions: Sequence[SpeechRegion] | None,
        num_speakers: int | None = None,
        min_speakers: int | None = None,
        max_speakers: int | None = None,
        hook: ProgressHook = no_progress,
    ) -> Diarization:
        """Diarize ``audio``; ``speech_regions`` only short-cut silence (pyannote finds its own speech).

        pyannote's segmentation model finds speech and overlap better than the VAD, so the regions
        are not imposed on it; when the VAD found no speech at all, nothing is run (None: not known).
        """
        check_speaker_counts(num_speakers, min_speakers, max_speakers)
        if (speech_regions is not None and not speech_regions) or len(audio.samples) == 0:
            return Diarization(turns=[])
        pipeline = self.load()
        import torch

        # Writable, contiguous float32: torch.from_numpy shares the memory, and warns on read-only.
        samples = np.require(to_float(audio.samples), dtype=np.float32, requirements=["C", "W"])
        file = {
            "waveform": torch.from_numpy(samples)[None],
            "sample_rate": SAMPLE_RATE,
            "uri": Path(audio.source).stem or "waveform",
        }
        kwargs: dict[str, Any] = {"hook": adapt_hook(hook)}
        for name, value in (("num_speakers", num_speakers), ("min_speakers", min_speakers),
                            ("max_speakers", max_speakers)):
            if value is not None:
                kwargs[name] = value
        # pyannote 3.x gives embeddings and non-overlapping turns only when asked; pyannote 4
        # always gives both and warns about arguments it does not know, so ask only if named.
        accepted = _named_parameters(pipeline)
        for flag in ("return_embeddings", "exclusive_diarization"):
            if flag in accepted:
                kwargs[flag] = True
        return unpack_output(pipeline(file, **kwargs))


def _named_parameters(pipeline) -> set[str]:
    """Parameter names the pipeline's ``apply`` (or ``__call__``) spells out."""
    target = getattr(pipeline, "apply", None) or pipeline
    try:
        params = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return set()
    return {p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}


def _is_hub_error(exc: Exception) -> bool:
    """Errors that mean "not available here": hub errors, missing files, refused downloads."""
    module = type(exc).__module__ or ""
    return module.startswith(("huggingface_hub", "requests", "urllib3")) or isinstance(exc, OSError)
