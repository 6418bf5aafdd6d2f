"""The exporter's HTTP endpoint: /metrics, a health check and a landing page."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from monitoriza.exporter.exposition import CONTENT_TYPE

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

LANDING = b"""<html><head><title>Monitoriza exporter</title></head><body>
<h1>Monitoriza exporter</h1><p><a href="/metrics">Metrics</a></p></body></html>"""


class ThreadingServer(ThreadingMixIn, WSGIServer):
    """One thread per scrape, so a slow client never blocks another."""

    daemon_threads = True


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are too frequent to log."""


def metrics_app(render: Callable[[], bytes]) -> WSGIApplication:
    """A WSGI app serving ``render()`` at /metrics."""

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            body, status, content_type = render(), "200 OK", CONTENT_TYPE
        elif path == "/-/healthy":
            body, status, content_type = b"OK\n", "200 OK", "text/plain"
        elif path == "/":
            body, status, content_type = LANDING, "200 OK", "text/html"
        else:
            body, status, content_type = b"not found\n", "404 Not Found", "text/plain"
        start_response(status, [("Content-Type", content_type),
                                ("Content-Length", str(len(body)))])
        return [body]

    return app


def start_server(host: str, port: int,
                 app: WSGIApplication) -> tuple[WSGIServer, threading.Thread]:
    """Bind (raising OSError when the port is taken) and serve in a background thread."""
    server = make_server(host, port, app, ThreadingServer, QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="exporter-http", daemon=True)
    thread.start()
    return server, thread
