"""`harvester run`: the only module that knows the stage order.

    paths ─► scan (pass 1: unique URLs) ─► fetch ═► process (pool, overlapped) ─► dedupe
          ─► scan (pass 2: one article at a time) ─► plan edits ─► write-ahead ─► rewrite
          ─► manifest

Articles are scanned twice instead of being held in memory, so memory stays flat in the
number of articles (only the per-URL state and the manifest grow). In: article paths and a
`Settings`. Out: a `RunSummary`, the store, the rewritten articles and `manifest.json`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import stat
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from harvester.errors import Interrupted, StrictFailure, UsageError
from harvester.progress import NullProgress, Progress
from harvester.records import Fetched, FetchFailure, FetchRequest, ImageRef
from harvester.settings import Settings

# How many articles are planned (and their plan saved) before the batch is written.
REWRITE_BATCH = 64
# Save the manifest at least this often while fetching, so a kill loses little work.
SAVE_EVERY_SECONDS = 30.0
# After a stop signal, in-flight downloads get this long before they are cancelled.
STOP_GRACE_SECONDS = 2.0
# Failed URLs are retried on later runs after base * 2**(failures-1), capped.
RETRY_BACKOFF_BASE = timedelta(hours=1)
RETRY_BACKOFF_MAX = timedelta(days=7)


@dataclass
class RunSummary:
    """What a run did; printed as a paragraph, or as JSON with `--json`."""

    articles: int = 0
    articles_with_refs: int = 0
    articles_rewritten: int = 0
    articles_skipped: int = 0
    refs: int = 0
    urls: int = 0
    fetched: int = 0
    not_modified: int = 0
    reused: int = 0
    failed: int = 0
    skipped: int = 0
    deferred: int = 0
    bytes_fetched: int = 0
    assets_new: int = 0
    duplicates: int = 0
    similar: int = 0
    failures_by_reason: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    would_fetch: list[str] = field(default_factory=list)  # --dry-run
    would_rewrite: list[str] = field(default_factory=list)  # --dry-run
    elapsed: float = 0.0
    fetch_cpu_seconds: float = 0.0
    manifest: str = ""
    interrupted: bool = False
    dry_run: bool = False

    def to_json(self) -> dict[str, object]:
        return dict(self.__dict__)

    def paragraph(self) -> str:
        if self.dry_run:
            return (
                f"Dry run: scanned {self.articles} articles ({self.refs} remote references, "
                f"{self.urls} unique URLs). Would fetch {len(self.would_fetch)} URLs and "
                f"rewrite {len(self.would_rewrite)} articles whose images are already "
                "mirrored (more once the downloads succeed). Nothing was written."
            )
        from harvester.progress import human_bytes

        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(self.failures_by_reason.items()))
        parts = [
            f"Scanned {self.articles} articles ({self.refs} remote references, "
            f"{self.urls} unique URLs).",
            f"Fetched {self.fetched} images ({human_bytes(self.bytes_fetched)}), "
            f"{self.not_modified} unchanged, reused {self.reused} already mirrored; "
            f"{self.failed} failed" + (f" ({reasons})" if reasons else "") + ", "
            f"{self.skipped} skipped, {self.deferred} deferred to a later run.",
            f"Stored {self.assets_new} new assets; {self.duplicates} duplicates folded onto a "
            f"canonical copy, {self.similar} similar pairs recorded for review.",
            f"Rewrote {self.articles_rewritten} articles"
            + (f" ({self.articles_skipped} skipped)" if self.articles_skipped else "")
            + f". Manifest: {self.manifest}. {self.elapsed:.1f} s.",
        ]
        if self.interrupted:
            parts.append("Interrupted: the manifest was saved; run again to finish.")
        return " ".join(parts)


def run(
    paths: Sequence[Path], settings: Settings, *, progress: Progress | None = None
) -> RunSummary:
    """Mirror every remote image of the articles under `paths`; see the module docstring."""
    for path in paths:
        if not path.exists():
            raise UsageError(f"no such file or folder: {path}")
    started = time.monotonic()
    job = _Run(list(paths), settings, progress or NullProgress())
    try:
        if settings.dry_run:
            job.dry_run()
        else:
            from harvester.locking import run_lock

            settings.manifest.parent.mkdir(parents=True, exist_ok=True)
            with run_lock(settings.manifest):
                asyncio.run(job.execute())
    finally:
        job.progress.stop()
        job.summary.elapsed = time.monotonic() - started
    if job.stop_signal is not None:
        raise Interrupted(job.stop_signal)
    if settings.strict and job.summary.failed:
        raise StrictFailure(f"{job.summary.failed} images failed (--strict)")
    return job.summary


class _Run:
    """The state of one run. Methods are the stages in order; `execute` calls them."""

    def __init__(self, paths: list[Path], settings: Settings, progress: Progress) -> None:
        self.paths = paths
        self.settings = settings
        self.progress = progress
        self.summary = RunSummary(manifest=str(settings.manifest), dry_run=settings.dry_run)
        self.manifest_dir = settings.manifest.resolve().parent
        self.stop_signal: int | None = None
        self.stop_event: asyncio.Event | None = None
        self.now = datetime.now(timezone.utc)
        self._stored_path: dict[str, str] = {}  # sha256 → store-relative path, this run

    # -- stage 0: state -------------------------------------------------------------------

    def _load_manifest(self):  # -> Manifest
        from harvester.errors import ManifestError
        from mirror.manifest import Manifest, ManifestCorrupt

        try:
            return Manifest.load(self.settings.manifest)
        except ManifestCorrupt as exc:
            raise ManifestError(str(exc)) from exc

    # -- stage 1: scan (pass 1) -----------------------------------------------------------

    def collect_urls(self) -> dict[str, FetchRequest]:
        """Unique URLs with the request we will send for each.

        When several articles use one URL, the occurrence that sends the least (no Referer
        first) wins: feeds add `referrerpolicy="no-referrer"` precisely because the host
        refuses foreign referrers, and sending less is never a privacy leak.
        """
        from harvester.extract import scan_paths

        wanted: dict[str, FetchRequest] = {}
        self.progress.start("scan")
        for result in scan_paths(self.paths, self.settings):
            self.summary.articles += 1
            self.summary.warnings.extend(f"{result.path}: {w}" for w in result.warnings)
            if result.refs:
                self.summary.articles_with_refs += 1
            self.summary.refs += len(result.refs)
            for ref in result.refs:
                current = wanted.get(ref.url)
                if current is None or (current.referer is not None and ref.referer is None):
                    wanted[ref.url] = FetchRequest(
                        url=ref.url, policy=ref.policy, page_url=ref.page_url, referer=ref.referer
                    )
            self.progress.advance("scan", refs=len(result.refs))
        self.summary.urls = len(wanted)
        return wanted

    def needs_fetch(self, manifest, url: str) -> bool:
        record = manifest.url(url)
        if record is None:
            return True
        status = record.get("status")
        if status == "ok":
            sha = record.get("sha256")
            asset = manifest.asset(sha) if sha else None
            if asset is None or not (self.manifest_dir / asset["path"]).exists():
                return True  # the store lost the file: fetch it again
            return self.settings.refresh
        if status == "skipped":
            return False
        if self.settings.retry_failed:
            return True
        next_retry = record.get("next_retry_at")
        return next_retry is None or _parse_time(next_retry) <= self.now

    def with_validators(self, manifest, request: FetchRequest) -> FetchRequest:
        """Add ETag/Last-Modified from the last run so a refresh is a conditional request."""
        record = manifest.url(request.url)
        if not record or record.get("status") != "ok":
            return request
        from dataclasses import replace

        return replace(request, etag=record.get("etag"), last_modified=record.get("last_modified"))

    # -- stages 2-4: fetch, process, dedupe -----------------------------------------------

    async def execute(self) -> None:
        from mirror.store import Store

        manifest = self._load_manifest()
        store = Store(self.settings.out)
        store.sweep_temp()
        manifest.set_store(self._rel(store.root))
        self._install_signal_handlers()

        wanted = self.collect_urls()
        for url in wanted:
            record = manifest.url(url)
            if record is not None and record.get("status") == "skipped":
                self.summary.skipped += 1
        to_fetch = [
            self.with_validators(manifest, req)
            for url, req in wanted.items()
            if self.needs_fetch(manifest, url)
        ]
        self.summary.reused = sum(
            1 for url in wanted if (r := manifest.url(url)) is not None and r.get("status") == "ok"
        ) - sum(1 for r in to_fetch if r.etag or r.last_modified)
        await self.fetch_and_process(manifest, store, to_fetch)
        manifest.save()
        if self.stop_signal is None:
            self.dedupe(manifest)
            manifest.save()
        if self.stop_signal is None and self.settings.rewrite:
            self.rewrite(manifest, store)
        manifest.save()

    async def fetch_and_process(self, manifest, store, requests: list[FetchRequest]) -> None:
        from harvester.fetch import fetch_all
        from mirror.imaging import ImagePool

        self.progress.start("fetch", total=len(requests))
        processing: set[asyncio.Future] = set()
        urls_of: dict[str, list[str]] = {}
        last_save = time.monotonic()
        cpu_before = time.process_time()
        workers = self.settings.workers or os.cpu_count() or 1
        with ImagePool(workers, store.root, self.settings.imaging_options()) as pool:
            consumer = asyncio.ensure_future(
                self._consume(
                    fetch_all(self._gated(requests), store=store, settings=self.settings),
                    manifest,
                    store,
                    pool,
                    processing,
                    urls_of,
                )
            )
            watcher = asyncio.ensure_future(self._cancel_after_stop(consumer))
            with contextlib.suppress(asyncio.CancelledError):
                await consumer
            watcher.cancel()
            self.summary.fetch_cpu_seconds = time.process_time() - cpu_before
            self.progress.start("process", total=len(processing))
            for done in asyncio.as_completed(processing):
                info = await done
                self._record_processed(manifest, store, info, urls_of)
                self.progress.advance("process")
                if time.monotonic() - last_save > SAVE_EVERY_SECONDS:
                    manifest.save()
                    last_save = time.monotonic()
        # whatever the gate held back (deadline, budget, signal) is deferred to a later run
        for request in requests[self._released :]:
            manifest.record_url_state(request.url, "deferred", reason=self._defer_reason)
            self.summary.deferred += 1

    async def _consume(
        self,
        results: AsyncIterator[Fetched | FetchFailure],
        manifest,
        store,
        pool,
        processing,
        urls_of,
    ) -> None:
        last_save = time.monotonic()
        async for result in results:
            if isinstance(result, Fetched):
                self._record_fetched(manifest, store, result, pool, processing, urls_of)
            else:
                self._record_failure(manifest, result)
            if time.monotonic() - last_save > SAVE_EVERY_SECONDS:
                manifest.save()
                last_save = time.monotonic()

    _released = 0
    _defer_reason = "deadline"

    async def _gated(self, requests: list[FetchRequest]) -> AsyncIterator[FetchRequest]:
        """Release requests to the fetcher until a stop signal arrives."""
        for request in requests:
            if self.stop_signal is not None:
                self._defer_reason = "interrupted"
                return
            self._released += 1
            yield request

    async def _cancel_after_stop(self, consumer: asyncio.Future) -> None:
        assert self.stop_event is not None
        await self.stop_event.wait()
        await asyncio.sleep(STOP_GRACE_SECONDS)
        consumer.cancel()

    def _record_fetched(self, manifest, store, result: Fetched, pool, processing, urls_of) -> None:
        manifest.record_url_ok(
            result.url,
            sha256=result.sha256,
            http_status=result.http_status,
            final_url=result.final_url,
            etag=result.etag,
            last_modified=result.last_modified,
            attempts=result.attempts,
            policy=result.policy,
            referer=result.referer,
        )
        urls_of.setdefault(result.sha256, []).append(result.url)
        if result.not_modified:
            self.summary.not_modified += 1
            self.progress.advance("fetch", unchanged=1)
            return
        self.summary.fetched += 1
        self.summary.bytes_fetched += result.size
        self.progress.advance("fetch", ok=1, bytes=result.size)
        asset = manifest.asset(result.sha256)
        if asset is not None and asset.get("status") == "ok":
            return  # same bytes already processed (another URL, or a previous run)
        if result.sha256 in self._stored_path:
            return  # another URL of this run brought the same bytes; processed once
        self._stored_path[result.sha256] = result.path
        future = asyncio.wrap_future(pool.submit(store.abspath(result.path), result.sha256))
        processing.add(future)

    def _record_failure(self, manifest, result: FetchFailure) -> None:
        previous = manifest.url(result.url) or {}
        failures = int(previous.get("failures") or 0) + 1
        if result.retry_after is not None:
            next_retry = self.now + timedelta(seconds=result.retry_after)
        else:
            next_retry = self.now + min(RETRY_BACKOFF_BASE * 2 ** (failures - 1), RETRY_BACKOFF_MAX)
        manifest.record_url_failed(
            result.url,
            reason=result.reason,
            message=result.message,
            http_status=result.http_status,
            attempts=result.attempts,
            policy=result.policy,
            referer=result.referer,
            next_retry_at=_format_time(next_retry),
        )
        if result.retry_after is not None:
            self.summary.deferred += 1
        else:
            self.summary.failed += 1
            self.summary.failures_by_reason[result.reason] = (
                self.summary.failures_by_reason.get(result.reason, 0) + 1
            )
        self.progress.advance("fetch", failed=1)

    def _record_processed(self, manifest, store, info, urls_of) -> None:
        from mirror.records import ImageFailure

        if isinstance(info, ImageFailure):
            stored = self._rel(store.abspath(self._stored_path[info.sha256]))
            manifest.record_asset_failure(info, stored)
            for url in urls_of.get(info.sha256, []):
                record = manifest.url(url) or {}
                manifest.record_url_failed(
                    url,
                    reason=info.reason,
                    message=info.message,
                    http_status=record.get("http_status"),
                    attempts=int(record.get("attempts") or 1),
                    policy=record.get("policy") or "",
                    referer=record.get("referer"),
                    next_retry_at=None,
                )
                self.summary.failed += 1
                self.summary.failures_by_reason[info.reason] = (
                    self.summary.failures_by_reason.get(info.reason, 0) + 1
                )
            return
        manifest.record_asset(info, self._rel(store.abspath(self._stored_path[info.sha256])))
        self.summary.assets_new += 1

    def dedupe(self, manifest) -> None:
        from mirror.dedupe import find_duplicates

        infos = manifest.image_infos()
        links = find_duplicates(infos, self.settings.dedupe_thresholds(), manifest.decisions())
        manifest.set_duplicates(links)
        self.summary.duplicates = sum(1 for link in links if link.tier == "duplicate")
        self.summary.similar = sum(1 for link in links if link.tier == "similar")

    # -- stage 5: rewrite (pass 2) --------------------------------------------------------

    def rewrite(self, manifest, store) -> None:
        from harvester.extract import scan_paths

        self.progress.start("rewrite", total=self.summary.articles_with_refs)
        batch: list[_Planned] = []
        for result in scan_paths(self.paths, self.settings):
            if self.stop_signal is not None:
                break
            if result.article is None or not result.refs:
                continue
            planned = self.plan_article(manifest, store, result.article, result.refs)
            self.progress.advance("rewrite")
            if planned is not None:
                batch.append(planned)
            if len(batch) >= REWRITE_BATCH:
                self.write_batch(manifest, batch)
                batch = []
        self.write_batch(manifest, batch)

    def plan_article(self, manifest, store, article, refs: Sequence[ImageRef]):
        from harvester.articles import encode_article
        from mirror.records import Edit
        from mirror.rewrite import apply_edits, escape_for

        key = self._rel(article.path)
        original_bytes = encode_article(article, article.text)
        original_sha = hashlib.sha256(original_bytes).hexdigest()
        previous = manifest.article(key)
        base_edits, base_original_sha = self._edits_to_keep(previous, original_sha)

        edits: list[Edit] = []
        ref_records = []
        for ref in refs:
            local = self.target_for(manifest, store, article.path, ref)
            status = self._ref_status(manifest, ref.url)
            if local is not None:
                new = escape_for(ref.syntax, local, _escape_context(article.text, ref))
                edits.append(Edit(ref.start, ref.end, ref.raw, new))
            ref_records.append(
                {
                    "kind": ref.kind,
                    "field": ref.field,
                    "line": ref.line,
                    "url": ref.url,
                    "original": ref.raw,
                    "local": local,
                    "status": "ok" if local is not None else status,
                    "policy": ref.policy,
                    "referer": ref.referer,
                }
            )
        skip_reason = self._unwritable(article.path)
        if not edits or not self.settings.rewrite or skip_reason:
            if skip_reason and edits:
                self.summary.articles_skipped += 1
                self.summary.warnings.append(f"{article.path}: not rewritten: {skip_reason}")
            manifest.record_article_refs(
                key,
                encoding=article.encoding,
                bom=article.bom,
                newline=article.newline,
                refs=ref_records,
            )
            return None
        new_text = apply_edits(article.text, edits)
        new_bytes = encode_article(article, new_text)
        recorded = _shift_recorded(base_edits, edits) + _recorded_edits(edits)
        recorded.sort(key=lambda e: e["start"])
        manifest.plan_article(
            key,
            encoding=article.encoding,
            bom=article.bom,
            newline=article.newline,
            original_sha256=base_original_sha or original_sha,
            rewritten_sha256=hashlib.sha256(new_bytes).hexdigest(),
            refs=ref_records,
            edits=recorded,
        )
        return _Planned(key=key, path=article.path, data=new_bytes, original=original_bytes)

    def _edits_to_keep(self, previous: dict | None, current_sha: str):
        """Edits from an earlier rewrite that still describe the file on disk.

        If the file is exactly what we wrote last time, earlier edits stay (restore must undo
        both). Anything else means the file was regenerated (a generator rewrote every post):
        the file on disk is the new original and earlier edits no longer apply.
        """
        if (
            previous
            and previous.get("state") in {"rewritten", "planned"}
            and previous.get("rewritten_sha256") == current_sha
        ):
            return list(previous.get("edits") or []), previous.get("original_sha256")
        return [], None

    def write_batch(self, manifest, batch: list[_Planned]) -> None:
        from mirror.rewrite import write_bytes_atomic

        if not batch:
            return
        manifest.save()  # write-ahead: every plan in this batch is on disk first
        for planned in batch:
            try:
                write_bytes_atomic(planned.path, planned.data)
            except OSError as exc:
                self.summary.articles_skipped += 1
                self.summary.warnings.append(f"{planned.path}: not rewritten: {exc}")
                manifest.cancel_plan(planned.key)
                continue
            manifest.mark_rewritten(planned.key)
            self.summary.articles_rewritten += 1
        manifest.save()

    def target_for(self, manifest, store, article_path: Path, ref: ImageRef) -> str | None:
        """The local URL that replaces `ref`, or None when the image is not mirrored."""
        from mirror.rewrite import prefixed_target, relative_target

        record = manifest.url(ref.url)
        if not record or record.get("status") != "ok" or not record.get("sha256"):
            return None
        sha = manifest.canonical(record["sha256"])
        asset = manifest.asset(sha)
        if asset is None or asset.get("status") != "ok":
            return None
        target_path = asset["path"]
        top_key = ref.field.split(".", 1)[0].split("[", 1)[0]
        if ref.kind == "front-matter" and top_key in self.settings.thumbnail_keys:
            thumbs = asset.get("thumbnails") or []
            if thumbs:
                target_path = thumbs[0]["path"]
        absolute = self.manifest_dir / target_path
        if self.settings.url_prefix:
            return prefixed_target(self.settings.url_prefix, self._store_rel(store, absolute))
        return relative_target(article_path.resolve(), absolute)

    def _ref_status(self, manifest, url: str) -> str:
        record = manifest.url(url)
        if record is None:
            return "deferred"
        status = record.get("status") or "failed"
        return "failed" if status == "ok" else status

    def _unwritable(self, path: Path) -> str | None:
        if path.is_symlink():
            return "it is a symlink"
        mode = path.stat().st_mode
        if not mode & stat.S_IWUSR:
            return "it is read-only"
        return None

    # -- dry run --------------------------------------------------------------------------

    def dry_run(self) -> None:
        manifest = self._load_manifest()
        wanted = self.collect_urls()
        self.summary.would_fetch = sorted(u for u in wanted if self.needs_fetch(manifest, u))
        from harvester.extract import scan_paths

        for result in scan_paths(self.paths, self.settings):
            if any(
                (r := manifest.url(ref.url)) is not None and r.get("status") == "ok"
                for ref in result.refs
            ):
                self.summary.would_rewrite.append(str(result.path))

    # -- plumbing -------------------------------------------------------------------------

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        self.stop_event = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signum, self._on_signal, signum)

    def _on_signal(self, signum: int) -> None:
        if self.stop_signal is None:
            self.stop_signal = signum
            assert self.stop_event is not None
            self.stop_event.set()

    def _rel(self, path: Path) -> str:
        return Path(os.path.relpath(Path(path).resolve(), self.manifest_dir)).as_posix()

    def _store_rel(self, store, absolute: Path) -> str:
        return Path(os.path.relpath(absolute, Path(store.root).resolve())).as_posix()


@dataclass(frozen=True)
class _Planned:
    key: str
    path: Path
    data: bytes
    original: bytes


def _recorded_edits(edits: Iterable) -> list[dict]:
    """Edits as the manifest records them: offsets in the rewritten text."""
    recorded = []
    delta = 0
    for edit in sorted(edits, key=lambda e: e.start):
        start = edit.start + delta
        recorded.append(
            {"start": start, "end": start + len(edit.new), "original": edit.old, "local": edit.new}
        )
        delta += len(edit.new) - (edit.end - edit.start)
    return recorded


def _shift_recorded(previous: list[dict], edits: Iterable) -> list[dict]:
    """Move earlier recorded edits by the length changes of new edits before them."""
    ordered = sorted(edits, key=lambda e: e.start)
    shifted = []
    for old in previous:
        delta = sum(len(e.new) - (e.end - e.start) for e in ordered if e.end <= old["start"])
        shifted.append({**old, "start": old["start"] + delta, "end": old["end"] + delta})
    return shifted


def _escape_context(text: str, ref: ImageRef) -> str:
    """The character just before the span: a quote, `(`, `<`, space... (escaping depends on it)."""
    return text[ref.start - 1] if ref.start > 0 else ""


def _format_time(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


__all__ = ["RunSummary", "run"]
