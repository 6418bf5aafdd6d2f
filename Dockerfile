# One image for every Monitoriza component; the command picks the component.
FROM python:3.11-slim

WORKDIR /src
COPY pyproject.toml README.md ./
COPY monitoriza ./monitoriza
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 --no-create-home monitoriza
USER 10001
ENTRYPOINT ["monitoriza"]
CMD ["exporter", "--config", "/etc/monitoriza/config.yml", "--listen", "0.0.0.0:9108"]
