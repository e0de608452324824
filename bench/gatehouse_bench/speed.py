"""How fast this machine ran Python during the run: a fixed workload, timed before and after.

The same code measured 57.8 and 82.2 µs of server CPU per chunk in two runs an hour apart on
one machine (2026-12-07), and machines of the same kind differ by up to twice. CPU seconds are
only comparable between runs that ran at the same speed; this figure says whether they did. The
workload is the kind of work the servers do per chunk (JSON in and out, dict reads, string
joins), in this process, on one core.
"""

from __future__ import annotations

import json
import statistics
import time

_CHUNK = (
    b'{"id":"chatcmpl-ref","object":"chat.completion.chunk","created":1700000000,'
    b'"model":"sim-gpt","choices":[{"index":0,"delta":{"content":"word "},"finish_reason":null}]}'
)
_ROUNDS = 2000
_REPEATS = 7


def _workload() -> int:
    parts: list[str] = []
    for _ in range(_ROUNDS):
        chunk = json.loads(_CHUNK)
        delta = chunk["choices"][0]["delta"].get("content") or ""
        parts.append(delta)
        json.dumps({"type": "token", "delta": delta}, separators=(",", ":"))
    return len("".join(parts))


def reference_us() -> float:
    """CPU µs per round of the workload: the best of several runs (the least disturbed by other
    work); lower is faster."""
    times = []
    for _ in range(_REPEATS):
        started = time.thread_time()
        _workload()
        times.append(time.thread_time() - started)
    return round(min(times) / _ROUNDS * 1e6, 2)


def summary(before: float, after: float) -> dict[str, float]:
    return {
        "reference_us_before": before,
        "reference_us_after": after,
        "reference_us": round(statistics.mean((before, after)), 2),
    }


def note(speed: dict[str, float]) -> str:
    return (
        f"Machine speed: a fixed Python workload (a chunk decoded, read and re-encoded) took "
        f"{speed['reference_us_before']} µs a round before measuring and "
        f"{speed['reference_us_after']} µs after; CPU figures of two runs compare only at "
        "similar speeds (lower is faster)."
    )
