"""The fetch stage of a run: unique article URLs → manifest `urls` and `assets` records.

In: the request each unique URL would be fetched with (from the scan), the manifest, the
store. Out: every URL recorded as ok / failed / skipped / deferred, every new image decoded,
thumbnailed and hashed (in the process pool, overlapping the downloads), counts in the summary.

Rounds, each through the same guarded client and fetcher:
1. each URL that needs fetching — the original behind a known image proxy first;
2. the proxy URL itself, for URLs whose unwrapped original failed;
3. opt-in web-archive rescue for URLs that failed permanently.

A gate stops releasing requests at the deadline, at the store budget, or on a stop signal;
what it held back is recorded as deferred, so the next run picks it up.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

from harvester.progress import Progress
from harvester.records import Fetched, FetchFailure, FetchRequest
from harvester.settings import Settings
from harvester.summary import RunSummary

# Save the manifest at least this often while fetching, so a kill loses little work.
SAVE_EVERY_SECONDS = 30.0
# After a stop signal, in-flight downloads get this long before they are cancelled.
STOP_GRACE_SECONDS = 2.0
# Failed URLs are retried on later runs after base * 2**(failures-1), capped.
RETRY_BACKOFF_BASE = timedelta(hours=1)
RETRY_BACKOFF_MAX = timedelta(days=7)


@dataclass
class _Gate:
    """Decides whether the next request may start; remembers why it closed."""

    deadline_at: float | None
    max_store_bytes: int | None
    store_bytes: int
    stopping: Callable[[], bool]
    reason: str | None = None

    def open(self) -> bool:
        if self.reason is None:
            if self.stopping():
                self.reason = "interrupted"
            elif self.deadline_at is not None and time.monotonic() >= self.deadline_at:
                self.reason = "deadline"
            elif self.max_store_bytes is not None and self.store_bytes >= self.max_store_bytes:
                self.reason = "store-budget"
        return self.reason is None


class Acquirer:
    """Runs the fetch rounds of one run; see the module docstring."""

    def __init__(
        self,
        manifest,
        store,
        settings: Settings,
        summary: RunSummary,
        progress: Progress,
        *,
        stop_event: asyncio.Event,
        started: float,
    ) -> None:
        self.manifest = manifest
        self.store = store
        # Downloads are committed without an fsync each (sync_later); every manifest save,
        # here or later in the run, first makes them durable in one batch.
        manifest.before_save = store.sync
        self.settings = settings
        self.summary = summary
        self.progress = progress
        self.stop_event = stop_event
        self.now = datetime.now(timezone.utc)
        self.gate = _Gate(
            deadline_at=started + settings.deadline if settings.deadline is not None else None,
            max_store_bytes=settings.max_store_bytes,
            store_bytes=_store_size(store.root) if settings.max_store_bytes is not None else 0,
            stopping=stop_event.is_set,
        )
        self._article_url: dict[str, str] = {}  # URL fetched → URL written in the article
        self._wrapper_of: dict[str, FetchRequest] = {}  # article URL → request for the proxy
        self._stored_path: dict[str, str] = {}  # sha256 → store path, this run
        self._stored_abs: dict[str, Path] = {}  # sha256 → its checked absolute path
        self._urls_of: dict[str, list[str]] = {}  # sha256 → article URLs, this run
        self._processing: set[asyncio.Future] = set()
        self._rehashing: set[str] = set()  # known images whose signatures are made again
        self._rehash_initial: set[str] = set()  # the run's `rehash` list
        self.rehash_finished = 0  # of them, answered by the pool (made or failed)
        self._rehash_futures: list[asyncio.Future] = []
        self.article_dates: dict[str, datetime] = {}  # for archive lookups (fallback.py)
        self._last_save = time.monotonic()

    # -- planning -------------------------------------------------------------------------

    def plan(self, wanted: dict[str, FetchRequest]) -> list[FetchRequest]:
        """The requests of round 1: what is not mirrored yet (or due for a retry/refresh)."""
        from harvester.quirks import PLACEHOLDER_REASON, plan_url
        from harvester.referrer import referrer_for

        requests = []
        for url, request in wanted.items():
            record = self.manifest.url(url)
            plan = plan_url(url, skip_placeholders=self.settings.skip_placeholders)
            if plan.skip_reason is not None:
                known = record is not None and record.get("status") == "skipped"
                if not (known and record.get("reason") == PLACEHOLDER_REASON):
                    # recorded once: a run that skips it again changes nothing (no diff)
                    self.manifest.record_url_state(
                        url,
                        "skipped",
                        PLACEHOLDER_REASON,
                        "a random-picture service: every fetch is a different image",
                        policy=request.policy,
                    )
                self.summary.skipped += 1
                continue
            if not self.needs_fetch(record):
                status = record.get("status") if record is not None else None
                if status == "ok":
                    self.summary.reused += 1
                elif record is not None and status in ("failed", "deferred"):
                    # backing off: retried by a later run
                    self.summary.note_waiting(record.get("next_retry_at"))
                continue
            request = self._with_validators(record, request)
            original = plan.unwrapped if self.settings.unwrap_proxies else None
            if original is not None:
                self._wrapper_of[url] = request
                referer = referrer_for(request.policy, request.page_url, original)
                request = replace(
                    request,
                    url=original,
                    referer=referer,
                    etag=None,
                    last_modified=None,
                    known_sha256=None,
                    known_path=None,
                )
            self._article_url[request.url] = url
            requests.append(request)
        return requests

    def needs_fetch(self, record: dict | None) -> bool:
        return needs_fetch(self.manifest, record, self.settings, self.now)

    def _with_validators(self, record: dict | None, request: FetchRequest) -> FetchRequest:
        """ETag/Last-Modified from the last run make a refresh a conditional request."""
        if not record or record.get("status") != "ok" or not record.get("sha256"):
            return request
        asset = self.manifest.asset(record["sha256"])
        if asset is None:
            return request
        known_path = os.path.relpath(self.manifest.resolve(asset["path"]), self.store.root)
        return replace(
            request,
            etag=record.get("etag"),
            last_modified=record.get("last_modified"),
            known_sha256=record["sha256"],
            known_path=Path(known_path).as_posix(),
        )

    # -- the rounds -----------------------------------------------------------------------

    async def run(
        self, requests: list[FetchRequest], rehash: Sequence[tuple[str, Path]] = ()
    ) -> None:
        """Fetch `requests` (round 1, then wrappers and archives) and process what arrives;
        `rehash` (sha256, stored file) are known images whose signatures are made again."""
        from harvester.net import backend_of, build_client
        from mirror.imaging import ImagePool

        self.progress.start("fetch", total=len(requests))
        workers = self.settings.workers or os.cpu_count() or 1
        wall, cpu = time.monotonic(), time.process_time()
        with ImagePool(workers, self.store.root, self.settings.imaging_options()) as pool:
            for sha256, path in rehash:
                self._rehash_initial.add(sha256)
                self._resign(sha256, path, pool)
            async with build_client(self.settings) as client:
                failures = await self._round(requests, pool, client)
                failures = await self._retry_wrappers(failures, pool, client)
                await self._rescue(failures, pool, client)
                backend = backend_of(client)
                connections = backend.connections if backend is not None else 0
            fetch_cpu = time.process_time() - cpu
            self.summary.fetch_cpu_seconds += fetch_cpu
            self.summary.stage(
                "fetch",
                wall_seconds=time.monotonic() - wall,
                cpu_seconds=fetch_cpu,
                connections=connections,
                requests=len(requests),
            )
            wall_process = time.monotonic()
            # the downloads' fsyncs run while the workers finish their backlog
            syncing = asyncio.ensure_future(asyncio.to_thread(self.store.sync))
            try:
                await self._finish_processing()
            finally:
                await syncing
            # images were processed while downloading; this is only the tail after the last one
            self.summary.stage(
                "process",
                wall_seconds=time.monotonic() - wall,
                tail_seconds=time.monotonic() - wall_process,
                images=len(self._processing),
            )
        self._count_outcomes(requests)

    async def _retry_wrappers(
        self, failures: list[FetchFailure], pool, client
    ) -> list[FetchFailure]:
        """Round 2: where the original behind a proxy failed, try the proxy URL as written."""
        retry = [
            wrapper
            for f in failures
            if (wrapper := self._wrapper_of.get(self._article_url.get(f.url, f.url))) is not None
        ]
        if not retry:
            return failures
        for wrapper in retry:
            self._article_url[wrapper.url] = wrapper.url
        retried = {w.url for w in retry}
        kept = [f for f in failures if self._article_url.get(f.url, f.url) not in retried]
        return kept + await self._round(retry, pool, client)

    async def _round(self, requests: Sequence[FetchRequest], pool, client) -> list[FetchFailure]:
        """One pass of `fetch_all`; failures are recorded and returned for the next round."""
        from harvester.fallback import placeholder_failure
        from harvester.fetch import fetch_all

        failures: list[FetchFailure] = []
        released: list[FetchRequest] = []

        async def gated() -> AsyncIterator[FetchRequest]:
            for request in requests:
                if not self.gate.open():
                    return
                released.append(request)
                yield request

        async def consume() -> None:
            results = fetch_all(
                gated(),
                store=self.store,
                settings=self.settings,
                client=client,
                may_start=self.gate.open,
                sync_later=True,  # store.sync() runs before every manifest save (see __init__)
            )
            async for result in results:
                if isinstance(result, FetchFailure) and result.reason == "not-started":
                    self._defer(self._article_url.get(result.url, result.url), None)
                    continue
                if isinstance(result, Fetched):
                    # a CDN's stock "image removed" picture is a dead link, not an image
                    placeholder = placeholder_failure(result, self.settings)
                    if placeholder is not None:
                        result = placeholder
                if isinstance(result, Fetched):
                    self._on_fetched(result, pool)
                else:
                    self._on_failure(result)
                    failures.append(result)
                await self._maybe_save()

        consumer = asyncio.ensure_future(consume())
        watcher = asyncio.ensure_future(self._cancel_after_stop(consumer))
        with contextlib.suppress(asyncio.CancelledError):
            await consumer
        watcher.cancel()
        for request in requests[len(released) :]:
            self._defer(self._article_url.get(request.url, request.url), request)
        return failures

    async def _cancel_after_stop(self, consumer: asyncio.Future) -> None:
        await self.stop_event.wait()
        await asyncio.sleep(STOP_GRACE_SECONDS)
        consumer.cancel()

    async def _rescue(self, failures: list[FetchFailure], pool, client) -> None:
        """Round 3: ask the configured web archives for URLs that failed permanently.

        A rescued image is recorded like any other download (budgeted, processed, deduped,
        rewritten) with its provenance; a failed rescue keeps round 1's failure (reason,
        count, next retry) and only gains the archives' answers in its message.
        """
        if not self.settings.archive or not failures or not self.gate.open():
            return
        from harvester.fallback import Rescued, rescue, sources_from_settings

        when = {
            f.url: self.article_dates.get(self._article_url.get(f.url, f.url)) for f in failures
        }
        outcomes = rescue(
            failures,
            sources=sources_from_settings(self.settings),
            store=self.store,
            settings=self.settings,
            dates=when,
            client=client,
            keep_going=self.gate.open,
        )
        async for outcome in outcomes:
            if isinstance(outcome, Rescued):
                self._on_fetched(
                    outcome.fetched, pool, source=outcome.source, archive=outcome.snapshot_url
                )
                self.summary.rescued += 1
            elif outcome.tried:
                url = self._article_url.get(outcome.url, outcome.url)
                self.manifest.annotate_failure(url, outcome.as_failure().message)
            await self._maybe_save()

    # -- recording ------------------------------------------------------------------------

    def _on_fetched(self, result: Fetched, pool, *, source: str = "origin", archive=None) -> None:
        from harvester.fetch import SVG

        url = self._article_url.get(result.url, result.url)
        is_new = self.manifest.asset(result.sha256) is None and (
            result.sha256 not in self._stored_path
        )
        # an SVG (fetched only under allow_svg) is kept as it is: nothing to decode, hash or
        # shrink, so no thumbnail reserve either
        svg = result.media_type == SVG.media_type
        if is_new and not result.not_modified and self._over_budget(result.size, svg):
            self.store.remove(result.path)  # refuse to grow the store past the budget
            self.gate.reason = "store-budget"
            self._defer(url, None)
            return
        self.manifest.record_url_ok(
            url,
            sha256=result.sha256,
            http_status=result.http_status,
            final_url=result.final_url,
            etag=result.etag,
            last_modified=result.last_modified,
            attempts=result.attempts,
            policy=result.policy,
            referer=result.referer,
            source=source,
            archive=archive,
            unwrapped_url=result.url if result.url != url and source == "origin" else None,
        )
        self._urls_of.setdefault(result.sha256, []).append(url)
        if result.not_modified:
            self.summary.not_modified += 1
            self.progress.advance("fetch", unchanged=1)
            return
        self.summary.fetched += 1
        self.summary.bytes_fetched += result.size
        self.progress.advance("fetch", ok=1, bytes=result.size)
        known = self.manifest.asset(result.sha256) or {}
        if svg and not (known.get("status") == "ok" and known.get("format") == "SVG"):
            # new, or bytes an older harvester sent to imaging (failed: unsupported-format)
            stored = self.manifest.rel(self.store.abspath(result.path))
            self.manifest.record_vector_asset(result.sha256, stored, result.size, SVG.media_type)
            if is_new:
                self.gate.store_bytes += result.size
                self.summary.assets_new += 1
            return
        if not is_new:
            # the same bytes were already processed (another URL or an earlier run) — unless
            # their signatures were cleared by a re-hash that found the file gone
            cleared = (
                known.get("status") == "ok"
                and not known.get("phash")
                and known.get("format") != "SVG"  # never had signatures to clear
            )
            if cleared and result.sha256 not in self._rehashing:
                self._resign(result.sha256, self.store.abspath(result.path), pool)
            return
        reserve = self._thumbnail_reserve(result.size)
        self.gate.store_bytes += result.size + reserve
        self._stored_path[result.sha256] = result.path
        absolute = self.store.abspath(result.path)  # checked once (a realpath per call)
        self._stored_abs[result.sha256] = absolute
        future = asyncio.wrap_future(pool.submit(absolute, result.sha256))
        future.add_done_callback(lambda done: self._settle_reserve(done, reserve))
        self._processing.add(future)

    def _over_budget(self, size: int, svg: bool = False) -> bool:
        """The budget covers the whole store folder (what a Pages site publishes): the
        original plus a reserve for its thumbnails (none for an SVG), settled when they
        exist."""
        limit = self.settings.max_store_bytes
        reserve = 0 if svg else self._thumbnail_reserve(size)
        return limit is not None and self.gate.store_bytes + size + reserve > limit

    def _thumbnail_reserve(self, size: int) -> int:
        # an upper bound: a thumbnail is at most 2 bytes per pixel of its box, and rarely
        # larger than twice the original it was made from
        return sum(min(2 * size, 2 * side * side) for side in self.settings.thumbnail_sizes)

    def _settle_reserve(self, done: asyncio.Future, reserve: int) -> None:
        from mirror.records import ImageInfo

        if done.cancelled() or done.exception() is not None:
            return
        info = done.result()
        actual = 0
        if isinstance(info, ImageInfo):
            actual = sum(thumb.bytes for thumb in info.thumbnails)  # the worker counted them
        self.gate.store_bytes += actual - reserve

    def _on_failure(self, result: FetchFailure) -> None:
        url = self._article_url.get(result.url, result.url)
        previous = self.manifest.url(url) or {}
        failures = int(previous.get("failures") or 0) + 1
        if result.retry_after is not None:
            next_retry = self.now + timedelta(seconds=result.retry_after)
        else:
            next_retry = self.now + min(RETRY_BACKOFF_BASE * 2 ** (failures - 1), RETRY_BACKOFF_MAX)
        self.manifest.record_url_failed(
            url,
            reason=result.reason,
            message=result.message,
            http_status=result.http_status,
            attempts=result.attempts,
            policy=result.policy,
            referer=result.referer,
            next_retry_at=next_retry,
        )
        if result.retry_after is not None:
            self.manifest.record_url_state(
                url,
                "deferred",
                result.reason,
                f"the server asked us to come back in {result.retry_after:.0f} s",
                next_retry_at=next_retry,
            )
        self.progress.advance("fetch", failed=1)

    def _defer(self, url: str, request: FetchRequest | None) -> None:
        record = self.manifest.url(url)
        if record is not None and record.get("status") == "ok":
            return  # a refresh that did not happen leaves the good copy in place
        self.manifest.record_url_state(
            url,
            "deferred",
            self.gate.reason or "deferred",
            _DEFER_MESSAGES.get(self.gate.reason or ""),
            policy=request.policy if request else None,
        )

    async def _finish_processing(self) -> None:
        from mirror.records import ImageFailure

        self.progress.start("process", total=len(self._processing))
        for done in asyncio.as_completed(self._processing):
            if self.stop_event.is_set():
                self._cancel_rehashing()  # a stop must not wait for a whole store's re-hash
            try:
                info = await done
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if self.stop_event.is_set() and not (task and task.cancelling()):
                    continue  # a re-hash cancelled by the stop: the next run redoes it
                raise  # this task itself is being cancelled
            if info.sha256 in self._rehashing:
                # A failure clears the old signatures (made another way, they no longer
                # compare with anything), so the asset sits out of dedupe, never mis-merged.
                made = None if isinstance(info, ImageFailure) else info
                if self.manifest.update_signatures(info.sha256, made) and made is not None:
                    self.summary.rehashed += 1
                if info.sha256 in self._rehash_initial:
                    self.rehash_finished += 1
                self.progress.advance("process")
                continue
            stored = self.manifest.rel(self._absolute(info.sha256))
            if isinstance(info, ImageFailure):
                self._on_image_failure(info, stored)
            else:
                self.manifest.record_asset(info, stored)
                self.summary.assets_new += 1
            self.progress.advance("process")
            await self._maybe_save()

    def _resign(self, sha256: str, path: Path, pool) -> None:
        """Make a known image's signatures again (the rest of its record stays)."""
        self._rehashing.add(sha256)
        self._stored_abs[sha256] = path
        future = asyncio.wrap_future(pool.submit(path, sha256))
        self._rehash_futures.append(future)
        self._processing.add(future)

    def _cancel_rehashing(self) -> None:
        for future in self._rehash_futures:
            future.cancel()

    def _absolute(self, sha256: str) -> Path:
        absolute = self._stored_abs.get(sha256)
        return absolute if absolute is not None else self.store.abspath(self._stored_path[sha256])

    def _on_image_failure(self, info, stored: str) -> None:
        """Bytes that are not a usable image: the asset and every URL that brought it fail."""
        size = self._absolute(info.sha256).stat().st_size
        self.manifest.record_asset_failure(info.sha256, stored, info.reason, info.message, size)
        for url in self._urls_of.get(info.sha256, []):
            record = self.manifest.url(url) or {}
            self.manifest.record_url_failed(
                url,
                reason=info.reason,
                message=info.message,
                http_status=record.get("http_status"),
                attempts=int(record.get("attempts") or 1),
                policy=record.get("policy"),
                referer=record.get("referer"),
                next_retry_at=self.now + RETRY_BACKOFF_MAX,
            )

    def _count_outcomes(self, requests: Iterable[FetchRequest]) -> None:
        for request in requests:
            url = self._article_url.get(request.url, request.url)
            record = self.manifest.url(url) or {}
            status = record.get("status")
            if status == "failed":
                self.summary.failed += 1
                reason = record.get("reason") or "unknown"
                self.summary.failures_by_reason[reason] = (
                    self.summary.failures_by_reason.get(reason, 0) + 1
                )
            elif status == "deferred":
                self.summary.deferred += 1
                if record.get("reason") == "store-budget":
                    self.summary.budget_exhausted = True

    async def _maybe_save(self) -> None:
        if time.monotonic() - self._last_save > SAVE_EVERY_SECONDS:
            self._last_save = time.monotonic()
            # fsync what was stored since the last checkpoint off the loop (downloads go on);
            # the save's before_save hook then finds little or nothing left to sync
            await asyncio.to_thread(self.store.sync)
            self.manifest.save()
            self._last_save = time.monotonic()


