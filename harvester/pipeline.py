"""`harvester run`: the only module that knows the stage order.

    paths ─► scan (pass 1: unique URLs) ─► fetch ═► process (pool, overlapped) ─► dedupe
          ─► scan (pass 2: one article at a time) ─► plan edits ─► write-ahead ─► rewrite
          ─► manifest

Articles are scanned twice instead of being held in memory, so memory stays flat in the
number of articles (only per-URL state and the manifest grow). In: article paths and a
`Settings`. Out: a `RunSummary`, the store, the rewritten articles and `manifest.json`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import signal
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from harvester.errors import Interrupted, StrictFailure, UsageError
from harvester.extract import ScanResult
from harvester.progress import NullProgress, Progress
from harvester.records import FetchRequest
from harvester.referrer import DEFAULT_POLICY
from harvester.settings import Settings
from harvester.summary import RunSummary

__all__ = ["RunSummary", "run"]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# Articles (bytes) whose pass-1 scan results are kept for the rewrite pass. A result holds the
# text and refs, ~2x the bytes: 16 MB covers a few thousand typical posts for ≤ ~40 MB, and
# parsing is ~1 ms an article (markdown-it + YAML), so bigger sites rescan the rest.
SCAN_CACHE_BYTES = 16 << 20


def run(
    paths: Sequence[Path], settings: Settings, *, progress: Progress | None = None
) -> RunSummary:
    """Mirror every remote image of the articles under `paths`; see the module docstring.

    Raises `LockHeld` (another run), `ManifestError` (unreadable manifest, moved aside),
    `Interrupted` (a stop signal; the manifest was saved) and `StrictFailure` (`--strict`).
    """
    for path in paths:
        if not Path(path).exists():
            raise UsageError(f"no such file or folder: {path}")
    job = _Run([Path(p) for p in paths], settings, progress or NullProgress())
    try:
        if settings.dry_run:
            job.dry_run()
        else:
            from harvester.locking import run_lock

            _writable_folder(settings.manifest.parent, "manifest", "--manifest")
            with run_lock(settings.manifest):
                _writable_folder(settings.out, "store", "--out")
                asyncio.run(job.execute())
    finally:
        job.restore_signal_handlers()
        job.progress.stop()
        job.summary.elapsed = time.monotonic() - job.started
    if job.stop_signal is not None:
        raise Interrupted(job.stop_signal)
    if settings.strict and job.summary.failed:
        raise StrictFailure(f"{job.summary.failed} images failed (--strict)")
    return job.summary


def _writable_folder(folder: Path, what: str, option: str) -> None:
    """Create `folder` if needed and prove a file can be made in it: a clear error now, not
    every download failing with `store-error` (and backing off for hours) later."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except FileExistsError:
        raise UsageError(
            f"the {what} folder {folder} is a file, not a folder; move it or pass {option}"
        ) from None
    except OSError as exc:
        raise UsageError(
            f"cannot write to the {what} folder {folder}: {exc.strerror or exc}; "
            f"fix its permissions or pass {option}"
        ) from exc


