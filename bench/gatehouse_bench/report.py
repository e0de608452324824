"""Results on disk (JSON, Markdown) and on the terminal."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gatehouse_bench.servers import BENCH

RESULTS = BENCH / "results"
TTFT_TARGET_MS = 5.0
CPU_PER_CHUNK_TARGET_US = 60.0
# The gateway's targets, as ratios to LiteLLM measured in the same run (issue #8).
ADDED_LATENCY_VS_PEER = 0.5
CPU_PER_CHUNK_VS_PEER = 0.1
THROUGHPUT_VS_PEER = 3.0
RSS_LIMIT_MIB = 150.0


def _q(dist: dict[str, float] | None) -> str:
    if not dist:
        return "-"
    return f"{dist['p50']:.1f} / {dist['p95']:.1f} / {dist['p99']:.1f}"


def _n(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _added(cell: dict[str, Any], arm: str, metric: str) -> str:
    entry = (cell.get("comparison", {}).get(arm) or {}).get("vs_direct") or {}
    found = entry.get(metric)
    if not found:
        return "-"
    return f"{found['added_ms']['p50']:+.1f} (x{_n(found['ratio']['p50'], 2)})"


def _vs_peer(cell: dict[str, Any], arm: str, figure: str) -> str:
    entry = (cell.get("comparison", {}).get(arm) or {}).get("vs_litellm") or {}
    value = entry.get(figure)
    return "-" if value is None else f"x{value:.2f}"


def _marginal(cell: dict[str, Any], arm: str) -> str:
    value = (cell.get("comparison", {}).get(arm) or {}).get("marginal_cpu_us_per_chunk")
    return _n(value)


def _missing(summary: dict[str, Any]) -> str | None:
    if summary.get("status") in ("unavailable", "skipped") or "reason" in summary:
        return f"{summary['status']}: {summary.get('reason', '')}"
    return None


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


_CHATS_HEAD = [
    "cell", "arm", "ok/err", "TTFT p50/p95/p99 ms", "total p50/p95/p99 ms",
    "added TTFT p50 ms (ratio)", "added total p50 ms (ratio)", "CPU us/chunk", "CPU us/req",
    "marginal CPU us/chunk", "server CPU %", "PG us/req", "PG conns", "RSS MiB", "driver CPU %",
]  # fmt: skip


def _chats_row(cell: dict[str, Any], name: str, s: dict[str, Any]) -> list[str]:
    return [
        cell["title"],
        name,
        f"{s['ok']}/{s['errors']}",
        _q(s["ttft_ms"]),
        _q(s["total_ms"]),
        _added(cell, name, "ttft"),
        _added(cell, name, "total"),
        _n(s["server_cpu_us_per_chunk"]),
        _n(s["server_cpu_us_per_request"], 0),
        _marginal(cell, name),
        _n(s["server_cpu_pct"], 0),
        _n(s["postgres_cpu_us_per_request"], 0),
        _n(s["postgres_connections"], 0),
        _n(s["server_rss_mib"], 0),
        _n(s["driver_cpu_pct"], 0),
    ]


def _gateway_row(cell: dict[str, Any], name: str, s: dict[str, Any]) -> list[str]:
    return [
        cell["title"],
        name,
        f"{s['ok']}/{s['errors']}",
        _q(s["total_ms"]),
        _q(s["ttft_ms"]),
        _n(s["throughput_rps"]),
        _n(s["server_cpu_us_per_request"], 0),
        _n(s["server_cpu_us_per_chunk"]),
        _marginal(cell, name),
        _n(s["server_cpu_pct"], 0),
        _n(s["postgres_cpu_us_per_request"], 0),
        _n(s["postgres_connections"], 0),
        _n(s["server_rss_mib"], 0),
        _vs_peer(cell, name, "total_p50"),
        _vs_peer(cell, name, "ttft_p50"),
        _vs_peer(cell, name, "cpu_per_request"),
        _vs_peer(cell, name, "throughput"),
        _n(s["driver_cpu_pct"], 0),
    ]


def _table(
    cells: list[dict[str, Any]], head: list[str], row: Callable[..., list[str]]
) -> list[str]:
    lines = [_row(head), _row(["---"] * len(head))]
    for cell in cells:
        for name, summary in cell["arms"].items():
            missing = _missing(summary)
            if missing:
                lines.append(_row([cell["title"], name, missing] + [""] * (len(head) - 3)))
            else:
                lines.append(_row(row(cell, name, summary)))
    return lines


_GATEWAY_HEAD = [
    "cell", "arm", "ok/err", "latency or stream total p50/p95/p99 ms", "TTFT p50/p95/p99 ms",
    "req/s", "CPU us/req", "CPU us/chunk", "marginal CPU us/chunk", "server CPU %", "PG us/req",
    "PG conns", "RSS MiB",
    "total p50 vs LiteLLM", "TTFT p50 vs LiteLLM", "CPU/req vs LiteLLM", "req/s vs LiteLLM",
    "driver CPU %",
]  # fmt: skip


def _cpu_targets(cell: dict[str, Any], arm: str, what: str) -> list[dict[str, Any]]:
    summary = cell["arms"].get(arm, {})
    found = []
    per_chunk = summary.get("server_cpu_us_per_chunk")
    if per_chunk is not None:
        name = f"server CPU per streamed chunk ({what})"
        found.append(_target(name, cell, per_chunk, CPU_PER_CHUNK_TARGET_US, "us"))
    marginal = (cell.get("comparison", {}).get(arm) or {}).get("marginal_cpu_us_per_chunk")
    if marginal is not None:
        name = f"marginal server CPU per chunk ({what}; for reference)"
        found.append(_target(name, cell, marginal, CPU_PER_CHUNK_TARGET_US, "us"))
    return found


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's two targets, checked on every cell they apply to."""
    found = []
    for cell in results["suites"].get("chats", []):
        if cell["arms"].get("ws", {}).get("status") != "ok":
            continue
        added = (cell.get("comparison", {}).get("ws") or {}).get("vs_direct", {}).get("ttft")
        if cell["concurrency"] == 1 and added:
            value = added["added_ms"]["p50"]
            found.append(_target("added TTFT p50 (WebSocket)", cell, value, TTFT_TARGET_MS, "ms"))
        found += _cpu_targets(cell, "ws", "WebSocket")
    for cell in results["suites"].get("gateway", []):
        if cell["scenario"] == "stream" and cell["arms"].get("gatehouse", {}).get("status") == "ok":
            found += _cpu_targets(cell, "gatehouse", "/v1 stream")
        found += _peer_targets(cell)
    return found


