# The two commands README.md starts with: `make run` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
UP_ARGS ?=   # e.g. UP_ARGS="--base-port 19090" when 9090 is taken

.PHONY: run test lint typecheck unit bench bootstrap clean

bootstrap:
	scripts/bootstrap.sh

run:
	scripts/bootstrap.sh --run
	$(VENV)/bin/monitoriza up --demo $(UP_ARGS)

lint:
	$(VENV)/bin/ruff check monitoriza tests benchmarks

typecheck:
	$(VENV)/bin/mypy monitoriza benchmarks tests

# Four workers, a test file each at a time: most of the suite waits on real servers and
# timers (three workers kept three quarters of one core busy), so files side by side cut the
# wall time; a file's module-scoped servers stay in one worker. The longest files (two demo
# stacks waiting on scaled timers, about 7 and 6 minutes) are collected first
# (tests/conftest.py), so they start at once and the rest runs beside them.
unit:
	$(VENV)/bin/pytest -q -n 4 --dist loadfile

test: bootstrap lint typecheck unit

bench: bootstrap
	$(PY) benchmarks/scrape.py
	$(PY) benchmarks/intake.py
	$(PY) benchmarks/intake_scale.py
	$(PY) benchmarks/slow_clients.py
	$(PY) benchmarks/incident_storm.py
	$(PY) benchmarks/storm.py
	$(PY) benchmarks/audit.py
	$(PY) benchmarks/forecast_speed.py
	$(PY) benchmarks/forecast_eval.py
	$(PY) benchmarks/console.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
