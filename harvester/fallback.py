"""Rescue dead images from web archives: an opt-in fallback after the fetch stage.

Input: the fetch stage's `FetchFailure`s, the date of the (earliest) article using each URL,
the fallback sources configured in `Settings.archive` (`sources_from_settings`), a `Store`,
`Settings` and the run's guarded client (`harvester.net.build_client`).
Output: one `Rescued` or `RescueFailed` per failure, as each completes (`rescue`, async);
The run's round 3 (`harvester.acquire.Acquirer._rescue`) records them in the manifest.

How a failure is rescued:
- only permanent failures are tried (`RESCUABLE_REASONS`: 404, 410, DNS, connection refused,
  a known placeholder picture); anything else comes back as `RescueFailed` with no answers;
- each source is asked in order (`FallbackSource.locate`) for a copy, near the article's date
  when one is known; the first source whose copy is a real image wins;
- the copy is fetched through `harvester.fetch.fetch_all`, the same guarded machinery as any
  image (SSRF guard, limits, retries, redirects by hand, content sniffing), with its own
  per-host limit (`archive_per_host`) and no Referer (the archive learns nothing about the
  article's page);
- a rescued image is stored like any other and carries its provenance (`source: "archive"`,
  the source's name, snapshot URL and timestamp); a failed rescue keeps the original failure
  and adds each source's answer (`wayback: no-snapshot`, `wayback: not-an-image`, ...).

Adding a source means writing a class with `name`, `per_host` and `locate`; the fetcher is
not touched. Built in: `WaybackSource` (`wayback`: the Internet Archive's availability API
and its raw `id_` captures), `WaybackCdxSource` (`wayback-cdx`: its capture index, for the
closest capture that was a 200 image) and `MirrorBaseSource` (a user's own mirror laid out
as `<base>/<host>/<path>`, named by its base URL).

Answer reason codes (the `reason` of a `FallbackMiss`, shown after the source's name):

| code                    | meaning                                                      |
|-------------------------|--------------------------------------------------------------|
| `no-snapshot`           | the archive holds no capture of the URL                      |
| `snapshot-status-<n>`   | the closest capture recorded the origin answering `<n>`      |
| `lookup-http-<status>`  | the archive's lookup API answered with that status           |
| `lookup-<fetch reason>` | the lookup failed: `lookup-timeout`, `lookup-connect`, ...   |
| `bad-answer`            | the lookup API's answer was not the JSON it documents        |
| `internal-error`        | a source raised; the message has the exception               |
| any fetch reason        | the capture itself failed: `not-an-image`, `http-404`, ...   |
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import email.utils
import json
import random
import re
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable
from urllib.parse import quote

import httpx
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt

from harvester._timeouts import time_limit
from harvester.errors import ConfigError
from harvester.fetch import RETRY_STATUSES, fetch_all, parse_retry_after
from harvester.net import AddressGuard, NetRefused, backend_of, build_client, check_url
from harvester.records import Fetched, FetchFailure, FetchRequest
from harvester.settings import Settings
from mirror.store import Store

# The reason a pipeline gives a fetched image whose sha256 is a known "image removed" picture
# (`Settings.placeholder_sha256`); see `placeholder_failure`.
PLACEHOLDER_REASON = "placeholder-image"

# Failures that will not heal by waiting: the only ones worth asking an archive about.
# Timeouts, 5xx, 429 and 403 (often hotlink protection) are left to the next run's retry.
RESCUABLE_REASONS = frozenset({"http-404", "http-410", "dns", "connect", PLACEHOLDER_REASON})

# Provenance recorded for every rescued URL (the manifest's `urls[*].source`).
ARCHIVE_PROVENANCE = "archive"

WAYBACK = "wayback"
WAYBACK_CDX = "wayback-cdx"
KNOWN_SOURCES = (WAYBACK, WAYBACK_CDX)  # plus any http(s) base URL: a MirrorBaseSource

# The lookup API answers a few hundred bytes of JSON; anything much larger is not it.
MAX_LOOKUP_BYTES = 256 * 1024
# Lookups started at once per source (each still waits for the source's per-host limit).
LOOKUP_WINDOW = 64


def is_rescuable(failure: FetchFailure) -> bool:
    """True when the failure is permanent and an archive may hold the image instead."""
    return failure.retry_after is None and failure.reason in RESCUABLE_REASONS


def placeholder_failure(fetched: Fetched, settings: Settings) -> FetchFailure | None:
    """A `placeholder-image` failure when the fetched bytes are a known placeholder picture.

    CDNs often answer a removed image with 200 and a stock "image not available" picture;
    the pipeline calls this on each `Fetched` so such URLs are treated as dead (and rescued).
    """
    known = {value.lower() for value in settings.placeholder_sha256}
    if fetched.sha256.lower() not in known:
        return None
    return FetchFailure(
        url=fetched.url,
        reason=PLACEHOLDER_REASON,
        message=f"{fetched.final_url} served a known placeholder picture ({fetched.sha256[:12]})",
        attempts=fetched.attempts,
        policy=fetched.policy,
        referer=fetched.referer,
        http_status=fetched.http_status,
        final_url=fetched.final_url,
    )


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """Where a source holds a copy of an image."""

    url: str  # the original (dead) URL
    capture_url: str  # what to fetch: the raw bytes (Wayback's `id_` form)
    snapshot_url: str  # the copy as people browse it (for the manifest and report)
    timestamp: dt.datetime | None  # when the copy was taken (UTC), when the source knows


@dataclass(frozen=True)
class FallbackMiss:
    """A source's answer when it has no usable copy; `reason` is a stable code."""

    reason: str
    message: str


