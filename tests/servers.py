"""Real HTTP and HTTPS test servers on 127.0.0.1, scriptable per path, recording every request.

Input: routes (`server.route(path, reply)`), where a reply is a `Reply`, a list of `Reply`s
(served in order, the last one repeating), or a function `RecordedRequest -> Reply`. Output:
a server on an ephemeral 127.0.0.1 port (in a background thread with its own event loop) that
records each accepted connection (`.connections`) and each request (`.requests`, with headers
such as Referer) so tests can assert "no byte reached the server" and "Referer was X".

HTTPS servers present a `trustme` certificate for real-looking names (`NAMES`); clients reach
them through curl-style `--resolve` mappings (`server.resolve_entries()`), so TLS verifies a
host name, never an IP. `settings_for(*servers)` builds `Settings` that trust the test CA and
map every name to 127.0.0.1 (with `allow_private_addresses=True`, since it is loopback).

Replies can misbehave on purpose: a slow drip, a stall after the headers, a body shorter than
its Content-Length, chunked bodies without a length, a fixed latency before answering.

Run as a script to serve a folder of files for benchmarks in a separate process:
    python -m tests.servers --dir DIR --latency-min 0.02 --latency-max 0.05
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import io
import random
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Names the test certificate covers; all map to 127.0.0.1 through --resolve entries.
NAMES = ("img.example.com", "cdn.example.net", "static.example.org", "pics.example.com")

REASON_PHRASES = {
    200: "OK",
    206: "Partial Content",
    301: "Moved Permanently",
    302: "Found",
    303: "See Other",
    304: "Not Modified",
    307: "Temporary Redirect",
    308: "Permanent Redirect",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    410: "Gone",
    425: "Too Early",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it. Header names are lowercase."""

    method: str
    path: str  # path and query, as sent
    headers: dict[str, str]
    connection: int  # index into server.connections
    at: float = 0.0  # time.monotonic() when the request head arrived

    @property
    def referer(self) -> str | None:
        return self.headers.get("referer")


@dataclass
class Reply:
    """What to answer. Defaults: 200, the body with an exact Content-Length, keep-alive."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str | None = "application/octet-stream"
    chunked: bool = False  # Transfer-Encoding: chunked, no Content-Length
    content_length: int | None = None  # announce this length instead of len(body)
    drip_interval: float | None = None  # send the body one byte at a time, this far apart
    stall: float | None = None  # after the headers, wait this long before the body
    stall_before_headers: float | None = None  # wait this long before answering at all
    close: bool = False  # close the connection after this reply
    hang_up: bool = False  # close the connection without answering at all (a reset)
    quiet_close: bool = False  # close after this reply without saying so (an idle time-out)
    no_length: bool = False  # neither Content-Length nor chunked: the body ends at the close
    reset_after: int | None = None  # send this many body bytes, then reset the connection


def image_reply(data: bytes, content_type: str = "image/jpeg", **kw: Any) -> Reply:
    return Reply(body=data, content_type=content_type, **kw)


def redirect_reply(location: str, status: int = 302) -> Reply:
    return Reply(status=status, headers={"Location": location}, content_type=None)


def status_reply(status: int, headers: dict[str, str] | None = None, body: bytes = b"") -> Reply:
    return Reply(status=status, headers=dict(headers or {}), body=body, content_type="text/plain")


def gzip_bomb(uncompressed_size: int) -> bytes:
    """A gzip stream of zeros that inflates to `uncompressed_size` bytes (~1000:1)."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=9) as fh:
        block = b"\0" * (1 << 20)
        remaining = uncompressed_size
        while remaining > 0:
            fh.write(block[: min(remaining, len(block))])
            remaining -= len(block)
    return buffer.getvalue()


Handler = Reply | list[Reply] | Callable[[RecordedRequest], Reply]


