"""Run the proxy app under uvicorn: in the foreground (``bpo serve``) or on a background thread
bound to a free loopback port (tests, benchmarks)."""

from __future__ import annotations

import socket
import threading

import uvicorn


def uvicorn_config(
    app, *, host: str, port: int, log_level: str = "info", access_log: bool = False, **extra
) -> uvicorn.Config:
    # server_header off: nothing about the stack leaks; uvloop/httptools when installed.
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=access_log,
        server_header=False,
        timeout_keep_alive=30,
        backlog=4096,
        lifespan="on",
        **extra,
    )


class ServerThread:
    """``with ServerThread(app) as srv: ... srv.base_url``: uvicorn on 127.0.0.1 in a thread."""

    def __init__(self, app, host: str = "127.0.0.1", log_level: str = "warning"):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.host, self.port = self.sock.getsockname()
        self.server = uvicorn.Server(uvicorn_config(app, host=host, port=self.port, log_level=log_level))
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, name="bpo-serve", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def start(self) -> ServerThread:
        self._thread.start()
        for _ in range(6000):  # model warm-up happens in the lifespan: allow a minute
            if self.server.started or not self._thread.is_alive():
                break
            threading.Event().wait(0.01)
        if not self.server.started:
            raise RuntimeError("bpo serve did not start (see the log above)")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(30)
        self.sock.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
