#!/usr/bin/env bash
# The GPU benchmark set: our pipeline against faster-whisper on one CUDA device, same model files.
#
#   benchmarks/gpu.sh DATA_DIR LABEL [MODEL] [BATCH]
#
# DATA_DIR is the project's shared/data (or a folder laid out like it); LABEL names the device in
# the reports (e.g. h200). It builds the long-form set (benchmarks/make_longform.py), then writes
#   benchmarks/results/rtf-longform-gpu-LABEL.md  every long-form file timed alone, three systems
#   benchmarks/results/rtf-short-gpu-LABEL.md     the 8 Harvard clips x 15 as one folder
# Every system gets the same batch size (default 16, the GPU overlay's), beam 5, float16.
# Ours runs twice: as configured (IAM_TIMESTAMP_TOKENS=auto: without Whisper's timestamp tokens on a
# GPU, windows with a stretched word decoded again with them) and with the tokens (ours_tokens).
set -euo pipefail
DATA=${1:?DATA_DIR}; LABEL=${2:?LABEL}; MODEL=${3:-tiny.en}; BATCH=${4:-16}
HERE=$(cd "$(dirname "$0")" && pwd)
PY=${PYTHON:-python}
THREADS=${THREADS:-8}
SET=${LONGFORM_DIR:-/tmp/longform}
$PY "$HERE/make_longform.py" --data "$DATA" --out "$SET" >/dev/null
common=(--model "$MODEL" --device cuda --threads "$THREADS" --batch-size "$BATCH" --beam-size 5)
$PY "$HERE/rtf.py" --audio "$SET"/*.wav --per-file --rounds "${ROUNDS:-1}" "${common[@]}" \
    --systems ours,ours_tokens,fw_batched_words,fw_sequential --label "longform-gpu-$LABEL-$MODEL"
H=$(ls "$DATA"/spk*_snt*.wav)
# shellcheck disable=SC2086
$PY "$HERE/rtf.py" --audio $H --repeat 15 --rounds 3 "${common[@]}" \
    --systems ours,ours_tokens,fw_batched,fw_batched_words --label "short-gpu-$LABEL-$MODEL"
