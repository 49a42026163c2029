# An agent: `hulytrio agent`, hosting the containers of a factories module.
#
# Build from the repository root:
#   docker build -f deploy/docker/agent.Dockerfile -t hulytrio-agent:0.1.0 .
#
# The image runs the echo containers shipped with hulytrio
# (hulytrio.testing.echo:FACTORIES, kind "echo"). Your own containers go in an
# image built FROM this one:
#
#   FROM hulytrio-agent:0.1.0
#   COPY myapp/ /app/myapp/
#   CMD ["agent", "--factories", "myapp.containers:FACTORIES"]
#
# (/app is the working directory, and the current directory is importable.)

FROM python:3.11-slim AS build

WORKDIR /src
COPY pyproject.toml README.md ./
COPY hulytrio ./hulytrio
RUN python -m venv /opt/hulytrio \
    && /opt/hulytrio/bin/pip install --no-cache-dir . \
    && /opt/hulytrio/bin/python -m compileall -q /opt/hulytrio

FROM python:3.11-slim

RUN groupadd --system --gid 10001 huly \
    && useradd --system --uid 10001 --gid huly --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin huly

COPY --from=build /opt/hulytrio /opt/hulytrio

WORKDIR /app

ENV PATH=/opt/hulytrio/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    NETWORK_HOST=network-server \
    NETWORK_PORT=3737

USER 10001:10001
# The agent's own endpoint, when AGENT_PORT is set (direct connections).
EXPOSE 3738

# Like the seed's healthcheck.js: healthy while the agent's hub answers
# /health. An agent needs nothing else to serve: it reconnects by itself.
HEALTHCHECK --interval=30s --timeout=3s --start-period=5s --retries=3 \
    CMD ["sh", "-c", "exec hulytrio health --url http://${NETWORK_HOST}:${NETWORK_PORT}/health"]

ENTRYPOINT ["hulytrio"]
CMD ["agent", "--factories", "hulytrio.testing.echo:FACTORIES"]
