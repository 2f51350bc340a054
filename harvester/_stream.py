"""A lean asyncio network stream for httpcore: TCP (and TLS) straight on asyncio's transports.

Input: an address that `harvester.net` already checked. Output: an `httpcore.AsyncNetworkStream`.
Why not httpcore's anyio stream: per request, httpcore's pool asks every idle connection
whether its socket is readable, and anyio answers by rebuilding a dict of socket attributes
(with a getpeername() system call) plus a poll() — measured as a large share of the fetch
stage's CPU at 16–64 connections (bench/fetch_bench.py). Here the event loop already reads the
socket into our buffer, so "readable while idle" is a field lookup, and reads and writes are
plain futures with a `call_later` timeout instead of cancel scopes.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore

_HIGH_WATER = 256 * 1024  # pause reading when this much is buffered and unread


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.eof = False
        self.error: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.paused_reading = False
        self.write_paused = False
        self.drain_waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > _HIGH_WATER and self.transport and not self.paused_reading:
            self.paused_reading = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool | None:
        self.eof = True
        self._wake()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.error = exc
        self._wake()
        if self.drain_waiter is not None and not self.drain_waiter.done():
            self.drain_waiter.set_result(None)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.drain_waiter is not None and not self.drain_waiter.done():
            self.drain_waiter.set_result(None)

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


def _expire(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


class AsyncioStream(httpcore.AsyncNetworkStream):
    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self._transport = transport
        self._protocol = protocol
        self._loop = asyncio.get_running_loop()

    async def _wait(self, future: asyncio.Future[None], timeout: float | None) -> None:
        handle = self._loop.call_later(timeout, _expire, future) if timeout is not None else None
        try:
            await future
        finally:
            if handle is not None:
                handle.cancel()

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        protocol = self._protocol
        if not protocol.buffer and not protocol.eof:
            protocol.waiter = self._loop.create_future()
            try:
                await self._wait(protocol.waiter, timeout)
            except TimeoutError:
                raise httpcore.ReadTimeout("read timed out") from None
            finally:
                protocol.waiter = None
        if protocol.buffer:
            data = bytes(protocol.buffer[:max_bytes])
            del protocol.buffer[:max_bytes]
            if protocol.paused_reading and len(protocol.buffer) <= _HIGH_WATER // 4:
                protocol.paused_reading = False
                self._transport.resume_reading()
            return data
        if protocol.error is not None and not isinstance(protocol.error, ssl.SSLError):
            raise httpcore.ReadError(str(protocol.error)) from protocol.error
        return b""

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        if self._transport.is_closing():
            raise httpcore.WriteError("connection closed")
        self._transport.write(buffer)
        protocol = self._protocol
        if protocol.write_paused:
            protocol.drain_waiter = self._loop.create_future()
            try:
                await self._wait(protocol.drain_waiter, timeout)
            except TimeoutError:
                raise httpcore.WriteTimeout("write timed out") from None
            finally:
                protocol.drain_waiter = None

    async def aclose(self) -> None:
        self._transport.close()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            transport = await asyncio.wait_for(
                self._loop.start_tls(
                    self._transport, self._protocol, ssl_context, server_hostname=server_hostname
                ),
                timeout,
            )
        except asyncio.TimeoutError:
            self._transport.close()
            raise httpcore.ConnectTimeout("TLS handshake timed out") from None
        except (ssl.SSLError, OSError, ConnectionError) as exc:
            self._transport.close()
            raise httpcore.ConnectError(f"TLS handshake failed: {exc}") from exc
        if transport is None:  # pragma: no cover - the peer closed during the handshake
            raise httpcore.ConnectError("connection closed during the TLS handshake")
        # From now on the protocol talks to the TLS transport: flow control (pause/resume
        # reading) must act on the transport the stream resumes, or a large body stalls.
        self._protocol.transport = transport  # type: ignore[assignment]
        return AsyncioStream(transport, self._protocol)  # type: ignore[arg-type]

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            # The loop reads eagerly: anything buffered or an EOF while idle means the
            # server closed (or broke) the connection, which is what httpcore asks.
            protocol = self._protocol
            return bool(protocol.buffer) or protocol.eof
        if info == "ssl_object":
            return self._transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._transport.get_extra_info("sockname")
        if info == "server_addr":
            return self._transport.get_extra_info("peername")
        if info == "socket":
            return self._transport.get_extra_info("socket")
        return None


async def open_tcp(
    address: str,
    port: int,
    timeout: float | None = None,
    local_address: str | None = None,
    socket_options: Iterable[Any] | None = None,
) -> AsyncioStream:
    """Connect to an IP address (never a name: resolution happened in harvester.net)."""
    loop = asyncio.get_running_loop()
    local = (local_address, 0) if local_address else None
    try:
        transport, protocol = await asyncio.wait_for(
            loop.create_connection(_Protocol, host=address, port=port, local_addr=local),
            timeout,
        )
    except asyncio.TimeoutError:
        raise httpcore.ConnectTimeout(f"connect to {address}:{port} timed out") from None
    except OSError as exc:
        raise httpcore.ConnectError(f"cannot connect to {address}:{port}: {exc}") from exc
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for option in socket_options or ():
            sock.setsockopt(*option)
    return AsyncioStream(transport, protocol)
