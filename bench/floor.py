"""The floor under "server CPU per streamed chunk": what the least a relay can do costs here.

`.venv/bin/python bench/floor.py` starts the simulator, then relays its OpenAI SSE stream (one
word per chunk) to a socket read by another process, in about thirty lines of asyncio on uvloop:
each read handed straight to `send`, no parsing, no framing, no database. It prints this
process's CPU per chunk for the bench's two modes and for longer and shorter gaps between
chunks. Figures go to `bench/results/floor-latest.json`.

Why: with the chunks 5 ms apart, every chunk wakes the relay from idle, and on these virtual
machines that wake-up costs more the longer the relay slept (caches gone cold, a vCPU that was
descheduled). A per-chunk target below this floor cannot be met by any relay on the machine;
the same effect is in the simulator's own CPU per chunk in the delayed cells (`direct`).
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import uvloop
from gatehouse_bench.procinfo import own_cpu_seconds
from gatehouse_bench.servers import SIMULATOR_KEY, RunLogs, start_simulator

RESULTS = Path(__file__).resolve().parent / "results" / "floor-latest.json"
REQUESTS = 10
# (label, seconds to the first chunk, seconds between chunks); None: the zero-delay mode.
MODES = [
    ("zero-delay", None, None),
    ("2 ms gaps", 0.02, 0.002),
    ("5 ms gaps (the bench's)", 0.02, 0.005),
    ("20 ms gaps", 0.02, 0.02),
]
SINK = "import socket, sys\ns = socket.socket(fileno=int(sys.argv[1]))\nwhile s.recv(65536): pass"


class _Relay(asyncio.Protocol):
    def __init__(self, out: socket.socket, done: asyncio.Future[None]) -> None:
        self.out, self.done = out, done

    def data_received(self, data: bytes) -> None:
        self.out.send(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


def _request(chunks: int, first: float | None, gap: float | None) -> bytes:
    directives = f" sim:chunks={chunks}"
    if gap is not None:
        directives += f" sim:first_token_delay={first} sim:delay={gap}"
    body = json.dumps(
        {
            "model": "sim-gpt",
            "stream": True,
            "messages": [{"role": "user", "content": "Floor." + directives}],
        }
    ).encode()
    head = (
        "POST /openai/v1/chat/completions HTTP/1.1\r\nHost: sim\r\n"
        f"Authorization: Bearer {SIMULATOR_KEY}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


async def _cpu_per_request(port: int, out: socket.socket, request: bytes) -> float:
    loop = asyncio.get_running_loop()
    started = own_cpu_seconds()
    for _ in range(REQUESTS):
        done: asyncio.Future[None] = loop.create_future()
        relay = _Relay(out, done)
        transport, _ = await loop.create_connection(lambda relay=relay: relay, "127.0.0.1", port)
        transport.write(request)
        await asyncio.wait_for(done, 60)
    return (own_cpu_seconds() - started) / REQUESTS


async def _measure(port: int) -> list[dict[str, object]]:
    ours, theirs = socket.socketpair()
    sink = subprocess.Popen(
        [sys.executable, "-c", SINK, str(theirs.fileno())], pass_fds=[theirs.fileno()]
    )
    theirs.close()
    rows = []
    try:
        for label, first, gap in MODES:
            # One chunk against 51: per-request work cancels out, what is left is per chunk.
            short = await _cpu_per_request(port, ours, _request(1, first, gap))
            long = await _cpu_per_request(port, ours, _request(51, first, gap))
            per_chunk = (long - short) / 50 * 1e6
            rows.append({"mode": label, "cpu_us_per_chunk": round(per_chunk, 1)})
            print(f"{label:28} {per_chunk:7.1f} µs of relay CPU per chunk", flush=True)
    finally:
        ours.close()
        sink.wait(10)
    return rows


def main() -> int:
    RunLogs.start("floor-" + time.strftime("%Y%m%d-%H%M%S"))
    simulator = start_simulator()
    try:
        rows = uvloop.run(_measure(simulator.port))
    finally:
        simulator.stop()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps({"at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "floor": rows}, indent=2) + "\n"
    )
    print(f"floor: results in {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
