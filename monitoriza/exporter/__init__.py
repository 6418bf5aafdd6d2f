"""The exporter: background probes, health dimensions and forecasts as Prometheus metrics."""
