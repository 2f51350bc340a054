"""A safe HTTP client: untrusted URLs in, an `httpx.AsyncClient` that cannot be aimed inward out.

Input: `Settings` (allow_private_addresses, resolve, ca_bundle, timeouts, limits, user agent,
http_transport) and, for tests, an injected `resolver` and `dialer`. Output:
`build_client(...)`, one `httpx.AsyncClient` whose every TCP connection is opened to an
address `GuardedBackend.addresses_for` returned. That method

1. normalizes the host the way browsers do (`2130706433`, `0x7f.1`, `127.1`, `0177.0.0.1` are
   all 127.0.0.1) and refuses malformed numeric hosts and IPv6 zone ids;
2. maps it through `--resolve` entries (curl's HOST:PORT:ADDR[,ADDR], `*` host wildcard) or
   resolves it with the system resolver;
3. checks every address against explicit blocked-network tables (not `ipaddress.is_global`,
   whose answers change between Python releases), including IPv4 embedded in IPv6
   (IPv4-mapped, IPv4-compatible, NAT64 64:ff9b::/96, 6to4 2002::/16).

Then the address it checked is dialed (pinning: a second DNS answer cannot swap in another
one), by one of two transports under httpx (`Settings.http_transport`):
- `aiohttp` (default, `harvester.aio`): aiohttp's connector asks `GuardedResolver` (which asks
  `addresses_for`) for every new connection, its DNS cache off; literal-address hosts, which
  aiohttp does not resolve, are checked by the transport before the request;
- `httpcore`: `GuardedBackend` is httpcore's network backend and dials the addresses itself
  (also whenever a test injects a `dialer`).
Either way TLS is started with the URL's host name as `server_hostname`, so SNI and
certificate verification use the name, never the pinned IP.

`check_url` applies the same rules to a URL before any request (scheme, userinfo, literal
addresses), so an obviously bad URL costs no connection at all. Refusals are `NetRefused`
exceptions carrying a stable reason code (see `harvester.fetch.REASONS`).
"""

from __future__ import annotations

import asyncio
import importlib.util
import ipaddress
import os
import socket
import ssl
import string
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import certifi
import httpcore
import httpx
from httpcore._backends.anyio import AnyIOBackend

from harvester._stream import open_tcp
from harvester.errors import ConfigError
from harvester.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]
Dialer = Callable[..., Awaitable[httpcore.AsyncNetworkStream]]


def _remember_missing_sniffio() -> None:
    """Make httpcore's per-lock `import sniffio` fail instantly when sniffio is absent.

    httpcore runs `import sniffio` each time it sets up a lock or event (several times per
    request). Without sniffio installed every attempt walks sys.path (~50 stat calls), which
    bench/fetch_bench.py measured as a large share of CPU per image. A None entry in
    sys.modules is Python's own "known missing" marker: the ImportError and httpcore's
    fallback (asyncio) are unchanged, only the search is skipped.
    """
    if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
        sys.modules["sniffio"] = None  # type: ignore[assignment]


_remember_missing_sniffio()

# --------------------------------------------------------------------------------------------
# Address tables. Sources: the IANA IPv4 and IPv6 Special-Purpose Address Registries.
# "PRIVATE" ranges are lifted by --allow-private-addresses; "ALWAYS" ranges never are (no image
# lives on a multicast or unspecified address, and 0.0.0.0 dials the local host on Linux).
# --------------------------------------------------------------------------------------------

_N = ipaddress.ip_network

