"""The measured servers, each in a process of its own on 127.0.0.1: the upstream simulator
(uvicorn), Gatehouse (daphne) and, in peer.py, the LiteLLM proxy."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import httpx

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
WORK = BENCH / ".work"
LOGS = WORK / "logs"
VENV_BIN = ROOT / ".venv" / "bin"
SIMULATOR_KEY = "sim-bench-key"
KEEP_RUN_LOGS = 5


class RunLogs:
    """bench/.work/logs/<run id>/: two runs at once (two engineers) must not share log files."""

    directory = LOGS

    @classmethod
    def start(cls, run_id: str) -> Path:
        cls.directory = LOGS / run_id
        cls.directory.mkdir(parents=True, exist_ok=True)
        runs = sorted(p for p in LOGS.iterdir() if p.is_dir())
        for old in runs[:-KEEP_RUN_LOGS]:
            shutil.rmtree(old, ignore_errors=True)
        return cls.directory


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """A child process, its output in bench/.work/logs/<run id>/<name>.log. Stopped by its pid
    only (SIGTERM, then SIGKILL after a grace period)."""

    def __init__(
        self, name: str, argv: Sequence[str], *, env: dict[str, str], port: int, cwd: Path = ROOT
    ) -> None:
        self.name, self.port = name, port
        self.url = f"http://127.0.0.1:{port}"
        RunLogs.directory.mkdir(parents=True, exist_ok=True)
        self.log_path = RunLogs.directory / f"{name}.log"
        self._log: IO[bytes] = self.log_path.open("wb")
        self.process = subprocess.Popen(
            list(argv), cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(
        self, path: str, *, timeout_s: float, headers: dict[str, str] | None = None
    ) -> None:
        """Poll GET `path` until it answers 200. If it never does, stop the process (nothing
        may outlive the run) and raise with the log's tail."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.tail()
                self.stop()
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}: {tail}")
            with contextlib.suppress(httpx.HTTPError):
                response = httpx.get(self.url + path, headers=headers, timeout=2.0, trust_env=False)
                if response.status_code == 200:
                    return
            time.sleep(0.2)
        tail = self.tail()
        self.stop()
        raise RuntimeError(f"{self.name} not ready after {timeout_s:.0f} s: {tail}")

    def tail(self, lines: int = 15) -> str:
        self._log.flush()
        text = self.log_path.read_text(errors="replace").strip().splitlines()
        return "\n".join(text[-lines:])

    def stop(self, grace_s: float = 5.0) -> None:
        if self._log.closed:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(grace_s)
        self._log.close()


def start_simulator() -> ServerProcess:
    """uvicorn serving the simulator app with zero default delays: the delayed mode asks for
    its delays per request, through directives."""
    port = free_port()
    argv = [
        str(VENV_BIN / "python"),
        "-m",
        "uvicorn",
        "providers.simulator.app:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--lifespan",
        "off",
        # The C parser and loop: the upstream must cost the shared 2 cores as little as it can
        # (h11 took ~0.9 ms of CPU per call here), as a real provider costs this machine nothing.
        "--http",
        "httptools",
        "--loop",
        "uvloop",
    ]
    server = ServerProcess("simulator", argv, env=dict(os.environ), port=port)
    server.wait_ready("/_sim/stats", timeout_s=30)
    return server


def start_gatehouse(env: dict[str, str]) -> ServerProcess:
    port = free_port()
    argv = [str(VENV_BIN / "python"), "-m", "config.serve", "-b", "127.0.0.1", "-p", str(port)]
    argv.append("config.asgi:application")
    server = ServerProcess("gatehouse-daphne", argv, env=env, port=port)
    server.wait_ready("/healthz", timeout_s=60)
    return server
