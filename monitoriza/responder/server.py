"""``monitoriza responder``: the Flask app under gunicorn, one process with many threads.

One process keeps the in-process metrics and the journal worker simple; throughput comes
from threads (requests mostly wait on the journal's fsync) and from replicas sharing a
PostgreSQL store.
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from monitoriza.config.schema import Config
from monitoriza.responder.app import create_app, read_token


class ResponderServer(BaseApplication):  # type: ignore[misc]  # gunicorn is untyped
    def __init__(self, config: Config, listen: str) -> None:
        self._config = config
        self._listen = listen
        super().__init__()

    def load_config(self) -> None:
        settings = self._config.responder
        options: dict[str, Any] = {
            "bind": self._listen,
            "workers": 1,
            "worker_class": "gthread",
            "threads": settings.threads,
            "timeout": 60,
            "graceful_timeout": 10,
            "accesslog": None,
            "errorlog": "-",
            "loglevel": "info",
        }
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        # Built in the worker process, so its threads (journal worker, verifier) run there.
        return create_app(self._config)


def serve(config: Config, listen: str | None = None) -> int:
    # Fail fast, in the foreground, on a missing token rather than in a forked worker.
    read_token(config.responder.token_file)
    ResponderServer(config, listen or config.responder.listen).run()
    return 0