def _store_size(root) -> int:
    """Bytes under the store folder (temp files aside): what a budget is measured against."""
    total = 0
    for folder, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".tmp"]
        for name in filenames:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(folder, name)).st_size
    return total


def _lifted_now(record: dict, settings: Settings) -> bool:
    """Whether the URL failed by harvester's own refusal under a setting that this run has
    on: such a URL is due at once, not after a back-off. A refused address counts only
    when the refusal said the setting lifts it (not 0.0.0.0, multicast and the like)."""
    from harvester.net import ALLOW_PRIVATE_LIFTS

    reason = record.get("reason")
    if reason == "svg-refused":
        return settings.allow_svg
    if reason == "blocked-address":
        lifted = ALLOW_PRIVATE_LIFTS in (record.get("message") or "")
        return lifted and settings.allow_private_addresses
    return False


def needs_fetch(manifest, record: dict | None, settings: Settings, now: datetime) -> bool:
    """Whether a URL's manifest record calls for a download in this run."""
    if record is None:
        return True
    status = record.get("status")
    if status == "ok":
        asset = manifest.asset(record["sha256"]) if record.get("sha256") else None
        if asset is None or not manifest.resolve(asset["path"]).exists():
            return True  # the store lost the file: fetch it again
        return settings.refresh
    if status == "skipped":
        return False
    if settings.retry_failed:
        return True
    if _lifted_now(record, settings):
        return True
    from mirror.manifest import parse_iso

    next_retry = record.get("next_retry_at")
    return next_retry is None or parse_iso(next_retry) <= now


_DEFER_MESSAGES = {
    "deadline": "the run's --deadline passed before this download started",
    "store-budget": "the store reached --max-store-bytes",
    "interrupted": "the run was stopped by a signal before this download started",
}