IPV4_ALWAYS_BLOCKED = tuple(
    _N(n)
    for n in (
        "0.0.0.0/8",  # "this network"; 0.0.0.0 reaches the local host
        "224.0.0.0/4",  # multicast
        "255.255.255.255/32",  # limited broadcast
    )
)
IPV4_PRIVATE = tuple(
    _N(n)
    for n in (
        "10.0.0.0/8",  # RFC 1918
        "100.64.0.0/10",  # CGNAT shared address space
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local, incl. cloud metadata 169.254.169.254
        "172.16.0.0/12",  # RFC 1918
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # TEST-NET-1 (documentation)
        "192.88.99.0/24",  # 6to4 relay anycast (deprecated)
        "192.168.0.0/16",  # RFC 1918
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # TEST-NET-2
        "203.0.113.0/24",  # TEST-NET-3
        "240.0.0.0/4",  # reserved
    )
)
IPV6_ALWAYS_BLOCKED = tuple(
    _N(n)
    for n in (
        "::/128",  # unspecified
        "ff00::/8",  # multicast
    )
)
IPV6_PRIVATE = tuple(
    _N(n)
    for n in (
        "::1/128",  # loopback
        "::/96",  # IPv4-compatible (deprecated)
        "64:ff9b:1::/48",  # local-use NAT64
        "100::/64",  # discard-only
        "2001::/23",  # IETF protocol assignments, incl. Teredo 2001::/32
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation
        "5f00::/16",  # SRv6 SIDs
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
    )
)
IPV6_GLOBAL_UNICAST = _N("2000::/3")  # everything else outside this is reserved by IANA
_MAPPED = _N("::ffff:0:0/96")
_NAT64 = _N("64:ff9b::/96")
_SIX_TO_FOUR = _N("2002::/16")


# The Fetch standard's "bad ports": browsers never fetch from them, because a request there
# can talk to another protocol's server (SMTP, IRC, ...). Neither do we.
BAD_PORTS = frozenset(
    {1, 7, 9, 11, 13, 15, 17, 19, 20, 21, 22, 23, 25, 37, 42, 43, 53, 69, 77, 79, 87, 95}
    | {101, 102, 103, 104, 109, 110, 111, 113, 115, 117, 119, 123, 135, 137, 139, 143, 161}
    | {179, 389, 427, 465, 512, 513, 514, 515, 526, 530, 531, 532, 540, 548, 554, 556, 563}
    | {587, 601, 636, 989, 990, 993, 995, 1719, 1720, 1723, 2049, 3659, 4045, 4190, 5060}
    | {5061, 6000, 6566, 6665, 6666, 6667, 6668, 6669, 6679, 6697, 10080}
)


class NetRefused(Exception):
    """A URL or connection refused before any byte was sent; `reason` is a stable code."""

    reason = "blocked-address"

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class BlockedAddress(NetRefused):
    reason = "blocked-address"


class DNSFailure(NetRefused):
    reason = "dns"


class BadURL(NetRefused):
    reason = "bad-url"


# --------------------------------------------------------------------------------------------
# Host parsing
# --------------------------------------------------------------------------------------------


def _parse_ipv4_number(part: str) -> int | None:
    """One part of a WHATWG IPv4 host: decimal, 0x-hex or 0-octal; None if not a number."""
    if part[:2] in ("0x", "0X"):
        digits = part[2:]
        if digits and not all(c in string.hexdigits for c in digits):
            return None
        return int(digits, 16) if digits else 0
    if len(part) > 1 and part[0] == "0":
        digits, base = part[1:], 8
    else:
        digits, base = part, 10
    if not digits or not all(c in string.digits for c in digits):
        return None
    try:
        return int(digits, base)
    except ValueError:  # "08": not octal
        return None


def _ends_in_a_number(parts: list[str]) -> bool:
    last = parts[-1]
    if last and all(c in string.digits for c in last):
        return True
    return _parse_ipv4_number(last) is not None and last[:2] in ("0x", "0X")


def default_port(scheme: str) -> int:
    """The port an http(s) URL without one uses."""
    return 443 if scheme == "https" else 80


