"""Fire drills: prove on the real estate that every fault is detected, routed and healed in
time, with nothing lost. ``plan`` derives the fault matrix from the configuration, the rule
files and the Alertmanager route tree; ``run`` injects each fault through chaostoolkit-lib and
judges what the pipeline did; ``load`` drives a flow with Locust (see docs/drills.md)."""
