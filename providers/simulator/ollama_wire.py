"""Ollama chat wire format, as `ollama` (Client / AsyncClient) parses it.

The SDK turns a non-2xx status into `ResponseError(body["error"], status)`, reads streams line by
line with `json.loads` (a bad line raises `JSONDecodeError`) and raises `ResponseError(err)`
(status -1) on an `{"error": ...}` line. Streaming is the default when `stream` is absent.
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from providers.simulator.scenario import MIDSTREAM_FAULTS, DirectiveError, Scenario

if TYPE_CHECKING:
    from providers.simulator.app import Exchange

MODELS = ("sim-llama",)
MODIFIED_AT = "2025-01-01T00:00:00Z"
NDJSON = "application/x-ndjson"
JSON = "application/json; charset=utf-8"
LOAD_DURATION_NS = 1_000_000

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

_STATUS = {
    "429": (429, "rate limit exceeded, please retry after {retry}s"),
    "500": (500, "an error was encountered while running the model: simulated failure"),
    "503": (503, "server busy, please try again.  maximum pending requests exceeded"),
    "overloaded": (503, "server busy, please try again.  maximum pending requests exceeded"),
    "inband_error": (500, "an error was encountered while running the model: simulated failure"),
}
_DETAILS = {
    "parent_model": "",
    "format": "gguf",
    "family": "llama",
    "families": ["llama"],
    "parameter_size": "8.0B",
    "quantization_level": "Q4_K_M",
}


def _dumps(payload: object) -> bytes:
    return _encode(payload).encode("utf-8")


def _canonical(model: object) -> str | None:
    """Ollama names carry a tag; `name` and `name:latest` are the same model."""
    if not isinstance(model, str):
        return None
    name = model.removesuffix(":latest")
    return name if name in MODELS else None


async def root(ex: Exchange) -> None:
    await ex.respond(200, b"Ollama is running", "text/plain; charset=utf-8")


async def version(ex: Exchange) -> None:
    await ex.respond(200, _dumps({"version": "0.9.0"}), JSON)


async def tags(ex: Exchange) -> None:
    models = [
        {
            "name": f"{name}:latest",
            "model": f"{name}:latest",
            "modified_at": MODIFIED_AT,
            "size": 4_920_753_328,
            "digest": hashlib.sha256(name.encode()).hexdigest(),
            "details": _DETAILS,
        }
        for name in MODELS
    ]
    await ex.respond(200, _dumps({"models": models}), JSON)


async def show(ex: Exchange) -> None:
    payload = await ex.read_json_object() or {}
    requested = payload.get("model") or payload.get("name")
    if _canonical(requested) is None:
        await ex.respond(404, _dumps({"error": f"model '{requested}' not found"}), JSON)
        return
    body = {
        "modelfile": f"FROM {requested}\n",
        "parameters": "",
        "template": "{{ .Prompt }}",
        "details": _DETAILS,
        "model_info": {"general.architecture": "llama"},
        "capabilities": ["completion"],
        "modified_at": MODIFIED_AT,
    }
    await ex.respond(200, _dumps(body), JSON)


async def _error(ex: Exchange, status: int, message: str, headers: list | None = None) -> None:
    await ex.respond(status, _dumps({"error": message}), JSON, headers or [])


async def chat(ex: Exchange) -> None:
    started = time.perf_counter_ns()
    payload = await ex.read_json_object()
    if payload is None:
        await _error(ex, 400, "invalid request body")
        return
    model = payload.get("model")
    if not model:
        await _error(ex, 400, "model is required")
        return
    if _canonical(model) is None:
        await _error(ex, 404, f'model "{model}" not found, try pulling it first')
        return
    options = payload.get("options")
    num_predict = options.get("num_predict") if isinstance(options, dict) else None
    # Ollama reads a negative num_predict as "no limit".
    limit = num_predict if isinstance(num_predict, int) and num_predict >= 0 else None
    try:
        scenario = ex.plan(payload, None, limit)
    except DirectiveError as err:
        await _error(ex, 400, str(err))
        return

    fault = ex.fault(scenario)
    stream = payload.get("stream", True) is not False
    if fault in _STATUS and not (stream and fault == "inband_error"):
        status, message = _STATUS[fault]
        headers = [("retry-after", scenario.retry_after_header)] if status == 429 else []
        await _error(ex, status, message.format(retry=scenario.retry_after_header), headers)
        return
    if stream:
        await _stream(ex, model, scenario, fault, started)
    else:
        await _complete(ex, model, scenario, fault, started)


def _created_at() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _final(
    model: str, created_at: str, text: str, scenario: Scenario, fault: str | None, started: int
) -> dict[str, Any]:
    line: dict[str, Any] = {
        "model": model,
        "created_at": created_at,
        "message": {"role": "assistant", "content": text},
        "done": True,
        "done_reason": "length" if scenario.truncated else "stop",
    }
    if fault != "no_usage":
        total = max(time.perf_counter_ns() - started, LOAD_DURATION_NS + 2)
        zero = fault == "zero_usage"
        line.update(
            total_duration=total,
            load_duration=LOAD_DURATION_NS,
            prompt_eval_count=0 if zero else scenario.input_tokens,
            prompt_eval_duration=(total - LOAD_DURATION_NS) // 2,
            eval_count=0 if zero else scenario.output_tokens,
            eval_duration=(total - LOAD_DURATION_NS) // 2,
        )
    return line


async def _complete(
    ex: Exchange, model: str, scenario: Scenario, fault: str | None, started: int
) -> None:
    await ex.sleep(scenario.total_delay(fault))
    if fault == "stall":
        await ex.stall()
        return
    raw = _dumps(_final(model, _created_at(), scenario.text, scenario, fault, started))
    if fault == "reset":
        await ex.start(200, JSON)
        await ex.frame(raw[: len(raw) // 2])
        await ex.abort()
    if fault == "malformed":
        raw = raw[: len(raw) // 2]
    await ex.respond(200, raw, JSON)


async def _stream(
    ex: Exchange, model: str, scenario: Scenario, fault: str | None, started: int
) -> None:
    await ex.start(200, NDJSON)
    await ex.sleep(scenario.first_delay(fault))
    created_at = _created_at()
    prefix, _, suffix = (
        _dumps(
            {
                "model": model,
                "created_at": created_at,
                "message": {"role": "assistant", "content": "\0"},
                "done": False,
            }
        )
        + b"\n"
    ).partition(b'"\\u0000"')

    def render(piece: str) -> bytes:
        return prefix + _dumps(piece) + suffix

    await ex.frames(scenario.pieces_before(fault, MIDSTREAM_FAULTS), render, scenario.delay)

    if fault == "inband_error":
        await ex.finish(_dumps({"error": _STATUS[fault][1]}) + b"\n")
        return
    if fault == "reset":
        await ex.abort(NDJSON)
    if fault == "malformed":
        await ex.finish(prefix + b'"unterminated \n')
        return
    if fault == "stall":
        await ex.stall(NDJSON)
        return
    await ex.finish(_dumps(_final(model, created_at, "", scenario, fault, started)) + b"\n")
