"""Fixtures shared by the provider tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from providers.simulator.server import SimulatorServer


@pytest.fixture(scope="session")
def simulator() -> Iterator[str]:
    """The base URL of an upstream simulator on loopback, shared by the whole session (tests
    that need their own counters or configuration start their own SimulatorServer)."""
    with SimulatorServer() as server:
        yield server.url