@dataclass(frozen=True)
class FallbackAnswer:
    """One source's answer in a failed rescue."""

    source: str  # the source's name: "wayback", "mirror"
    reason: str  # a FallbackMiss reason or the capture's fetch reason
    message: str
    snapshot_url: str | None = None  # set when a copy was found but was unusable
    snapshot_timestamp: dt.datetime | None = None

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"


@dataclass(frozen=True)
class Rescued:
    """A dead URL whose image now comes from a fallback source, stored like any other."""

    failure: FetchFailure  # why the original URL failed
    fetched: Fetched  # the copy, recorded under the *original* URL (`final_url` = capture)
    fallback: str  # which source: "wayback", "mirror"
    snapshot_url: str
    capture_url: str
    snapshot_timestamp: dt.datetime | None
    source: str = ARCHIVE_PROVENANCE

    @property
    def url(self) -> str:
        return self.failure.url

    def provenance(self) -> dict[str, Any]:
        """What the manifest records beside the URL's usual fields."""
        stamp = self.snapshot_timestamp
        return {
            "source": self.source,
            "archive": self.fallback,
            "snapshot_url": self.snapshot_url,
            "capture_url": self.capture_url,
            "snapshot_timestamp": _iso(stamp) if stamp else None,
            "original_reason": self.failure.reason,
        }


@dataclass(frozen=True)
class RescueFailed:
    """A failure that stays failed: the original failure plus every source's answer.

    `answers` is empty when the failure was not tried (not permanent, or no sources).
    """

    failure: FetchFailure
    answers: tuple[FallbackAnswer, ...] = ()

    @property
    def url(self) -> str:
        return self.failure.url

    @property
    def reason(self) -> str:
        return self.failure.reason  # the original reason is kept

    @property
    def tried(self) -> bool:
        return bool(self.answers)

    @property
    def archive_reason(self) -> str | None:
        """The sources' answers in one line, e.g. `wayback: no-snapshot`."""
        return "; ".join(str(answer) for answer in self.answers) or None

    def as_failure(self) -> FetchFailure:
        """The original failure, its message extended with the archives' answers."""
        if not self.answers:
            return self.failure
        details = "; ".join(f"{a.source}: {a.reason} ({a.message})" for a in self.answers)
        return dataclasses.replace(self.failure, message=f"{self.failure.message}; {details}")


# --------------------------------------------------------------------------------------------
# The source interface
# --------------------------------------------------------------------------------------------


@runtime_checkable
class FallbackSource(Protocol):
    """Somewhere a dead image may still be found. `locate` must not raise for a bad answer."""

    name: str  # short, shown in answers and the manifest: "wayback"
    per_host: int  # politeness: requests at once to this source's hosts

    async def locate(
        self, url: str, *, around: dt.datetime | None, client: httpx.AsyncClient
    ) -> Snapshot | FallbackMiss:
        """Find a copy of `url`, the one closest to `around` when the source keeps several."""
        ...


