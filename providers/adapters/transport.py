"""A lean asyncio HTTP/1.1 transport under the SDKs' httpx / httpx2 clients.

Why: the default transport (httpcore over anyio streams, h11, a general connection pool)
measured ~1.6 ms of CPU per non-streamed call to a loopback upstream, two thirds of the whole
SDK call, while the httpx client layers above it cost ~0.14 ms. Provider calls need little of
httpcore's generality: HTTP/1.1 only, no proxies, small JSON requests, JSON or SSE answers.
Here the socket's bytes land in a `bytearray` (an `asyncio.Protocol`, no stream layers) and the
framing is parsed in a few lines of Python.

What it does:

- one keep-alive pool per transport, keyed by (scheme, host, port), with at most `max_idle`
  idle connections per key, each dropped after `idle_expiry` seconds unused; a connection goes
  back to the pool only when its response was read to the end and neither side said
  `Connection: close`;
- a request that fails on a reused connection before any byte of the answer arrived (the server
  closed it while it sat idle) is sent once more on a new connection, when its body is in
  memory (it always is for the SDKs' JSON);
- response bodies by `Content-Length`, `Transfer-Encoding: chunked` or read-until-close, handed
  over as the bytes arrive (SSE chunks are not held back); content-encoding is left to httpx;
- `request.extensions["timeout"]` is honoured: `connect` over the DNS lookup, the TCP connect
  and the TLS handshake, `read` for every wait on the socket, `write` when the socket's send
  buffer is full;
- DNS pinning: a new connection's host name is resolved and every address checked by
  `providers.netguard` (the rules of the request hook, see `_allowed_addresses`), and the
  connection goes to one of those checked addresses, never to a second lookup's answer, which
  closes the DNS-rebinding gap the hook alone leaves. TLS SNI and `Host` keep the name.

Errors are raised as the module's own exception classes (`ConnectError`, `ConnectTimeout`,
`ReadTimeout`, `ReadError`, `RemoteProtocolError`, `WriteError`, ...), as httpcore's transport
would, so that the SDKs keep mapping them to APIConnectionError / APITimeoutError. A refusal by
the network guard is a `ProviderError` (`url_refused`), exactly as from the request hook.

Not supported (not needed by the adapters): HTTP/2, proxies (a custom transport also turns off
httpx's proxy-from-environment), `Expect: 100-continue`, a cap on concurrent connections.
"""

from __future__ import annotations

import asyncio
import functools
import re
import ssl
from types import ModuleType, TracebackType
from typing import Any

_DEFAULT_PORTS = {"http": 80, "https": 443}
_MAX_HEAD = 64 * 1024  # status line + headers of a response
_MAX_LINE = 4 * 1024  # a chunk-size or trailer line
# Stop reading from the socket when this much is buffered and not yet taken by the consumer.
_HIGH_WATER = 256 * 1024
# Below this, the request head and body go out in one write (one send, one TCP segment).
_JOIN_BODY_BELOW = 64 * 1024
# The event loop may run a timer up to its clock resolution early; re-arming for that sliver
# would only spin.
_CLOCK_SLACK = 0.001

_FORBIDDEN_IN_HEADER = re.compile(rb"[\r\n\0]")
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")

# Framing of a response body.
_LENGTH, _CHUNKED, _UNTIL_CLOSE = "length", "chunked", "until_close"
# Chunked decoder states.
_SIZE, _DATA, _DATA_END, _TRAILER, _DONE = "size", "data", "data_end", "trailer", "done"


class _Stale(Exception):
    """A reused connection failed before any byte of the answer: the server had closed it."""


