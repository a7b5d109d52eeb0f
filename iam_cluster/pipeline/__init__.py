"""The transcription pipeline, one module per stage in execution order: decode, vad, chunk, asr, run, export."""
