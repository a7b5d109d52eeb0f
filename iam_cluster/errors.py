"""One error hierarchy for the whole package; each class's docstring is its default message."""

from __future__ import annotations


class IAMError(Exception):
    """Internal error."""

    #: Stable machine-readable code (job failures and HTTP bodies carry it).
    code: str = "internal"

    def __init__(self, message: str | None = None) -> None:
        self.message = message or (self.__doc__ or "").strip()
        super().__init__(self.message)


class ConfigError(IAMError):
    """Invalid configuration."""

    code = "config"


class ModelNotFoundError(IAMError):
    """The requested model is not available on this machine."""

    code = "model_not_found"


class MediaError(IAMError):
    """The media could not be used as audio.

    Raised for every input that cannot become a transcribable waveform: not audio at all, empty,
    truncated or corrupt, too short or too long. ``code`` tells which; the message names the file.
    """

    code = "unsupported_media"
    #: The codes a MediaError may carry; a fixed set so clients can switch on them.
    CODES = frozenset({"unsupported_media", "empty_media", "truncated_media", "too_short", "too_long"})

    def __init__(self, source: str, reason: str, code: str = "unsupported_media") -> None:
        if code not in self.CODES:
            raise ValueError(f"unknown media error code {code!r}")
        self.source = source
        self.reason = reason
        self.code = code
        super().__init__(f"{source}: {reason}")

    def __reduce__(self):
        # Rebuilt from its own arguments when it crosses processes (Ray replicas, workers).
        return type(self), (self.source, self.reason, self.code)


class OptionsError(IAMError, ValueError):
    """Invalid transcription options.

    ``field`` names the option at fault (``num_speakers``, ``vad.threshold``...). It derives from
    ValueError so that msgspec, when it decodes options, reports it as a validation error.
    """

    code = "invalid_options"

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")

    def __reduce__(self):
        return type(self), (self.field, self.reason)

    @classmethod
    def from_validation(cls, exc: Exception) -> OptionsError:
        """From a msgspec ValidationError: ``Expected int - at `$.vad.threshold``` -> field ``vad.threshold``."""
        text = str(exc)
        message, _, where = text.partition(" - at `$")
        field = where.rstrip("`").lstrip(".") or None
        if field is None and "unknown field `" in message:
            field = message.split("unknown field `", 1)[1].split("`", 1)[0]
        elif field is None and ": " in message:  # raised by a rule: "field: reason"
            field, _, message = message.partition(": ")
        return cls(field or "options", message)