def parse_host(host: str) -> str | IPAddress:
    """A URL host as browsers read it: an IP address, or a lowercase name without the dot.

    Numeric hosts follow the WHATWG URL standard's IPv4 parser, so every spelling of an
    address (`2130706433`, `0x7f.1`, `127.1`, `0177.0.0.1`) becomes the one address the
    system resolver would also have produced. Raises BadURL for a host that looks numeric but
    is not a valid address, and for IPv6 zone ids (they name a local interface).
    """
    host = host.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host:
        raise BadURL("the URL has no host")
    if ":" in host:
        if "%" in host:
            raise BadURL(f"IPv6 zone ids are not allowed: {host!r}")
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            raise BadURL(f"not a valid IPv6 address: {host!r}") from None
    name = host.lower()
    if name.endswith(".") and len(name) > 1:
        name = name[:-1]
    parts = name.split(".")
    if not _ends_in_a_number(parts):
        if any(c in name for c in "%/\\@ \t\r\n"):
            raise BadURL(f"invalid characters in host {host!r}")
        return name
    if len(parts) > 4:
        raise BadURL(f"not a valid IPv4 address: {host!r}")
    numbers = [_parse_ipv4_number(p) if p else None for p in parts]
    if any(n is None for n in numbers):
        raise BadURL(f"not a valid IPv4 address: {host!r}")
    values: list[int] = [n for n in numbers if n is not None]
    if any(n > 255 for n in values[:-1]) or values[-1] >= 256 ** (5 - len(values)):
        raise BadURL(f"IPv4 address out of range: {host!r}")
    address = values[-1]
    for index, value in enumerate(values[:-1]):
        address += value * 256 ** (3 - index)
    return ipaddress.IPv4Address(address)


# --------------------------------------------------------------------------------------------
# The guard
# --------------------------------------------------------------------------------------------


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address carried inside an IPv6 one (mapped, NAT64, 6to4), if any."""
    if address in _MAPPED or address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _SIX_TO_FOUR:
        return ipaddress.IPv4Address((int(address) >> 80) & 0xFFFFFFFF)
    return None


# Said in every refusal that allow_private_addresses would lift (and in no other): people
# learn the way out, and a run with the setting on retries just those at once.
ALLOW_PRIVATE_LIFTS = "allow_private_addresses lifts this"


@dataclass(frozen=True)
class AddressGuard:
    """Decides whether an address may be dialed. `allow_private` lifts the PRIVATE tables."""

    allow_private: bool = False

    def why_blocked(self, address: IPAddress) -> str | None:
        """None if `address` may be dialed, else a short human reason."""
        if isinstance(address, ipaddress.IPv6Address):
            inner = embedded_ipv4(address)
            if inner is not None:
                why = self.why_blocked(inner)
                return f"embeds {inner}: {why}" if why else None
            always, private = IPV6_ALWAYS_BLOCKED, IPV6_PRIVATE
        else:
            always, private = IPV4_ALWAYS_BLOCKED, IPV4_PRIVATE
        for net in always:
            if address in net:
                return f"{address} is in {net}"
        if self.allow_private:
            return None
        for net in private:
            if address in net:
                return f"{address} is in non-public range {net} ({ALLOW_PRIVATE_LIFTS})"
        if address.version == 6 and address not in IPV6_GLOBAL_UNICAST:
            return (
                f"{address} is outside global unicast {IPV6_GLOBAL_UNICAST} ({ALLOW_PRIVATE_LIFTS})"
            )
        return None

    def check(self, address: IPAddress, host: str = "") -> None:
        why = self.why_blocked(address)
        if why is not None:
            label = f"{host} → " if host and host != str(address) else ""
            raise BlockedAddress(f"refused to connect to {label}{why}")


# --------------------------------------------------------------------------------------------
# --resolve
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResolveEntry:
    """One curl-style `HOST:PORT:ADDR[,ADDR...]` mapping; host `*` matches any host."""

    host: str
    port: int
    addresses: tuple[IPAddress, ...]

    def matches(self, host: str, port: int) -> bool:
        return port == self.port and (self.host == "*" or self.host == host)


def parse_resolve(spec: str) -> ResolveEntry:
    """Parse `HOST:PORT:ADDR[,ADDR]` (IPv6 addresses in brackets), as curl's --resolve."""
    host, sep, rest = spec.partition(":")
    port_text, sep2, addr_text = rest.partition(":")
    if not sep or not sep2 or not host or not addr_text:
        raise ValueError(f"--resolve wants HOST:PORT:ADDR, got {spec!r}")
    if host.startswith("+"):  # curl's "+host" (time-limited entry): same mapping here
        host = host[1:]
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"--resolve: bad port in {spec!r}") from None
    if not 0 < port < 65536:
        raise ValueError(f"--resolve: port out of range in {spec!r}")
    addresses: list[IPAddress] = []
    for item in addr_text.split(","):
        item = item.strip()
        if item.startswith("[") and item.endswith("]"):
            item = item[1:-1]
        try:
            addresses.append(ipaddress.ip_address(item))
        except ValueError:
            raise ValueError(f"--resolve: {item!r} is not an IP address in {spec!r}") from None
    name = host if host == "*" else host.lower().rstrip(".")
    return ResolveEntry(host=name, port=port, addresses=tuple(addresses))


