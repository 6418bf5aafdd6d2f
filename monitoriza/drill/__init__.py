"""Fire drills: prove on the real estate that every fault is detected, routed and healed in
time. ``plan`` derives the fault matrix from the configuration, the rule files and the
Alertmanager route tree (see docs/drills.md); nothing here injects a fault yet."""
