"""The fetch stage: `FetchRequest`s in, one `Fetched` or `FetchFailure` per request out.

Input: unique URLs with their referrer policy, page URL and validators from a previous run
(`FetchRequest`), a `Store`, `Settings`, and optionally a client from `harvester.net`.
Output: results as they complete (`fetch_all`, async) or as a list in request order
(`fetch_batch`, sync, no hidden state: a cluster engine can map it over batches).

How one URL is fetched:
- the URL is checked first (scheme, userinfo, literal addresses) and every connection goes
  through the address guard of `harvester.net` (every redirect hop too);
- a global limit (`concurrency`) and a per-host limit (`per_host`) bound the open requests;
  the input is consumed lazily with a bounded number of tasks in flight;
- redirects are followed by hand (≤ `max_redirects`), the Referer recomputed for each hop
  from the page URL and policy (`harvester.referrer.apply_override`, which applies the
  per-host override table without ever sending what the policy forbade);
- retries (tenacity, exponential backoff with jitter) on 408, 425, 429, 500, 502, 503, 504,
  connect/read timeouts, connection errors and truncated bodies; `Retry-After` is a minimum
  wait; one longer than `retry_after_cap` ends the URL with `retry_after` set (defer it);
- connect and read timeouts come from the client; `total_timeout` bounds each download
  (time spent holding a connection slot, redirects included), so a drip cannot hold a slot;
  running out of it is final (`timeout`), not retried: a dripping server drips again;
- the body is counted as read against `max_bytes` (`Accept-Encoding: identity` is sent; a
  gzip/deflate body is inflated with the cap applied to the *inflated* size, other encodings
  are refused), hashed and written to the store's temp folder from worker threads, then
  sniffed (magic bytes) and committed under its real format's extension;
- with `etag`/`last_modified` and the previous `known_sha256`/`known_path` (still stored),
  the request is conditional and a 304 becomes `Fetched(not_modified=True)`.

`Fetched.referer` / `FetchFailure.referer` is the Referer sent on the last request made (the
one that returned the image, after redirects). The caller sweeps the store's temp folder at
start (`Store.sweep_temp`, under the run lock); this module never does.

Reason codes (the `reason` of a FetchFailure; stable, recorded in the manifest):

| code                 | meaning                                                        |
|----------------------|----------------------------------------------------------------|
| `http-<status>`      | the server answered with that status (final, or retries spent) |
| `timeout`            | connect/read timeout, or the total deadline passed             |
| `too-large`          | body (inflated, if compressed) over `max_bytes`                |
| `not-an-image`       | the bytes are no supported image format (HTML, text, ...)      |
| `svg-refused`        | an SVG, refused unless `allow_svg`                             |
| `empty`              | a success status with no body                                  |
| `truncated`          | fewer bytes than Content-Length / the chunked body broke off   |
| `blocked-address`    | the host is or resolves to a refused address (SSRF guard)      |
| `blocked-port`       | a port browsers never fetch from (SMTP, IRC, ...)              |
| `too-many-redirects` | more than `max_redirects` hops                                 |
| `redirect-loop`      | a redirect back to a URL already visited                       |
| `bad-redirect`       | a redirect without a usable Location                           |
| `tls`                | TLS handshake or certificate verification failed              |
| `dns`                | the host name does not resolve                                 |
| `connect`            | connection refused/reset, or the connection broke              |
| `protocol-error`     | the server spoke malformed HTTP                                |
| `bad-url`            | malformed URL, userinfo in the URL, malformed numeric host     |
| `unsupported-scheme` | not http or https                                              |
| `encoding-refused`   | a Content-Encoding other than identity, gzip or deflate        |
| `store-error`        | the image could not be written to the store (disk full, ...)   |
| `internal-error`     | a bug; the message has the exception                           |
| `not-started`        | the run stopped starting downloads (deadline, budget, signal)  |
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import hashlib
import random
import ssl
import time
import zlib
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlsplit

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
)

from harvester._timeouts import time_limit
from harvester.net import (
    LOCATION_HEADER,
    AddressGuard,
    NetRefused,
    build_client,
    check_url,
    default_port,
    guard_of,
    sender_of,
)
from harvester.records import Fetched, FetchFailure, FetchRequest
from harvester.settings import Settings
from mirror.store import Store

REASONS: dict[str, str] = {
    "http-<status>": "the server answered with that status",
    "timeout": "connect/read timeout, or the total deadline passed",
    "too-large": "body over max_bytes",
    "not-an-image": "the bytes are no supported image format",
    "svg-refused": "an SVG, refused unless allow_svg",
    "empty": "a success status with no body",
    "truncated": "fewer bytes than announced",
    "blocked-address": "the host is or resolves to a refused address",
    "blocked-port": "a port browsers never fetch from",
    "too-many-redirects": "more than max_redirects hops",
    "redirect-loop": "a redirect back to a URL already visited",
    "bad-redirect": "a redirect without a usable Location",
    "tls": "TLS handshake or certificate verification failed",
    "dns": "the host name does not resolve",
    "connect": "connection refused/reset, or the connection broke",
    "protocol-error": "the server spoke malformed HTTP",
    "bad-url": "malformed URL or userinfo in the URL",
    "unsupported-scheme": "not http or https",
    "encoding-refused": "a Content-Encoding other than identity, gzip or deflate",
    "store-error": "the image could not be written to the store",
    "not-started": "the run stopped starting downloads (deadline, store budget or a signal)",
    "internal-error": "a bug; the message has the exception",
}

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
OK_STATUSES = frozenset({200, 203})

# Bodies are buffered in memory up to this size and then written out from a worker thread;
# most images fit, so they cost one thread hop (write + fsync + rename) each.
FLUSH_BYTES = 1 << 20
SNIFF_BYTES = 512  # enough to tell every supported format (and SVG/HTML) apart
DRAIN_BYTES = 64 * 1024  # read at most this much of an error/redirect body (keeps keep-alive)


# --------------------------------------------------------------------------------------------
# Content sniffing
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageFormat:
    name: str
    media_type: str
    ext: str


JPEG = ImageFormat("JPEG", "image/jpeg", "jpg")
PNG = ImageFormat("PNG", "image/png", "png")
GIF = ImageFormat("GIF", "image/gif", "gif")
WEBP = ImageFormat("WEBP", "image/webp", "webp")
AVIF = ImageFormat("AVIF", "image/avif", "avif")
BMP = ImageFormat("BMP", "image/bmp", "bmp")
TIFF = ImageFormat("TIFF", "image/tiff", "tif")
ICO = ImageFormat("ICO", "image/vnd.microsoft.icon", "ico")
SVG = ImageFormat("SVG", "image/svg+xml", "svg")
FORMATS_BY_EXT = {f.ext: f for f in (JPEG, PNG, GIF, WEBP, AVIF, BMP, TIFF, ICO, SVG)}


def sniff(head: bytes) -> ImageFormat | None:
    """The image format of a body from its first bytes (≥ SNIFF_BYTES, or all of it)."""
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return GIF
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return WEBP
    if head[4:8] == b"ftyp" and _is_avif(head):
        return AVIF
    if head[:2] == b"BM" and int.from_bytes(head[14:18], "little") in _BMP_DIB_SIZES:
        return BMP  # "BM" alone is too weak ("BMW ..."): the DIB header size must be valid
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return TIFF
    if head[:4] == b"\x00\x00\x01\x00" and len(head) >= 22 and head[4:6] != b"\x00\x00":
        return ICO
    if _looks_like_svg(head):
        return SVG
    return None


_BMP_DIB_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})


def _is_avif(head: bytes) -> bool:
    box_size = int.from_bytes(head[:4], "big")
    brands = head[8 : max(16, min(box_size, len(head)))]
    # major brand at 8:12, then minor version, then compatible brands (4 bytes each)
    candidates = [brands[0:4]] + [brands[i : i + 4] for i in range(8, len(brands), 4)]
    return any(brand in (b"avif", b"avis") for brand in candidates)


def _looks_like_svg(head: bytes) -> bool:
    text = head[:SNIFF_BYTES].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if not text.startswith(b"<"):
        return False
    return b"<svg" in text and b"<html" not in text


# --------------------------------------------------------------------------------------------
# Failures inside an attempt
# --------------------------------------------------------------------------------------------


class _Fail(Exception):
    """Ends an attempt; `retryable` decides whether tenacity tries again."""

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        retryable: bool = False,
        http_status: int | None = None,
        final_url: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.retryable = retryable
        self.http_status = http_status
        self.final_url = final_url
        self.retry_after = retry_after
        self.referer: str | None = None


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None if bad."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(int(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def _classify(exc: Exception, url: str) -> _Fail:
    """An httpx/httpcore/network exception as a reason code."""
    if isinstance(exc, NetRefused):
        return _Fail(exc.reason, str(exc), final_url=url)
    if isinstance(exc, httpx.TimeoutException):
        kind = type(exc).__name__
        return _Fail("timeout", f"{kind} talking to {url}", retryable=True, final_url=url)
    if isinstance(exc, httpx.ConnectError):
        cause = exc.__cause__ or exc.__context__
        while cause is not None and not isinstance(cause, ssl.SSLError):
            cause = cause.__cause__ or cause.__context__
        if cause is not None or "SSL" in str(exc) or "certificate" in str(exc).lower():
            return _Fail("tls", f"TLS failed for {url}: {exc}", final_url=url)
        return _Fail("connect", f"cannot connect to {url}: {exc}", retryable=True, final_url=url)
    if isinstance(exc, httpx.RemoteProtocolError):
        text = str(exc)
        if "without sending a response" in text:  # hung up before answering: a reset
            return _Fail("connect", f"{url}: {text}", retryable=True, final_url=url)
        if "peer closed connection" in text or "incomplete" in text.lower():
            return _Fail("truncated", f"{url}: {text}", retryable=True, final_url=url)
        return _Fail("protocol-error", f"{url}: {text}", retryable=True, final_url=url)
    if isinstance(exc, (httpx.ReadError, httpx.WriteError, httpx.NetworkError)):
        return _Fail("connect", f"connection to {url} broke: {exc}", retryable=True, final_url=url)
    if isinstance(exc, httpx.UnsupportedProtocol):
        return _Fail("unsupported-scheme", str(exc), final_url=url)
    if isinstance(exc, (httpx.InvalidURL, httpx.LocalProtocolError)):
        return _Fail("bad-url", f"{url}: {exc}", final_url=url)
    if isinstance(exc, OSError):
        return _Fail("connect", f"cannot connect to {url}: {exc}", retryable=True, final_url=url)
    return _Fail("internal-error", f"{type(exc).__name__}: {exc}", final_url=url)


# --------------------------------------------------------------------------------------------
# Body sink: hash as bytes arrive, write from worker threads
# --------------------------------------------------------------------------------------------


class _BodySink:
    """Collects a body: counts, hashes and spills it to a store temp file. Large bodies are
    written from a thread; with `sync_later` a body under FLUSH_BYTES is written from the
    loop (no fsync to wait for: the store syncs before the manifest names it)."""

    def __init__(self, store: Store, max_bytes: int, *, sync_later: bool = False) -> None:
        self.store = store
        self.max_bytes = max_bytes
        self.sync_later = sync_later
        self.size = 0
        self.head = b""
        self._buffer = bytearray()
        self._hash = hashlib.sha256()
        self._temp: Path | None = None

    def add(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.max_bytes:
            raise _Fail("too-large", f"body exceeds {self.max_bytes} bytes")
        if len(self.head) < SNIFF_BYTES:
            self.head += data[: SNIFF_BYTES - len(self.head)]
        self._buffer += data

    @property
    def wants_flush(self) -> bool:
        return len(self._buffer) >= FLUSH_BYTES

    async def flush(self) -> None:
        data = bytes(self._buffer)
        self._buffer.clear()
        await asyncio.to_thread(self._write, data)

    def _write(self, data: bytes) -> None:
        # Runs in a worker thread; hashlib releases the GIL for large updates.
        if self._temp is None:
            self._temp = self.store.temp_file()
        self._hash.update(data)
        with open(self._temp, "ab") as fh:
            fh.write(data)

    def _finish(self, data: bytes, ext: str) -> tuple[str, str, int]:
        self._write(data)
        assert self._temp is not None
        stored = self.store.commit(
            self._temp, self._hash.hexdigest(), ext, durable=not self.sync_later
        )
        self._temp = None
        return stored.sha256, stored.path, stored.size

    async def commit(self, ext: str) -> tuple[str, str, int]:
        data = bytes(self._buffer)
        self._buffer.clear()
        if self.sync_later and self._temp is None:
            # A body that never spilled (under FLUSH_BYTES: nearly every image) is finished
            # here: with no fsync to wait for, a hop to a thread and back cost more CPU than
            # the write itself (~1 ms an image in the main process, measured).
            return self._finish(data, ext)
        return await asyncio.to_thread(self._finish, data, ext)

    async def discard(self) -> None:
        temp, self._temp = self._temp, None
        if temp is not None:
            await asyncio.to_thread(self.store.discard, temp)


class _Inflater:
    """gzip/deflate decoding that never produces more than the cap allows."""

    def __init__(self, encoding: str) -> None:
        wbits = 16 + zlib.MAX_WBITS if encoding in ("gzip", "x-gzip") else zlib.MAX_WBITS
        self._zlib = zlib.decompressobj(wbits)
        self._raw_deflate = encoding == "deflate"
        self._started = False

    def feed(self, data: bytes, budget: int) -> bytes:
        """Inflate `data`, raising too-large as soon as output would pass `budget` bytes."""
        if not self._started and self._raw_deflate:
            # "deflate" is zlib-wrapped by the spec, but some servers send raw deflate.
            self._started = True
            if data and (data[0] & 0x0F) != 8:
                self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
        self._started = True
        try:
            out = self._zlib.decompress(data, budget + 1)
        except zlib.error as exc:
            raise _Fail("encoding-refused", f"broken compressed body: {exc}") from None
        if len(out) > budget or self._zlib.unconsumed_tail:
            raise _Fail("too-large", "compressed body inflates past max_bytes")
        return out


# --------------------------------------------------------------------------------------------
# The fetcher
# --------------------------------------------------------------------------------------------


@dataclass
class _Redirect:
    location: str
    status: int


class Fetcher:
    """Fetches FetchRequests with one client, one store and the limits from Settings."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        store: Store,
        settings: Settings,
        may_start: Callable[[], bool] | None = None,
        *,
        sync_later: bool = False,
    ) -> None:
        self.client = client
        # Stored files are committed without fsync; the caller runs store.sync() before
        # anything durable names them (Store.commit(durable=False)).
        self.sync_later = sync_later
        self.store = store
        self.settings = settings
        # Asked when a download is about to start (holding its slot), not when it is queued:
        # a deadline must stop what has not begun, however many requests wait in the window.
        self.may_start = may_start
        self.guard: AddressGuard = guard_of(client, settings)
        self._sender = sender_of(client)
        self._global = asyncio.Semaphore(max(1, settings.concurrency))
        self._hosts: dict[tuple[str, int], _HostLimit] = {}
        self._override_hosts: dict[str, bool] = {}

    # -- many --------------------------------------------------------------------------

    async def run(
        self, requests: Iterable[FetchRequest] | AsyncIterable[FetchRequest]
    ) -> AsyncIterator[Fetched | FetchFailure]:
        """Yield one result per request as they complete; at most `window` tasks exist."""
        window = max(64, 4 * self.settings.concurrency)
        source = _aiter(requests)
        pending: set[asyncio.Task[Fetched | FetchFailure]] = set()
        exhausted = False
        try:
            while True:
                while not exhausted and len(pending) < window:
                    try:
                        request = await source.__anext__()
                    except StopAsyncIteration:
                        exhausted = True
                        break
                    pending.add(asyncio.ensure_future(self.fetch_one(request)))
                if not pending:
                    return
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    yield task.result()
        finally:
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)

    # -- one ---------------------------------------------------------------------------

    async def fetch_one(self, request: FetchRequest) -> Fetched | FetchFailure:
        """Fetch one URL with retries; never raises for a bad URL or a bad server."""
        state = _State(request)
        try:
            # checked once, before any attempt: a URL that may not be fetched is not retried
            state.start = check_url(request.url, self.guard).copy_with(fragment=None)
            state.start_url = str(state.start)
            started = time.monotonic()
            state.attempts = 1
            try:
                return await self._attempt(state)
            except _Fail as fail:
                # Most URLs succeed at once, so tenacity (≈ 8 % of the main process when it
                # wrapped every first attempt) is only set up after a retryable failure.
                spent = time.monotonic() - started
                if not fail.retryable or self.settings.retries < 1:
                    raise
                if spent >= self.settings.total_timeout:
                    raise
                first_failure = fail
            return await self._retry(state, first_failure, started)
        except NetRefused as exc:
            return self._failure(state, _Fail(exc.reason, str(exc), final_url=request.url))
        except _Fail as fail:
            return self._failure(state, fail)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # one bad URL must never stop the others
            return self._failure(
                state, _Fail("internal-error", f"{type(exc).__name__}: {exc}", final_url=None)
            )

    async def _retry(self, state: _State, first_failure: _Fail, started: float) -> Fetched:
        """Attempts 2 … retries + 1, after the first failed: backoff, Retry-After, and both
        caps (attempts, and `total_timeout` counted from the first attempt's start)."""
        await asyncio.sleep(self._backoff(1, first_failure))
        # attempts are capped, and so is the time one URL may take in all: a host that
        # times out every time must not hold the run for retries × timeout
        remaining = max(0.0, self.settings.total_timeout - (time.monotonic() - started))
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.settings.retries) | stop_after_delay(remaining),
            wait=self._wait,
            retry=retry_if_exception(lambda exc: isinstance(exc, _Fail) and exc.retryable),
            reraise=True,
        )
        result: Fetched | None = None
        async for attempt in retrying:
            with attempt:
                state.attempts += 1
                result = await self._attempt(state)
        assert result is not None
        return result

    def _failure(self, state: _State, fail: _Fail) -> FetchFailure:
        request = state.request
        return FetchFailure(
            url=request.url,
            reason=fail.reason,
            message=fail.message,
            attempts=state.attempts,
            policy=request.policy,
            referer=state.referer,
            http_status=fail.http_status,
            final_url=fail.final_url,
            retry_after=fail.retry_after,
        )

    def _wait(self, retry_state: RetryCallState) -> float:
        """tenacity's wait hook inside `_retry`, whose first attempt is the URL's second."""
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        return self._backoff(retry_state.attempt_number + 1, exc)

    def _backoff(self, failed_attempts: int, exc: BaseException | None) -> float:
        """Exponential backoff with jitter; a server's Retry-After is the minimum."""
        # Exponential backoff with full-size jitter on top, capped (tenacity's
        # wait_exponential_jitter renamed its parameters within 9.x, so it is spelled out).
        base, cap = self.settings.backoff_base, self.settings.backoff_max
        exponent = min(failed_attempts - 1, 32)
        delay = min(cap, base * 2**exponent + random.uniform(0, base))
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            delay = max(delay, retry_after)
        return delay

    def _referer_for(self, request: FetchRequest, url: str, hop: int) -> str | None:
        from harvester.referrer import apply_override

        overrides = self.settings.referer_overrides
        if request.page_url is None and not self._has_override(url, overrides):
            return request.referer if hop == 0 else None
        # A host in the override table gets its value (cut to what carries no page
        # information when the page is unknown): hotlink-protected CDNs need it regardless.
        return apply_override(request.policy, request.page_url, url, overrides)

    def _has_override(self, url: str, overrides: Mapping[str, str]) -> bool:
        from harvester.referrer import find_override

        # find_override globs the whole table (the built-in quirks and the config's) for every
        # request: ~4 % of the main process. Same host (netloc) → same answer.
        netloc = urlsplit(url).netloc.lower()
        known = self._override_hosts.get(netloc)
        if known is None:
            if len(self._override_hosts) > 10_000:  # a run may see millions of hosts
                self._override_hosts.clear()
            known = self._override_hosts[netloc] = find_override(url, overrides) is not None
        return known

    async def _conditional_headers(self, request: FetchRequest) -> dict[str, str]:
        if not (request.etag or request.last_modified):
            return {}
        if not (request.known_sha256 and request.known_path):
            return {}
        try:
            still_stored = await asyncio.to_thread(self.store.exists, request.known_path)
        except ValueError:
            return {}
        if not still_stored:  # the old file is gone: ask for the bytes again
            return {}
        headers = {}
        if request.etag:
            headers["If-None-Match"] = request.etag
        if request.last_modified:
            headers["If-Modified-Since"] = request.last_modified
        return headers

    async def _attempt(self, state: _State) -> Fetched:
        """One try: follow redirects by hand; every hop checked, Referer recomputed."""
        request = state.request
        conditional = await self._conditional_headers(request)
        url = state.start_url
        visited = {url}
        budget = self.settings.total_timeout
        for hop in range(self.settings.max_redirects + 1):
            referer = self._referer_for(request, url, hop)
            state.referer = referer
            headers = dict(conditional)
            if referer:
                headers["Referer"] = referer
            loop = asyncio.get_running_loop()
            async with self._slot(url):
                if hop == 0 and self.may_start is not None and not self.may_start():
                    raise _Fail("not-started", REASONS["not-started"], final_url=None)
                started = loop.time()
                try:
                    async with time_limit(budget):
                        outcome = await self._exchange(url, headers, state, bool(conditional))
                except TimeoutError:
                    raise _Fail(
                        "timeout",
                        f"no complete answer within {self.settings.total_timeout:g} s",
                        final_url=url,
                    ) from None
                finally:
                    budget -= loop.time() - started
            if not isinstance(outcome, _Redirect):
                return outcome
            try:
                # urljoin, not httpx: our own host reading (check_url) must judge the target,
                # including address spellings httpx would reject as malformed.
                joined = urldefrag(urljoin(url, outcome.location.strip())).url
            except ValueError as exc:
                raise _Fail(
                    "bad-redirect", f"bad Location {outcome.location!r}: {exc}", final_url=url
                ) from None
            try:
                next_url = str(check_url(joined, self.guard))
            except NetRefused as exc:
                raise _Fail(exc.reason, f"redirect to {joined}: {exc}", final_url=joined) from None
            if next_url in visited:
                raise _Fail("redirect-loop", f"redirect loop back to {next_url}", final_url=url)
            visited.add(next_url)
            url = next_url
        raise _Fail(
            "too-many-redirects",
            f"more than {self.settings.max_redirects} redirects",
            final_url=url,
        )

    @contextlib.asynccontextmanager
    async def _slot(self, url: str) -> AsyncIterator[None]:
        # `url` is check_url's serialisation: the stdlib's cached split reads it as httpx does
        parsed = urlsplit(url)
        key = (parsed.hostname, parsed.port or default_port(parsed.scheme))
        entry = self._hosts.get(key)
        if entry is None:
            entry = self._hosts[key] = _HostLimit(asyncio.Semaphore(max(1, self.settings.per_host)))
        entry.users += 1
        try:
            # Per-host first, so a task queued on a busy host does not hold a global slot.
            async with entry.semaphore, self._global:
                yield
        finally:
            entry.users -= 1
            if entry.users == 0:  # forget idle hosts: a run may see millions of them
                del self._hosts[key]

    async def _exchange(
        self, url: str, headers: dict[str, str], state: _State, conditional: bool
    ) -> Fetched | _Redirect:
        try:
            # the first hop's URL is already parsed: httpx need not parse it again
            target = state.start if url == state.start_url else url
            async with self._get(target, headers) as response:
                return await self._handle(url, response, state, conditional)
        except NetRefused as exc:  # the guard refused this hop's address at connect time
            raise _Fail(exc.reason, str(exc), final_url=url) from None
        except (_Fail, TimeoutError, asyncio.CancelledError):
            raise
        except Exception as exc:
            raise _classify(exc, url) from None

    @contextlib.asynccontextmanager
    async def _get(
        self, url: str | httpx.URL, headers: dict[str, str]
    ) -> AsyncIterator[httpx.Response]:
        if self._sender is None:  # a client from elsewhere (tests, library callers)
            async with self.client.stream("GET", url, headers=headers) as response:
                yield response
            return
        response = await self._sender.get(url, headers)
        try:
            yield response
        finally:
            await response.aclose()

    async def _handle(
        self, url: str, response: httpx.Response, state: _State, conditional: bool
    ) -> Fetched | _Redirect:
        status = response.status_code
        request = state.request
        fields = _fields(response)
        if status in REDIRECT_STATUSES:
            # (a client hook may have moved Location aside; a server's own x-harvester-location
            # must not win over the real one)
            location = fields.get("location") or fields.get(LOCATION_HEADER)
            await _drain(response, fields)
            if not location:
                raise _Fail("bad-redirect", f"{status} without Location", final_url=url)
            return _Redirect(location, status)
        if status == 304 and conditional:
            await _drain(response, fields)
            return await self._not_modified(url, fields, state)
        if status == 204:
            raise _Fail("empty", f"{url} answered 204 No Content", http_status=204, final_url=url)
        if status not in OK_STATUSES:
            await _drain(response, fields)
            reason = f"http-{status}"
            message = f"{url} answered {status} {response.reason_phrase}".rstrip()
            if status in RETRY_STATUSES:
                retry_after = parse_retry_after(fields.get("retry-after"))
                if retry_after is not None and retry_after > self.settings.retry_after_cap:
                    raise _Fail(
                        reason,
                        f"{message}; Retry-After {retry_after:.0f} s is over the cap: deferred",
                        http_status=status,
                        final_url=url,
                        retry_after=retry_after,
                    )
                raise _Fail(
                    reason,
                    message,
                    retryable=True,
                    http_status=status,
                    final_url=url,
                    retry_after=retry_after,
                )
            raise _Fail(reason, message, http_status=status, final_url=url)
        fmt, sha256, path, size = await self._read_body(url, response, fields)
        return Fetched(
            url=request.url,
            final_url=url,
            sha256=sha256,
            size=size,
            media_type=fmt.media_type,
            ext=fmt.ext,
            path=path,
            http_status=status,
            etag=fields.get("etag"),
            last_modified=fields.get("last-modified"),
            attempts=state.attempts,
            policy=request.policy,
            referer=state.referer,
        )

    async def _not_modified(self, url: str, fields: Mapping[str, str], state: _State) -> Fetched:
        request = state.request
        assert request.known_sha256 and request.known_path
        ext = request.known_path.rsplit(".", 1)[-1].lower()
        fmt = FORMATS_BY_EXT.get(ext)
        size = (await asyncio.to_thread(self.store.abspath(request.known_path).stat)).st_size
        return Fetched(
            url=request.url,
            final_url=url,
            sha256=request.known_sha256,
            size=size,
            media_type=fmt.media_type if fmt else "application/octet-stream",
            ext=ext,
            path=request.known_path,
            http_status=304,
            etag=fields.get("etag") or request.etag,
            last_modified=fields.get("last-modified") or request.last_modified,
            attempts=state.attempts,
            policy=request.policy,
            referer=state.referer,
            not_modified=True,
        )

    async def _read_body(
        self, url: str, response: httpx.Response, fields: Mapping[str, str]
    ) -> tuple[ImageFormat, str, str, int]:
        limit = self.settings.max_bytes
        declared = _content_length(fields)
        if declared is not None and declared > limit:
            raise _Fail("too-large", f"Content-Length {declared} is over {limit}", final_url=url)
        encoding = fields.get("content-encoding", "identity").strip().lower()
        inflater: _Inflater | None = None
        if encoding in ("gzip", "x-gzip", "deflate"):
            inflater = _Inflater(encoding)
        elif encoding not in ("identity", ""):
            raise _Fail(
                "encoding-refused", f"Content-Encoding {encoding!r} is not accepted", final_url=url
            )
        sink = _BodySink(self.store, limit, sync_later=self.sync_later)
        raw_bytes = 0
        fmt: ImageFormat | None = None
        try:
            try:
                async for chunk in response.aiter_raw():
                    raw_bytes += len(chunk)
                    if raw_bytes > limit:
                        raise _Fail("too-large", f"body exceeds {limit} bytes", final_url=url)
                    data = inflater.feed(chunk, limit - sink.size) if inflater else chunk
                    sink.add(data)
                    if fmt is None and len(sink.head) >= SNIFF_BYTES:
                        fmt = self._accept_format(url, sink.head)
                    if sink.wants_flush:
                        await sink.flush()
            except _Fail as fail:
                fail.final_url = fail.final_url or url
                raise
            except httpx.HTTPError as exc:
                fail = _classify(exc, url)
                if fail.reason == "truncated" and declared is not None:
                    fail.message = f"{url}: got {raw_bytes} of {declared} bytes"
                raise fail from None
            if declared is not None and raw_bytes < declared:
                raise _Fail(
                    "truncated",
                    f"{url}: got {raw_bytes} of {declared} bytes",
                    retryable=True,
                    final_url=url,
                )
            if sink.size == 0:
                raise _Fail("empty", f"{url} sent an empty body", final_url=url)
            if fmt is None:
                fmt = self._accept_format(url, sink.head)
            try:
                sha256, path, size = await sink.commit(fmt.ext)
            except OSError as exc:
                raise _Fail("store-error", f"cannot store {url}: {exc}", final_url=url) from None
            return fmt, sha256, path, size
        except BaseException:
            await asyncio.shield(sink.discard())
            raise

    def _accept_format(self, url: str, head: bytes) -> ImageFormat:
        fmt = sniff(head)
        if fmt is None:
            kind = "an HTML page" if b"<html" in head.lower() else "not a known image format"
            raise _Fail("not-an-image", f"{url} is {kind}", final_url=url)
        if fmt is SVG and not self.settings.allow_svg:
            raise _Fail("svg-refused", f"{url} is an SVG (it can carry script)", final_url=url)
        return fmt


