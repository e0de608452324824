"""Run the simulator with uvicorn in a background thread, for tests and benchmarks."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from types import TracebackType
from typing import Any, Self

import uvicorn

from providers.simulator.app import SimulatorApp, build_app

# Backstop only: stop() drains the app first, so no response should still be running by then.
GRACEFUL_SHUTDOWN_S = 1


class SimulatorServer:
    """`with SimulatorServer() as sim: httpx.get(sim.url + "/openai/v1/models", ...)`.

    Binds 127.0.0.1 on a free port before uvicorn starts, so `.url` is known and race-free.
    """

    def __init__(
        self,
        app: SimulatorApp | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        **build_kwargs: Any,
    ) -> None:
        self.app = app if app is not None else build_app(**build_kwargs)
        self.host = host
        self._requested_port = port
        self.port: int | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("SimulatorServer is not started")
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> Self:
        if self._thread is not None:
            return self
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._requested_port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        )
        server = uvicorn.Server(config)
        self.app.draining = False
        thread = threading.Thread(
            target=asyncio.run,
            args=(self._serve(server, sock),),
            name="gatehouse-simulator",
            daemon=True,
        )
        self._server, self._thread = server, thread
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                sock.close()
                raise RuntimeError("the upstream simulator did not start")
            time.sleep(0.005)
        # The socket now belongs to uvicorn, which closes it on shutdown.
        self._wait_accepting(deadline)
        return self

    async def _serve(self, server: uvicorn.Server, sock: socket.socket) -> None:
        self._loop = asyncio.get_running_loop()
        await server.serve(sockets=[sock])

    def _wait_accepting(self, deadline: float) -> None:
        while True:
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def stop(self, timeout: float = 5.0) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.should_exit = True
        loop = self._loop
        if loop is not None:
            # Stalled and delayed responses end now instead of after the graceful timeout.
            with contextlib.suppress(RuntimeError):  # the loop already closed
                loop.call_soon_threadsafe(self.app.drain)
        thread.join(timeout)
        if thread.is_alive():
            # Skip the wait for open connections; leaving asyncio.run cancels what is left.
            server.force_exit = True
            thread.join(timeout)
        self._server = self._thread = self._loop = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