class LeanTransport:
    """An `AsyncBaseTransport` (`handle_async_request`, `aclose`) for `httpx` or `httpx2`:
    `LeanTransport(httpx2, verify=ssl_context)`, given as `transport=` to the client."""

    def __init__(
        self,
        httpx_module: ModuleType,
        *,
        verify: ssl.SSLContext,
        max_idle: int = 100,
        idle_expiry: float = 5.0,
    ) -> None:
        self._x = httpx_module
        self._ssl = verify
        self._body_class = _body_class(httpx_module)
        self._pool = _Pool(max_idle, idle_expiry)

    async def __aenter__(self) -> LeanTransport:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._pool.close_all()

    async def handle_async_request(self, request: Any) -> Any:
        x = self._x
        url = request.url
        scheme = url.scheme
        if scheme not in _DEFAULT_PORTS:
            raise x.UnsupportedProtocol(f"unsupported URL scheme {scheme!r}", request=request)
        # raw_host: the ASCII (IDNA) form, unbracketed for IPv6, as DNS and TLS want it
        key = (scheme, url.raw_host.decode("ascii"), url.port or _DEFAULT_PORTS[scheme])
        timeouts = request.extensions.get("timeout") or {}
        read_timeout = timeouts.get("read")
        head = self._request_head(request)
        try:
            body: bytes | None = request.content  # the SDKs' JSON is always in memory
        except x.RequestNotRead:
            body = None  # a streamed body: sent as it comes, and cannot be sent twice

        conn = self._pool.take(key)
        while True:
            fresh = conn is None
            if conn is None:
                conn = await self._connect(key, timeouts.get("connect"), request)
            conn.start_request()
            try:
                await self._send(conn, head, body, request, timeouts.get("write"))
                status, reason, headers, keep_alive = await self._read_head(
                    conn, read_timeout, request
                )
                break
            except _Stale:
                conn.close()
                if fresh or body is None:
                    raise x.RemoteProtocolError(
                        "Server disconnected without sending a response.", request=request
                    ) from None
                conn = None  # retry once, on a new connection
            except BaseException:
                conn.close()  # mid-request: the connection's state is unknown
                raise

        try:
            framing, length, reusable = _framing(request.method, status, headers, x, request)
        except BaseException:
            conn.close()
            raise
        keep_alive = keep_alive and reusable
        stream = self._body_class(self, conn, framing, length, keep_alive, read_timeout, request)
        return x.Response(
            status_code=status,
            headers=headers,
            stream=stream,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": reason},
        )

    # --- Request ----------------------------------------------------------------------------

    def _request_head(self, request: Any) -> bytes:
        url = request.url
        parts = [request.method.encode("ascii"), b" ", url.raw_path, b" HTTP/1.1\r\n"]
        has_host = False
        for name, value in request.headers.raw:
            # A CR or LF in a header (say, in an API key) would let it write headers of its own.
            if _FORBIDDEN_IN_HEADER.search(name) or _FORBIDDEN_IN_HEADER.search(value):
                raise self._x.LocalProtocolError(
                    "illegal character in a request header", request=request
                )
            if not has_host and name.lower() == b"host":
                has_host = True
            parts += (name, b": ", value, b"\r\n")
        if not has_host:
            parts[4:4] = (b"Host: ", url.netloc, b"\r\n")
        parts.append(b"\r\n")
        return b"".join(parts)

    async def _send(
        self,
        conn: _Connection,
        head: bytes,
        body: bytes | None,
        request: Any,
        write_timeout: float | None,
    ) -> None:
        if body is not None:
            if len(body) < _JOIN_BODY_BELOW:
                conn.write(head + body)
            else:
                conn.write(head)
                conn.write(body)
            await self._drain(conn, write_timeout, request)
            return
        conn.write(head)
        chunked = request.headers.get("transfer-encoding", "").lower() == "chunked"
        async for part in request.stream:
            if part:
                conn.write(b"%x\r\n%b\r\n" % (len(part), part) if chunked else part)
                await self._drain(conn, write_timeout, request)
        if chunked:
            conn.write(b"0\r\n\r\n")
        await self._drain(conn, write_timeout, request)

    async def _drain(self, conn: _Connection, write_timeout: float | None, request: Any) -> None:
        """Wait while the socket's send buffer is full (a large body to a slow reader)."""
        try:
            await conn.drain(write_timeout)
        except TimeoutError:
            raise self._x.WriteTimeout("timed out writing the request", request=request) from None
        except OSError as exc:
            if conn.reused and not conn.received:
                raise _Stale from exc
            raise self._x.WriteError(str(exc) or type(exc).__name__, request=request) from exc

    # --- Response head ----------------------------------------------------------------------

    async def _read_head(
        self, conn: _Connection, read_timeout: float | None, request: Any
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]], bool]:
        """(status, reason, headers, keep-alive) of the final (non-1xx) response."""
        x = self._x
        buf = conn.buffer
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > _MAX_HEAD:
                    raise x.RemoteProtocolError("response head too large", request=request)
                if conn.eof:
                    if conn.reused and not conn.received:
                        raise _Stale
                    if conn.error is not None:
                        raise x.ReadError(_describe(conn.error), request=request)
                    raise x.RemoteProtocolError(
                        "Server disconnected without sending a response.", request=request
                    )
                await self._wait(conn, read_timeout, request)
                continue
            lines = bytes(buf[:end]).split(b"\r\n")
            del buf[: end + 4]
            status, reason, keep_alive = _status_line(lines[0], x, request)
            headers: list[tuple[bytes, bytes]] = []
            for line in lines[1:]:
                name, colon, value = line.partition(b":")
                if not colon or not name or name[-1:] in b" \t" or line[:1] in b" \t":
                    raise x.RemoteProtocolError("malformed response header", request=request)
                headers.append((name, value.strip(b" \t")))
                if name.lower() == b"connection":
                    tokens = value.lower()
                    if b"close" in tokens:
                        keep_alive = False
                    elif b"keep-alive" in tokens and lines[0].startswith(b"HTTP/1.0"):
                        keep_alive = True
            if 100 <= status < 200 and status != 101:
                continue  # an interim response (100 Continue, 103 Early Hints): skip it
            return status, reason, headers, keep_alive

    async def _wait(self, conn: _Connection, read_timeout: float | None, request: Any) -> None:
        try:
            await conn.wait(read_timeout)
        except TimeoutError:
            raise self._x.ReadTimeout("timed out reading the response", request=request) from None

    # --- Connections ------------------------------------------------------------------------

    async def _connect(
        self, key: tuple[str, str, int], connect_timeout: float | None, request: Any
    ) -> _Connection:
        x = self._x
        scheme, host, port = key
        loop = asyncio.get_running_loop()
        tls = self._ssl if scheme == "https" else None
        failure: OSError | None = None
        try:
            async with asyncio.timeout(connect_timeout):
                # Raises a ProviderError (url_refused, or upstream_unavailable when the name
                # does not resolve), as the request hook would.
                addresses = await _allowed_addresses(scheme, host, port)
                for address in addresses:
                    try:
                        _, conn = await loop.create_connection(
                            lambda: _Connection(loop, key, self._pool),
                            address,
                            port,
                            ssl=tls,
                            server_hostname=host if tls is not None else None,
                        )
                    except OSError as exc:  # refused, unreachable, TLS failure: next address
                        failure = exc
                        continue
                    self._pool.add(conn)
                    return conn
        except TimeoutError:
            raise x.ConnectTimeout(
                f"timed out connecting to {host}:{port}", request=request
            ) from None
        message = _describe(failure) if failure is not None else f"no address for {host}"
        raise x.ConnectError(message, request=request) from failure

    def _release(self, conn: _Connection, keep_alive: bool) -> None:
        """A response is over: its connection goes back to the pool, or is closed."""
        if keep_alive and not conn.eof and not conn.buffer:
            self._pool.put(conn)
        else:
            conn.close()