class _PerLoopLimit:
    """A semaphore per event loop, so one source object can serve several `asyncio.run`s."""

    def __init__(self, size: int) -> None:
        self.size = max(1, size)
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore]
        self._by_loop = weakref.WeakKeyDictionary()

    def get(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        limit = self._by_loop.get(loop)
        if limit is None:
            limit = self._by_loop[loop] = asyncio.Semaphore(self.size)
        return limit


class _LookupFail(Exception):
    def __init__(self, reason: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.retryable = retryable
        self.retry_after: float | None = None


class WaybackSource:
    """The Internet Archive: the availability API for the closest capture, then its raw bytes.

    `GET {api_base}/wayback/available?url=<url>&timestamp=<YYYYMMDDhhmmss>` answers
    `{"archived_snapshots": {"closest": {"available": true, "status": "200",
    "timestamp": "20210608094847", "url": "http://web.archive.org/web/20210608094847/<url>"}}}`
    (or `{"archived_snapshots": {}}`). The snapshot URL serves the archive's page around the
    image; the `id_` form (`/web/<timestamp>id_/<url>`) serves the original bytes.
    """

    name = WAYBACK
    settings_field = "archive_api"  # the Settings field holding this source's API base

    def __init__(
        self,
        api_base: str = "https://archive.org",
        *,
        per_host: int = 2,
        retries: int = 2,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        retry_after_cap: float = 60.0,
        total_timeout: float = 60.0,
        allow_private_addresses: bool = False,
    ) -> None:
        self.api_base = api_base.rstrip("/")
        self.per_host = max(1, per_host)
        self.retries = retries
        self.retry_after_cap = retry_after_cap
        self.total_timeout = total_timeout
        self.allow_private_addresses = allow_private_addresses
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self._limit = _PerLoopLimit(self.per_host)

    @classmethod
    def from_settings(cls, settings: Settings) -> WaybackSource:
        return cls(
            getattr(settings, cls.settings_field),
            per_host=settings.archive_per_host,
            retries=settings.retries,
            backoff_base=settings.backoff_base,
            backoff_max=settings.backoff_max,
            retry_after_cap=settings.retry_after_cap,
            total_timeout=settings.total_timeout,
            allow_private_addresses=settings.allow_private_addresses,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.api_base!r}, per_host={self.per_host})"

    def lookup_url(self, url: str, around: dt.datetime | None) -> str:
        """The availability query for `url`, without its scheme.

        The archive keys captures without the scheme, and the API has been seen answering
        `{}` for `url=https://...` while `url=host/path` found the captures
        (internetarchive/wayback#296); its documented examples are scheme-less too.
        """
        query = f"url={quote(_scheme_less(url), safe='')}"
        if around is not None:
            query += f"&timestamp={wayback_timestamp(around)}"
        return f"{self.api_base}/wayback/available?{query}"

    async def locate(
        self, url: str, *, around: dt.datetime | None, client: httpx.AsyncClient
    ) -> Snapshot | FallbackMiss:
        lookup = self.lookup_url(url, around)
        try:
            answer = await self._get_json(lookup, client)
        except _LookupFail as fail:
            return FallbackMiss(fail.reason, fail.message)
        return self._snapshot_from(url, answer)

    def _snapshot_from(self, url: str, answer: Any) -> Snapshot | FallbackMiss:
        if not isinstance(answer, dict) or not isinstance(answer.get("archived_snapshots"), dict):
            return FallbackMiss("bad-answer", "the availability API answered without snapshots")
        closest = answer["archived_snapshots"].get("closest")
        if not closest:
            return FallbackMiss("no-snapshot", f"the Wayback Machine has no capture of {url}")
        if not isinstance(closest, dict) or closest.get("available") is False:
            return FallbackMiss("no-snapshot", f"no available capture of {url}")
        status = str(closest.get("status", "200"))
        snapshot_url = closest.get("url")
        stamp = str(closest.get("timestamp", ""))
        when = parse_wayback_timestamp(stamp)
        if not isinstance(snapshot_url, str) or when is None:
            return FallbackMiss("bad-answer", f"capture without a usable url/timestamp: {closest}")
        if status[:1] in ("4", "5"):
            return FallbackMiss(
                f"snapshot-status-{status}",
                f"the closest capture ({stamp}) recorded the origin answering {status}",
            )
        capture, browse = self.capture_url(snapshot_url), self.browse_url(snapshot_url)
        if capture is None or browse is None:
            return FallbackMiss("bad-answer", f"unexpected snapshot URL {snapshot_url!r}")
        return Snapshot(url=url, capture_url=capture, snapshot_url=browse, timestamp=when)

    def capture_url(self, snapshot_url: str) -> str | None:
        """The raw `id_` form of a snapshot URL (the original bytes, not the archive's page)."""
        return self._snapshot_form(snapshot_url, "id_")

    def browse_url(self, snapshot_url: str) -> str | None:
        """The snapshot URL as people open it, over https like the capture."""
        return self._snapshot_form(snapshot_url, "")

    def _snapshot_form(self, snapshot_url: str, flag: str) -> str | None:
        """`/web/<timestamp><flag>/<url>` on the snapshot's host; None if it is not one.

        The real API answers `http://web.archive.org/...`; fetching that would send the looked-up
        URL in the clear, so it is upgraded when the API itself is reached by https (an explicit
        port is kept).
        """
        try:
            parsed = httpx.URL(snapshot_url)
        except (httpx.InvalidURL, ValueError):
            return None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            return None
        match = _SNAPSHOT_PATH.match(parsed.raw_path.decode("ascii", "replace"))
        if match is None:
            return None
        scheme = parsed.scheme
        if scheme == "http" and self.api_base.startswith("https:"):
            scheme = "https"
        host = f"[{parsed.host}]" if ":" in parsed.host else parsed.host
        port = f":{parsed.port}" if parsed.port is not None else ""
        stamp, original = match.group("stamp"), match.group("original")
        return f"{scheme}://{host}{port}/web/{stamp}{flag}/{original}"

    async def _get_json(self, lookup: str, client: httpx.AsyncClient) -> Any:
        backend = backend_of(client)
        guard = (
            backend.guard if backend else AddressGuard(allow_private=self.allow_private_addresses)
        )
        try:
            check_url(lookup, guard)
        except NetRefused as exc:
            raise _LookupFail(f"lookup-{exc.reason}", str(exc)) from None
        retrying = AsyncRetrying(
            stop=stop_after_attempt(max(1, self.retries + 1)),
            wait=self._wait,
            retry=retry_if_exception(lambda exc: isinstance(exc, _LookupFail) and exc.retryable),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                async with self._limit.get():
                    body = await self._get_once(lookup, client)
        try:
            return json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _LookupFail("bad-answer", f"the availability API sent no JSON: {exc}") from None

    def _wait(self, retry_state: Any) -> float:
        # exponential backoff with full jitter (tenacity's helper changed its arguments in 9.1)
        exponent = max(0, retry_state.attempt_number - 1)
        delay = min(self.backoff_max, self.backoff_base * 2**exponent)
        delay += random.uniform(0, self.backoff_base)
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        return max(delay, retry_after) if retry_after is not None else delay

    async def _get_once(self, lookup: str, client: httpx.AsyncClient) -> bytes:
        headers = {"Accept": "application/json"}
        try:
            async with (
                time_limit(self.total_timeout),
                client.stream("GET", lookup, headers=headers) as response,
            ):
                return await self._read(lookup, response)
        except _LookupFail:
            raise
        except TimeoutError:
            raise _LookupFail(
                "lookup-timeout", f"{lookup}: no answer in time", retryable=True
            ) from None
        except NetRefused as exc:
            raise _LookupFail(f"lookup-{exc.reason}", str(exc)) from None
        except httpx.TimeoutException as exc:
            raise _LookupFail("lookup-timeout", f"{lookup}: {exc}", retryable=True) from None
        except httpx.ConnectError as exc:
            text = str(exc)
            tls = "SSL" in text or "certificate" in text.lower()
            reason = "lookup-tls" if tls else "lookup-connect"
            raise _LookupFail(reason, f"{lookup}: {text}", retryable=not tls) from None
        except httpx.HTTPError as exc:
            raise _LookupFail("lookup-connect", f"{lookup}: {exc}", retryable=True) from None
        except OSError as exc:
            raise _LookupFail("lookup-connect", f"{lookup}: {exc}", retryable=True) from None

    async def _read(self, lookup: str, response: httpx.Response) -> bytes:
        status = response.status_code
        if status != 200:
            fail = _LookupFail(
                f"lookup-http-{status}",
                f"the availability API answered {status}",
                retryable=status in RETRY_STATUSES,
            )
            if fail.retryable:
                wait = parse_retry_after(response.headers.get("retry-after"))
                if wait is not None and wait > self.retry_after_cap:
                    fail.retryable = False
                fail.retry_after = wait
            raise fail
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("identity", ""):
            raise _LookupFail("bad-answer", f"the availability API sent {encoding!r} content")
        body = bytearray()
        async for chunk in response.aiter_raw():
            body += chunk
            if len(body) > MAX_LOOKUP_BYTES:
                raise _LookupFail("bad-answer", "the availability API answer is too large")
        return bytes(body)


class WaybackCdxSource(WaybackSource):
    """The Wayback Machine's CDX index: the closest capture that was a 200 and not HTML.

    The availability API answers only the single closest capture, which for a dead image is
    often the archive recording the 404, and it sometimes answers nothing for URLs it holds.
    The index can be asked for the closest *good* capture. List it after `wayback`
    (`archive = ["wayback", "wayback-cdx"]`) so it is only asked when the first had nothing.

    `GET {api_base}/cdx/search/cdx?url=<url>&output=json&fl=timestamp,original,statuscode,
    mimetype&filter=statuscode:200&filter=!mimetype:text/html&closest=<ts>&sort=closest&limit=1`
    (without a date: `fastLatest=true&limit=-1`, the most recent) answers
    `[["timestamp", "original", ...], ["20150101000000", "http://host/a.jpg", ...]]` or `[]`.
    """

    name = WAYBACK_CDX
    settings_field = "archive_cdx_api"
    FIELDS = ("timestamp", "original", "statuscode", "mimetype")

    def __init__(self, api_base: str = "https://web.archive.org", **options: Any) -> None:
        super().__init__(api_base, **options)

    def lookup_url(self, url: str, around: dt.datetime | None) -> str:
        query = [
            f"url={quote(_scheme_less(url), safe='')}",
            "output=json",
            "fl=" + ",".join(self.FIELDS),
            "filter=statuscode:200",
            "filter=!mimetype:text/html",
        ]
        if around is not None:
            query += [f"closest={wayback_timestamp(around)}", "sort=closest", "limit=1"]
        else:
            query += ["fastLatest=true", "limit=-1"]
        return f"{self.api_base}/cdx/search/cdx?" + "&".join(query)

    def _snapshot_from(self, url: str, answer: Any) -> Snapshot | FallbackMiss:
        if not isinstance(answer, list):
            return FallbackMiss("bad-answer", "the CDX index did not answer a JSON list")
        rows = [row for row in answer if isinstance(row, list) and row]
        if len(rows) < 2:
            return FallbackMiss("no-snapshot", f"the Wayback index has no good capture of {url}")
        record = dict(zip(rows[0], rows[1], strict=False))  # a short row lacks fields
        stamp, original = str(record.get("timestamp", "")), record.get("original")
        when = parse_wayback_timestamp(stamp)
        if when is None or not isinstance(original, str) or not original:
            return FallbackMiss("bad-answer", f"index row without timestamp/original: {rows[1]}")
        snapshot_url = f"{self.api_base}/web/{stamp}/{original}"
        capture, browse = self.capture_url(snapshot_url), self.browse_url(snapshot_url)
        if capture is None or browse is None:
            return FallbackMiss("bad-answer", f"unusable index row {rows[1]}")
        return Snapshot(url=url, capture_url=capture, snapshot_url=browse, timestamp=when)


def _scheme_less(url: str) -> str:
    return re.sub(r"^https?://", "", url, flags=re.IGNORECASE)


class MirrorBaseSource:
    """A user's own mirror of other sites, laid out as `<base>/<host>/<path>` (`wget -m`).

    `https://img.example.com/a/b.jpg?x=1` is looked for at `<base>/img.example.com/a/b.jpg?x=1`.
    No lookup request is made: the capture fetch itself tells whether the copy exists.
    """

    name = "mirror"

    def __init__(self, base_url: str, *, per_host: int = 2) -> None:
        parsed = httpx.URL(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError(f"a mirror base must be an http(s) URL, not {base_url!r}")
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.per_host = max(1, per_host)

    def __repr__(self) -> str:
        return f"MirrorBaseSource({self.base_url!r})"

    async def locate(
        self, url: str, *, around: dt.datetime | None, client: httpx.AsyncClient
    ) -> Snapshot | FallbackMiss:
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, ValueError) as exc:
            return FallbackMiss("bad-url", f"{url}: {exc}")
        host = parsed.host + (f":{parsed.port}" if parsed.port is not None else "")
        target = parsed.raw_path.decode("ascii", "replace").lstrip("/")
        copy = f"{self.base_url}{host}/{target}"
        return Snapshot(url=url, capture_url=copy, snapshot_url=copy, timestamp=None)


def check_archive_settings(
    names: Iterable[str],
    api_base: str = "https://archive.org",
    placeholders: Iterable[str] = (),
    per_host: int = 2,
    cdx_api: str = "https://web.archive.org",
) -> list[str]:
    """Problems with the archive settings, as messages (empty when they are fine)."""
    problems = []
    if isinstance(names, str):
        names = (names,)
    for name in names:
        if name in KNOWN_SOURCES:
            continue
        if _is_http_url(name):
            continue
        problems.append(
            f"archive source {name!r} is unknown; expected {', '.join(KNOWN_SOURCES)} "
            "or a mirror base URL (https://...)"
        )
    if not _is_http_url(api_base):
        problems.append(f"archive_api {api_base!r} is not an http(s) URL")
    if not _is_http_url(cdx_api):
        problems.append(f"archive_cdx_api {cdx_api!r} is not an http(s) URL")
    if not isinstance(per_host, int) or per_host < 1:
        problems.append(f"archive_per_host must be at least 1, not {per_host!r}")
    for value in placeholders:
        if not re.fullmatch(r"[0-9a-fA-F]{64}", str(value)):
            problems.append(f"placeholder_sha256 {value!r} is not a sha256 hex digest")
    return problems


def sources_from_settings(settings: Settings) -> tuple[FallbackSource, ...]:
    """The configured fallback sources, in order; empty (the default) means the feature is off."""
    problems = check_archive_settings(
        settings.archive,
        settings.archive_api,
        settings.placeholder_sha256,
        settings.archive_per_host,
        settings.archive_cdx_api,
    )
    if problems:
        raise ConfigError("; ".join(problems))
    sources: list[FallbackSource] = []
    for name in settings.archive:
        if name == WAYBACK:
            sources.append(WaybackSource.from_settings(settings))
        elif name == WAYBACK_CDX:
            sources.append(WaybackCdxSource.from_settings(settings))
        else:
            sources.append(MirrorBaseSource(name, per_host=settings.archive_per_host))
    return tuple(sources)


def _is_http_url(value: str) -> bool:
    try:
        parsed = httpx.URL(value)
    except (httpx.InvalidURL, ValueError, TypeError):
        return False
    return parsed.scheme in ("http", "https") and bool(parsed.host)


# --------------------------------------------------------------------------------------------
# Rescue
# --------------------------------------------------------------------------------------------


@dataclass
class _Case:
    failure: FetchFailure
    around: dt.datetime | None
    answers: list[FallbackAnswer]


async def rescue(
    failures: Iterable[FetchFailure],
    *,
    sources: Sequence[FallbackSource],
    store: Store,
    settings: Settings,
    dates: Mapping[str, dt.datetime | None] | None = None,
    client: httpx.AsyncClient | None = None,
    keep_going: Callable[[], bool] | None = None,
) -> AsyncIterator[Rescued | RescueFailed]:
    """Try each permanent failure against `sources` in order; one result per failure.

    `dates` maps a URL to the date of the earliest article using it (`parse_article_date`);
    the archive's capture closest to it is chosen. Failures that are not permanent, or all
    failures when `sources` is empty, come back at once as `RescueFailed` with no answers.
    `keep_going` (a deadline or stop gate) is asked before each lookup and each capture
    download; once it says no, what was not started comes back untried (no new answers).
    """
    cases: list[_Case] = []
    dates = dates or {}
    for failure in failures:
        if sources and is_rescuable(failure):
            cases.append(_Case(failure, dates.get(failure.url), []))
        else:
            yield RescueFailed(failure)
    if not cases:
        return
    own_client = client is None
    active = build_client(settings) if client is None else client
    try:
        for index, source in enumerate(sources):
            last = index == len(sources) - 1
            missed: list[_Case] = []
            tried = _try_source(source, cases, store, settings, active, keep_going or _always)
            async for case, outcome in tried:
                if isinstance(outcome, Rescued):
                    yield outcome
                    continue
                if outcome is None:  # the gate closed before this one was tried
                    yield RescueFailed(case.failure, tuple(case.answers))
                    continue
                case.answers.append(outcome)
                if last:
                    yield RescueFailed(case.failure, tuple(case.answers))
                else:
                    missed.append(case)
            cases = missed
            if not cases:
                break
    finally:
        if own_client:
            await active.aclose()


async def _try_source(
    source: FallbackSource,
    cases: list[_Case],
    store: Store,
    settings: Settings,
    client: httpx.AsyncClient,
    keep_going: Callable[[], bool],
) -> AsyncIterator[tuple[_Case, Rescued | FallbackAnswer | None]]:
    """Locate copies (concurrently) and fetch them through one `fetch_all` stream.

    Yields each case with its outcome: `Rescued`, this source's `FallbackAnswer`, or None
    when `keep_going` stopped it before it was tried.
    """
    misses: list[tuple[_Case, FallbackAnswer | None]] = []
    located: dict[str, list[tuple[_Case, Snapshot]]] = {}

    async def locate(case: _Case) -> tuple[_Case, Snapshot | FallbackMiss]:
        try:
            answer = await source.locate(case.failure.url, around=case.around, client=client)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # one broken source answer must not stop the others
            answer = FallbackMiss("internal-error", f"{type(exc).__name__}: {exc}")
        return case, answer

    async def requests() -> AsyncIterator[FetchRequest]:
        pending: set[asyncio.Task[tuple[_Case, Snapshot | FallbackMiss]]] = set()
        queue = iter(cases)
        exhausted = False
        try:
            while True:
                while not exhausted and len(pending) < LOOKUP_WINDOW:
                    case = next(queue, None)
                    if case is None:
                        exhausted = True
                        break
                    if not keep_going():
                        misses.extend((held, None) for held in (case, *queue))
                        exhausted = True
                        break
                    pending.add(asyncio.ensure_future(locate(case)))
                if not pending:
                    return
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    case, answer = task.result()
                    if isinstance(answer, FallbackMiss):
                        misses.append((case, _answer(source, answer)))
                        continue
                    if not keep_going():
                        misses.append((case, None))
                        continue
                    located.setdefault(answer.capture_url, []).append((case, answer))
                    # no-referrer: the archive is told the image URL, never the article's page
                    yield FetchRequest(url=answer.capture_url, policy="no-referrer")
        finally:
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)

    capture_settings = settings.replace(per_host=source.per_host)
    results = fetch_all(requests(), store=store, settings=capture_settings, client=client)
    try:
        async for result in results:
            case, snapshot = located[result.url].pop(0)
            yield case, _outcome(source, case, snapshot, result)
            while misses:
                yield misses.pop(0)
    finally:
        with contextlib.suppress(Exception):
            await results.aclose()  # type: ignore[attr-defined]
    while misses:
        yield misses.pop(0)


def _always() -> bool:
    return True


def _answer(source: FallbackSource, miss: FallbackMiss) -> FallbackAnswer:
    return FallbackAnswer(source=source.name, reason=miss.reason, message=miss.message)


def _outcome(
    source: FallbackSource, case: _Case, snapshot: Snapshot, result: Fetched | FetchFailure
) -> Rescued | FallbackAnswer:
    if isinstance(result, FetchFailure):
        return FallbackAnswer(
            source=source.name,
            reason=result.reason,
            message=f"copy at {snapshot.capture_url}: {result.message}",
            snapshot_url=snapshot.snapshot_url,
            snapshot_timestamp=snapshot.timestamp,
        )
    original = case.failure
    # Recorded under the original URL, so the pipeline stores, processes and rewrites it
    # like any image; `final_url` stays the capture's address.
    fetched = dataclasses.replace(result, url=original.url, policy=original.policy)
    return Rescued(
        failure=original,
        fetched=fetched,
        fallback=source.name,
        snapshot_url=snapshot.snapshot_url,
        capture_url=snapshot.capture_url,
        snapshot_timestamp=snapshot.timestamp,
    )


# --------------------------------------------------------------------------------------------
# Dates
# --------------------------------------------------------------------------------------------

_SNAPSHOT_PATH = re.compile(r"^/web/(?P<stamp>\d{1,14})(?:[a-z]{2}_)?/(?P<original>.+)$")

_NUMERIC_DATE = re.compile(
    r"""^(?P<y>\d{4})[-/.](?P<m>\d{1,2})[-/.](?P<d>\d{1,2})
        (?:[Tt\s]+(?P<H>\d{1,2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:[.,](?P<f>\d+))?)?)?
        \s*(?P<tz>[Zz]|UTC|GMT|[+-]\d{2}(?::?\d{2})?)?$""",
    re.VERBOSE,
)
_CJK_DATE = re.compile(
    r"^(?P<y>\d{4})\s*年\s*(?P<m>\d{1,2})\s*月\s*(?P<d>\d{1,2})\s*日"
    r"(?:\s*(?P<H>\d{1,2})[:：](?P<M>\d{2})(?:[:：](?P<S>\d{2}))?)?$"
)
_WORDY_FORMATS = ("%B %d, %Y", "%b %d, %Y", "%d %B %Y", "%d %b %Y", "%B %d %Y", "%b %d %Y")
_EPOCH_RANGE = (315532800, 4102444800)  # 1980-01-01 .. 2100-01-01, in seconds


def parse_article_date(value: object) -> dt.datetime | None:
    """An article's front-matter date as an aware UTC datetime, or None when it is no date.

    Accepts what real posts carry: YAML/TOML date and datetime objects, ISO 8601 with `T` or a
    space (`2021-06-08 09:48:47`, `2018-7-24 23:31:06`, `…+08:00`, `… +0800`, `…Z`), a bare
    date, RFC 2822 (`Tue, 08 Jun 2021 09:48:47 GMT`), `June 8, 2021`, `2021年6月8日`, and
    Unix seconds or milliseconds. A date without a zone is taken as UTC (a few hours do not
    matter when picking an archive capture). Never raises: `Invalid Date` gives None.
    """
    try:
        return _parse_date(value)
    except (OverflowError, ValueError):  # year 9999 at -05:00, an integer of 400 digits
        return None


def _parse_date(value: object) -> dt.datetime | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, dt.datetime):
        return _utc(value)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.timezone.utc)
    if isinstance(value, (int, float)):
        return _from_epoch(float(value))
    if not isinstance(value, str):
        return None
    text = value.strip().strip("'\"").strip()
    if not text:
        return None
    if re.fullmatch(r"\d{10}(\d{3})?(\.\d+)?", text):
        return _from_epoch(float(text))
    for pattern in (_NUMERIC_DATE, _CJK_DATE):
        match = pattern.match(text)
        if match:
            return _from_parts(match.groupdict())
    with contextlib.suppress(TypeError, ValueError, IndexError, OverflowError):
        parsed = email.utils.parsedate_to_datetime(text)
        if parsed is not None:
            return _utc(parsed)
    for fmt in _WORDY_FORMATS:
        with contextlib.suppress(ValueError):
            return _utc(dt.datetime.strptime(text, fmt))
    return None


