"""``monitoriza report``: a readiness report over a period, from Prometheus and the store."""