# --------------------------------------------------------------------------------------------
# Resolver, dialer, backend
# --------------------------------------------------------------------------------------------


async def system_resolver(host: str, port: int) -> list[str]:
    """Addresses for `host` from the system resolver, in its preferred order."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise DNSFailure(f"cannot resolve {host}: {exc.strerror}") from None
    except UnicodeError:
        raise BadURL(f"cannot encode host name {host!r}") from None
    seen: dict[str, None] = {}
    for _family, _type, _proto, _canon, sockaddr in infos:
        seen.setdefault(str(sockaddr[0]).split("%", 1)[0], None)
    return list(seen)


_anyio_backend = AnyIOBackend()


async def default_dialer(
    address: str,
    port: int,
    timeout: float | None = None,
    local_address: str | None = None,
    socket_options: Iterable[Any] | None = None,
) -> httpcore.AsyncNetworkStream:
    """Open a TCP connection to an already-checked IP address (lean asyncio stream)."""
    return await open_tcp(
        address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
    )


async def anyio_dialer(
    address: str,
    port: int,
    timeout: float | None = None,
    local_address: str | None = None,
    socket_options: Iterable[Any] | None = None,
) -> httpcore.AsyncNetworkStream:
    """The same through httpcore's own anyio stream (slower per request; kept to compare)."""
    return await _anyio_backend.connect_tcp(
        address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
    )


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that resolves, checks and pins every connection.

    `connections` counts connections opened and `refusals` refused ones, so tests can prove
    every connection went through here; `dialed` keeps the most recent (ip, port)s handed to
    a dialer (over aiohttp: every checked address it may dial, tried or not).
    """

    def __init__(
        self,
        guard: AddressGuard,
        resolve: Iterable[ResolveEntry] = (),
        resolver: Resolver | None = None,
        dialer: Dialer | None = None,
    ) -> None:
        self.guard = guard
        self.resolve_entries = tuple(resolve)
        self.resolver: Resolver = resolver or system_resolver
        self.dialer: Dialer = dialer or default_dialer
        self.connections = 0
        self.refusals = 0
        self.dialed: deque[tuple[str, int]] = deque(maxlen=1000)  # the most recent dials

    async def addresses_for(self, host: str, port: int) -> list[IPAddress]:
        """Checked addresses for host:port (raises NetRefused when none may be dialed)."""
        parsed = parse_host(host)
        if isinstance(parsed, str):
            exact = [e for e in self.resolve_entries if e.host == parsed and e.port == port]
            wild = [e for e in self.resolve_entries if e.host == "*" and e.port == port]
            entries = exact or wild
            if entries:
                candidates = list(entries[0].addresses)
            else:
                answers = await self.resolver(parsed, port)
                if not answers:
                    raise DNSFailure(f"{parsed} has no addresses")
                candidates = []
                for answer in answers:
                    try:
                        candidates.append(ipaddress.ip_address(answer))
                    except ValueError:
                        raise DNSFailure(f"resolver returned a non-address {answer!r}") from None
        else:
            candidates = [parsed]
        allowed: list[IPAddress] = []
        reasons: list[str] = []
        for candidate in candidates:
            why = self.guard.why_blocked(candidate)
            if why is None:
                allowed.append(candidate)
            else:
                reasons.append(why)
        # All-or-nothing: a name that also resolves inward is suspicious (rebinding tricks).
        if reasons:
            self.refusals += 1
            raise BlockedAddress(f"refused to connect to {host}: {'; '.join(reasons)}")
        return allowed

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self.addresses_for(host, port)
        last_error: Exception | None = None
        for address in addresses:
            try:
                stream = await self.dialer(
                    str(address),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last_error = exc
                continue
            self.connections += 1
            self.dialed.append((str(address), port))
            return stream
        assert last_error is not None
        raise last_error

    async def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        raise BlockedAddress("unix sockets are never used for fetching")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


# --------------------------------------------------------------------------------------------
# URLs and the client
# --------------------------------------------------------------------------------------------


class LeanConnectionPool(httpcore.AsyncConnectionPool):
    """httpcore's pool with a linear-time bookkeeping step.

    httpcore 1.0's `_assign_requests_to_connections` (run at every request start and end)
    counts the connections once per idle connection, O(n²): at 64 connections that was most
    of the fetch stage's CPU (bench/fetch_bench.py). This is the same algorithm with the idle
    count kept as it goes (and it counts *idle* connections, as upstream intends).
    """

    SWEEP_SECONDS = 0.5
    _next_sweep = 0.0

    def _assign_requests_to_connections(self) -> list[Any]:
        closing: list[Any] = []
        # Expiry (keep-alive timeout, server hang-up) is swept at most every SWEEP_SECONDS,
        # not at every request start and end (2 × connections checks a request: ~5 % of
        # the main process at 32 connections); a connection is also checked just before it
        # is handed out, so no request ever gets an expired one.
        now = time.monotonic()
        sweep = now >= self._next_sweep
        if sweep:
            self._next_sweep = now + self.SWEEP_SECONDS
        idle = sum(1 for connection in self._connections if connection.is_idle())
        for connection in list(self._connections):
            if connection.is_closed():
                self._connections.remove(connection)
                idle -= connection.is_idle()
            elif sweep and connection.has_expired():
                self._connections.remove(connection)
                closing.append(connection)
                idle -= connection.is_idle()
            elif connection.is_idle() and idle > self._max_keepalive_connections:
                self._connections.remove(connection)
                closing.append(connection)
                idle -= 1

        for pool_request in [r for r in self._requests if r.is_queued()]:
            origin = pool_request.request.url.origin
            available = None
            for c in list(self._connections):
                if not (c.can_handle_request(origin) and c.is_available()):
                    continue
                if c.is_idle() and c.has_expired():
                    self._connections.remove(c)
                    closing.append(c)
                    continue
                available = c
                break
            if available is not None:
                pool_request.assign_to_connection(available)
            elif len(self._connections) < self._max_connections:
                connection = self.create_connection(origin)
                self._connections.append(connection)
                pool_request.assign_to_connection(connection)
            else:
                idle_connection = next((c for c in self._connections if c.is_idle()), None)
                if idle_connection is not None:
                    self._connections.remove(idle_connection)
                    closing.append(idle_connection)
                    connection = self.create_connection(origin)
                    self._connections.append(connection)
                    pool_request.assign_to_connection(connection)
        return closing


def check_url(url: str | httpx.URL, guard: AddressGuard) -> httpx.URL:
    """Parse an untrusted URL and refuse what may not be fetched, before any connection.

    Refuses (NetRefused with reason): other schemes (`unsupported-scheme`), userinfo,
    missing or malformed hosts (`bad-url`), and literal addresses the guard blocks, in any
    spelling (`blocked-address`). Names are checked later, at connect time, after DNS.
    """
    text = str(url)
    try:
        split = urlsplit(text)
        port = split.port
    except ValueError as exc:
        raise BadURL(f"not a valid URL: {exc}") from None
    scheme = split.scheme.lower()
    if scheme and scheme not in ("http", "https"):
        raise NetRefused(
            f"only http and https are fetched, not {scheme}", reason="unsupported-scheme"
        )
    if not scheme or not split.netloc:
        raise BadURL(f"not an absolute URL: {text[:200]!r}")
    if "@" in split.netloc:
        raise BadURL("URLs with a user name or password are not fetched")
    if split.hostname is None:
        raise BadURL("the URL has no host")
    if port in BAD_PORTS:
        raise NetRefused(f"port {port} is never fetched (Fetch standard bad port)", "blocked-port")
    # Our own reading of the host decides, not httpx's: every spelling of an address is
    # turned into its canonical form (and checked) before httpx or a resolver sees it.
    host = parse_host(unquote(split.hostname))
    if not isinstance(host, str):
        guard.check(host)
        literal = f"[{host}]" if host.version == 6 else str(host)
        netloc = literal if port is None else f"{literal}:{port}"
        text = urlunsplit((scheme, netloc, split.path, split.query, split.fragment))
    try:
        parsed = httpx.URL(text)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise BadURL(f"not a valid URL: {exc}") from None
    if parsed.userinfo:
        raise BadURL("URLs with a user name or password are not fetched")
    return parsed


def build_ssl_context(
    settings: Settings, environ: Mapping[str, str] | None = None
) -> ssl.SSLContext:
    """Certificate verification with certifi's roots plus --ca-bundle and $SSL_CERT_FILE."""
    env = os.environ if environ is None else environ
    context = ssl.create_default_context(cafile=certifi.where())
    extra = [settings.ca_bundle] if settings.ca_bundle else []
    if env.get("SSL_CERT_FILE"):
        extra.append(env["SSL_CERT_FILE"])
    for bundle in extra:
        context.load_verify_locations(cafile=os.fspath(bundle))
    return context


