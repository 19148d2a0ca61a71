# syntax=docker/dockerfile:1
# llmcache: a builder stage installs the package into a virtualenv; the runtime stage
# copies only that virtualenv onto a clean python:3.11-slim (no compilers, no pip cache).
#
#   docker build -t llmcache:0.1.0 .
#   docker build --build-arg LOCAL_EMBEDDER=1 -t llmcache:0.1.0-local .   # + extra [local]
#   docker build --build-arg TRACING=1 -t llmcache:0.1.0-otel .            # + extra [otel]
#   docker run -p 8080:8080 -v "$PWD/config.yaml:/etc/llmcache/config.yaml:ro" \
#     -e LLMCACHE_UPSTREAM__API_KEY="$OPENAI_API_KEY" llmcache:0.1.0
#
# The config is read from /etc/llmcache/config.yaml (a default is baked in; mount your
# own over it). Every key can be overridden by env: LLMCACHE_<SECTION>__<KEY>.

ARG PYTHON_IMAGE=python:3.11-slim

# --------------------------------------------------------------------------- builder
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# Compilers only for dependencies without a wheel for this platform; they stay here.
# (Not version-pinned: Debian replaces point releases, a pin would break rebuilds.)
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src

# 1 adds the extra [local]: the in-process embedder (onnxruntime and a 23 MB int8 model, no torch).
ARG LOCAL_EMBEDDER=0
# 1 adds the extra [otel]: OpenTelemetry tracing (tracing.enabled, OTEL_* variables).
ARG TRACING=0

# Dependencies first (their own layer, rebuilt only when pyproject.toml or a build arg changes).
COPY pyproject.toml ./
RUN case "$LOCAL_EMBEDDER" in 0|1) ;; *) echo "LOCAL_EMBEDDER must be 0 or 1" >&2; exit 1 ;; esac \
    && case "$TRACING" in 0|1) ;; *) echo "TRACING must be 0 or 1" >&2; exit 1 ;; esac \
    && python -c "import sys, tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; x = p['optional-dependencies']; print('\n'.join(p['dependencies'] + (x['local'] if sys.argv[1] == '1' else []) + (x['otel'] if sys.argv[2] == '1' else [])))" "$LOCAL_EMBEDDER" "$TRACING" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt

# Then the application itself (not editable: the runtime stage has no source tree).
COPY README.md ./
COPY app ./app
RUN pip install --no-deps . \
    && llmcache --help > /dev/null \
    && if [ "$LOCAL_EMBEDDER" = 1 ]; then python -c "from app.semantic.embedder import LocalEmbedder; LocalEmbedder()"; fi

# --------------------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="llmcache" \
      org.opencontainers.image.description="OpenAI-compatible caching reverse proxy"

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# A fixed, unprivileged uid/gid (Kubernetes' runAsUser matches it).
RUN groupadd --system --gid 10001 llmcache \
    && useradd --system --uid 10001 --gid llmcache --no-create-home \
        --home-dir /var/lib/llmcache --shell /usr/sbin/nologin llmcache \
    && mkdir -p /etc/llmcache /var/lib/llmcache \
    && chown llmcache:llmcache /var/lib/llmcache

COPY --from=builder /opt/venv /opt/venv
COPY deploy/docker/config.yaml /etc/llmcache/config.yaml

# The disk tier of the default config lives here; /tmp holds multi-worker metrics.
VOLUME ["/var/lib/llmcache"]
WORKDIR /var/lib/llmcache
USER 10001:10001

EXPOSE 8080

# slim has no curl: probe /health with the interpreter that is there anyway.
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('LLMCACHE_SERVER__PORT', '8080'); sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/health', timeout=2).status == 200 else 1)"]

CMD ["llmcache", "serve", "--config", "/etc/llmcache/config.yaml", "--host", "0.0.0.0"]
