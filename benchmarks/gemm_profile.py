"""Where a beam-search ``generate`` spends its matrix time, by matrix shape, on this host's backend.

CTranslate2 computes Whisper's matrix products with oneDNN (AMD, or ``CT2_USE_MKL=0``) or Intel
MKL. This runs the engine's first-pass ``generate`` (beam 5, timestamp tokens, the suppressed
tokens and length bound the engine uses) on ``--windows`` 30-s windows of a recording, on one
thread, in a child process with the backend's verbose log on (``ONEDNN_VERBOSE=1`` or
``MKL_VERBOSE=1``), and sums each product's time by shape: the decoder's cross-attention against
the encoder's 1500 frames (one product per window, head and layer, every step), its vocabulary
projection, its feed-forward and attention projections. It tells a host whose ``generate`` is slow
per token (``rtf.py``'s breakdown) which product makes it so.

Example::

    python benchmarks/gemm_profile.py --audio /tmp/longform/ami_mix_b.wav --windows 4
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import subprocess
import sys
from pathlib import Path

from common import command_line, cpu_name, save_report

#: What each product is, by its (m-free) shape ``k:n`` (tiny.en and base: 384 or 512 wide, 1500
#: encoder frames, 6 or 8 heads of 64).
NAMES = {
    "64:1500": "cross-attention scores (per window, head, layer, step)",
    "1500:64": "cross-attention values (per window, head, layer, step)",
    "51864": "vocabulary projection",
    "51865": "vocabulary projection",
}


def name_of(k: int, n: int, width: int) -> str:
    if f"{k}:{n}" in NAMES:
        return NAMES[f"{k}:{n}"]
    if str(n) in NAMES:
        return NAMES[str(n)]
    if k == 64:
        return "self-attention scores"
    if n == 64:
        return "self-attention values"
    if k == width and n == 4 * width:
        return "feed-forward in"
    if k == 4 * width and n == width:
        return "feed-forward out"
    if k == width and n == 3 * width:
        return "self-attention q/k/v projection"
    if k == width and n == 2 * width:
        return "cross-attention k/v projection (once per layer, every window at once)"
    if k == width and n == width:
        return "attention q / output projection"
    return "other"


def child(args: argparse.Namespace) -> None:
    """Run the ``generate`` (the verbose log goes to stdout)."""
    import ctranslate2
    import numpy as np
    import soundfile as sf
    from faster_whisper import WhisperModel
    from faster_whisper.tokenizer import Tokenizer
    from faster_whisper.transcribe import get_suppressed_tokens

    from iam_cluster.pipeline.asr import _MAX_INITIAL_TIMESTAMP_INDEX, _MAX_NEW_TOKENS

    model = WhisperModel(args.model, device="cpu", compute_type=args.compute_type, cpu_threads=1)
    audio, rate = sf.read(args.audio, dtype="float32", always_2d=True)
    if rate != 16000:
        raise SystemExit(f"{args.audio}: {rate} Hz; give a 16-kHz recording")
    audio = audio.mean(axis=1)
    windows = [audio[i * 480000 : (i + 1) * 480000] for i in range(args.windows)]
    if len(windows[-1]) < 480000:
        raise SystemExit(f"{args.audio}: shorter than {args.windows} windows of 30 s")
    features = np.stack([model.feature_extractor(w)[:, :3000] for w in windows])
    encoded = np.concatenate([np.asarray(model.model.encode(ctranslate2.StorageView.from_array(
        np.ascontiguousarray(features[i : i + 1])))) for i in range(len(windows))])
    tok = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language="en")
    prompt = model.get_prompt(tok, [], without_timestamps=False)
    print("== generate", flush=True)
    results = model.model.generate(
        ctranslate2.StorageView.from_array(np.ascontiguousarray(encoded)), [list(prompt)] * len(windows),
        beam_size=5, patience=1.0, length_penalty=1.0, max_length=len(prompt) + _MAX_NEW_TOKENS,
        suppress_blank=True, suppress_tokens=get_suppressed_tokens(tok, [-1]),
        max_initial_timestamp_index=_MAX_INITIAL_TIMESTAMP_INDEX, return_scores=True)
    print(f"== tokens {sum(len(r.sequences_ids[0]) for r in results)}", flush=True)


#: oneDNN: ``onednn_verbose,exec,cpu,gemm_api,,undef,src_...,wei_...,dst_...,<attr>,,MxK:KxN,<ms>``
_ONEDNN = re.compile(r"^onednn_verbose,exec,cpu,gemm_api,.*?,src_(\w+)::.*,(\d+)x(\d+):(\d+)x(\d+),([\d.]+)$")
#: MKL: ``MKL_VERBOSE GEMM_S8U8S32_COMPUTE(P,N,C,1152,1,384,...) 692.73us CNR:OFF ...`` or
#: ``MKL_VERBOSE SGEMM_BATCH_STRIDED(T,N,1500,5,64,...,6) 95.1us ...`` (column-major m, n, k; ``P``: the
#: weights packed once, as CTranslate2 does with MKL; a batched call covers every head at once)
_MKL = re.compile(r"^MKL_VERBOSE (\w+)\((\w),(\w),(?:[A-Z],)?(\d+),(\d+),(\d+),.*?\) ([\d.]+)(us|ms|s) ")


def parse(lines: list[str]) -> tuple[dict, int]:
    """``{(kind, k, n): [calls, ms, rows]}`` of the products after the ``== generate`` mark, and
    the tokens written."""
    shapes: dict = collections.defaultdict(lambda: [0, 0.0, 0])
    started, tokens = False, 0
    for line in lines:
        if line.startswith("== generate"):
            started = True
        elif line.startswith("== tokens"):
            tokens = int(line.split()[-1])
        elif started and (m := _ONEDNN.match(line)):
            kind, rows, k, _, n, ms = m.groups()
            entry = shapes[(kind, int(k), int(n))]
            entry[0] += 1
            entry[1] += float(ms)
            entry[2] += int(rows)
        elif started and (m := _MKL.match(line)):
            kind, _, _, cm, cn, ck, value, unit = m.groups()
            ms = float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]
            # column-major C(m x n) = A(m x k) B(k x n) is row-major C^T: n rows, inner k, m columns
            entry = shapes[(kind.lower(), int(ck), int(cm))]
            entry[0] += 1
            entry[1] += ms
            entry[2] += int(cn)
    return shapes, tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--audio", required=True, help="a 16-kHz recording of at least WINDOWS x 30 s")
    ap.add_argument("--windows", type=int, default=4)
    ap.add_argument("--model", default=None, help="CTranslate2 Whisper folder (default: the embedded tiny.en)")
    ap.add_argument("--compute-type", default="int8")
    ap.add_argument("--label", default="cpu")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.windows < 1:
        ap.error("--windows must be at least 1")
    if not args.child and not Path(args.audio).is_file():
        ap.error(f"--audio {args.audio}: no such file")
    if args.model is None:
        from iam_cluster.pipeline.models import embedded_tiny_en

        args.model = str(embedded_tiny_en())
    if args.child:
        child(args)
        return

    from iam_cluster.pipeline.asr import ct2_uses_mkl

    mkl = ct2_uses_mkl()
    env = dict(os.environ, **({"MKL_VERBOSE": "1"} if mkl else {"ONEDNN_VERBOSE": "1"}))
    cmd = [sys.executable, __file__, "--child", "--audio", args.audio, "--windows", str(args.windows),
           "--model", args.model, "--compute-type", args.compute_type]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(done.stderr[-2000:])
    shapes, tokens = parse(done.stdout.splitlines())
    if not shapes:
        raise SystemExit("no matrix products were logged: is this CTranslate2 build's backend oneDNN or MKL?")
    width = max((k for (_, k, n) in shapes if n > 10000), default=0)
    total = sum(ms for _, ms, _ in shapes.values())
    lines = [f"# Matrix time of one beam-5 generate, by shape: {args.label}", "",
             f"Command: `{command_line()}`", "",
             f"Environment: CPU {cpu_name()}, one thread, backend {'MKL' if mkl else 'oneDNN'}, model "
             f"{args.model}, compute {args.compute_type}, {args.windows} windows of 30 s from {args.audio}; "
             f"{tokens} tokens written; the backend's own timing of each product", "",
             f"Matrix products in all: {total:.0f} ms, {total / max(tokens, 1):.2f} ms per token written.", "",
             "| product | type | shape (rows x k x n) | calls | rows per call | ms | % of matrix time |",
             "|---|---|---|---:|---:|---:|---:|"]
    for (kind, k, n), (calls, ms, rows) in sorted(shapes.items(), key=lambda x: -x[1][1]):
        if ms < 0.005 * total:
            continue
        lines.append(f"| {name_of(k, n, width)} | {kind} | m x {k} x {n} | {calls} | {rows / calls:.1f} | "
                     f"{ms:.0f} | {100 * ms / total:.1f} |")
    save_report("\n".join(lines) + "\n", args.out or Path(__file__).parent / "results" / f"gemm-profile-{args.label}.md")


if __name__ == "__main__":
    main()