def build_client(
    settings: Settings,
    *,
    resolver: Resolver | None = None,
    dialer: Dialer | None = None,
    environ: Mapping[str, str] | None = None,
) -> httpx.AsyncClient:
    """One AsyncClient for a whole run; every connection goes through `GuardedBackend`.

    Redirects are not followed (the fetcher follows them by hand, checking each hop);
    environment proxies and .netrc are ignored (`trust_env=False`); cookies are neither
    stored nor sent; `Accept-Encoding: identity` keeps compressed bombs off the wire.
    """
    guard = AddressGuard(allow_private=settings.allow_private_addresses)
    try:
        entries = [parse_resolve(spec) for spec in settings.resolve]
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    backend = GuardedBackend(guard, entries, resolver=resolver, dialer=dialer)
    try:
        ssl_context = build_ssl_context(settings, environ)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load the CA bundle: {exc}") from None
    # The fetcher's semaphores bound the requests in flight to `concurrency`; the pool may
    # keep twice that many connections open so idle keep-alive connections to one host are
    # not closed just because another host needs one.
    limits = httpx.Limits(
        max_connections=2 * settings.concurrency,
        max_keepalive_connections=2 * settings.concurrency,
        keepalive_expiry=30.0,
    )
    timeout = httpx.Timeout(
        connect=settings.connect_timeout,
        read=settings.read_timeout,
        write=settings.read_timeout,
        pool=settings.total_timeout,
    )
    transport: httpx.AsyncBaseTransport
    if settings.http_transport == "aiohttp" and dialer is None:
        from harvester.aio import AiohttpTransport

        transport = AiohttpTransport(backend, ssl_context, limits, timeout)
    else:  # httpcore; also whenever a test injects a dialer (aiohttp dials by itself)
        transport = _httpcore_transport(backend, ssl_context, limits)
    client = httpx.AsyncClient(
        transport=transport,
        trust_env=False,
        follow_redirects=False,
        cookies=httpx.Cookies(CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))),
        event_hooks={"response": [_set_location_aside]},
        timeout=timeout,
        headers={
            "User-Agent": settings.user_agent,
            "Accept": "image/avif,image/webp,image/apng,image/*;q=0.9,*/*;q=0.5",
            "Accept-Encoding": "identity",
        },
    )
    client._harvester_backend = backend  # type: ignore[attr-defined]
    client._harvester_sender = DirectSender(transport, client)  # type: ignore[attr-defined]
    return client


