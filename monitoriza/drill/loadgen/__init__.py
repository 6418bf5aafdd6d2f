"""The load generator of ``monitoriza drill load``, run as ``python -m
monitoriza.drill.loadgen SPEC_JSON`` (see ``__main__``).

All of it but one constant lives in ``__main__``, which imports Locust — and so
monkey-patches the standard library for gevent — and must never be imported by anything but
that child process (tests that walk the package skip ``__main__`` modules).
"""

#: The line the worker prints once Locust's users run; ``drill run --under-load`` waits for it.
STARTED_LINE = "drill load started"
