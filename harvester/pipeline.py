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
import signal
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from harvester.errors import Interrupted, ManifestError, StrictFailure, UsageError
from harvester.progress import NullProgress, Progress
from harvester.records import FetchRequest
from harvester.settings import Settings
from harvester.summary import RunSummary

__all__ = ["RunSummary", "run"]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


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

            settings.manifest.parent.mkdir(parents=True, exist_ok=True)
            with run_lock(settings.manifest):
                asyncio.run(job.execute())
    finally:
        job.progress.stop()
        job.summary.elapsed = time.monotonic() - job.started
    if job.stop_signal is not None:
        raise Interrupted(job.stop_signal)
    if settings.strict and job.summary.failed:
        raise StrictFailure(f"{job.summary.failed} images failed (--strict)")
    return job.summary


class _Run:
    def __init__(self, paths: list[Path], settings: Settings, progress: Progress) -> None:
        self.paths = paths
        self.settings = settings
        self.progress = progress
        self.summary = RunSummary(manifest=str(settings.manifest), dry_run=settings.dry_run)
        self.started = time.monotonic()
        self.stop_signal: int | None = None
        self.article_dates: dict[str, datetime] = {}  # URL → earliest article date (archive)

    async def execute(self) -> None:
        from harvester.acquire import Acquirer
        from mirror.rewrite import remove_stale_temps
        from mirror.store import Store

        stop_event = asyncio.Event()
        self._install_signal_handlers(stop_event)
        manifest = self.load_manifest()
        manifest.resolve_planned()  # settle what a crash left half-done, before anything else
        remove_stale_temps(self.settings.manifest.parent)  # a save killed half-way
        store = Store(self.settings.out)
        store.sweep_temp()
        manifest.set_store(store.root)

        wanted = self.collect_urls()
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
            await acquirer.run(acquirer.plan(wanted))
            if self.stop_signal is None:
                self.dedupe(manifest)
            if self.stop_signal is None:
                self.rewrite(manifest, store)
        finally:
            self.summary.interrupted = self.stop_signal is not None
            manifest.save()

    def load_manifest(self):
        from mirror.manifest import Manifest, ManifestCorrupt

        try:
            return Manifest.load(self.settings.manifest)
        except ManifestCorrupt as exc:
            raise ManifestError(str(exc)) from exc

    def collect_urls(self) -> dict[str, FetchRequest]:
        """Scan pass 1: the unique URLs, each with the request we will send.

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
            if self.settings.archive and result.refs:
                self._note_article_date(result)
            for ref in result.refs:
                current = wanted.get(ref.url)
                if current is None or (current.referer is not None and ref.referer is None):
                    wanted[ref.url] = FetchRequest(
                        url=ref.url, policy=ref.policy, page_url=ref.page_url, referer=ref.referer
                    )
            self.progress.advance("scan", refs=len(result.refs))
        self.summary.urls = len(wanted)
        return wanted

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
            _image_infos(manifest), self.settings.dedupe_thresholds(), _decisions(manifest)
        )
        manifest.set_duplicates(links, replace_all=True)
        self.summary.duplicates = sum(1 for link in links if link.tier == "duplicate")
        self.summary.similar = sum(1 for link in links if link.tier == "similar")

    def rewrite(self, manifest, store) -> None:
        """Scan pass 2: plan and write one article at a time (batched write-ahead)."""
        from harvester.extract import scan_paths
        from harvester.rewriting import Rewriter
        from mirror.rewrite import remove_stale_temps

        rewriter = Rewriter(manifest, store, self.settings, self.summary)
        self.progress.start("rewrite", total=self.summary.articles_with_refs)
        swept: set[Path] = set()
        for result in scan_paths(self.paths, self.settings):
            if self.stop_signal is not None:
                break  # the current batch is still flushed below
            if result.path.parent not in swept:  # temp files of a write killed half-way
                swept.add(result.path.parent)
                remove_stale_temps(result.path.parent)
            if result.article is None or not result.refs:
                continue
            rewriter.add(result.article, result.refs)
            self.progress.advance("rewrite")
        rewriter.flush()

    def dry_run(self) -> None:
        """Show what would be fetched and which articles would change; write nothing."""
        from harvester.acquire import needs_fetch
        from harvester.extract import scan_paths

        manifest = self.load_manifest()
        wanted = self.collect_urls()
        now = datetime.now(timezone.utc)
        self.summary.would_fetch = sorted(
            u for u in wanted if needs_fetch(manifest, manifest.url(u), self.settings, now)
        )
        for result in scan_paths(self.paths, self.settings):
            if any(
                (r := manifest.url(ref.url)) is not None and r.get("status") == "ok"
                for ref in result.refs
            ):
                self.summary.would_rewrite.append(str(result.path))

    def _install_signal_handlers(self, stop_event: asyncio.Event) -> None:
        """SIGINT, SIGTERM and SIGHUP (as CI sends them) all stop the run cleanly."""
        loop = asyncio.get_running_loop()

        def on_signal(signum: int) -> None:
            if self.stop_signal is None:
                self.stop_signal = signum
                stop_event.set()

        for signum in STOP_SIGNALS:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signum, on_signal, signum)


def _image_infos(manifest) -> list:
    """The manifest's decoded assets as `ImageInfo`s, in first-seen order (the canonical
    rule's tie-break)."""
    from mirror.records import ImageInfo, Thumbnail

    infos = []
    assets = sorted(
        manifest.iter_assets(), key=lambda item: (item[1].get("first_seen") or "", item[0])
    )
    for sha, a in assets:
        if a.get("status") != "ok" or not a.get("phash"):
            continue
        infos.append(
            ImageInfo(
                sha256=sha,
                format=a["format"],
                media_type=a["media_type"],
                width=a["width"],
                height=a["height"],
                frames=a["frames"],
                has_alpha=a["has_alpha"],
                bytes=a["bytes"],
                phash=a["phash"],
                dhash=a["dhash"],
                color=a["color"],
                flat=a["flat"],
                quality=a.get("quality"),
                thumbnails=tuple(Thumbnail(**t) for t in a.get("thumbnails") or ()),
            )
        )
    return infos


def _decisions(manifest):
    from mirror.dedupe import Decisions

    pairs = manifest.decisions
    return Decisions(
        same=frozenset(tuple(p) for p in pairs.get("same", ())),
        different=frozenset(tuple(p) for p in pairs.get("different", ())),
    )
