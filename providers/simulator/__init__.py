"""Upstream simulator: a wire-faithful fake of the OpenAI, Anthropic and Ollama HTTP APIs.

Contract: docs/simulator-spec.md. `providers.simulator.app.build_app()` is the ASGI app,
`providers.simulator.server.SimulatorServer` runs it in a background thread.
"""