class _Run:
    def __init__(self, paths: list[Path], settings: Settings, progress: Progress) -> None:
        self.paths = paths
        self.settings = settings
        self.progress = progress
        self.summary = RunSummary(manifest=str(settings.manifest), dry_run=settings.dry_run)
        self.started = time.monotonic()
        self.stop_signal: int | None = None
        self._previous_handlers: dict[int, object] = {}
        self.article_dates: dict[str, datetime] = {}  # URL → earliest article date (archive)
        # Pass 1's scan results kept for pass 2 (path → (sha256 of the bytes, result)), while
        # their articles' bytes add up to at most SCAN_CACHE_BYTES: small sites are parsed once,
        # large ones keep memory flat (pass 2 then scans again what did not fit).
        self._scans: dict[Path, tuple[bytes, ScanResult]] = {}
        self._scan_cache_bytes = 0

    async def execute(self) -> None:
        from harvester.acquire import Acquirer
        from mirror.imaging import hash_definition, hashing_versions
        from mirror.pool import warm_up
        from mirror.rewrite import remove_stale_temps
        from mirror.store import Store

        stop_event = asyncio.Event()
        self._install_signal_handlers(stop_event)
        warm_up()  # first: its imports overlap everything below (a bad manifest wastes it)
        manifest = self.load_manifest()
        manifest.resolve_planned()  # settle what a crash left half-done, before anything else
        remove_stale_temps(manifest.folder)  # a manifest save killed half-way
        store = Store(self.settings.out)
        store.sweep_temp()
        manifest.set_store(store.root)
        hashing = hashing_versions()
        # Signatures made under another definition (an older harvester) do not compare with
        # new ones: the stored images are hashed again in this run's pool, and the block is
        # updated once they all are (an interrupted run leaves it, so the next run redoes it).
        rehash = []
        if hash_definition(manifest.data.get("hashing")) != hash_definition(hashing):
            # (a stored file that is gone is left out: its URL is fetched again and a new
            # download of known bytes is not reprocessed, so its signatures are cleared)
            rehash = []
            for sha, asset in manifest.iter_assets():
                if not asset.get("phash"):
                    continue
                path = manifest.resolve(asset["path"])
                if path.is_file():
                    rehash.append((sha, path))
                else:
                    manifest.update_signatures(sha, None)
        if not rehash:
            manifest.set_hashing(hashing)

        with self._timed("scan"):
            wanted = self.collect_urls(manifest)
        acquirer = Acquirer(
            manifest,
            store,
            self.settings,
            self.summary,
            self.progress,
            stop_event=stop_event,
            started=self.started,
        )
        acquirer.article_dates = self.article_dates
        try:
            await acquirer.run(acquirer.plan(wanted), rehash=rehash)
            if rehash and acquirer.rehash_finished == len(rehash):
                manifest.set_hashing(hashing)
            if self.stop_signal is None:
                with self._timed("dedupe"):
                    self.dedupe(manifest)
            if self.stop_signal is None:
                with self._timed("rewrite"):
                    self.rewrite(manifest, store)
        finally:
            self.summary.interrupted = self.stop_signal is not None
            manifest.save()

    @contextlib.contextmanager
    def _timed(self, stage: str) -> Iterator[None]:
        wall, cpu = time.monotonic(), time.process_time()
        try:
            yield
        finally:
            self.summary.stage(
                stage,
                wall_seconds=time.monotonic() - wall,
                cpu_seconds=time.process_time() - cpu,
            )

    def load_manifest(self):
        from harvester.maintenance import open_manifest

        return open_manifest(self.settings.manifest, must_exist=False)

    def collect_urls(self, manifest=None) -> dict[str, FetchRequest]:
        """Scan pass 1: the unique URLs, each with the request we will send.

        When several articles use one URL, the occurrence that sends the least (no Referer
        first) wins: feeds add `referrerpolicy="no-referrer"` precisely because the host
        refuses foreign referrers, and sending less is never a privacy leak.
        """
        wanted: dict[str, FetchRequest] = {}
        self.progress.start("scan")
        for item in self.articles(manifest, keep=True):
            if self.stop_signal is not None:
                break  # stopping: what was not scanned is simply not recorded this time
            self.summary.articles += 1
            requests = item.requests(manifest, self.settings)
            if item.result is not None:
                self.summary.warnings.extend(f"{item.path}: {w}" for w in item.result.warnings)
                if self.settings.archive and item.result.refs:
                    self._note_article_date(item.result)
            if requests:
                self.summary.articles_with_refs += 1
            self.summary.refs += len(requests)
            for request in requests:
                current = wanted.get(request.url)
                if current is None or (current.referer is not None and request.referer is None):
                    wanted[request.url] = request
            self.progress.advance("scan", refs=len(requests))
        self.summary.urls = len(wanted)
        self.progress.start("scan", total=self.summary.articles)  # the count is known now
        return wanted

    def articles(self, manifest, *, keep: bool = False) -> Iterator[_Article]:
        """Every article under the paths, scanned — unless the manifest already knows it.

        An article whose bytes are exactly what the last run left (rewritten, or recorded as
        unchanged) is not parsed again: its remaining remote refs come from the manifest.
        This is what makes a no-op cron run over thousands of posts take seconds. `keep`
        (pass 1) keeps scan results for the next pass, which uses each one at most once and
        only if the file still has the same bytes.
        """
        from harvester.extract import iter_article_paths, scan_one

        for path in iter_article_paths(self.paths, self.settings):
            try:
                data = path.read_bytes()
            except OSError:
                yield _Article(path, None, scan_one(path, self.settings))
                continue
            digest = hashlib.sha256(data).digest()
            entry = self._known(manifest, path, digest)
            if entry is not None:
                yield _Article(path, entry, None)
                continue
            kept = self._scans.pop(path, None)
            if kept is not None and kept[0] == digest:
                yield _Article(path, None, kept[1])
                continue
            result = scan_one(path, self.settings, data)
            if keep and self._scan_cache_bytes + len(data) <= SCAN_CACHE_BYTES:
                self._scans[path] = (digest, result)
                self._scan_cache_bytes += len(data)
            yield _Article(path, None, result)

    def _known(self, manifest, path: Path, digest: bytes) -> dict | None:
        if manifest is None:
            return None
        entry = manifest.article(manifest.rel(path))
        if entry is None or entry.get("state") not in ("rewritten", "unchanged"):
            return None
        if digest.hex() != entry.get("rewritten_sha256"):
            return None
        return entry

    def _note_article_date(self, result) -> None:
        """For archive lookups: each URL's earliest article date (snapshots near it win)."""
        from harvester.fallback import date_from_front_matter

        front_matter = result.article.front_matter if result.article else None
        when = date_from_front_matter(front_matter.data if front_matter else None)
        if when is None:
            return
        for ref in result.refs:
            known = self.article_dates.get(ref.url)
            if known is None or when < known:
                self.article_dates[ref.url] = when

    def dedupe(self, manifest) -> None:
        from mirror.dedupe import find_duplicates

        links = find_duplicates(
            manifest.image_infos(), self.settings.dedupe_thresholds(), _decisions(manifest)
        )
        manifest.set_duplicates(links, replace_all=True)
        self.summary.duplicates = sum(1 for link in links if link.tier == "duplicate")
        self.summary.similar = sum(1 for link in links if link.tier == "similar")

    def rewrite(self, manifest, store) -> None:
        """Scan pass 2: plan and write one article at a time (batched write-ahead)."""
        from harvester.rewriting import Rewriter

        rewriter = Rewriter(manifest, store, self.settings, self.summary)
        self.progress.start("rewrite", total=self.summary.articles_with_refs)
        for item in self.articles(manifest):
            if self.stop_signal is not None:
                break  # the current batch is still flushed below
            if item.known is not None:
                if not any(self._rewritable(manifest, ref) for ref in item.remote_refs()):
                    continue  # nothing new for this article: no need to parse it
                item = _Article(item.path, None, _rescan(item.path, self.settings))
            result = item.result
            if result is None or result.article is None or not result.refs:
                continue
            rewriter.add(result.article, result.refs)
            self.progress.advance("rewrite")
        rewriter.flush()

    def _rewritable(self, manifest, ref) -> bool:
        """A reference the rewrite would change now: mirrored, and with a target its syntax
        can use (a template tag needs a site-root prefix)."""
        from harvester.rewriting import needs_site_path

        syntax = ref.get("syntax", "") if isinstance(ref, dict) else ref.syntax
        return _now_mirrored(manifest, ref) and not needs_site_path(syntax, self.settings)

    def dry_run(self) -> None:
        """Show what would be fetched and which articles would change; write nothing."""
        from harvester.acquire import needs_fetch
        from harvester.net import AddressGuard, NetRefused, check_url
        from harvester.quirks import plan_url

        manifest = self.load_manifest()
        wanted = self.collect_urls(manifest)
        now = datetime.now(timezone.utc)
        # random placeholders are skipped by the run, never fetched (see plan_url)
        skip = {
            u
            for u in wanted
            if plan_url(u, skip_placeholders=self.settings.skip_placeholders).skip_reason
        }
        self.summary.skipped = len(skip)
        due = sorted(
            u
            for u in wanted
            if u not in skip and needs_fetch(manifest, manifest.url(u), self.settings, now)
        )
        # what the run itself would refuse before connecting (a literal loopback or private
        # address, a bad port, userinfo) is said so, not listed as a download
        guard = AddressGuard(allow_private=self.settings.allow_private_addresses)
        for url in due:
            try:
                check_url(url, guard)
            except NetRefused as exc:
                self.summary.would_refuse.append(f"{url} ({exc.reason}: {exc})")
            else:
                self.summary.would_fetch.append(url)
        for item in self.articles(manifest):
            refs = item.result.refs if item.result is not None else item.remote_refs()
            if any(self._rewritable(manifest, ref) for ref in refs):
                self.summary.would_rewrite.append(str(item.path))

    def _install_signal_handlers(self, stop_event: asyncio.Event) -> None:
        """SIGINT, SIGTERM and SIGHUP (as CI sends them) all stop the run cleanly.

        Plain `signal.signal` handlers, not `loop.add_signal_handler`: the loop's handlers
        only run when the loop gets control, and the scan and rewrite passes are synchronous
        loops, so a signal would wait for the whole pass to end. These run between any two
        bytecodes; they only set a flag (checked per article) and wake the loop.
        """
        loop = asyncio.get_running_loop()

        def on_signal(signum: int, _frame: object = None) -> None:
            if self.stop_signal is None:
                self.stop_signal = signum
                with contextlib.suppress(RuntimeError):  # the loop already closed
                    loop.call_soon_threadsafe(stop_event.set)

        for signum in STOP_SIGNALS:
            with contextlib.suppress(ValueError, OSError):  # not the main thread
                self._previous_handlers[signum] = signal.signal(signum, on_signal)

    def restore_signal_handlers(self) -> None:
        for signum, handler in self._previous_handlers.items():
            with contextlib.suppress(ValueError, OSError, TypeError):
                signal.signal(signum, handler)
        self._previous_handlers.clear()


