"""Fixtures shared by the provider tests."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from providers import netguard
from providers.simulator.server import SimulatorServer


@pytest.fixture(scope="session")
def simulator() -> Iterator[str]:
    """The base URL of an upstream simulator on loopback, shared by the whole session (tests
    that need their own counters or configuration start their own SimulatorServer)."""
    with SimulatorServer() as server:
        yield server.url


@pytest.fixture(autouse=True)
def _empty_allow_list(settings):
    """The embedded default: public hosts and loopback (and no DNS answers kept between
    tests)."""
    settings.GATEHOUSE_PROVIDER_ALLOWED_HOSTS = []
    netguard.clear_dns_cache()
    yield
    netguard.clear_dns_cache()


@pytest.fixture
def fake_dns(monkeypatch):
    """Resolve chosen names to chosen addresses (no DNS in tests); everything else as usual.
    Patches the standard library's resolver, which both check_url and loop.getaddrinfo use."""
    real = socket.getaddrinfo
    table: dict[str, list[str]] = {}
    calls: list[str] = []

    def getaddrinfo(host, port, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if name in table:
            calls.append(name)
            if not table[name]:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            return [
                (
                    socket.AF_INET6 if ":" in ip else socket.AF_INET,
                    socket.SOCK_STREAM,
                    6,
                    "",
                    (ip, port or 0),
                )
                for ip in table[name]
            ]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    table["calls"] = calls  # type: ignore[assignment]
    return table
