"""The load generator of ``monitoriza drill load``, run as its own process:
``python -m monitoriza.drill.loadgen SPEC_JSON``.

Why a process of its own: importing Locust monkey-patches the standard library for gevent
(sockets, ssl, threads). Patching after ``ssl`` and urllib3 are loaded — as they are once
``monitoriza.cli`` is imported — ends in a RecursionError, and patching the exporter or the
responder would change how they serve. So Locust is imported here first, before anything that
loads ``ssl``, and nothing else in Monitoriza ever imports this module.

Locust is used as a library: one ``User`` class generated for the flow, paced with
``constant_throughput`` so that ``users`` of them make ``rate`` flow runs per second; its
task runs the flow with :func:`monitoriza.flows.runner.run_flow` (the same request building
and judging as the exporter's probe) and reports every step that ran, and the run as a
whole, through Locust's request event, so Locust's stats give the counts and percentiles.
Progress goes to stderr every few seconds; the figures go to stdout as one JSON document.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from typing import Any

# isort: off
import locust  # noqa: F401 - imported first: monkey-patches before ssl is loaded
from locust import User, constant_throughput, task
from locust.env import Environment
from locust.stats import RequestStats

# isort: on
import requests

from monitoriza.config import load_config
from monitoriza.config.schema import Flow
from monitoriza.drill.loadgen import STARTED_LINE
from monitoriza.drill.slo import PERCENTILES
from monitoriza.flows.model import FlowResult
from monitoriza.flows.runner import run_flow

FLOW_REQUEST_TYPE = "FLOW"  # the Locust entry of whole flow runs, beside one per step


class _StepFailed(Exception):  # noqa: N818 - Locust's record of a failure, not raised
    """What Locust records as a step's failure: the reason from the flow model."""


def _report(environment: Environment, result: FlowResult, flow: Flow,
            messages: dict[str, str]) -> None:
    methods = {step.name: step.method for step in flow.steps}
    for step in result.steps:
        if step.reason == "skipped":
            continue  # no request was made; the failed step before it is counted
        if not step.ok and step.name not in messages:
            messages[step.name] = step.message
        environment.events.request.fire(  # type: ignore[no-untyped-call]
            request_type=methods[step.name], name=step.name,
            response_time=step.duration_seconds * 1000, response_length=0,
            exception=None if step.ok else _StepFailed(step.reason), context={})
    failed = result.failed_step
    environment.events.request.fire(  # type: ignore[no-untyped-call]
        request_type=FLOW_REQUEST_TYPE, name=result.flow,
        response_time=result.duration_seconds * 1000, response_length=0,
        exception=None if failed is None else _StepFailed(f"step {failed.name}"),
        context={})


def flow_user_class(name: str, flow: Flow, users: int, rate: float,
                    messages: dict[str, str]) -> type[User]:
    """A Locust user that runs ``flow`` ``rate / users`` times a second."""
    starting_order = itertools.count()

    class FlowUser(User):
        wait_time = constant_throughput(rate / users)

        def on_start(self) -> None:
            self.session = requests.Session()
            # Users started together would stay in phase and send their runs in bursts of
            # ``users``; spread evenly over one pacing period, the runs arrive as a steady
            # stream (Locust's spawn rate staggers by whole seconds only).
            time.sleep(next(starting_order) / rate)

        def on_stop(self) -> None:
            self.session.close()

        @task
        def run_flow_once(self) -> None:
            _report(self.environment, run_flow(name, flow, session=self.session), flow,
                    messages)

    return FlowUser


def _percentiles(stats: RequestStats, name: str, method: str) -> dict[str, float | None]:
    entry = stats.get(name, method)
    if entry.num_requests == 0:
        return dict.fromkeys(PERCENTILES)
    return {key: float(entry.get_response_time_percentile(fraction))
            for key, fraction in PERCENTILES.items()}


def _progress(stats: RequestStats, name: str, elapsed: float, rate: float) -> str:
    runs = stats.get(name, FLOW_REQUEST_TYPE)
    p95 = runs.get_response_time_percentile(0.95) if runs.num_requests else 0
    achieved = runs.num_requests / elapsed if elapsed > 0 else 0.0
    return (f"drill load {name}: {elapsed:5.1f}s  {runs.num_requests} runs  "
            f"{achieved:.1f}/s of {rate:g}/s  {runs.num_failures} failed  "
            f"flow p95 {p95:g}ms")


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Drive the flow as ``spec`` says and return the figures."""
    name = spec["flow"]
    flow = load_config(spec["config"]).flows[name]
    users, rate, duration = int(spec["users"]), float(spec["rate"]), float(spec["duration"])
    every = float(spec.get("progress_every", 2.0))
    messages: dict[str, str] = {}
    environment = Environment(user_classes=[flow_user_class(name, flow, users, rate,
                                                            messages)])
    runner = environment.create_local_runner()
    started_at = time.time()
    started = time.monotonic()
    # Every user in one go (Locust warns above 100 a second, but a ramp would lower the
    # achieved rate); on_start spreads their first runs over one pacing period.
    runner.start(users, spawn_rate=users)
    # Who waits for the load to be on (drill run --under-load) reads this line.
    print(f"{STARTED_LINE} {name}: {users} users at {rate:g}/s", file=sys.stderr, flush=True)
    next_progress = started + every
    interrupted = False
    try:
        while (now := time.monotonic()) < started + duration:
            time.sleep(  # patched by Locust: gevent's sleep, the users run meanwhile
                min(next_progress, started + duration) - now)
            if time.monotonic() >= next_progress:
                print(_progress(environment.stats, name, time.monotonic() - started, rate),
                      file=sys.stderr, flush=True)
                next_progress += every
    except KeyboardInterrupt:
        interrupted = True
        print(f"drill load {name}: interrupted, reporting what ran", file=sys.stderr)
    runner.stop()  # kills the users: a run still in flight is not counted
    elapsed = time.monotonic() - started
    runner.quit()
    stats = environment.stats
    runs = stats.get(name, FLOW_REQUEST_TYPE)
    steps = []
    for step in flow.steps:
        entry = stats.get(step.name, step.method)
        steps.append({"name": step.name, "method": step.method,
                      "requests": entry.num_requests, "failures": entry.num_failures,
                      "percentiles_ms": _percentiles(stats, step.name, step.method),
                      "first_failure": messages.get(step.name)})
    return {
        "flow": name, "users": users, "target_rate": rate, "duration_seconds": duration,
        "started_at": started_at, "elapsed_seconds": elapsed, "interrupted": interrupted,
        "runs": runs.num_requests, "failed_runs": runs.num_failures,
        "achieved_rate": runs.num_requests / elapsed if elapsed > 0 else 0.0,
        "run_percentiles_ms": _percentiles(stats, name, FLOW_REQUEST_TYPE),
        "steps": steps,
    }


def main(argv: list[str]) -> int:
    json.dump(run(json.loads(argv[0])), sys.stdout)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
