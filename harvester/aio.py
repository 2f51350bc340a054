"""An httpx transport over aiohttp's connection pool, guarded like every other connection.

Why: per GET, httpcore's pool and h11's pure-Python parser cost ≈ 1 ms of the main process's
CPU; aiohttp parses HTTP/1.1 in C (llhttp) and keeps a leaner pool. Measured side by side on
the same 2,000 images from 127.0.0.1 (32 connections): httpx's own transport 1.49 ms CPU a
request, httpx over aiohttp 0.48 ms. httpx stays the client API; only the wire changes.

Input: the run's `GuardedBackend` (address guard, `--resolve` entries, resolver, counters),
an SSL context, limits and timeouts. Output: `AiohttpTransport`, an
`httpx.AsyncBaseTransport` that

1. resolves every new connection's host through `GuardedBackend.addresses_for` (the same
   normalisation, `--resolve` mapping and blocked-network tables as the httpcore path) and
   connects only to the addresses it returned (aiohttp's DNS cache is off, so each new
   connection is checked; a literal IP host is checked before the request);
2. returns raw bodies (`auto_decompress=False`: the fetcher inflates and limits them itself),
   keeps no cookies, ignores proxy environment variables, never follows redirects;
3. raises httpx's exception types for aiohttp's, so the fetcher classifies failures the same
   way whichever transport carried them (timeouts never leak out as bare `TimeoutError`,
   which the fetcher reserves for its own per-attempt deadline).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import aiohttp
import httpx
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from harvester.net import GuardedBackend, default_port, parse_host

READ_CHUNK = 64 * 1024  # aiohttp's read buffer: one chunk per network read at most
# Response head limits. aiohttp's defaults (8,190 bytes a line or field, 128 fields) refuse
# heads that httpcore took (h11 allows 16 KiB in all): big CSP, Link or cookie fields.
MAX_FIELD_BYTES = 64 * 1024
MAX_FIELDS = 256


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver hook: every answer comes from the guard, or there is none."""

    def __init__(self, backend: GuardedBackend) -> None:
        self.backend = backend

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = await self.backend.addresses_for(host, port)
        results: list[ResolveResult] = []
        for address in addresses:
            self.backend.dialed.append((str(address), port))
            results.append(
                {
                    "hostname": host,
                    "host": str(address),
                    "port": port,
                    "family": socket.AF_INET6 if address.version == 6 else socket.AF_INET,
                    "proto": 0,
                    "flags": socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
                }
            )
        return results

    async def close(self) -> None:
        return None


class _Body(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        # A body without Content-Length or chunked framing ends when the connection does.
        # aiohttp ends it at a reset too: the reset is told apart at EOF (see __aiter__).
        headers = response.headers
        self._until_close = "Content-Length" not in headers and "chunked" not in (
            headers.get("Transfer-Encoding", "").lower()
        )
        connection = response.connection
        self._protocol = connection.protocol if connection is not None else None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        content = self._response.content
        with _as_httpx_errors(reading=True):
            while True:
                chunk = await content.readany()
                if not chunk:
                    break
                yield chunk
        if self._until_close and self._protocol is not None:
            lost = self._protocol.exception()
            if isinstance(lost, aiohttp.ClientOSError):  # a reset, not a clean close
                raise httpx.ReadError(f"connection broke before the body ended: {lost}")

    async def aclose(self) -> None:
        # A body read to the end hands its connection back; anything else closes it.
        self._response.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """GETs over one `aiohttp.ClientSession`, made on first use (it needs a running loop)."""

    def __init__(
        self,
        backend: GuardedBackend,
        ssl_context: ssl.SSLContext,
        limits: httpx.Limits,
        timeout: httpx.Timeout,
    ) -> None:
        self.backend = backend
        self.ssl_context = ssl_context
        self.limits = limits
        self.timeout = aiohttp.ClientTimeout(
            total=None,
            connect=timeout.pool,  # waiting for a pooled connection, dialing included
            sock_connect=timeout.connect,
            sock_read=timeout.read,
        )
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def _open_session(self) -> aiohttp.ClientSession:
        tracing = aiohttp.TraceConfig()
        tracing.on_connection_create_end.append(self._counted)
        connector = _IdleCappedConnector(
            max_idle=self.limits.max_keepalive_connections,
            resolver=GuardedResolver(self.backend),
            use_dns_cache=False,  # each new connection is resolved, so each one is checked
            limit=self.limits.max_connections or 0,
            limit_per_host=0,  # the fetcher's per-host semaphores decide that
            keepalive_timeout=self.limits.keepalive_expiry,
            ssl=self.ssl_context,
        )
        session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            trust_env=False,
            timeout=self.timeout,
            trace_configs=[tracing],
            read_bufsize=READ_CHUNK,
            raise_for_status=False,
            max_line_size=MAX_FIELD_BYTES,
            max_field_size=MAX_FIELD_BYTES,
            max_headers=MAX_FIELDS,
        )
        # aiohttp quietly sends a GET again after a disconnect; the fetcher's own retries
        # (counted, backed off, in the manifest) must be the only ones. No public switch.
        if hasattr(session, "_retry_connection"):
            session._retry_connection = False
        return session

    async def _counted(self, *_: Any) -> None:
        self.backend.connections += 1

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        has_body = "transfer-encoding" in request.headers or request.headers.get(
            "content-length", "0"
        ) not in ("", "0")
        if request.method not in ("GET", "HEAD") or has_body:
            # nothing here sends a body; fail loudly rather than send a head without one
            raise httpx.UnsupportedProtocol(f"{request.method} with a body is not supported here")
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
        response = await self.send_direct(request.method, request.url, headers)
        response.request = request
        return response

    async def send_direct(
        self, method: str, url: httpx.URL, headers: Sequence[tuple[str, str]]
    ) -> httpx.Response:
        """The request without an `httpx.Request` built first (its header bookkeeping was
        ~5 % of the main process): `DirectSender` calls this. The response has no
        `.request` unless the caller sets one."""
        if not isinstance(parse_host(url.host), str):
            # aiohttp skips the resolver for literal addresses: check them here instead
            await self.backend.addresses_for(url.host, url.port or default_port(url.scheme))
        if self._closed:
            raise RuntimeError("the transport is closed")
        if self._session is None:
            self._session = self._open_session()
        with _as_httpx_errors(reading=False):
            response = await self._session.request(
                method,
                URL(str(url), encoded=True),  # as httpx serialised it: no second quoting
                headers=headers,
                allow_redirects=False,
                compress=None,
            )
        extensions: dict[str, Any] = {"http_version": b"HTTP/1.1"}
        if response.reason:
            extensions["reason_phrase"] = response.reason.encode("latin-1", "replace")
        return httpx.Response(
            status_code=response.status,
            headers=list(response.raw_headers),
            stream=_Body(response),
            extensions=extensions,
        )

    async def aclose(self) -> None:
        self._closed = True
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()


