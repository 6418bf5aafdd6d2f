"""Healing safety: circuit breakers, restart budgets and the memory of what worked."""