class TestServer:
    """A real HTTP/1.1 server on 127.0.0.1 in a background thread. See the module docstring."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        latency: tuple[float, float] = (0.0, 0.0),
        files: Path | None = None,
        record: bool = True,
    ) -> None:
        self.ssl_context = ssl_context
        self.latency = latency
        self.files = files
        self.record = record
        self.port = 0
        self.host = "127.0.0.1"
        self.requests: list[RecordedRequest] = []
        self.connections: list[tuple[str, int]] = []  # client (ip, port) of each connection
        self.open_connections = 0  # accepted and not yet closed
        self._routes: dict[str, Handler] = {}
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._file_cache: dict[str, Reply] = {}
        self._active: dict[str, int] = {}
        self.max_active: dict[str, int] = {}  # Host header → most requests served at once
        self.max_active_total = 0

    # -- public helpers ------------------------------------------------------------------

    @property
    def scheme(self) -> str:
        return "https" if self.ssl_context else "http"

    def url(self, path: str, host: str = NAMES[0]) -> str:
        """An absolute URL for `path` on this server under a test name (or '127.0.0.1')."""
        if not path.startswith("/"):
            path = "/" + path
        return f"{self.scheme}://{host}:{self.port}{path}"

    def resolve_entries(self, names: Iterable[str] = NAMES) -> tuple[str, ...]:
        return tuple(f"{name}:{self.port}:127.0.0.1" for name in names)

    def route(self, path: str, handler: Handler) -> None:
        """Answer `path` (exact match, query included if given) with `handler`."""
        with self._lock:
            self._routes[path] = handler
            self._counts[path] = 0

    def requests_for(self, path: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> TestServer:
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(
                        self._handle, "127.0.0.1", 0, ssl=self.ssl_context, backlog=1024
                    )
                )
                self.port = self._server.sockets[0].getsockname()[1]
            except BaseException as exc:  # pragma: no cover - reported to the caller
                errors.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name="test-server", daemon=True)
        self._thread.start()
        ready.wait(10)
        if errors:
            raise errors[0]
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is None or self._thread is None:
            return

        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(5)
        self._loop = None

    def __enter__(self) -> TestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- serving -------------------------------------------------------------------------

    def _pick(self, request: RecordedRequest) -> Reply:
        with self._lock:
            handler = self._routes.get(request.path)
            if handler is None:
                handler = self._routes.get(request.path.split("?", 1)[0])
            index = self._counts.get(request.path, 0)
            self._counts[request.path] = index + 1
        if handler is None:
            if self.files is not None:
                return self._file_reply(request.path)
            return status_reply(404, body=b"not found")
        if isinstance(handler, Reply):
            return handler
        if isinstance(handler, list):
            return handler[min(index, len(handler) - 1)]
        return handler(request)

    def _file_reply(self, path: str) -> Reply:
        assert self.files is not None
        name = path.split("?", 1)[0].lstrip("/")
        cached = self._file_cache.get(name)
        if cached is None:
            target = (self.files / name).resolve()
            if self.files.resolve() not in target.parents or not target.is_file():
                return status_reply(404, body=b"not found")
            cached = self._file_cache[name] = image_reply(target.read_bytes())
        return cached

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        peer = writer.get_extra_info("peername")
        with self._lock:
            self.connections.append((peer[0], peer[1]))
            connection = len(self.connections) - 1
            self.open_connections += 1
        try:
            while True:
                request = await self._read_request(reader, connection)
                if request is None:
                    break
                if self.record:
                    with self._lock:
                        self.requests.append(request)
                host = request.headers.get("host", "")
                self._enter(host)
                try:
                    low, high = self.latency
                    if high > 0:
                        await asyncio.sleep(random.uniform(low, high))
                    reply = self._pick(request)
                    keep_open = await self._send(writer, request, reply)
                finally:
                    self._leave(host)
                if not keep_open:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, OSError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()
            with self._lock:
                self.open_connections -= 1
            self._tasks.discard(task)

    def _enter(self, host: str) -> None:
        with self._lock:
            self._active[host] = self._active.get(host, 0) + 1
            self.max_active[host] = max(self.max_active.get(host, 0), self._active[host])
            self.max_active_total = max(self.max_active_total, sum(self._active.values()))

    def _leave(self, host: str) -> None:
        with self._lock:
            self._active[host] -= 1

    async def _read_request(
        self, reader: asyncio.StreamReader, connection: int
    ) -> RecordedRequest | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return None
        lines = head.decode("latin-1").split("\r\n")
        method, target, _version = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0") or 0)
        if length:
            await reader.readexactly(length)
        return RecordedRequest(
            method=method,
            path=target,
            headers=headers,
            connection=connection,
            at=time.monotonic(),
        )

    async def _send(
        self, writer: asyncio.StreamWriter, request: RecordedRequest, reply: Reply
    ) -> bool:
        if reply.hang_up:
            return False
        if reply.stall_before_headers:
            await asyncio.sleep(reply.stall_before_headers)
        phrase = REASON_PHRASES.get(reply.status, "Status")
        lines = [f"HTTP/1.1 {reply.status} {phrase}"]
        headers = dict(reply.headers)
        if reply.content_type and "Content-Type" not in headers:
            headers["Content-Type"] = reply.content_type
        no_body = reply.status in (204, 304) or request.method == "HEAD"
        if reply.chunked:
            headers["Transfer-Encoding"] = "chunked"
        elif not no_body and not reply.no_length:
            length = len(reply.body) if reply.content_length is None else reply.content_length
            headers["Content-Length"] = str(length)
        if reply.close or reply.no_length:
            headers["Connection"] = "close"
        lines += [f"{name}: {value}" for name, value in headers.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        await writer.drain()
        if no_body:
            return not reply.close
        if reply.stall:
            await asyncio.sleep(reply.stall)
        body = reply.body if reply.reset_after is None else reply.body[: reply.reset_after]
        if reply.chunked:
            step = 64 * 1024
            for offset in range(0, len(body), step):
                piece = body[offset : offset + step]
                writer.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                await writer.drain()
            writer.write(b"0\r\n\r\n")
        elif reply.drip_interval:
            for offset in range(len(body)):
                writer.write(body[offset : offset + 1])
                await writer.drain()
                await asyncio.sleep(reply.drip_interval)
        else:
            writer.write(body)
        await writer.drain()
        if reply.reset_after is not None:
            await asyncio.sleep(0.05)  # let the bytes go out first
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False  # closed with linger 0: an RST, not a FIN
        if reply.content_length is not None and reply.content_length > len(body):
            return False  # truncated on purpose: hang up without the rest
        return not (reply.close or reply.quiet_close or reply.no_length)


# --------------------------------------------------------------------------------------------
# TLS and settings helpers
# --------------------------------------------------------------------------------------------


def make_ca() -> Any:
    import trustme

    return trustme.CA()


def server_ssl_context(ca: Any, names: Iterable[str] = NAMES) -> ssl.SSLContext:
    """A server-side SSL context with a certificate from `ca` covering `names`."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    return context


