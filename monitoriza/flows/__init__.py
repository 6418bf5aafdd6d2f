"""Flows: named multi-step HTTP user journeys, run as synthetic probes (docs/flows.md)."""
