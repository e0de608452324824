"""Differences and ratios between the arms of one cell."""

from __future__ import annotations

from typing import Any

_QUANTILES = ("p50", "p95", "p99")
_PEER_FIGURES = (
    ("total_p50", ("total_ms", "p50")),
    ("total_p99", ("total_ms", "p99")),
    ("ttft_p50", ("ttft_ms", "p50")),
    ("ttft_p99", ("ttft_ms", "p99")),
    ("throughput", ("throughput_rps",)),
    ("cpu_per_request", ("server_cpu_us_per_request",)),
    ("cpu_per_chunk", ("server_cpu_us_per_chunk",)),
    ("rss", ("server_rss_mib",)),
)


def _get(summary: dict[str, Any], path: tuple[str, ...]) -> float | None:
    value: Any = summary
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value if isinstance(value, int | float) else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def _added(arm: dict[str, Any], ref: dict[str, Any], metric: str) -> dict[str, Any] | None:
    mine, theirs = arm.get(metric), ref.get(metric)
    if not mine or not theirs:
        return None
    return {
        "added_ms": {q: round(mine[q] - theirs[q], 3) for q in _QUANTILES},
        "ratio": {q: _ratio(mine[q], theirs[q]) for q in _QUANTILES},
    }


def overhead(arm: dict[str, Any], ref: dict[str, Any]) -> dict[str, Any]:
    """What going through the arm adds to going straight to the upstream."""
    return {"ttft": _added(arm, ref, "ttft_ms"), "total": _added(arm, ref, "total_ms")}


def ratios(arm: dict[str, Any], peer: dict[str, Any]) -> dict[str, float | None]:
    """arm / peer for each figure: below 1 is better except for throughput."""
    return {name: _ratio(_get(arm, path), _get(peer, path)) for name, path in _PEER_FIGURES}


LONG_SUFFIX = "-long"


def marginal_cpu_per_chunk(base: dict[str, Any], long: dict[str, Any]) -> float | None:
    """CPU of one more chunk: the difference of CPU per request between long and normal answers
    over the difference of their lengths, so the per-request work cancels out."""
    cpu = (base.get("server_cpu_us_per_request"), long.get("server_cpu_us_per_request"))
    chunks = (base.get("chunks_per_request"), long.get("chunks_per_request"))
    if None in cpu or None in chunks or chunks[1] <= chunks[0]:
        return None
    return round((cpu[1] - cpu[0]) / (chunks[1] - chunks[0]), 1)


def compare_cell(arms: dict[str, Any], reference: str, peer: str | None) -> dict[str, Any]:
    ok = {name: s for name, s in arms.items() if s.get("status") == "ok"}
    out: dict[str, Any] = {}
    for name, summary in ok.items():
        entry: dict[str, Any] = {}
        long = name.endswith(LONG_SUFFIX)
        if name != reference and reference in ok and not long:
            entry[f"vs_{reference}"] = overhead(summary, ok[reference])
        their = f"{peer}{LONG_SUFFIX}" if peer and long else peer
        if their and name not in (their, reference) and their in ok:
            entry[f"vs_{peer}"] = ratios(summary, ok[their])
        if name + LONG_SUFFIX in ok:
            entry["marginal_cpu_us_per_chunk"] = marginal_cpu_per_chunk(
                summary, ok[name + LONG_SUFFIX]
            )
        if entry:
            out[name] = entry
    return out
