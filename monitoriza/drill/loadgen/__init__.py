"""The load generator of ``monitoriza drill load``, run as ``python -m
monitoriza.drill.loadgen SPEC_JSON`` (see ``__main__``).

Deliberately empty: all of it lives in ``__main__``, which imports Locust — and so
monkey-patches the standard library for gevent — and must never be imported by anything but
that child process (tests that walk the package skip ``__main__`` modules).
"""