def settings_for(*servers: TestServer, ca_bundle: Path | None = None, **overrides: Any) -> Any:
    """Settings that reach every test name on each server through --resolve, fast to fail.

    Loopback is allowed (`allow_private_addresses=True`) because that is where test servers
    live; SSRF tests build their own settings without it.
    """
    from harvester.settings import Settings

    resolve: list[str] = []
    for server in servers:
        resolve.extend(server.resolve_entries())
    values: dict[str, Any] = dict(
        resolve=tuple(resolve),
        allow_private_addresses=True,
        ca_bundle=ca_bundle,
        connect_timeout=2.0,
        read_timeout=2.0,
        total_timeout=5.0,
        backoff_base=0.01,
        backoff_max=0.05,
        retries=2,
    )
    values.update(overrides)
    return Settings(**values)


def main(argv: list[str] | None = None) -> None:
    """Serve a folder over HTTP with a per-request latency (for bench/ in its own process)."""
    import argparse
    import time

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--latency-min", type=float, default=0.0)
    parser.add_argument("--latency-max", type=float, default=0.0)
    parser.add_argument("--port-file", type=Path, help="write the chosen port here")
    args = parser.parse_args(argv)
    server = TestServer(
        files=args.dir, latency=(args.latency_min, args.latency_max), record=False
    ).start()
    if args.port_file:
        args.port_file.write_text(str(server.port))
    print(f"serving {args.dir} on http://127.0.0.1:{server.port}/", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()


# --------------------------------------------------------------------------------------------
# Real encoded images for tests (made with Pillow, never checked in)
# --------------------------------------------------------------------------------------------


def encoded_image(
    fmt: str = "JPEG", size: tuple[int, int] = (64, 48), seed: int = 0, **save: Any
) -> bytes:
    """A real image file in `fmt` (Pillow's format name); different `seed`, different bytes."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    mode = "RGBA" if fmt in ("PNG", "WEBP", "ICO") else "RGB"
    image = Image.new(mode, size, tuple(rng.randrange(256) for _ in mode))
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x0, y0 = rng.randrange(size[0]), rng.randrange(size[1])
        box = (x0, y0, x0 + rng.randrange(1, size[0]), y0 + rng.randrange(1, size[1]))
        draw.rectangle(box, fill=tuple(rng.randrange(256) for _ in mode))
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save)
    return buffer.getvalue()


def run_fetch(
    requests: Iterable[Any], settings: Any, store_root: Path, **client_kw: Any
) -> tuple[list[Any], Any]:
    """Fetch `requests` with a fresh guarded client; (results in request order, backend).

    `client_kw` goes to `harvester.net.build_client` (e.g. resolver=, dialer=). The backend
    returned is the client's `GuardedBackend`, so tests can count guarded connections.
    """
    from harvester.fetch import fetch_all
    from harvester.net import backend_of, build_client
    from mirror.store import Store

    requests = list(requests)

    async def go() -> tuple[list[Any], Any]:
        async with build_client(settings, **client_kw) as client:
            results = [
                r
                async for r in fetch_all(
                    requests, store=Store(store_root), settings=settings, client=client
                )
            ]
            return results, backend_of(client)

    results, backend = asyncio.run(go())
    by_url = {r.url: r for r in results}
    assert len(by_url) == len(results) == len(requests), "one result per request"
    return [by_url[r.url] for r in requests], backend


class LoopbackOnlyNetwork:
    """An injected resolver and dialer for SSRF tests; it can only ever reach 127.0.0.0/8, ::1.

    `names` maps host names to the addresses the resolver answers (any other name fails like
    NXDOMAIN). `nat` translates stand-in public addresses (e.g. "93.184.215.14") to a
    loopback address, so a test server can play a public host. The dialer records every
    request (`dials`) and refuses, without any traffic, to dial anything that is not loopback
    after translation (`refused`). `client_ports` are the local ports of dialed connections,
    to match against a TestServer's `connections`.
    """

    def __init__(
        self, names: dict[str, list[str]] | None = None, nat: dict[str, str] | None = None
    ) -> None:
        self.names = dict(names or {})
        self.nat = dict(nat or {})
        self.lookups: list[str] = []
        self.dials: list[tuple[str, int]] = []
        self.refused: list[tuple[str, int]] = []
        self.client_ports: list[int] = []

    async def resolve(self, host: str, port: int) -> list[str]:
        from harvester.net import DNSFailure

        self.lookups.append(host)
        if host not in self.names:
            raise DNSFailure(f"test resolver: no such name {host}")
        answer = self.names[host]
        return list(answer)

    async def dial(
        self,
        address: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> Any:
        import ipaddress

        import httpcore

        from harvester.net import default_dialer

        self.dials.append((address, port))
        target = self.nat.get(address, address)
        if not ipaddress.ip_address(target).is_loopback:
            self.refused.append((address, port))
            raise httpcore.ConnectError(f"test dialer refuses to dial {address}")
        stream = await default_dialer(target, port, timeout=timeout)
        self.client_ports.append(stream.get_extra_info("client_addr")[1])
        return stream