async def _allowed_addresses(scheme: str, host: str, port: int) -> list[str]:
    """The addresses a new connection to `host` may go to: those the network guard checked
    (`netguard.acheck_url`, the request hook's own check), so the connection is made to one of
    them rather than to whatever a second lookup would answer. Resolutions come from
    netguard's short-lived cache, so the hook and the connection see the same answer."""
    from providers import netguard  # netguard imports the adapters package: import late

    literal = f"[{host}]" if ":" in host else host
    return await netguard.acheck_url(f"{scheme}://{literal}:{port}/")


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection. The socket's bytes accumulate in `buffer`; the request and
    body code parse from its front and `wait()` for more when it runs dry."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, key: tuple[str, str, int], pool: _Pool
    ) -> None:
        self.loop = loop
        self.key = key
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.eof = False  # the peer closed, or the connection was lost or closed by us
        self.error: BaseException | None = None
        self.reused = False  # this request is not the connection's first
        self.received = False  # bytes arrived since this request started
        self.in_use = True
        self.idle_since = 0.0
        self._requests = 0
        self._waiter: asyncio.Future[None] | None = None
        self._read_paused = False
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        # One lazily re-armed read timer per connection, not a timer per wait: a wait only
        # moves `_deadline`, and the timer, when it fires early, re-arms for the new deadline.
        # (asyncio.timeout or call_later per read would cost a timer handle and a heap push
        # per SSE chunk.)
        self._deadline: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = 0.0

    # The httpcore-like introspection the adapter tests use (`pool.connections`).
    def is_idle(self) -> bool:
        return not self.in_use and not self.eof

    def is_closed(self) -> bool:
        return self.eof

    # --- asyncio.Protocol callbacks ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self.received = True
        if len(self.buffer) > _HIGH_WATER and not self._read_paused:
            self._read_paused = True
            self.transport.pause_reading()  # type: ignore[union-attr]
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False  # let the transport close; the body code still reads what is buffered

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        if exc is not None and self.error is None:
            self.error = exc
        self._stop_timer()
        self.pool.forget(self)
        self._wake()
        drain = self._drain_waiter
        if drain is not None and not drain.done():
            drain.set_exception(exc or ConnectionResetError("connection lost"))

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        drain = self._drain_waiter
        if drain is not None and not drain.done():
            drain.set_result(None)

    # --- Used by the transport --------------------------------------------------------------

    def start_request(self) -> None:
        self.reused = self._requests > 0
        self._requests += 1
        self.received = False
        self.in_use = True

    def write(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[union-attr]

    async def drain(self, write_timeout: float | None) -> None:
        if not self._write_paused:
            return
        self._drain_waiter = self.loop.create_future()
        try:
            async with asyncio.timeout(write_timeout):  # rare: only a body larger than the buffer
                await self._drain_waiter
        finally:
            self._drain_waiter = None

    async def wait(self, read_timeout: float | None) -> None:
        """Until more bytes arrive or the connection ends; TimeoutError after `read_timeout`."""
        if self._read_paused:
            self._read_paused = False
            self.transport.resume_reading()  # type: ignore[union-attr]
        waiter = self._waiter = self.loop.create_future()
        if read_timeout is not None:
            deadline = self._deadline = self.loop.time() + read_timeout
            if self._timer is None or deadline < self._timer_when:
                self._stop_timer()
                self._timer_when = deadline
                self._timer = self.loop.call_at(deadline, self._on_timer)
        try:
            await waiter
        finally:
            self._waiter = None
            self._deadline = None

    def close(self) -> None:
        self.eof = True
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.close()
        self._stop_timer()
        self.pool.forget(self)

    # --- Internals --------------------------------------------------------------------------

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _on_timer(self) -> None:
        self._timer = None
        deadline, waiter = self._deadline, self._waiter
        if deadline is None or waiter is None or waiter.done():
            return  # not waiting: the next wait arms a new timer
        if self.loop.time() < deadline - _CLOCK_SLACK:
            self._timer_when = deadline
            self._timer = self.loop.call_at(deadline, self._on_timer)
            return
        waiter.set_exception(TimeoutError())

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class _Pool:
    """Idle connections per (scheme, host, port), most recently used last."""

    def __init__(self, max_idle: int, idle_expiry: float) -> None:
        self._max_idle = max_idle
        self._expiry = idle_expiry
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._open: set[_Connection] = set()

    @property
    def connections(self) -> list[_Connection]:
        """Every open connection, idle or in use (introspection, as httpcore's pool offers)."""
        return list(self._open)

    def add(self, conn: _Connection) -> None:
        self._open.add(conn)

    def forget(self, conn: _Connection) -> None:
        self._open.discard(conn)

    def take(self, key: tuple[str, str, int]) -> _Connection | None:
        idle = self._idle.get(key)
        if not idle:
            return None
        oldest_usable = asyncio.get_running_loop().time() - self._expiry
        while idle:
            conn = idle.pop()
            # Closed by the server while idle, or bytes nobody asked for (a 408 sent before
            # closing): not usable.
            if conn.eof or conn.buffer or conn.idle_since < oldest_usable:
                conn.close()
                continue
            conn.in_use = True
            return conn
        return None

    def put(self, conn: _Connection) -> None:
        conn.in_use = False
        now = conn.idle_since = conn.loop.time()
        idle = self._idle.setdefault(conn.key, [])
        idle.append(conn)
        # Oldest first: drop the expired and any beyond the cap.
        while idle and (len(idle) > self._max_idle or idle[0].idle_since < now - self._expiry):
            idle.pop(0).close()

    def close_all(self) -> None:
        for conn in list(self._open):
            conn.close()
        self._idle.clear()


class _Body:
    """A response body as raw bytes as they arrive (`async for`), and `aclose()`. Mixed into
    the module's `AsyncByteStream` by `_body_class`, which httpx checks the stream against."""

    def __init__(
        self,
        owner: LeanTransport,
        conn: _Connection,
        framing: str,
        length: int,
        keep_alive: bool,
        timeout: float | None,
        request: Any,
    ) -> None:
        self._owner = owner
        self._conn: _Connection | None = conn
        self._framing = framing
        self._left = length  # bytes left: of the body (length) or of the current chunk
        self._state = _SIZE if framing is _CHUNKED else _DATA
        self._keep_alive = keep_alive
        self._timeout = timeout
        self._request = request
        if framing is _LENGTH and length == 0:
            self._finish()

    def __aiter__(self) -> _Body:
        return self

    async def __anext__(self) -> bytes:
        while True:
            conn = self._conn
            if conn is None or self._state is _DONE:
                raise StopAsyncIteration
            if self._framing is _CHUNKED:
                data = self._take_chunked(conn.buffer)
            else:
                data = self._take(conn.buffer)
            if data:
                return data
            if self._state is _DONE:
                raise StopAsyncIteration
            if conn.eof:
                if self._framing is _UNTIL_CLOSE and conn.error is None:
                    self._finish()
                    raise StopAsyncIteration
                self._fail(conn)
            await self._owner._wait(conn, self._timeout, self._request)

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()  # closed before its end: the connection is mid-response

    def _take(self, buf: bytearray) -> bytes:
        if not buf:
            return b""
        if self._framing is _UNTIL_CLOSE:
            data = bytes(buf)
            buf.clear()
            return data
        n = min(self._left, len(buf))
        data = bytes(buf[:n])
        del buf[:n]
        self._left -= n
        if not self._left:
            self._finish()
        return data

    def _take_chunked(self, buf: bytearray) -> bytes:
        """Decode as much of the chunked body as is buffered, across chunk boundaries (a whole
        small body comes out at once; an SSE stream chunk by chunk, as they arrive)."""
        parts: list[bytes] = []
        while True:
            state = self._state
            if state is _DATA:
                if not buf:
                    break
                n = min(self._left, len(buf))
                parts.append(bytes(buf[:n]))
                del buf[:n]
                self._left -= n
                if self._left:
                    break
                self._state = _DATA_END
            elif state is _DATA_END:
                if len(buf) < 2:
                    break
                if buf[:2] != b"\r\n":
                    self._malformed("chunk not followed by CRLF")
                del buf[:2]
                self._state = _SIZE
            elif state is _SIZE or state is _TRAILER:
                end = buf.find(b"\r\n")
                if end < 0:
                    if len(buf) > _MAX_LINE:
                        self._malformed("chunk size line too long")
                    break
                line = bytes(buf[:end])
                del buf[: end + 2]
                if state is _TRAILER:
                    if not line:  # the blank line after the (ignored) trailer fields
                        self._finish()
                        break
                    continue
                size = line.split(b";", 1)[0].strip(b" \t")  # drop chunk extensions
                if not _CHUNK_SIZE.fullmatch(size):
                    self._malformed("invalid chunk size")
                self._left = int(size, 16)
                self._state = _DATA if self._left else _TRAILER
            else:  # _DONE
                break
        return b"".join(parts)

    def _finish(self) -> None:
        """The body is complete: release the connection now, not at `aclose()`, so that the
        next request can reuse it even when the consumer is slow to close."""
        self._state = _DONE
        conn, self._conn = self._conn, None
        if conn is not None:
            self._owner._release(conn, self._keep_alive)

    def _fail(self, conn: _Connection) -> None:
        x = self._owner._x
        if conn.error is not None:
            raise x.ReadError(_describe(conn.error), request=self._request)
        raise x.RemoteProtocolError(
            "peer closed connection without sending complete message body", request=self._request
        )

    def _malformed(self, what: str) -> None:
        raise self._owner._x.RemoteProtocolError(
            f"malformed chunked body: {what}", request=self._request
        )


@functools.cache
def _body_class(httpx_module: ModuleType) -> type[_Body]:
    """`_Body` as a subclass of this module's AsyncByteStream (httpx and httpx2 each check
    the response stream against their own class)."""
    return type("LeanBody", (_Body, httpx_module.AsyncByteStream), {})


def _status_line(line: bytes, x: ModuleType, request: Any) -> tuple[int, bytes, bool]:
    """(status, reason, keep-alive by default) of `HTTP/1.x 200 OK`."""
    version, _, rest = line.partition(b" ")
    code, _, reason = rest.partition(b" ")
    if version not in (b"HTTP/1.1", b"HTTP/1.0") or len(code) != 3 or not code.isdigit():
        raise x.RemoteProtocolError("malformed response status line", request=request)
    # HTTP/1.1 keeps the connection open by default, HTTP/1.0 only when asked.
    return int(code), reason, version == b"HTTP/1.1"


def _framing(
    method: str, status: int, headers: list[tuple[bytes, bytes]], x: ModuleType, request: Any
) -> tuple[str, int, bool]:
    """How the body is delimited (RFC 9112, section 6.3): (framing, length, reusable)."""
    if method == "HEAD" or status in (204, 304):
        return _LENGTH, 0, True
    coding: bytes | None = None
    lengths: set[bytes] = set()
    for name, value in headers:
        lower = name.lower()
        if lower == b"transfer-encoding":
            coding = value
        elif lower == b"content-length":
            lengths.update(v.strip(b" \t") for v in value.split(b","))
    if coding is not None:
        # chunked must be the last coding; with anything else the body runs to the close. A
        # Content-Length beside it is ignored, and the connection not reused (RFC 9112 6.3).
        last = coding.rsplit(b",", 1)[-1].strip(b" \t").lower()
        framing = _CHUNKED if last == b"chunked" else _UNTIL_CLOSE
        return framing, 0, framing is _CHUNKED and not lengths
    if not lengths:
        return _UNTIL_CLOSE, 0, False
    if len(lengths) > 1 or not all(v.isdigit() for v in lengths):
        raise x.RemoteProtocolError("invalid Content-Length in the response", request=request)
    return _LENGTH, int(lengths.pop()), True


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