def _httpcore_transport(
    backend: GuardedBackend, ssl_context: ssl.SSLContext, limits: httpx.Limits
) -> httpx.AsyncHTTPTransport:
    """httpx's own transport, its connection pool swapped for one dialing through `backend`."""
    transport = httpx.AsyncHTTPTransport(
        verify=ssl_context, limits=limits, trust_env=False, http1=True, http2=False
    )
    # httpx has no public hook for a network backend, so the pool it built is swapped for
    # one with ours. Fail closed if httpx's internals ever change shape: an unguarded client
    # must never be returned. (tests/test_net.py also proves every connection is guarded.)
    if not isinstance(getattr(transport, "_pool", None), httpcore.AsyncConnectionPool):
        raise RuntimeError("httpx internals changed: cannot install the address guard")
    # The lean pool replaces a private method of httpcore 1.0.x (read and tested against
    # 1.0.9); any other httpcore gets its stock pool (slower, never wrong).
    pool_class = (
        LeanConnectionPool
        if httpcore.__version__.startswith("1.0.")
        and hasattr(httpcore.AsyncConnectionPool, "_assign_requests_to_connections")
        else httpcore.AsyncConnectionPool
    )
    transport._pool = pool_class(
        ssl_context=ssl_context,
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        http1=True,
        http2=False,
        retries=0,
        network_backend=backend,
    )
    return transport


