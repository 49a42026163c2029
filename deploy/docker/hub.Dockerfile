# The hub (the seed's "network server"): `hulytrio serve`.
#
# Build from the repository root:
#   docker build -f deploy/docker/hub.Dockerfile -t hulytrio-hub:0.1.0 .
# Run:
#   docker run -p 3737:3737 -p 9090:9090 hulytrio-hub:0.1.0
#
# Only one hub may be active at a time (docs/operations.md): run one
# container, restarted by its orchestrator, never several behind a balancer.

FROM python:3.11-slim AS build

WORKDIR /src
# Only what the package build needs: the image does not carry tests or docs.
COPY pyproject.toml README.md ./
COPY hulytrio ./hulytrio
RUN python -m venv /opt/hulytrio \
    && /opt/hulytrio/bin/pip install --no-cache-dir . \
    && /opt/hulytrio/bin/python -m compileall -q /opt/hulytrio

FROM python:3.11-slim

# A fixed uid/gid, so Kubernetes' runAsNonRoot can check it and volumes can be
# chowned to it from outside.
RUN groupadd --system --gid 10001 huly \
    && useradd --system --uid 10001 --gid huly --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin huly

COPY --from=build /opt/hulytrio /opt/hulytrio

WORKDIR /app
COPY deploy/config/production.json /app/config/production.json
RUN mkdir -p /app/logs && chown huly:huly /app/logs

# The byte code is compiled above: the root filesystem may be read-only.
ENV PATH=/opt/hulytrio/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    NETWORK_PORT=3737 \
    HUB_SUPERVISE=1

USER 10001:10001
EXPOSE 3737 9090

# /health answers 200 while the hub process serves; the probe is a Python
# command because the slim image has no curl.
HEALTHCHECK --interval=30s --timeout=10s --start-period=5s --retries=3 \
    CMD ["sh", "-c", "exec hulytrio health --url http://127.0.0.1:${NETWORK_PORT}/health"]

ENTRYPOINT ["hulytrio"]
CMD ["serve", "--config", "/app/config/production.json"]
