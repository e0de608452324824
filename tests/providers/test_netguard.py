"""Base-URL safety: the allow/refuse table, disguised spellings, resolution, allow-lists and a
redirect through a real HTTP client carrying the request hook."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from urllib.parse import urlsplit

import httpx
import httpx2
import pytest
from django.core.exceptions import ImproperlyConfigured
from hypothesis import given
from hypothesis import settings as settings_
from hypothesis import strategies as st

from providers import netguard
from providers.adapters.base import ErrorCode, ProviderError
from providers.netguard import UrlRefused, acheck_url, check_url, request_hook
from providers.simulator.server import SimulatorServer

METADATA_IP = "169.254.169.254"
FULL_WIDTH = {ord(c): ord(c) + 0xFEE0 for c in "0123456789"}  # "1" -> U+FF11 and so on


def refused(url: str, *, resolve: bool = False) -> str:
    with pytest.raises(UrlRefused) as info:
        check_url(url, resolve=resolve)
    err = info.value
    assert isinstance(err, ProviderError)
    assert err.code == ErrorCode.URL_REFUSED
    assert err.retryable is False
    return err.message


# --- Empty allow-list (the embedded default) ---------------------------------------------------

ALLOWED_BY_DEFAULT = [
    "http://127.0.0.1:8900/openai/v1",
    "http://127.9.9.9/",
    "http://localhost:11434",
    "HTTP://LOCALHOST:11434/api",
    "http://[::1]:8900/",
    "http://[::ffff:127.0.0.1]/",  # mapped loopback is loopback
    "http://0x7f.1/",  # 127.0.0.1 in inet_aton spelling: still loopback
    "https://api.openai.com/v1",
    "https://api.anthropic.com",
    "https://API.OpenAI.com./v1",  # case and one trailing dot are normalised
    "https://8.8.8.8/",
    "https://[2606:4700:4700::1111]:443/",
    "https://bücher.example/v1",  # IDN
    "https://example.com:/v1",  # empty port = default port
    "http://ollama.example.com:11434/",
]


@pytest.mark.parametrize("url", ALLOWED_BY_DEFAULT)
def test_allowed_with_empty_list(url):
    check_url(url)


PRIVATE = [
    "http://10.0.0.1/",
    "http://172.16.5.4/",
    "http://192.168.1.10:11434/",
    "http://100.64.0.1/",  # carrier-grade NAT
    "http://[fd12:3456::1]/",  # unique local
    "http://[::ffff:10.0.0.1]/",
    "http://167772161/",  # 10.0.0.1 as one number
]


@pytest.mark.parametrize("url", PRIVATE)
def test_private_ranges_refused_with_empty_list(url):
    assert "private network" in refused(url)


# --- Always refused, in every disguise ---------------------------------------------------------

LINK_LOCAL_DISGUISES = [
    "http://169.254.169.254/",
    "http://169.254.169.254:80/latest/meta-data/",
    "https://169.254.0.1/",
    "http://[::ffff:a9fe:a9fe]/",  # IPv4-mapped IPv6, hex
    "http://[::ffff:169.254.169.254]/",  # IPv4-mapped IPv6, dotted
    "http://[0:0:0:0:0:FFFF:A9FE:A9FE]/",  # long form, uppercase
    "http://[::a9fe:a9fe]/",  # IPv4-compatible
    "http://[64:ff9b::a9fe:a9fe]/",  # NAT64
    "http://[2002:a9fe:a9fe::1]/",  # 6to4
    "http://2852039166/",  # decimal
    "http://0xa9fea9fe/",  # hex
    "http://0XA9FEA9FE/",  # hex, uppercase
    "http://0x00000000a9fea9fe/",  # hex, zero-padded
    "http://0251.0376.0251.0376/",  # octal
    "http://0251.254.0251.0376/",  # mixed octal and decimal
    "http://0xa9.0xfe.0xa9.0xfe/",  # hex per byte
    "http://169.254.43518/",  # short form a.b.c(16 bits)
    "http://169.16689662/",  # short form a.b(24 bits)
    "http://169.254.169.254./",  # trailing dot
    "http://%31%36%39.254.169.254/",  # percent-encoded
    "http://%31%36%39%2e%32%35%34%2e%31%36%39%2e%32%35%34/",  # all percent-encoded
    "http://" + "169.254.169.254".translate(FULL_WIDTH) + "/",  # full-width digits
    "http://169。254。169。254/",  # ideographic full stops
    "http://[fe80::1]/",  # IPv6 link-local
    "http://[FE80::a9fe:a9fe]/",
]


@pytest.mark.parametrize("url", LINK_LOCAL_DISGUISES)
def test_link_local_refused_in_every_spelling(url):
    assert "link-local" in refused(url)


METADATA = [
    "http://[fd00:ec2::254]/",
    "http://100.100.100.200/",
    "http://168.63.129.16/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://METADATA.GOOGLE.INTERNAL./",
    "http://metadata/",
    "http://metadata.goog/",
    "http://instance-data/",
    "http://%6detadata.google.internal/",
]


@pytest.mark.parametrize("url", METADATA)
def test_metadata_refused(url):
    assert "metadata" in refused(url)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://0.0.0.0:8900/", "unspecified"),
        ("http://0/", "unspecified"),
        ("http://[::]/", "unspecified"),
        ("http://224.0.0.1/", "multicast"),
        ("http://[ff02::1]/", "multicast"),
        ("http://240.0.0.1/", "reserved"),
        ("http://255.255.255.255/", "broadcast"),
    ],
)
def test_special_addresses_refused(url, why):
    assert why in refused(url)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://api.openai.com/", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
        ("gopher://127.0.0.1:6379/", "only http and https"),
        ("api.openai.com/v1", "not an absolute"),
        ("//api.openai.com/v1", "not an absolute"),
        ("http:api.openai.com", "not an absolute"),
        ("http:/api.openai.com", "not an absolute"),
        ("", "not an absolute"),
        ("http://user:secret@api.openai.com/", "credentials"),
        ("http://user@api.openai.com/", "credentials"),
        ("http://@api.openai.com/", "credentials"),
        ("http:///v1", "missing or invalid host"),
        ("http://:80/", "missing or invalid host"),
        ("http://api.openai.com:99999/", "invalid port"),
        ("http://api.openai.com:80a/", "invalid port"),
        ("http://api.openai.com:-1/", "invalid port"),
        (
            "http://api.openai.com:" + "80".translate(FULL_WIDTH) + "/",
            "invalid port",
        ),  # full-width digits
        ("http://a:1:2/", "invalid host or port"),
        ("http://::1/", "invalid host or port"),
        ("http://[::1/", "unterminated IPv6"),
        ("http://[::1]x/", "invalid host"),
        ("http://[not-ipv6]/", "invalid IPv6"),
        ("http://[fe80::1%25eth0]/", "zone identifiers"),
        ("http://1.2.3.4.5/", "malformed IPv4"),
        ("http://256.1.1.1/", "malformed IPv4"),
        ("http://1.2.3.4294967296/", "malformed IPv4"),
        ("http://4294967296/", "malformed IPv4"),
        ("http://08.1.1.1/", "malformed IPv4"),  # 8 is not an octal digit
        ("http://0x/", "malformed IPv4"),  # glibc would send these to DNS
        ("http://8.8.8.0x/", "malformed IPv4"),
        ("http://8.8.8.8./", "trailing dot"),
        ("http://1..1/", "malformed IPv4"),
        ("http://exa mple.com/", "whitespace"),
        ("http://under_score-.com/", "invalid characters"),
        ("http://-leading.com/", "invalid characters"),
        ("http://a%2fb.com/", "invalid characters"),
        ("http://a%ff.com/", "percent-encoding"),
        ("http://" + "a" * 64 + ".com/", "invalid characters"),
        ("http://" + "a." * 127 + "com/", "missing or invalid host"),
    ],
)
def test_malformed_urls_refused(url, why):
    assert why in refused(url)


# urllib.parse is lax: it strips tabs and newlines, splits at the LAST "@", treats a backslash as
# an ordinary character and only checks the port when asked. Each of these gets a hostname out
# of urlsplit (some of them a harmless-looking one); netguard refuses them all.
URLLIB_LAX = [
    "http://169.254.169.254\t/",
    "http://169.254.\n169.254/",
    "http://api.openai.com\r\n/",
    " http://169.254.169.254/",
    "http://api.openai.com\\@169.254.169.254/",
    "http://169.254.169.254\\@api.openai.com/",
    "http://api.openai.com@169.254.169.254/",
    "http://a@b@169.254.169.254/",
    "http://1.1.1.1 &@2.2.2.2# @3.3.3.3/",
    "http://api.openai.com:80:80/",
    "http://api.openai.com\x00.evil.example/",
    "http://api.openai.com\x7f/",
]


@pytest.mark.parametrize("url", URLLIB_LAX)
def test_urllib_laxness_does_not_get_through(url):
    lax_host = urlsplit(url).hostname  # urllib accepts each of them...
    assert lax_host
    refused(url)  # ...netguard does not


def test_message_is_safe_and_says_why():
    with pytest.raises(UrlRefused) as info:
        check_url("http://user:hunter2@api.openai.com/")
    err = info.value
    assert err.message == "Provider URL refused: credentials in the URL are not allowed."
    assert "hunter2" not in str(err)
    assert "hunter2" not in err.message


# --- Non-empty allow-list ----------------------------------------------------------------------

ALLOW_LIST = [
    "api.openai.com",
    "*.example.com",
    ".corp.test",
    "10.0.0.0/8",
    "192.168.1.5",
    "[fd12::1]",
    "OLLAMA.LAN.",
]


@pytest.mark.parametrize(
    "url",
    [
        "https://api.openai.com/v1",
        "https://API.OPENAI.COM./v1",
        "https://a.example.com/",
        "https://x.y.example.com/",
        "https://corp.test/",
        "https://llm.corp.test/",
        "http://10.1.2.3:11434/",
        "http://[::ffff:10.1.2.3]/",
        "http://167838211/",  # 10.1.2.3 as one number: the address is what counts
        "http://192.168.1.5/",
        "http://[fd12::1]/",
        "http://ollama.lan:11434/",
    ],
)
def test_allow_list_allows_listed_hosts(settings, url):
    settings.GATEHOUSE_PROVIDER_ALLOWED_HOSTS = ALLOW_LIST
    check_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://api.anthropic.com/",  # public, but not listed
        "https://example.com/",  # "*.example.com" does not match the apex
        "https://evilexample.com/",
        "https://api.openai.com.evil.example/",
        "https://corp.test.evil.example/",
        "http://127.0.0.1:8900/",  # loopback only when listed
        "http://localhost:8900/",
        "http://[::1]/",
        "http://8.8.8.8/",
        "http://192.168.1.6/",
        "http://11.0.0.1/",
    ],
)
def test_allow_list_refuses_everything_else(settings, url):
    settings.GATEHOUSE_PROVIDER_ALLOWED_HOSTS = ALLOW_LIST
    assert "not on the allow-list" in refused(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/",
        "http://0xa9fea9fe/",
        "http://[::ffff:a9fe:a9fe]/",
        "http://metadata.google.internal/",
        "http://100.100.100.200/",
    ],
)
def test_allow_list_cannot_open_link_local_or_metadata(settings, url):
    settings.GATEHOUSE_PROVIDER_ALLOWED_HOSTS = [
        "0.0.0.0/0",
        "::/0",
        "169.254.169.254",
        "metadata.google.internal",
    ]
    refused(url)


def test_loopback_allowed_when_listed(settings):
    settings.GATEHOUSE_PROVIDER_ALLOWED_HOSTS = ["localhost", "127.0.0.1"]
    check_url("http://localhost:8900/", resolve=True)
    check_url("http://127.0.0.1:8900/")
    assert "allow-list" in refused("http://127.0.0.2:8900/")


@pytest.mark.parametrize("entry", ["*", "exa mple.com", "*.", "http://api.openai.com", "a/b"])
def test_invalid_allow_list_entry_is_a_configuration_error(settings, entry):
    settings.GATEHOUSE_PROVIDER_ALLOWED_HOSTS = [entry]
    with pytest.raises(ImproperlyConfigured, match="GATEHOUSE_PROVIDER_ALLOWED_HOSTS"):
        check_url("https://api.openai.com/")


# --- Resolution --------------------------------------------------------------------------------


def test_localhost_resolves_to_loopback_and_is_allowed():
    check_url("http://localhost:8900/", resolve=True)


async def test_acheck_url_allows_loopback_and_public_literals():
    await acheck_url("http://localhost:8900/")
    await acheck_url("http://127.0.0.1:8900/")
    await acheck_url("https://8.8.8.8/")


@pytest.mark.parametrize(
    ("address", "why"),
    [
        (METADATA_IP, "link-local"),
        ("fe80::1", "link-local"),
        ("::ffff:169.254.169.254", "link-local"),
        ("fd00:ec2::254", "metadata"),
        ("100.100.100.200", "metadata"),
        ("10.0.0.7", "private network"),
        ("0.0.0.0", "unspecified"),  # noqa: S104 - an address to refuse, not to bind
    ],
)
async def test_name_resolving_to_forbidden_address_is_refused(fake_dns, address, why):
    fake_dns["sneaky.example"] = ["93.184.215.14", address]  # one bad address is enough
    check_url("https://sneaky.example/")  # without resolving nothing is known against it
    assert why in refused("https://sneaky.example/", resolve=True)
    with pytest.raises(UrlRefused, match=why):
        await acheck_url("https://sneaky.example/")


async def test_listed_name_may_resolve_private_but_never_link_local(settings, fake_dns):
    settings.GATEHOUSE_PROVIDER_ALLOWED_HOSTS = ["ollama.corp.test", "imds.corp.test"]
    fake_dns["ollama.corp.test"] = ["10.0.0.7"]
    fake_dns["imds.corp.test"] = [METADATA_IP]
    check_url("http://ollama.corp.test:11434/", resolve=True)
    await acheck_url("http://ollama.corp.test:11434/")
    assert "link-local" in refused("http://imds.corp.test/", resolve=True)
    with pytest.raises(UrlRefused, match="link-local"):
        await acheck_url("http://imds.corp.test/")


async def test_unresolvable_name(fake_dns):
    fake_dns["gone.example"] = []
    assert "does not resolve" in refused("https://gone.example/", resolve=True)
    # On the request path a DNS failure is transient, not a verdict on the URL.
    with pytest.raises(ProviderError) as info:
        await acheck_url("https://gone.example/")
    assert info.value.code == ErrorCode.UPSTREAM_UNAVAILABLE
    assert info.value.retryable


async def test_positive_resolutions_are_cached_briefly(fake_dns):
    fake_dns["api.cached.example"] = ["93.184.215.14"]
    for _ in range(5):
        await acheck_url("https://api.cached.example/v1/chat")
    assert fake_dns["calls"] == ["api.cached.example"]
    netguard.clear_dns_cache()
    await acheck_url("https://api.cached.example/v1/chat")
    assert fake_dns["calls"] == ["api.cached.example"] * 2


async def test_failures_are_not_cached(fake_dns):
    fake_dns["flaky.example"] = []
    with pytest.raises(ProviderError):
        await acheck_url("https://flaky.example/")
    fake_dns["flaky.example"] = ["93.184.215.14"]
    await acheck_url("https://flaky.example/")


async def test_cached_addresses_are_still_judged_by_current_settings(settings, fake_dns):
    fake_dns["ollama.corp.test"] = ["10.0.0.7"]
    settings.GATEHOUSE_PROVIDER_ALLOWED_HOSTS = ["ollama.corp.test"]
    await acheck_url("http://ollama.corp.test/")
    settings.GATEHOUSE_PROVIDER_ALLOWED_HOSTS = []
    with pytest.raises(UrlRefused, match="private network"):
        await acheck_url("http://ollama.corp.test/")


async def test_resolution_does_not_block_the_event_loop(fake_dns, monkeypatch):
    slow = socket.getaddrinfo

    def slow_getaddrinfo(*args, **kwargs):
        time.sleep(0.3)
        return slow(*args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", slow_getaddrinfo)
    fake_dns["slow.example"] = ["93.184.215.14"]
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        await acheck_url("https://slow.example/")
    finally:
        task.cancel()
    assert ticks >= 10  # the loop kept running during the 0.3 s lookup


# --- Through a real HTTP client: redirects ------------------------------------------------------


@pytest.fixture(scope="module")
def simulator():
    with SimulatorServer() as sim:
        yield sim


@pytest.mark.parametrize("client_module", [httpx2, httpx], ids=["httpx2", "httpx"])
@pytest.mark.parametrize(
    "target",
    [f"http://{METADATA_IP}/latest/meta-data/", "http://0xa9fea9fe/", "http://[::ffff:a9fe:a9fe]/"],
)
async def test_redirect_to_refused_host_is_stopped_by_the_hook(simulator, client_module, target):
    sent: list[str] = []
    statuses: list[int] = []

    async def record_request(request):
        sent.append(str(request.url))

    async def record_response(response):
        statuses.append(response.status_code)

    hooks = {"request": [request_hook, record_request], "response": [record_response]}
    async with client_module.AsyncClient(
        event_hooks=hooks, follow_redirects=True, timeout=5
    ) as client:
        with pytest.raises(UrlRefused, match="link-local"):
            await client.get(f"{simulator.url}/_sim/redirect", params={"to": target})
    # The simulator answered the first hop with a redirect; the hook stopped the second hop
    # before it was sent (the recording hook, after the guard, never saw it).
    assert statuses == [307]
    assert len(sent) == 1
    assert sent[0].startswith(f"{simulator.url}/_sim/redirect?to=")


@pytest.mark.parametrize("client_module", [httpx2, httpx], ids=["httpx2", "httpx"])
async def test_redirect_to_allowed_host_is_followed(simulator, client_module):
    async with client_module.AsyncClient(
        event_hooks={"request": [request_hook]}, follow_redirects=True, timeout=5
    ) as client:
        response = await client.get(
            f"{simulator.url}/_sim/redirect", params={"to": f"{simulator.url}/_sim/stats"}
        )
    assert response.status_code == 200
    assert "requests" in response.json()
    assert len(response.history) == 1


async def test_hook_refuses_first_request_under_an_allow_list(settings, simulator):
    settings.GATEHOUSE_PROVIDER_ALLOWED_HOSTS = ["api.openai.com"]
    async with httpx2.AsyncClient(event_hooks={"request": [request_hook]}) as client:
        with pytest.raises(UrlRefused, match="allow-list"):
            await client.get(f"{simulator.url}/_sim/stats")


# --- Differential: netguard reads numeric hosts exactly as the C resolver does ------------------

_part = st.one_of(
    st.integers(0, 2**32 - 1).map(str),
    st.integers(0, 2**32 - 1).map(lambda n: f"0x{n:x}"),
    st.integers(0, 2**32 - 1).map(lambda n: f"0X{n:X}"),
    st.integers(0, 2**32 - 1).map(lambda n: f"0{n:o}"),
    st.text("0123456789abcdefxX", min_size=1, max_size=6),
)


@given(parts=st.lists(_part, min_size=1, max_size=5), trailing_dot=st.booleans())
@settings_(max_examples=500, deadline=None)
def test_numeric_hosts_parse_like_inet_aton(parts, trailing_dot):
    host = ".".join(parts) + ("." if trailing_dot else "")
    try:
        expected = ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        expected = None
    try:
        parsed = netguard._parse_host(f"http://{host}/")
    except UrlRefused:
        parsed = None
    if expected is not None:
        # Whatever the C library would connect to, netguard judges that same address.
        assert parsed is not None
        assert parsed.ip == expected
    elif parsed is not None:
        # Not an address for the C library, so it can only be a name sent to DNS.
        assert parsed.ip is None


@given(address=st.integers(0xA9FE0000, 0xA9FEFFFF), style=st.sampled_from(["dec", "hex", "oct"]))
@settings_(max_examples=200, deadline=None)
def test_every_link_local_address_refused_in_any_base(address, style):
    spelled = {"dec": str(address), "hex": hex(address), "oct": "0" + format(address, "o")}[style]
    assert "link-local" in refused(f"http://{spelled}/")