def _from_parts(parts: dict[str, str | None]) -> dt.datetime | None:
    try:
        fraction = (parts.get("f") or "0")[:6].ljust(6, "0")
        naive = dt.datetime(
            int(parts["y"] or 0),
            int(parts["m"] or 0),
            int(parts["d"] or 0),
            int(parts.get("H") or 0),
            int(parts.get("M") or 0),
            int(parts.get("S") or 0),
            int(fraction),
        )
    except ValueError:  # month 13, February 30, hour 25
        return None
    zone = parts.get("tz")
    if not zone or zone in ("Z", "z", "UTC", "GMT"):
        return naive.replace(tzinfo=dt.timezone.utc)
    sign = 1 if zone[0] == "+" else -1
    digits = zone[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:4] or 0)
    if hours > 23 or minutes > 59:
        return None
    offset = dt.timezone(sign * dt.timedelta(hours=hours, minutes=minutes))
    return naive.replace(tzinfo=offset).astimezone(dt.timezone.utc)


def _from_epoch(seconds: float) -> dt.datetime | None:
    if seconds > _EPOCH_RANGE[1] * 10:  # milliseconds
        seconds /= 1000.0
    if not _EPOCH_RANGE[0] <= seconds < _EPOCH_RANGE[1]:
        return None
    return dt.datetime.fromtimestamp(seconds, tz=dt.timezone.utc)


