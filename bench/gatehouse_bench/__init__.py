"""Gatehouse's benchmark harness: the driver behind `make bench` (see bench/README.md).

The driver process only sends load and reads /proc; every server it measures (the upstream
simulator, Gatehouse under daphne, the LiteLLM proxy) runs in a process of its own, so the
CPU time read for a server is that server's alone.
"""