@dataclass
class _HostLimit:
    semaphore: asyncio.Semaphore
    users: int = 0  # tasks holding or waiting for the semaphore


@dataclass
class _State:
    request: FetchRequest
    start: httpx.URL | None = None  # the request's URL as check_url parsed it
    start_url: str = ""
    attempts: int = 0
    referer: str | None = None


def _fields(response: httpx.Response) -> dict[str, str]:
    """The response's header fields by lower-case name, read once.

    Each `httpx.Headers.get` scans and decodes every field again: the six lookups a response
    needs were ~9 % of the main process. A repeated field keeps its values comma-joined, as
    `Headers.get` gives them.
    """
    fields: dict[str, str] = {}
    for key, value in response.headers.multi_items():
        fields[key] = f"{fields[key]}, {value}" if key in fields else value
    return fields


def _content_length(fields: Mapping[str, str]) -> int | None:
    value = fields.get("content-length")
    if value is None or "transfer-encoding" in fields:
        return None
    try:
        length = int(value)
    except ValueError:
        return None
    return length if length >= 0 else None


async def _drain(response: httpx.Response, fields: Mapping[str, str]) -> None:
    """Read a small body so the connection can be reused; give up on a large one."""
    length = _content_length(fields)
    if length is not None and length > DRAIN_BYTES:
        return
    seen = 0
    with contextlib.suppress(httpx.HTTPError):
        async for chunk in response.aiter_raw():
            seen += len(chunk)
            if seen > DRAIN_BYTES:
                return


