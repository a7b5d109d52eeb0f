"""The job worker: claims queued transcription jobs and writes their results exactly once."""
