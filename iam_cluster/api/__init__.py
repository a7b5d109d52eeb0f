"""The job API (Litestar): accounts, meetings, uploads, transcription jobs, polling."""