async def _aiter(
    requests: Iterable[FetchRequest] | AsyncIterable[FetchRequest],
) -> AsyncIterator[FetchRequest]:
    if isinstance(requests, AsyncIterable):
        async for request in requests:
            yield request
    else:
        for request in requests:
            yield request


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------


async def fetch_all(
    requests: Iterable[FetchRequest] | AsyncIterable[FetchRequest],
    *,
    store: Store,
    settings: Settings,
    client: httpx.AsyncClient | None = None,
    may_start: Callable[[], bool] | None = None,
    sync_later: bool = False,
) -> AsyncIterator[Fetched | FetchFailure]:
    """Fetch every request, yielding one result per request as each completes.

    The input is consumed lazily (a bounded number of tasks in flight), so a generator of
    millions of requests runs in bounded memory. Pass a client from `harvester.net.build_client`
    to share it; otherwise one is built from `settings` and closed at the end. `may_start` is
    asked just before each download begins; False ends that request as `not-started`.
    `sync_later`: stored files are not fsynced one by one; call `store.sync()` before
    recording them anywhere durable.
    """
    own_client = client is None
    active = build_client(settings) if client is None else client
    fetcher = Fetcher(active, store, settings, may_start, sync_later=sync_later)
    try:
        async for result in fetcher.run(requests):
            yield result
    finally:
        if own_client:
            await active.aclose()


def fetch_batch(
    requests: list[FetchRequest], store_root: Path, settings: Settings
) -> list[Fetched | FetchFailure]:
    """Fetch a batch synchronously; results in request order. No state outlives the call."""

    async def collect() -> list[Fetched | FetchFailure]:
        results: dict[int, Fetched | FetchFailure] = {}
        store = Store(store_root)
        async with build_client(settings) as client:
            fetcher = Fetcher(client, store, settings)
            window = asyncio.Semaphore(max(64, 4 * settings.concurrency))

            async def one(index: int, request: FetchRequest) -> None:
                async with window:  # as in fetch_all: a bounded number of downloads started
                    results[index] = await fetcher.fetch_one(request)

            await asyncio.gather(*(one(i, r) for i, r in enumerate(requests)))
        return [results[i] for i in range(len(requests))]

    return asyncio.run(collect())


__all__ = [
    "REASONS",
    "Fetcher",
    "fetch_all",
    "fetch_batch",
    "parse_retry_after",
    "sniff",
]
