"""Time-to-failure forecasts: robust, reset-aware and seasonal models chosen per series."""
