"""Base-URL safety for provider endpoints (server-side request forgery guard).

A provider credential carries an operator- or user-chosen base URL, and the gateway then makes
requests to it with the server's network position. This module decides which URLs may be used:
`check_url` on save (forms, serializers) and `acheck_url` on every outbound request, redirects
included (the adapters call it from their HTTP client's request event hook, see `request_hook`).

Rules, in order:

1. The URL is parsed strictly by this module, never by `urllib` (which silently strips tabs and
   newlines, accepts backslashes and several `@`, and leaves ports unchecked). Only `http` and
   `https`, no credentials (`user:pass@`), no whitespace, control characters or backslashes, a
   numeric port of at most 65535.
2. The host is normalised the way a resolver will see it: percent-decoded, IDNA-mapped (so
   full-width digits and ideographic dots become ASCII), lower-cased, one trailing dot removed.
   A host whose last label is a number is an IPv4 address and is parsed with the full
   `inet_aton` grammar (decimal `2852039166`, hex `0xa9fea9fe`, octal `0251.0376.0251.0376`,
   short forms `169.254.43518`); if it does not parse it is refused, never sent to DNS.
   IPv6 literals are unwrapped when they embed an IPv4 address (IPv4-mapped `::ffff:a.b.c.d`,
   IPv4-compatible, NAT64 `64:ff9b::/96`, 6to4, Teredo) and both addresses are judged.
3. ALWAYS refused, whatever the allow-list says: link-local (169.254.0.0/16, fe80::/10), cloud
   metadata addresses (fd00:ec2::254, 100.100.100.200, 168.63.129.16) and names
   (metadata.google.internal, instance-data, ...), unspecified (0.0.0.0/8, ::), multicast,
   broadcast and reserved ranges. When resolving, a hostname is refused if ANY of its addresses
   is refused.
4. `settings.GATEHOUSE_PROVIDER_ALLOWED_HOSTS`:

   - EMPTY (the embedded default): any public host, plus loopback (127.0.0.0/8, ::1,
     `localhost`, `*.localhost`) so the bundled simulator and a local Ollama work out of the box.
     Private ranges (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7, ...) are refused: an
     operator who has not configured anything should not find the gateway able to reach the
     internal network. A hostname is allowed on save without resolving (it may not resolve
     from the admin's laptop); on the request path it is resolved and every address must be
     public or loopback.
   - NON-EMPTY: only the listed hosts. Entries are hostnames (exact match), `*.example.com`
     (any subdomain, not `example.com` itself), `.example.com` (the domain and its subdomains,
     as in Django's ALLOWED_HOSTS), IP addresses and CIDRs (which match IP-literal hosts).
     Loopback and private addresses are allowed only when listed. A listed hostname may resolve
     to private addresses (the operator named it), but never to an always-refused one.

Resolution failures on the request path raise `upstream_unavailable` (retryable: DNS blips are
transient), not `url_refused`. Positive resolutions are cached for `_DNS_TTL` seconds so the hot
path does not resolve per request.

DNS rebinding: the adapters' HTTP transport (`providers.adapters.transport`) connects to one of
the addresses `acheck_url` checked and returned, never to the answer of a second lookup, so a
hostile DNS server answering differently within milliseconds cannot slip past the check.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import time
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import unquote

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from providers.adapters.base import ErrorCode, ProviderError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class UrlRefused(ProviderError):
    """A base URL the gateway will not call. `message` says why and is safe to show."""

    def __init__(self, reason: str) -> None:
        super().__init__(ErrorCode.URL_REFUSED, f"Provider URL refused: {reason}.", retryable=False)
        self.reason = reason


# --- Fixed policy -------------------------------------------------------------------------------

_LINK_LOCAL = "link-local addresses are never allowed"
_METADATA = "cloud metadata addresses are never allowed"
_UNSPECIFIED = "unspecified addresses are never allowed"

_ALWAYS_REFUSED_NETWORKS: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(net), reason)
    for net, reason in (
        ("169.254.0.0/16", _LINK_LOCAL),  # home of 169.254.169.254 on AWS, GCP, Azure, OCI
        ("fe80::/10", _LINK_LOCAL),
        ("fd00:ec2::254/128", _METADATA),  # AWS IMDS over IPv6
        ("100.100.100.200/32", _METADATA),  # Alibaba Cloud
        ("168.63.129.16/32", _METADATA),  # Azure WireServer
        ("0.0.0.0/8", _UNSPECIFIED),  # "this network": 0.0.0.0 reaches the local host on Linux
        ("255.255.255.255/32", "broadcast addresses are never allowed"),
    )
)

_METADATA_NAMES = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "metadata.azure.internal",
        "metadata.tencentyun.com",
        "instance-data",
        "instance-data.ec2.internal",
    }
)

_DNS_TTL = 30.0
_DNS_CACHE_MAX = 1024

_URL_RE = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://(?P<authority>[^/?#]*)(?P<rest>.*)")
_LABEL_RE = re.compile(r"[a-z0-9_](?:[a-z0-9_\-]{0,61}[a-z0-9_])?")
_HEX_RE = re.compile(r"0x[0-9a-f]*")


# --- Parsing --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Host:
    """A normalised host: exactly one of `ip` (a literal) or `name` is set."""

    name: str | None
    ip: IPAddress | None


def _parse_host(url: str) -> _Host:
    if any(ord(c) <= 0x20 or ord(c) == 0x7F or c == "\\" for c in url):
        raise UrlRefused("whitespace, control characters and backslashes are not allowed")
    match = _URL_RE.fullmatch(url)
    if match is None:
        raise UrlRefused("not an absolute http(s) URL")
    if match["scheme"].lower() not in ("http", "https"):
        raise UrlRefused("only http and https are allowed")
    authority = match["authority"]
    if "@" in authority:
        raise UrlRefused("credentials in the URL are not allowed")
    host, port = _split_port(authority)
    if port and (not port.isascii() or not port.isdigit() or int(port) > 65535):
        raise UrlRefused("invalid port")
    if host.startswith("["):
        return _Host(name=None, ip=_parse_ipv6(host))
    return _normalise_name(host)


def _split_port(authority: str) -> tuple[str, str]:
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise UrlRefused("unterminated IPv6 address")
        host, rest = authority[: end + 1], authority[end + 1 :]
        if rest and not rest.startswith(":"):
            raise UrlRefused("invalid host")
        return host, rest[1:]
    if authority.count(":") > 1:
        raise UrlRefused("invalid host or port (IPv6 addresses go in brackets)")
    host, _, port = authority.partition(":")
    return host, port


def _parse_ipv6(bracketed: str) -> IPAddress:
    text = bracketed[1:-1]
    if "%" in text:
        raise UrlRefused("IPv6 zone identifiers are not allowed")
    try:
        return ipaddress.IPv6Address(text)
    except ValueError:
        raise UrlRefused("invalid IPv6 address") from None


def _normalise_name(raw: str) -> _Host:
    try:
        host = unquote(raw, errors="strict") if "%" in raw else raw
    except UnicodeDecodeError:
        raise UrlRefused("invalid percent-encoding in host") from None
    if not host.isascii():
        host = _idna_to_ascii(host)
    host = host.lower()
    fqdn = host.endswith(".")
    if fqdn:
        host = host[:-1]
    if not host or len(host) > 253:
        raise UrlRefused("missing or invalid host")
    labels = host.split(".")
    if _is_numeric_label(labels[-1]):
        # Like browsers and like glibc's inet_aton: a numeric last label makes this an IPv4
        # address in one of its many spellings, never a name to look up.
        ip = _parse_inet_aton(labels)
        if ip is None:
            raise UrlRefused("malformed IPv4 address")
        if fqdn:
            # glibc does not read "1.2.3.4." as an address but looks it up in DNS, which could
            # answer anything: refuse (with the address's own reason when it has one).
            raise UrlRefused(_always_refused_reason(ip) or "malformed IPv4 address (trailing dot)")
        return _Host(name=None, ip=ip)
    if not all(_LABEL_RE.fullmatch(label) for label in labels):
        raise UrlRefused("invalid characters in host")
    return _Host(name=host, ip=None)


def _idna_to_ascii(host: str) -> str:
    # NFKC first maps full-width digits and letters, then the stdlib IDNA codec maps the
    # ideographic full stops; the result goes through the same checks as any ASCII host.
    try:
        return unicodedata.normalize("NFKC", host).encode("idna").decode("ascii")
    except UnicodeError:
        raise UrlRefused("invalid international host name") from None


def _is_numeric_label(label: str) -> bool:
    return bool(label) and (label.isdigit() or _HEX_RE.fullmatch(label) is not None)


def _parse_inet_aton(parts: list[str]) -> ipaddress.IPv4Address | None:
    """The `inet_aton` grammar: 1 to 4 parts, each decimal, 0x-hex or 0-octal; the last part
    fills the remaining bytes (`127.1` is 127.0.0.1, `2852039166` is 169.254.169.254)."""
    if not 1 <= len(parts) <= 4:
        return None
    values: list[int] = []
    for part in parts:
        value = _parse_inet_part(part)
        if value is None:
            return None
        values.append(value)
    *head, last = values
    if any(v > 0xFF for v in head) or last >= 256 ** (4 - len(head)):
        return None
    value = last
    for i, byte in enumerate(head):
        value += byte << (8 * (3 - i))
    return ipaddress.IPv4Address(value)


def _parse_inet_part(part: str) -> int | None:
    if not part.isascii():
        return None
    if part.startswith("0x"):
        # A bare "0x" is 0 to browsers but not an address to glibc, which would look the whole
        # host up in DNS: refuse it rather than judge an address the resolver will not use.
        digits = part[2:]
        return int(digits, 16) if digits and _HEX_RE.fullmatch(part) else None
    if not part.isdigit():
        return None
    if len(part) > 1 and part.startswith("0"):
        return int(part, 8) if all(c in "01234567" for c in part) else None
    return int(part)


# --- Policy ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _AllowList:
    names: frozenset[str]
    subdomain_suffixes: tuple[str, ...]  # "*.example.com" -> ".example.com"
    domain_suffixes: tuple[str, ...]  # ".example.com" -> "example.com"
    networks: tuple[IPNetwork, ...]

    def matches_name(self, name: str) -> bool:
        if name in self.names:
            return True
        if any(name.endswith(s) for s in self.subdomain_suffixes):
            return True
        return any(name == d or name.endswith("." + d) for d in self.domain_suffixes)

    def matches_ip(self, ip: IPAddress) -> bool:
        forms = (ip, _effective(ip))
        return any(form in net for net in self.networks for form in forms)


@lru_cache(maxsize=8)
def _parse_allow_list(entries: tuple[str, ...]) -> _AllowList:
    names: set[str] = set()
    subdomains: list[str] = []
    domains: list[str] = []
    networks: list[IPNetwork] = []
    for raw in entries:
        entry = raw.strip().lower().rstrip(".")
        if entry.startswith("[") and entry.endswith("]"):
            entry = entry[1:-1]
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
            continue
        except ValueError:
            pass
        if entry.startswith("*."):
            _validate_entry_name(raw, entry[2:])
            subdomains.append(entry[1:])
        elif entry.startswith("."):
            _validate_entry_name(raw, entry[1:])
            domains.append(entry[1:])
        else:
            _validate_entry_name(raw, entry)
            names.add(entry)
    return _AllowList(frozenset(names), tuple(subdomains), tuple(domains), tuple(networks))


def _validate_entry_name(raw: str, name: str) -> None:
    labels = name.split(".")
    if not name or not all(_LABEL_RE.fullmatch(label) for label in labels):
        raise ImproperlyConfigured(
            f"GATEHOUSE_PROVIDER_ALLOWED_HOSTS: {raw!r} is not a hostname, *.suffix, IP or CIDR"
        )


def _allow_list() -> _AllowList | None:
    entries = getattr(settings, "GATEHOUSE_PROVIDER_ALLOWED_HOSTS", None) or []
    if isinstance(entries, str):  # a single string in a settings override is one entry
        entries = [entries]
    return _parse_allow_list(tuple(entries)) if entries else None


_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _effective(ip: IPAddress) -> IPAddress:
    """The address a packet really goes to: the IPv4 address inside an IPv4-mapped,
    IPv4-compatible or NAT64 IPv6 address, else the address itself."""
    if isinstance(ip, ipaddress.IPv4Address):
        return ip
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    packed = int(ip)
    if (packed >> 32 == 0 and packed > 1) or ip in _NAT64:
        return ipaddress.IPv4Address(packed & 0xFFFFFFFF)
    return ip


def _all_forms(ip: IPAddress) -> list[IPAddress]:
    """The address, its effective address and any IPv4 address tunnelled in it (6to4, Teredo)."""
    forms: list[IPAddress] = [ip, _effective(ip)]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.sixtofour is not None:
            forms.append(ip.sixtofour)
        if ip.teredo is not None:
            forms.append(ip.teredo[1])
    return forms


def _always_refused_reason(ip: IPAddress) -> str | None:
    for form in _all_forms(ip):
        for net, reason in _ALWAYS_REFUSED_NETWORKS:
            if form in net:
                return reason
    eff = _effective(ip)
    if eff.is_link_local:
        return _LINK_LOCAL
    if eff.is_unspecified:
        return _UNSPECIFIED
    # IPv6 "reserved" covers ::/8, which holds ::1: loopback is judged by the allow-list rules.
    if eff.is_multicast or (eff.is_reserved and not eff.is_loopback):
        return "multicast and reserved addresses are never allowed"
    return None


def _is_loopback(ip: IPAddress) -> bool:
    return _effective(ip).is_loopback


def _is_public(ip: IPAddress) -> bool:
    return _effective(ip).is_global


def _check_ip(ip: IPAddress, allow: _AllowList | None) -> None:
    reason = _always_refused_reason(ip)
    if reason:
        raise UrlRefused(reason)
    if allow is not None:
        if not allow.matches_ip(ip):
            raise UrlRefused("host not on the allow-list")
    elif not (_is_public(ip) or _is_loopback(ip)):
        raise UrlRefused(
            "private network addresses are not allowed; "
            "list them in GATEHOUSE_PROVIDER_ALLOWED_HOSTS to use them"
        )


def _check_name(name: str, allow: _AllowList | None) -> None:
    if name in _METADATA_NAMES:
        raise UrlRefused("cloud metadata hosts are never allowed")
    if allow is not None and not allow.matches_name(name):
        raise UrlRefused("host not on the allow-list")


def _check_resolved(name: str, addresses: list[IPAddress], allow: _AllowList | None) -> None:
    for ip in addresses:
        reason = _always_refused_reason(ip)
        if reason:
            raise UrlRefused(f"the host resolves to a forbidden address ({reason})")
        if allow is not None:
            continue  # the operator listed this name: its addresses are theirs to choose
        if _is_loopback(ip) or _is_public(ip):
            continue
        raise UrlRefused(
            "the host resolves to a private network address; "
            "list it in GATEHOUSE_PROVIDER_ALLOWED_HOSTS to use it"
        )
    if not addresses:
        raise UrlRefused("the host name does not resolve")


# --- Resolution -----------------------------------------------------------------------------

_dns_cache: dict[str, tuple[float, list[IPAddress]]] = {}


def _addresses(infos: list[tuple[Any, ...]]) -> list[IPAddress]:
    # A scoped IPv6 address comes back as "fe80::1%eth0": judge the address without its scope.
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


def _resolve_sync(name: str) -> list[IPAddress]:
    try:
        return _addresses(socket.getaddrinfo(name, None, type=socket.SOCK_STREAM))
    except (socket.gaierror, UnicodeError):
        raise UrlRefused("the host name does not resolve") from None


async def _resolve_async(name: str) -> list[IPAddress]:
    now = time.monotonic()
    cached = _dns_cache.get(name)
    if cached and cached[0] > now:
        return cached[1]
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ProviderError(
            ErrorCode.UPSTREAM_UNAVAILABLE,
            "The provider's host name could not be resolved.",
            detail=f"getaddrinfo({name!r}) failed: {exc}",
        ) from None
    addresses = _addresses(infos)
    if len(_dns_cache) >= _DNS_CACHE_MAX:
        _dns_cache.clear()  # crude bound; a handful of provider hosts is the normal population
    _dns_cache[name] = (now + _DNS_TTL, addresses)
    return addresses


def clear_dns_cache() -> None:
    """Forget cached resolutions (tests; after changing /etc/hosts)."""
    _dns_cache.clear()


# --- Public API -----------------------------------------------------------------------------


def check_url(url: str, *, resolve: bool = False) -> None:
    """Raise `UrlRefused` (a `ProviderError` with code `url_refused`) unless `url` may be used as
    a provider base URL. With `resolve=True` the host name is also resolved (blocking) and each
    address checked; use it on save when a network lookup is acceptable."""
    allow = _allow_list()
    host = _parse_host(url)
    if host.ip is not None:
        _check_ip(host.ip, allow)
        return
    assert host.name is not None
    _check_name(host.name, allow)
    if resolve:
        _check_resolved(host.name, _resolve_sync(host.name), allow)


async def acheck_url(url: str) -> list[str]:
    """The request-path check: as `check_url(url, resolve=True)`, resolving without blocking the
    event loop and caching positive resolutions for a few seconds. A failed resolution raises
    `upstream_unavailable` (retryable) rather than `url_refused`. Returns the addresses checked
    (the literal, or every address the name resolved to): connect to one of these."""
    allow = _allow_list()
    host = _parse_host(url)
    if host.ip is not None:
        _check_ip(host.ip, allow)
        return [str(host.ip)]
    assert host.name is not None
    _check_name(host.name, allow)
    addresses = await _resolve_async(host.name)
    _check_resolved(host.name, addresses, allow)
    return [str(address) for address in addresses]


async def request_hook(request: Any) -> None:
    """An `httpx`/`httpx2` AsyncClient request event hook: `event_hooks={"request":
    [request_hook]}`. It runs before every request the client sends, redirects included. Note
    that SDKs may wrap the raised `UrlRefused` (e.g. openai's APIConnectionError): find it in
    the exception's `__cause__`/`__context__` chain."""
    await acheck_url(str(request.url))
