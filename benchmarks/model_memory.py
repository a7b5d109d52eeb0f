"""Transient memory of each CTranslate2 Whisper call the engine makes, per window in flight.

The folder target compares our peak RSS with the batched peer's, which decodes one short clip
(one window) at a time. This measures what each call adds at its peak, on one model worker, so the
peak of any layout can be reckoned: the encoder on one 30-s window, ``generate`` on a batch of
windows (beam 5 and greedy), and ``align`` on a batch. A sampler thread reads the RSS every 2 ms;
the C heap is trimmed before each call, so "after" is what the call left behind until the next trim.

Example::

    python benchmarks/model_memory.py --audio /tmp/longform/quiet_read.wav --batches 1 2 4
"""

from __future__ import annotations

import argparse
import ctypes
import threading
import time
from pathlib import Path

import numpy as np

from common import command_line, cpu_name, rss_mb, save_report


class Peak:
    """Highest RSS since ``reset`` (sampled every 2 ms in a daemon thread)."""

    def __init__(self) -> None:
        self.value = 0.0
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            self.value = max(self.value, rss_mb())
            time.sleep(0.002)

    def reset(self) -> float:
        self.value = rss_mb()
        return self.value


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--audio", required=True, help="speech, at least 30 s per window measured")
    p.add_argument("--model", default="tiny.en")
    p.add_argument("--batches", nargs="+", type=int, default=[1, 2, 4])
    p.add_argument("--out", type=str, default=None)
    args = p.parse_args()

    import ctranslate2
    from faster_whisper import WhisperModel
    from faster_whisper.audio import decode_audio, pad_or_trim
    from faster_whisper.tokenizer import Tokenizer

    from iam_cluster.pipeline.heap import limit_arenas
    from iam_cluster.pipeline.models import DEFAULT_CACHE_DIR, resolve_model

    limit_arenas(1)  # as the engine runs
    libc = ctypes.CDLL("libc.so.6")
    model = WhisperModel(str(resolve_model(args.model, DEFAULT_CACHE_DIR).path), device="cpu",
                         compute_type="int8", cpu_threads=1)
    audio = decode_audio(args.audio)
    n = max(args.batches)
    if len(audio) < n * 480000:
        raise SystemExit(f"{args.audio}: {len(audio) / 16000:.0f} s, {n} windows of 30 s need more")
    fe = model.feature_extractor
    feats = np.stack([pad_or_trim(fe(audio[i * 480000 : (i + 1) * 480000])[..., :-1], 3000)
                      for i in range(n)]).astype(np.float32)
    tok = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language="en")
    prompt = model.get_prompt(tok, [], without_timestamps=False)
    peak = Peak()
    rows = []

    def measure(name: str, fn):
        libc.malloc_trim(0)
        time.sleep(0.05)
        base = peak.reset()
        start = time.perf_counter()
        out = fn()
        seconds = time.perf_counter() - start
        time.sleep(0.01)
        rows.append((name, peak.value - base, rss_mb() - base, seconds))
        return out

    model.encode(feats[:1])  # first-call allocations are not counted
    libc.malloc_trim(0)
    loaded = rss_mb()
    measure("encode, 1 window", lambda: model.encode(feats[:1]))
    encoded = np.concatenate([np.asarray(model.encode(feats[i : i + 1])) for i in range(n)])
    for b in args.batches:
        source = ctranslate2.StorageView.from_array(np.ascontiguousarray(encoded[:b]))
        for beam in (5, 1):
            result = measure(f"generate, {b} window(s), beam {beam}", lambda: model.model.generate(
                source, [list(prompt)] * b, beam_size=beam, max_length=448, return_scores=True,
                return_no_speech_prob=True, suppress_blank=True))
        tokens = [[t for t in r.sequences_ids[0] if t < tok.eot] for r in result]
        measure(f"align, {b} window(s)", lambda: model.model.align(source, tok.sot_sequence, tokens, [1500] * b))

    lines = [
        "# Transient memory per model call",
        "",
        f"Command: `{command_line()}`",
        "",
        f"CPU {cpu_name()}; {args.model} int8, one worker, one thread; RSS after model load and one "
        f"warm-up encode (heap trimmed) {loaded:.0f} MB.",
        "",
        "| call | peak over the call's start, MB | left until the next trim, MB | seconds |",
        "|---|---:|---:|---:|",
        *[f"| {name} | {up:.0f} | {left:.0f} | {s:.2f} |" for name, up, left, s in rows],
    ]
    text = "\n".join(lines) + "\n"
    save_report(text, Path(args.out) if args.out else None)


if __name__ == "__main__":
    main()
