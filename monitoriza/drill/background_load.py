"""``drill run --under-load FLOW``: a flow driven by ``monitoriza drill load`` (Locust) for the
whole drill, so each fault is injected while residents are checking in.

The load runs as its own ``monitoriza drill load`` process, in a session of its own so that a
Ctrl-C meant for the drill reaches it only through :meth:`BackgroundLoad.stop`, which sends
the SIGINT ``drill load`` already handles (it stops and stores what ran). Its progress goes
to a log file beside its results, not into the drill's output.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monitoriza.drill.loadgen import STARTED_LINE
from monitoriza.exceptions import MonitorizaError

#: Longer than any drill: the load is stopped by SIGINT when the drill ends.
OPEN_ENDED_DURATION = "24h"
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 60.0


class LoadError(MonitorizaError):
    """The load could not be started (the drill injects nothing then)."""


@dataclass
class BackgroundLoad:
    flow: str
    process: subprocess.Popen[bytes]
    results: Path
    log: Path

    @classmethod
    def start(cls, config: Path, flow: str, *, users: int, rate: float, directory: Path,
              drill_id: str, slo: str | None = None) -> BackgroundLoad:
        directory.mkdir(parents=True, exist_ok=True)
        stem = f"load-{flow}-{drill_id.removeprefix('drill-')}"
        results, log = directory / f"{stem}.json", directory / f"{stem}.log"
        command = [sys.executable, "-m", "monitoriza", "drill", "load", "--config", str(config),
                   "--flow", flow, "--users", str(users), "--rate", f"{rate:g}",
                   "--duration", OPEN_ENDED_DURATION, "--out", str(results)]
        if slo:
            command += ["--slo", slo]
        with log.open("wb") as out:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        load = cls(flow, process, results, log)
        load.wait_started()
        return load

    def wait_started(self, timeout: float = START_TIMEOUT_SECONDS) -> None:
        """Wait until Locust's users run (its start-up line in the log): a fault is only
        "under load" once the load is on. LoadError when it exits or never starts."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if STARTED_LINE.encode() in self.log.read_bytes():
                return
            if self.process.poll() is not None:
                raise LoadError(f"drill load of {self.flow} exited with status "
                                f"{self.process.returncode} before it started; see {self.log}")
            time.sleep(0.1)
        self.stop()
        raise LoadError(f"drill load of {self.flow} did not start within {timeout:g}s; "
                        f"see {self.log}")

    def stop(self) -> dict[str, Any]:
        """Stop the load (it stores its results) and say where they are."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return {"flow": self.flow, "exit_code": self.process.returncode,
                "results": str(self.results) if self.results.exists() else None,
                "log": str(self.log)}
