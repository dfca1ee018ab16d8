# stylize-bot as a container: docker compose up -d (compose.yaml), or see docs/deploy.md.
#
# Build arguments:
#   BASE_IMAGE        a Debian-based image; with Python 3.10+ (python:3.11-slim-bookworm, the
#                     default) or without (Debian's python3 is installed then)
#   TORCH_INDEX_URL   where torch comes from: the CPU build by default; PyPI's Linux torch
#                     (https://pypi.org/simple) or https://download.pytorch.org/whl/cu128 is
#                     a CUDA build
#   TORCH_PACKAGES    the torch and torchvision requirements (pin a pair for your GPU)
#   EXTRA_CA_CERTS    PEM text of a CA that a TLS-inspecting proxy signs with, for the build's
#                     downloads only (it never reaches the final image)
#   PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, PIP_FIND_LINKS: passed to pip as they are
ARG BASE_IMAGE=python:3.11-slim-bookworm

# --- build: a virtual environment with torch and the bot --------------------------------------
FROM ${BASE_IMAGE} AS build
ARG EXTRA_CA_CERTS=""
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_PACKAGES="torch torchvision"
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DEFAULT_TIMEOUT=180
RUN set -eux; \
    packages="ca-certificates"; \
    command -v python3 >/dev/null || packages="$packages python3 python3-venv"; \
    apt-get update; \
    apt-get install -y --no-install-recommends $packages; \
    rm -rf /var/lib/apt/lists/*; \
    if [ -n "$EXTRA_CA_CERTS" ]; then \
        printf '%s\n' "$EXTRA_CA_CERTS" > /usr/local/share/ca-certificates/build-extra.crt; \
        update-ca-certificates; \
    fi; \
    python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# torch first, in a layer of its own: the bot's code changes far more often.
RUN pip install --index-url "$TORCH_INDEX_URL" $TORCH_PACKAGES
WORKDIR /src
COPY pyproject.toml README.md ./
COPY engine ./engine
COPY bot ./bot
RUN pip install . && python -c "import bot.__main__, engine, prometheus_client"

# --- runtime ----------------------------------------------------------------------------------
FROM ${BASE_IMAGE}
ENV DEBIAN_FRONTEND=noninteractive
RUN set -eux; \
    packages="tini"; \
    command -v python3 >/dev/null || packages="$packages python3"; \
    apt-get update; \
    apt-get install -y --no-install-recommends $packages; \
    rm -rf /var/lib/apt/lists/*; \
    groupadd --system --gid 10001 stylize; \
    useradd --system --uid 10001 --gid 10001 --home-dir /app --shell /usr/sbin/nologin stylize; \
    mkdir -p /app /data /cache; \
    chown stylize:stylize /app /data /cache; \
    chmod 700 /data
COPY --from=build /opt/venv /opt/venv
# The journal and the jobs' pictures (STYLIZE_DATA_DIR) live on a volume, so a new container
# resumes the old one's jobs; the VGG19 weights (about 550 MB, downloaded once) in /cache.
# The operator port listens on every address of the container's own network: publish it to
# the host's 127.0.0.1 at most (compose.yaml does).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    STYLIZE_DATA_DIR=/data \
    TORCH_HOME=/cache/torch \
    STYLIZE_METRICS_HOST=0.0.0.0 \
    STYLIZE_METRICS_PORT=9464
VOLUME ["/data"]
WORKDIR /app
USER stylize
EXPOSE 9464
# /healthz is served from the start (before the engine has loaded its network).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ['STYLIZE_METRICS_PORT'], timeout=4)"]
# tini is PID 1: it hands SIGTERM (docker stop) to the bot, which stops its workers, tells
# the members whose pictures were running, and exits within 15 s; it also reaps every child.
ENTRYPOINT ["tini", "--"]
CMD ["stylize-bot"]
