# syntax=docker/dockerfile:1
# The outbox as an OCI image: `outbox` is the entrypoint, so `run`, `serve`, `migrate` and every other command are
# one argument away. Build with `make image`, or:
#   docker build -t nlgov-outbox:0.1.0 .          podman build -t nlgov-outbox:0.1.0 .
# Build arguments:
#   BASE            the Python image to build on (any Debian-like image with python3 and the venv module)
#   PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, PIP_FIND_LINKS, PIP_NO_INDEX   where pip finds packages (a mirror)
# A network that intercepts TLS (its own CA): hand pip that CA as a build secret, which leaves nothing in the image:
#   docker build --secret id=ca,src=/etc/ssl/certs/ca-certificates.crt .
ARG BASE=docker.io/library/python:3.12-slim-bookworm

# -- build: the wheel, then a virtual environment with it and its dependencies ------------------------------------
FROM ${BASE} AS build
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_NO_INDEX
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY pyproject.toml README.md ./
COPY outbox ./outbox
COPY worker ./worker
COPY sql ./sql
RUN --mount=type=secret,id=ca,required=false \
    set -eu; \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi; \
    python3 -m venv /opt/outbox; \
    /opt/outbox/bin/pip install --upgrade pip; \
    /opt/outbox/bin/pip wheel --no-deps --wheel-dir /wheels .; \
    # with the otel extra: setting OTEL_EXPORTER_OTLP_ENDPOINT is all a deployment does to export traces
    /opt/outbox/bin/pip install "$(ls /wheels/*.whl)[otel]"; \
    /opt/outbox/bin/pip uninstall --yes pip setuptools; \
    /opt/outbox/bin/outbox --version

# -- runtime: the venv only, a non-root user, nothing written outside /tmp ----------------------------------------
FROM ${BASE} AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="nlgov-outbox" \
      org.opencontainers.image.description="A transactional outbox for NL GOV CloudEvents on PostgreSQL" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="EUPL-1.2" \
      org.opencontainers.image.source="https://github.com/nlgov-outbox/nlgov-outbox"
# uid/gid 10001: above any system range, the same number the Kubernetes and compose files name.
RUN groupadd --system --gid 10001 outbox \
    && useradd --system --uid 10001 --gid outbox --home-dir /nonexistent --no-create-home \
       --shell /usr/sbin/nologin outbox
COPY --from=build /opt/outbox /opt/outbox
# Read-only root filesystem: no .pyc written at run time (pip compiled them at build), temporary files and the
# embedded server's folder (only used without OUTBOX_DATABASE_URL) under /tmp, which compose and Kubernetes mount
# as a tmpfs / emptyDir.
ENV PATH=/opt/outbox/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    OUTBOX_DATA_DIR=/tmp/outbox/pgdata \
    OUTBOX_HOST=0.0.0.0 \
    OUTBOX_METRICS_HOST=0.0.0.0
USER 10001:10001
WORKDIR /tmp
# 8000: outbox serve; 9100: outbox run's /metrics, /healthz and /readyz (with --metrics-port 9100)
EXPOSE 8000 9100
# `outbox run` and `outbox serve` handle SIGTERM themselves (finish or release in-flight work, exit 0), also as PID 1.
STOPSIGNAL SIGTERM
ENTRYPOINT ["outbox"]
CMD ["--help"]
