# One image for every Monitoriza component; the command picks the component:
#   docker run IMAGE exporter --config /etc/monitoriza/config.yml
#   docker run IMAGE responder --config /etc/monitoriza/config.yml
# docker-compose.monitoring.yml builds it for both and defines their health checks.

# The build stage installs the package and its runtime dependencies (never the dev extras)
# into a virtualenv; the final image gets only that virtualenv, not the sources or pip's cache.
# Every command runs on the runtime dependencies alone (the report draws its charts as SVG):
# tests/test_wheel.py installs the wheel the same way and runs each of them.
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/monitoriza
WORKDIR /src
COPY pyproject.toml README.md ./
COPY monitoriza ./monitoriza
RUN /opt/monitoriza/bin/pip install .

FROM python:3.11-slim-bookworm
ENV PATH=/opt/monitoriza/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /opt/monitoriza /opt/monitoriza
# A fixed UID, so that volumes and secret files can be given to it on the host. The state
# directories exist in the image, owned by that user, so that a named volume mounted on them
# starts out writable by it (Docker copies the ownership on first use).
RUN groupadd --system --gid 10001 monitoriza \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin monitoriza \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/monitoriza /var/lib/monitoriza-audit
USER 10001
WORKDIR /var/lib/monitoriza
EXPOSE 9108 9095
ENTRYPOINT ["monitoriza"]
CMD ["exporter", "--config", "/etc/monitoriza/config.yml", "--listen", "0.0.0.0:9108"]
