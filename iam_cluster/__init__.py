"""IAM Cluster: batched CTranslate2 Whisper transcription as a library, a CLI and a cluster."""

__version__ = "0.1.0"