def _utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc)


# Front-matter keys that hold an article's publication date, most common first.
DATE_KEYS = ("date", "pubDate", "published", "publishDate", "pubdate", "created", "created_at")


def date_from_front_matter(data: object, keys: Sequence[str] = DATE_KEYS) -> dt.datetime | None:
    """The article's date from parsed front matter: the first of `keys` that is a real date."""
    if not isinstance(data, Mapping):
        return None
    for key in keys:
        when = parse_article_date(data.get(key))
        if when is not None:
            return when
    return None


def earliest_dates(
    uses: Iterable[tuple[str, object]],
) -> dict[str, dt.datetime | None]:
    """Per URL, the earliest parsable date among the articles using it.

    `uses` pairs each URL with the date of one article that references it (raw front-matter
    value or a datetime from `date_from_front_matter`); a URL whose articles carry no usable
    date maps to None.
    """
    earliest: dict[str, dt.datetime | None] = {}
    for url, raw in uses:
        when = parse_article_date(raw)
        if url not in earliest:
            earliest[url] = when
            continue
        current = earliest[url]
        if when is not None and (current is None or when < current):
            earliest[url] = when
    return earliest


def wayback_timestamp(value: dt.datetime) -> str:
    """`YYYYMMDDhhmmss` in UTC, the Wayback Machine's timestamp form."""
    return _utc(value).strftime("%Y%m%d%H%M%S")


def parse_wayback_timestamp(value: str) -> dt.datetime | None:
    """A Wayback timestamp (`20210608094847`, or a prefix of it) as UTC; None if malformed."""
    if not re.fullmatch(r"\d{4,14}", value or ""):
        return None
    padded = value + "0101000000"[len(value) - 4 :] if len(value) < 14 else value
    try:
        return dt.datetime.strptime(padded, "%Y%m%d%H%M%S").replace(tzinfo=dt.timezone.utc)
    except ValueError:
        return None


def _iso(value: dt.datetime) -> str:
    return _utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")


__all__ = [
    "ARCHIVE_PROVENANCE",
    "PLACEHOLDER_REASON",
    "RESCUABLE_REASONS",
    "FallbackAnswer",
    "FallbackMiss",
    "FallbackSource",
    "MirrorBaseSource",
    "RescueFailed",
    "Rescued",
    "Snapshot",
    "WaybackCdxSource",
    "WaybackSource",
    "check_archive_settings",
    "date_from_front_matter",
    "earliest_dates",
    "is_rescuable",
    "parse_article_date",
    "parse_wayback_timestamp",
    "placeholder_failure",
    "rescue",
    "sources_from_settings",
    "wayback_timestamp",
]