def _added_p50(cell: dict[str, Any], arm: str, measure: str) -> float | None:
    vs_direct = (cell.get("comparison", {}).get(arm) or {}).get("vs_direct") or {}
    return ((vs_direct.get(measure) or {}).get("added_ms") or {}).get("p50")


def _peer_targets(cell: dict[str, Any]) -> list[dict[str, Any]]:
    """The gateway's targets against LiteLLM, in the cells where both arms ran."""
    arms = cell["arms"]
    if any(arms.get(a, {}).get("status") != "ok" for a in ("gatehouse", "litellm")):
        return []
    found = []
    comparison = cell.get("comparison", {})
    versus = (comparison.get("gatehouse") or {}).get("vs_litellm") or {}
    if cell["concurrency"] == 1:
        measures = ("total", "ttft") if cell["scenario"] == "stream" else ("total",)
        for measure in measures:
            ours, theirs = (
                _added_p50(cell, "gatehouse", measure),
                _added_p50(cell, "litellm", measure),
            )
            if ours is not None and theirs:
                label = "time to first token" if measure == "ttft" else "latency"
                name = f"/v1 added {label} p50, ratio to LiteLLM's"
                found.append(_target(name, cell, ours / theirs, ADDED_LATENCY_VS_PEER, "x"))
        ours = (comparison.get("gatehouse") or {}).get("marginal_cpu_us_per_chunk")
        theirs = (comparison.get("litellm") or {}).get("marginal_cpu_us_per_chunk")
        if ours is not None and theirs:
            name = "/v1 server CPU per extra streamed chunk, ratio to LiteLLM's"
            found.append(_target(name, cell, ours / theirs, CPU_PER_CHUNK_VS_PEER, "x"))
    if cell["concurrency"] > 1 and versus.get("throughput") is not None:
        name = "/v1 throughput, ratio to LiteLLM's"
        found.append(_target(name, cell, versus["throughput"], THROUGHPUT_VS_PEER, "x", least=True))
    rss = arms["gatehouse"].get("server_rss_mib")
    if rss is not None and cell["concurrency"] > 1:
        found.append(_target("/v1 server RSS per process", cell, rss, RSS_LIMIT_MIB, "MiB"))
    return found


