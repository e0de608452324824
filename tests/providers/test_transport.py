"""The lean HTTP/1.1 transport (providers/adapters/transport.py) on real loopback sockets.

Each test starts a small raw HTTP server (`RawServer`: asyncio streams, hand-written answers)
so that framing, keep-alive and failures are exactly what the test says; the last tests run
the adapters over the transport, against the upstream simulator and against hand-written
answers for `complete()`'s own JSON reading. Only the OS resolver is faked (as in
test_netguard.py), never the transport.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import httpx2
import openai
import pytest

from providers.adapters import close_adapters, get_adapter
from providers.adapters.base import Endpoint, ErrorCode, ProviderError, shared_ssl_context
from providers.adapters.transport import LeanTransport
from providers.netguard import UrlRefused

# --- A raw HTTP server ---------------------------------------------------------------------------

# Answers one request: (request head, request body, writer) -> keep the connection open?
Respond = Callable[[bytes, bytes, asyncio.StreamWriter], Awaitable[bool]]


class RawServer:
    """A minimal HTTP/1.1 server on 127.0.0.1 that counts the TCP connections it accepts."""

    def __init__(self, respond: Respond) -> None:
        self.respond = respond
        self.connections = 0
        self.requests: list[tuple[bytes, bytes]] = []
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._handlers:
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._handlers.add(asyncio.current_task())  # type: ignore[arg-type]
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                body = await _read_request_body(reader, head)
                self.requests.append((head, body))
                if not await self.respond(head, body, writer):
                    return
        except (ConnectionError, asyncio.CancelledError):
            return
        finally:
            writer.close()


async def _read_request_body(reader: asyncio.StreamReader, head: bytes) -> bytes:
    headers = head.lower()
    if b"transfer-encoding: chunked" in headers:
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            parts.append((await reader.readexactly(size + 2))[:-2])
            if size == 0:
                return b"".join(parts)
    for line in headers.split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return await reader.readexactly(int(line.split(b":")[1]))
    return b""


def ok(body: bytes, *extra: bytes) -> Respond:
    """Answers with a Content-Length body and keeps the connection."""

    async def respond(head: bytes, _: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
            + b"".join(h + b"\r\n" for h in extra)
            + b"Content-Length: %d\r\n\r\n%b" % (len(body), body)
        )
        await writer.drain()
        return True

    return respond


def client(**kwargs) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(
        transport=LeanTransport(httpx2, verify=shared_ssl_context(), **kwargs), timeout=5.0
    )


def transport_of(http: httpx2.AsyncClient | httpx.AsyncClient) -> LeanTransport:
    return http._transport  # type: ignore[return-value]


# --- Framing and keep-alive ----------------------------------------------------------------------


async def test_sequential_requests_reuse_one_connection() -> None:
    async with RawServer(ok(b"hello")) as server, client() as http:
        for _ in range(3):
            response = await http.get(server.url + "/a?b=c")
            assert (response.status_code, response.text) == (200, "hello")
            assert response.http_version == "HTTP/1.1" and response.reason_phrase == "OK"
        assert server.connections == 1
        head = server.requests[0][0]
        assert head.startswith(b"GET /a?b=c HTTP/1.1\r\n")
        assert b"\r\nHost: 127.0.0.1:" in head
        assert [c.is_idle() for c in transport_of(http)._pool.connections] == [True]


async def test_content_length_request_and_response_bodies() -> None:
    async def echo(head: bytes, body: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 201 Created\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body))
        return True

    payload = b"x" * 200_000  # more than one socket read, and sent in two writes
    async with RawServer(echo) as server, client() as http:
        response = await http.post(server.url, content=payload)
        assert (response.status_code, response.content) == (201, payload)
        assert (await http.post(server.url, json={"a": 1})).json() == {"a": 1}
        assert server.connections == 1


async def test_chunked_response_with_extensions_and_trailers() -> None:
    async def chunked(head: bytes, _: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n"
            b"1;name=value\r\n \r\n"
            b"0006\r\nworld!\r\n"
            b"0\r\nX-Trailer: yes\r\n\r\n"
        )
        return True

    async with RawServer(chunked) as server, client() as http:
        for _ in range(2):
            assert (await http.get(server.url)).text == "hello world!"
        assert server.connections == 1  # the chunked body was read to its end: reused


async def test_streamed_request_body_goes_out_chunked() -> None:
    async def parts() -> AsyncIterator[bytes]:
        for part in (b"one ", b"", b"two"):
            yield part

    async with RawServer(ok(b"done")) as server, client() as http:
        assert (await http.post(server.url, content=parts())).text == "done"
        head, body = server.requests[0]
        assert b"transfer-encoding: chunked" in head.lower()
        assert body == b"one two"


async def test_read_until_close_and_no_reuse() -> None:
    async def until_close(head: bytes, _: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\n\r\nall of ")
        await writer.drain()
        writer.write(b"it")
        return False  # the close ends the body

    async with RawServer(until_close) as server, client() as http:
        assert (await http.get(server.url)).text == "all of it"
        assert (await http.get(server.url)).text == "all of it"
        assert server.connections == 2


async def test_connection_close_and_http_1_0_are_not_reused() -> None:
    answers = [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\na",
        b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nb",
        b"HTTP/1.1 204 No Content\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\n\r\n",
    ]

    async def respond(head: bytes, _: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(answers[len(server.requests) - 1])
        return True  # the server would keep it: the client must not

    async with RawServer(respond) as server, client() as http:
        assert [(await http.get(server.url)).content for _ in range(4)] == [b"a", b"b", b"", b""]
        assert server.connections == 3  # the two 204s share one


async def test_interim_response_is_skipped() -> None:
    async def respond(head: bytes, _: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        return True

    async with RawServer(respond) as server, client() as http:
        response = await http.get(server.url)
        assert (response.status_code, response.text) == (200, "ok")


async def test_gzip_is_decoded_by_httpx_not_the_transport() -> None:
    import gzip

    squeezed = ok(gzip.compress(b"squeezed"), b"Content-Encoding: gzip")
    async with RawServer(squeezed) as server, client() as http:
        assert (await http.get(server.url)).text == "squeezed"


async def test_sse_chunks_arrive_as_they_are_sent() -> None:
    first_seen = asyncio.Event()

    async def sse(head: bytes, _: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n")
        writer.write(b"Transfer-Encoding: chunked\r\n\r\n")
        for i in range(3):
            event = b"data: %d\n\n" % i
            writer.write(b"%x\r\n%b\r\n" % (len(event), event))
            await writer.drain()
            if i == 0:
                # The rest is sent only once the client has the first event: a transport
                # that buffered the body would wait here forever (the test times out).
                await asyncio.wait_for(first_seen.wait(), 5)
        writer.write(b"0\r\n\r\n")
        return True

    async with RawServer(sse) as server, client() as http:
        async with http.stream("GET", server.url) as response:
            events = []
            async for line in response.aiter_lines():
                if line:
                    events.append(line)
                    first_seen.set()
        assert events == ["data: 0", "data: 1", "data: 2"]
        assert [c.is_idle() for c in transport_of(http)._pool.connections] == [True]


async def test_a_body_closed_early_closes_its_connection() -> None:
    async def endless(head: bytes, _: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\nstart")
        await asyncio.sleep(10)
        return True

    async with RawServer(endless) as server, client() as http:
        async with http.stream("GET", server.url) as response:
            assert await anext(response.aiter_raw()) == b"start"
        assert transport_of(http)._pool.connections == []


# --- Stale connections and failures --------------------------------------------------------------


async def test_idle_connection_closed_by_the_server_is_replaced() -> None:
    async def once(head: bytes, _: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        return False  # closes after answering, without saying so

    async with RawServer(once) as server, client() as http:
        assert (await http.get(server.url)).text == "ok"
        await asyncio.sleep(0.05)  # the FIN reaches the pooled connection
        assert (await http.get(server.url)).text == "ok"
        assert server.connections == 2


async def test_stale_connection_is_retried_once_on_a_new_one() -> None:
    # The server takes the second request on the kept connection and closes without a byte
    # (as when its idle timeout races the request): the client sends it again, once.
    async def respond(head: bytes, _: bytes, writer: asyncio.StreamWriter) -> bool:
        if len(server.requests) == 2:
            return False
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        return True

    async with RawServer(respond) as server, client() as http:
        assert (await http.get(server.url)).text == "ok"
        assert (await http.post(server.url, content=b"payload")).text == "ok"
        assert server.connections == 2
        assert [body for _, body in server.requests] == [b"", b"payload", b"payload"]


async def test_a_new_connection_closed_without_an_answer_is_not_retried() -> None:
    async def hang_up(head: bytes, _: bytes, writer: asyncio.StreamWriter) -> bool:
        return False

    async with RawServer(hang_up) as server, client() as http:
        with pytest.raises(httpx2.RemoteProtocolError):
            await http.get(server.url)
        assert server.connections == 1


async def test_a_truncated_body_is_a_protocol_error() -> None:
    async def short(head: bytes, _: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        return False

    async with RawServer(short) as server, client() as http:
        with pytest.raises(httpx2.RemoteProtocolError):
            await http.get(server.url)


async def test_a_malformed_status_line_is_a_protocol_error() -> None:
    async def garbage(head: bytes, _: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"SPDY/3 200 OK\r\n\r\n")
        return False

    async with RawServer(garbage) as server, client() as http:
        with pytest.raises(httpx2.RemoteProtocolError):
            await http.get(server.url)


async def test_a_header_with_a_newline_is_not_sent() -> None:
    async with RawServer(ok(b"")) as server, client() as http:
        with pytest.raises(httpx2.LocalProtocolError):
            await http.get(server.url, headers={"x-api-key": "k\r\nX-Injected: 1"})
        assert server.requests == []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def sdk(base_url: str, *, timeout: httpx2.Timeout | float = 5.0) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        api_key="sim-transport",
        base_url=base_url,
        max_retries=0,
        http_client=openai.DefaultAsyncHttpxClient(
            timeout=timeout, transport=LeanTransport(httpx2, verify=shared_ssl_context())
        ),
    )


async def test_connection_refused_is_the_sdks_connection_error() -> None:
    client_ = sdk(f"http://127.0.0.1:{free_port()}/v1")
    with pytest.raises(openai.APIConnectionError) as info:
        await client_.post("/chat/completions", body={}, cast_to=object)
    assert not isinstance(info.value, openai.APITimeoutError)
    assert isinstance(info.value.__cause__, httpx2.ConnectError)
    await client_.close()


async def test_read_timeout_is_the_sdks_timeout_error() -> None:
    async def silent(head: bytes, _: bytes, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(10)
        return False

    async with RawServer(silent) as server:
        client_ = sdk(server.url + "/v1", timeout=httpx2.Timeout(5.0, read=0.2))
        started = time.monotonic()
        with pytest.raises(openai.APITimeoutError) as info:
            await client_.post("/chat/completions", body={}, cast_to=object)
        assert 0.15 < time.monotonic() - started < 2
        assert isinstance(info.value.__cause__, httpx2.ReadTimeout)
        await client_.close()


async def test_read_timeout_applies_to_every_read_of_a_stream() -> None:
    async def stalls(head: bytes, _: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        await asyncio.sleep(10)
        return False

    timeout = httpx2.Timeout(5, read=0.2)
    async with (
        RawServer(stalls) as server,
        client() as http,
        http.stream("GET", server.url, timeout=timeout) as response,
    ):
        chunks = response.aiter_raw()
        assert await anext(chunks) == b"first"
        with pytest.raises(httpx2.ReadTimeout):
            await anext(chunks)


async def test_the_httpx_flavour_raises_httpx_errors() -> None:
    async with RawServer(ok(b"legacy")) as server:
        transport = LeanTransport(httpx, verify=shared_ssl_context())
        async with httpx.AsyncClient(transport=transport) as http:
            assert (await http.get(server.url)).text == "legacy"
            with pytest.raises(httpx.ConnectError):
                await http.get(f"http://127.0.0.1:{free_port()}/")


# --- DNS pinning through the network guard -------------------------------------------------------


async def test_a_name_is_resolved_checked_and_the_checked_address_used(fake_dns) -> None:
    fake_dns["provider.test"] = ["127.0.0.1"]
    async with RawServer(ok(b"pinned")) as server, client() as http:
        port = server.url.rsplit(":", 1)[1]
        response = await http.get(f"http://provider.test:{port}/")
        assert response.text == "pinned"
        assert f"\r\nHost: provider.test:{port}\r\n".encode() in server.requests[0][0]


@pytest.mark.parametrize(
    ("address", "reason"),
    [("169.254.169.254", "forbidden address"), ("10.1.2.3", "private network")],
)
async def test_a_name_resolving_to_a_refused_address_is_not_connected(
    fake_dns, address: str, reason: str
) -> None:
    # No request hook on this client: the transport itself refuses, before any connect (a
    # connect to 169.254.169.254 would only time out after the 5 s connect timeout).
    fake_dns["rebind.test"] = [address]
    async with client() as http:
        started = time.monotonic()
        with pytest.raises(UrlRefused) as info:
            await http.get("http://rebind.test/latest/meta-data/")
        assert time.monotonic() - started < 1
    assert reason in info.value.reason
    assert transport_of(http)._pool.connections == []


async def test_one_refused_address_among_good_ones_refuses_the_name(fake_dns) -> None:
    fake_dns["mixed.test"] = ["127.0.0.1", "169.254.169.254"]
    async with client() as http:
        with pytest.raises(UrlRefused):
            await http.get("http://mixed.test/")


async def test_refused_literals_and_names_need_no_resolution() -> None:
    async with client() as http:
        for url in ("http://169.254.169.254/", "http://metadata.google.internal/"):
            with pytest.raises(UrlRefused):
                await http.get(url)


async def test_unresolvable_name_is_upstream_unavailable(fake_dns) -> None:
    async with client() as http:
        with pytest.raises(ProviderError) as info:
            await http.get("http://does-not-exist.invalid/")
    assert info.value.code == ErrorCode.UPSTREAM_UNAVAILABLE


# --- The adapters over the transport, against the simulator -------------------------------------


@pytest.mark.parametrize(
    ("kind", "path", "model"),
    [
        ("openai", "/openai/v1", "sim-gpt"),
        ("anthropic", "/anthropic", "sim-claude"),
        ("ollama", "/ollama", "sim-llama"),
    ],
)
async def test_adapters_run_on_the_lean_transport(
    simulator: str, kind: str, path: str, model: str
) -> None:
    adapter = get_adapter(Endpoint(kind=kind, base_url=simulator + path, api_key="sim-lean"))
    try:
        http = adapter._client._client  # type: ignore[attr-defined]
        assert isinstance(http._transport, LeanTransport)
        messages = [{"role": "user", "content": "hello there"}]
        for _ in range(3):
            completion = await adapter.complete(messages, model=model)
            assert completion.text and completion.usage.output_tokens == 12
            if kind != "ollama":  # the provider's request id header, not the body's id
                assert completion.provider_request_id.startswith("req_")
            deltas = [d async for d in adapter.stream(messages, model=model) if isinstance(d, str)]
            assert "".join(deltas) == completion.text
        assert len(http._transport._pool.connections) == 1
    finally:
        await close_adapters()


# --- TLS ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_pair(tmp_path_factory) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context) for a self-signed certificate naming `tls.test`."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tls.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("tls.test")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    directory = tmp_path_factory.mktemp("tls")
    (directory / "cert.pem").write_bytes(cert_pem)
    (directory / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    client_ = ssl.create_default_context(cadata=cert_pem.decode())
    return server, client_


async def test_https_connects_to_the_checked_address_with_the_names_sni(fake_dns, tls_pair) -> None:
    server_tls, client_tls = tls_pair
    fake_dns["tls.test"] = ["127.0.0.1"]
    connections = 0
    names: list[str | None] = []
    server_tls.sni_callback = lambda _sock, name, _ctx: names.append(name)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                body = head.split(b" ")[1]
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body))
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_tls)
    port = server.sockets[0].getsockname()[1]
    try:
        transport = LeanTransport(httpx2, verify=client_tls)
        async with httpx2.AsyncClient(transport=transport, timeout=5) as http:
            for path in ("/one", "/two"):
                response = await http.get(f"https://tls.test:{port}{path}")
                assert response.text == path
            assert (connections, names) == (1, ["tls.test"])
            # The certificate names tls.test, not 127.0.0.1: verification fails.
            with pytest.raises(httpx2.ConnectError):
                await http.get(f"https://127.0.0.1:{port}/")
    finally:
        server_tls.sni_callback = None
        server.close()


# --- complete() reads the raw JSON answer -------------------------------------------------------


def json_answer(body: bytes, *extra: bytes) -> Respond:
    return ok(body, b"Content-Type: application/json", *extra)


@pytest.mark.parametrize(
    ("kind", "body", "code"),
    [
        # an error in a 200 body is judged by its type, as in a stream
        (
            "openai",
            b'{"error": {"message": "busy", "type": "server_error"}}',
            "upstream_unavailable",
        ),
        (
            "openai",
            b'{"error": {"message": "slow down", "code": "rate_limit_exceeded"}}',
            "rate_limited",
        ),
        ("openai", b'{"id": "x", "choices": []}', "stream_interrupted"),
        ("openai", b'{"choices": [null]}', "stream_interrupted"),
        ("openai", b"not json", "stream_interrupted"),
        ("openai", b"[1, 2]", "stream_interrupted"),
        (
            "anthropic",
            b'{"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}',
            "overloaded",
        ),
        (
            "anthropic",
            b'{"type": "message", "content": [{"text": "no type"}]}',
            "stream_interrupted",
        ),
        ("anthropic", b"{truncated", "stream_interrupted"),
    ],
)
async def test_complete_maps_a_broken_or_in_band_error_answer(
    kind: str, body: bytes, code: str
) -> None:
    async with RawServer(json_answer(body)) as server:
        adapter = get_adapter(Endpoint(kind=kind, base_url=server.url, api_key="sim-lean"))
        try:
            with pytest.raises(ProviderError) as info:
                await adapter.complete([{"role": "user", "content": "hi"}], model="m")
            assert info.value.code == code
        finally:
            await close_adapters()


@pytest.mark.parametrize(
    ("kind", "body", "header", "request_id"),
    [
        ("openai", b'{"id": "chatcmpl-1", "choices": [{"message": {}}]}', b"", "chatcmpl-1"),
        (
            "openai",
            b'{"id": "chatcmpl-1", "choices": [{"message": {}}]}',
            b"x-request-id: req_h",
            "req_h",
        ),
        ("anthropic", b'{"id": "msg_1", "content": []}', b"", "msg_1"),
        ("anthropic", b'{"id": "msg_1", "content": []}', b"request-id: req_h", "req_h"),
    ],
)
async def test_complete_of_a_sparse_answer(
    kind: str, body: bytes, header: bytes, request_id: str
) -> None:
    # No text, no finish reason, no usage: empty text, "stop", estimated usage; the request id
    # from the provider's header, else the body's id.
    extra = (header,) if header else ()
    async with RawServer(json_answer(body, *extra)) as server:
        adapter = get_adapter(Endpoint(kind=kind, base_url=server.url, api_key="sim-lean"))
        try:
            completion = await adapter.complete([{"role": "user", "content": "hi"}], model="m")
        finally:
            await close_adapters()
    assert (completion.text, completion.finish_reason) == ("", "stop")
    assert completion.usage.estimated and completion.usage.output_tokens == 0
    assert completion.provider_request_id == request_id


async def test_a_stream_whose_end_comes_after_done_keeps_its_connection() -> None:
    # The body's terminating chunk arrives a moment after `data: [DONE]`, as it may from any
    # server that writes them separately: the adapter reads the body to its end (bounded in
    # time), so the connection goes back to the pool instead of being closed.
    async def sse(head: bytes, _: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n")
        writer.write(b"Transfer-Encoding: chunked\r\n\r\n")
        text = b'{"id":"c1","choices":[{"index":0,"delta":{"content":"hi"}}]}'
        end = b'{"id":"c1","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}'
        for event in (b"data: " + text + b"\n\n", b"data: " + end + b"\n\n", b"data: [DONE]\n\n"):
            writer.write(b"%x\r\n%b\r\n" % (len(event), event))
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True

    async with RawServer(sse) as server:
        adapter = get_adapter(Endpoint(kind="openai", base_url=server.url, api_key="sim-lean"))
        try:
            for _ in range(3):
                deltas = [
                    d async for d in adapter.stream([{"role": "user", "content": "hi"}], model="m")
                ]
                assert "".join(d for d in deltas if isinstance(d, str)) == "hi"
        finally:
            await close_adapters()
    assert server.connections == 1
    assert len(server.requests) == 3
