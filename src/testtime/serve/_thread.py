"""`ServerThread`: run an app with uvicorn on a background thread (tests, notebooks, in-process benchmarks)."""

from __future__ import annotations

import threading
import time

from .._errors import MissingDependencyError

__all__ = ["ServerThread"]


class ServerThread:
    """Serve `app` on `host`:`port` (port 0 picks a free one) until `stop()` or the end of a `with` block.

    `url` is the server root, e.g. "http://127.0.0.1:53117"; OpenAI clients take `url + "/v1"`. On `stop()`,
    requests in progress get `graceful_shutdown_s` seconds to finish (as `testtime serve` gives them on SIGTERM).
    """

    def __init__(self, app, *, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning", graceful_shutdown_s: float = 5.0) -> None:
        try:
            import uvicorn
        except ImportError:
            raise MissingDependencyError("uvicorn", "serve", "ServerThread") from None
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="on", timeout_graceful_shutdown=graceful_shutdown_s))
        self.host = host
        self._thread = threading.Thread(target=self.server.run, name="testtime-uvicorn", daemon=True)
        self.url = ""

    def start(self, timeout: float = 10.0) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start (is the port taken?)")
            time.sleep(0.005)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://{self.host}:{port}"
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