def _target(
    name: str, cell: dict[str, Any], value: float, limit: float, unit: str, least: bool = False
) -> dict[str, Any]:
    """`value` must be at most `limit` (at least, with `least`)."""
    return {
        "target": name,
        "cell": cell["title"],
        "value": value,
        "limit": limit,
        "unit": unit,
        "at_least": least,
        "met": value >= limit if least else value <= limit,
    }


def _errors(results: dict[str, Any]) -> list[str]:
    """Failed requests, with what the client saw: the tables only count them."""
    lines = []
    for cells in results["suites"].values():
        for cell in cells:
            for name, s in cell["arms"].items():
                if s.get("errors") or s.get("probe_failed"):
                    examples = "; ".join(s.get("error_examples") or [s.get("probe_failed", "")])
                    lines.append(
                        f"- {cell['title']}, {name}: {s.get('errors', 0)} failed ({examples})"
                    )
    return ["", "## Errors", "", *lines] if lines else []


def markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    lines = [
        f"# Gatehouse benchmark — {meta['started_at']}",
        "",
        f"Machine: {meta['machine']}. Gatehouse: {meta['gatehouse']}. "
        f"Peer: {meta['peer']}. Plan: {meta['plan_name']}.",
        "",
    ]
    lines += [f"- {note}" for note in meta["notes"]]
    lines += ["", "## Chats: simulator direct vs Gatehouse WebSocket and REST", ""]
    lines += _table(results["suites"].get("chats", []), _CHATS_HEAD, _chats_row)
    lines += ["", "## Gateway: simulator direct vs Gatehouse /v1 vs LiteLLM proxy", ""]
    lines += _table(results["suites"].get("gateway", []), _GATEWAY_HEAD, _gateway_row)
    lines += [
        "",
        "## Targets",
        "",
        "| target | cell | value | limit | met |",
        "|---|---|---|---|---|",
    ]
    for t in results["targets"]:
        digits = 2 if t["unit"] == "x" else 1
        op = "≥" if t.get("at_least") else "≤"
        lines.append(
            f"| {t['target']} | {t['cell']} | {t['value']:.{digits}f} {t['unit']} "
            f"| {op} {t['limit']:g} {t['unit']} | {'yes' if t['met'] else 'NO'} |"
        )
    if not results["targets"]:
        lines.append("| (no Gatehouse arm ran) | | | | |")
    lines += _errors(results)
    lines += ["", "Figures are explained in bench/README.md.", ""]
    return "\n".join(lines)


def write(results: dict[str, Any], run_id: str) -> tuple[Path, Path]:
    RESULTS.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=2, ensure_ascii=False) + "\n"
    stamped = RESULTS / f"{run_id}.json"
    stamped.write_text(text)
    (RESULTS / "latest.json").write_text(text)
    table = markdown(results)
    (RESULTS / "latest.md").write_text(table)
    return stamped, RESULTS / "latest.md"
