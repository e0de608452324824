"""The LiteLLM proxy as the peer: installed into its own virtual environment (never into
Gatehouse's), configured with one model on the same simulator, run offline on loopback.

How and why: /work/shared/peers/litellm.md. In short, `litellm[proxy]==1.110.2` does not resolve
(its extra pins packages PyPI does not have), so bench/litellm-requirements.txt lists the proxy
extra's requirements by hand.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

from gatehouse_bench.servers import BENCH, WORK, RunLogs, ServerProcess, free_port

PEER_VENV = BENCH / ".peer-venv"
REQUIREMENTS = BENCH / "litellm-requirements.txt"
STAMP = PEER_VENV / ".bench-installed"
INSTALL_TIMEOUT_S = 900
START_TIMEOUT_S = 120  # ~6 s normally; the first start after an install compiles bytecode

_OFFLINE = {
    "LITELLM_TELEMETRY": "False",
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # otherwise it downloads its price map at start
    "LITELLM_OFFLINE_MODE": "true",
    "LITELLM_LOG": "ERROR",
}


def _digest() -> str:
    return hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()


def ensure_installed() -> str | None:
    """Install the peer when missing or when its requirements changed. Returns None when it
    is ready, else why not (the caller skips the arm; the bench goes on)."""
    litellm = PEER_VENV / "bin" / "litellm"
    if litellm.exists() and STAMP.exists() and STAMP.read_text() == _digest():
        return None
    log_path = RunLogs.directory / "peer-install.log"
    print(f"bench: installing the LiteLLM peer into {PEER_VENV} (log: {log_path}) ...", flush=True)
    try:
        with log_path.open("wb") as log:
            if not (PEER_VENV / "bin" / "pip").exists():
                subprocess.run(
                    [sys.executable, "-m", "venv", "--clear", str(PEER_VENV)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    check=True,
                    timeout=120,
                )
            subprocess.run(
                [str(PEER_VENV / "bin" / "pip"), "install", "-r", str(REQUIREMENTS)],
                stdout=log,
                stderr=subprocess.STDOUT,
                check=True,
                timeout=INSTALL_TIMEOUT_S,
            )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        last = log_path.read_text(errors="replace").strip().splitlines()[-1:] or [""]
        return f"LiteLLM install failed ({type(exc).__name__}; {log_path}): {last[0][:200]}"
    if not litellm.exists():
        return f"LiteLLM installed but {litellm} is missing"
    STAMP.write_text(_digest())
    return None


def _config(simulator_url: str, api_key: str) -> str:
    # JSON is YAML: no YAML writer needed in the driver's environment.
    return (
        '{"model_list": [{"model_name": "sim-gpt", "litellm_params": {"model": "openai/sim-gpt", '
        f'"api_base": "{simulator_url}/openai/v1", "api_key": "{api_key}"}}}}], '
        # 1.110 refuses to start without a master key otherwise; auth is not what we measure.
        '"general_settings": {"dangerously_permit_weak_or_unset_master_key": true}}\n'
    )


def start_litellm(*, simulator_url: str, api_key: str) -> ServerProcess:
    WORK.mkdir(parents=True, exist_ok=True)
    config = WORK / "litellm-config.yaml"
    config.write_text(_config(simulator_url, api_key))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LITELLM", "DATABASE"))}
    env.pop("REDIS_URL", None)  # LiteLLM would use it for caching/routing state
    env.update(_OFFLINE)
    port = free_port()
    argv = [
        str(PEER_VENV / "bin" / "litellm"),
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    server = ServerProcess("litellm", argv, env=env, port=port)
    server.wait_ready("/health/liveliness", timeout_s=START_TIMEOUT_S)
    return server