class _IdleCappedConnector(aiohttp.TCPConnector):
    """aiohttp's connector with at most `max_idle` idle keep-alive connections in all.

    aiohttp's `limit` counts connections in use; idle ones stay open per host until the
    keep-alive timeout, so a run over articles hotlinking from thousands of hosts held a
    socket for each (out of file descriptors at the usual 1,024). Past `max_idle` the
    longest-idle connection is closed, as httpcore's `max_keepalive_connections` does. This
    extends a private method (`_release`, `_conns`: read against aiohttp 3.14); if they
    change shape the cap is skipped, and a test notices.
    """

    def __init__(self, *args: Any, max_idle: int | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._max_idle = max_idle

    def _release(self, key: Any, protocol: Any, *, should_close: bool = False) -> None:
        super()._release(key, protocol, should_close=should_close)
        idle = getattr(self, "_conns", None)
        if self._max_idle is None or not isinstance(idle, dict):
            return
        count = sum(len(queue) for queue in idle.values())
        while count > self._max_idle:
            # each queue is oldest-first: (protocol, time released)
            oldest = min((k for k, q in idle.items() if q), key=lambda k: idle[k][0][1])
            stale, _released = idle[oldest].popleft()
            if not idle[oldest]:
                del idle[oldest]
            stale.close()
            count -= 1


@contextlib.contextmanager
def _as_httpx_errors(*, reading: bool) -> Iterator[None]:
    """aiohttp's exceptions as the httpx ones the fetcher classifies (see `_classify`)."""
    try:
        yield
    except (httpx.HTTPError, asyncio.CancelledError):
        raise
    except aiohttp.ClientConnectorCertificateError as exc:
        raise httpx.ConnectError(f"certificate verification failed: {exc}") from exc
    except aiohttp.ClientSSLError as exc:
        raise httpx.ConnectError(f"SSL handshake failed: {exc}") from exc
    except aiohttp.ClientConnectorError as exc:
        raise httpx.ConnectError(str(exc)) from exc
    except aiohttp.ConnectionTimeoutError as exc:
        raise httpx.ConnectTimeout(str(exc) or "timed out connecting") from exc
    except aiohttp.ServerDisconnectedError as exc:
        if reading:
            raise httpx.RemoteProtocolError(
                "peer closed connection without sending complete message body (incomplete)"
            ) from exc
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.") from exc
    except aiohttp.ClientPayloadError as exc:
        raise httpx.RemoteProtocolError(
            f"peer closed connection without sending complete message body (incomplete): {exc}"
        ) from exc
    except aiohttp.ClientResponseError as exc:  # a malformed status line or header
        raise httpx.RemoteProtocolError(f"malformed response: {exc.message}") from exc
    except aiohttp.InvalidURL as exc:
        raise httpx.InvalidURL(str(exc)) from exc
    except asyncio.TimeoutError as exc:  # sock_read (aiohttp.SocketTimeoutError) and others
        raise httpx.ReadTimeout(str(exc) or "timed out reading") from exc
    except (aiohttp.ClientOSError, aiohttp.ClientConnectionError, ConnectionError) as exc:
        if reading:
            raise httpx.ReadError(str(exc) or type(exc).__name__) from exc
        raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