@dataclass(frozen=True)
class _Article:
    """One article of a pass: freshly scanned (`result`) or known from the manifest."""

    path: Path
    known: dict | None  # the manifest entry, when the file is what the last run left
    result: ScanResult | None

    def remote_refs(self) -> list[dict]:
        return [r for r in (self.known or {}).get("refs", ()) if r.get("local") is None]

    def requests(self, manifest, settings: Settings) -> list[FetchRequest]:
        if self.result is not None:
            return [
                FetchRequest(url=r.url, policy=r.policy, page_url=r.page_url, referer=r.referer)
                for r in self.result.refs
            ]
        requests = []
        # --refresh revalidates what the article already uses, not only what is still remote
        refs = (self.known or {}).get("refs", ()) if settings.refresh else self.remote_refs()
        for ref in refs:
            record = manifest.url(ref["url"]) or {}
            policy = record.get("policy") or settings.default_policy or DEFAULT_POLICY
            requests.append(
                FetchRequest(url=ref["url"], policy=policy, referer=record.get("referer"))
            )
        return requests


def _now_mirrored(manifest, ref) -> bool:
    url = ref["url"] if isinstance(ref, dict) else ref.url
    record = manifest.url(url)
    return record is not None and record.get("status") == "ok"


def _rescan(path: Path, settings: Settings) -> ScanResult:
    from harvester.extract import scan_one

    return scan_one(path, settings)


def _decisions(manifest):
    from mirror.dedupe import Decisions

    pairs = manifest.decisions
    return Decisions(
        same=frozenset(tuple(p) for p in pairs.get("same", ())),
        different=frozenset(tuple(p) for p in pairs.get("different", ())),
    )