class DirectSender:
    """GETs through a `build_client` client's transport, without `AsyncClient.send`.

    Per request, `AsyncClient` runs an auth flow, redirect bookkeeping, cookie extraction
    (through `http.cookiejar`, for a jar that never keeps anything) and event hooks: ~8 % of
    the main process's CPU in a 2,000-image run, for nothing a fetcher that follows redirects
    itself uses. This sends the same request — the client's headers (as built) under the
    caller's, the client's timeouts, no cookies — to the same guarded transport. The client's
    one response hook (moving Location aside, so `AsyncClient.send` never parses it) is not
    needed here: nothing on this path reads Location but the fetcher, which looks under both
    names. Errors are the transport's httpx exceptions, which the fetcher classifies as it
    does the client's. The aiohttp transport takes the URL and header fields directly
    (`send_direct`), so no `httpx.Request` is built for it; the response's `.request` is
    then unset (the fetcher never reads it).
    """

    def __init__(self, transport: httpx.AsyncBaseTransport, client: httpx.AsyncClient) -> None:
        self.transport = transport
        self.headers = httpx.Headers(client.headers)
        self.extensions = {"timeout": client.timeout.as_dict()}
        # the aiohttp transport takes the URL and fields as they are (AiohttpTransport.send_direct)
        self._send_direct = getattr(transport, "send_direct", None)
        self._fields = {
            k.decode("latin-1").lower(): (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in self.headers.raw  # raw: the names as spelled (`User-Agent`)
        }

    async def get(self, url: str | httpx.URL, headers: Mapping[str, str]) -> httpx.Response:
        """The response with its body unread: read it, then `aclose()` it."""
        if self._send_direct is not None:
            fields = dict(self._fields)
            for key, value in headers.items():
                fields[key.lower()] = (key, value)
            return await self._send_direct("GET", httpx.URL(url), list(fields.values()))
        merged = self.headers.copy()
        merged.update(headers)
        request = httpx.Request("GET", url, headers=merged, extensions=dict(self.extensions))
        response = await self.transport.handle_async_request(request)
        response.request = request
        return response


# The fetcher follows redirects itself. httpx would still parse every Location header (to
# build `next_request`) and fail on spellings our own URL check must judge (`0177.0.0.1`), so
# a response hook moves the header aside before httpx looks at it.
LOCATION_HEADER = "x-harvester-location"


async def _set_location_aside(response: httpx.Response) -> None:
    if "location" in response.headers:
        response.headers[LOCATION_HEADER] = response.headers["location"]
        del response.headers["location"]


def sender_of(client: httpx.AsyncClient) -> DirectSender | None:
    """The direct sender of a client from `build_client` (None for other clients)."""
    return getattr(client, "_harvester_sender", None)


def backend_of(client: httpx.AsyncClient) -> GuardedBackend | None:
    """The guard backend a client from `build_client` uses (None for other clients)."""
    return getattr(client, "_harvester_backend", None)


def guard_of(client: httpx.AsyncClient, settings: Settings) -> AddressGuard:
    backend = backend_of(client)
    if backend is not None:
        return backend.guard
    return AddressGuard(allow_private=settings.allow_private_addresses)
