"""The Flask webhook for Alertmanager: intake, correlation, healing, audit (later issues)."""
