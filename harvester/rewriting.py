"""The rewrite stage of a run: scanned articles → planned edits → write-ahead → atomic replace.

In: one article at a time with its remote refs, the manifest (which URLs are mirrored, which
asset is canonical) and the store. Out: the manifest's `articles` records and the rewritten
files. Each batch of plans is saved to the manifest before any file of the batch is replaced,
so a crash at any instant leaves every article as it was or fully rewritten, and explained.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harvester.records import ImageRef
from harvester.settings import Settings
from harvester.summary import RunSummary
from mirror.store import has_link

# Articles are planned in batches; each batch's plans are saved before its files are replaced.
# A save of a large manifest takes a second or more, so a batch grows until saving costs at
# most ~1/SAVE_SHARE of the rewrite time, between these bounds (memory holds the new bytes).
MIN_BATCH = 64
MAX_BATCH = 2000
SAVE_SHARE = 10
# Articles replaced at once within a batch (threads: the work is waiting on fsync).
WRITE_THREADS = 8
# The `reason` of a reference left remote because only a site-root URL would work there.
NEEDS_URL_PREFIX = "needs-url-prefix"


@dataclass(frozen=True)
class _Planned:
    key: str
    path: Path
    data: bytes


class Rewriter:
    def __init__(self, manifest, store, settings: Settings, summary: RunSummary) -> None:
        self.manifest = manifest
        self.store_root = Path(store.root).resolve()
        # manifest paths of stored files start with the store's own manifest path
        store_rel = manifest.rel(Path(store.root))
        self._store_prefix = "" if store_rel == "." else store_rel + "/"
        self.settings = settings
        self.summary = summary
        self._batch: list[_Planned] = []
        self._batch_started = time.monotonic()
        self._swept: set[Path] = set()
        # realpath() per reference was a tenth of the rewrite stage: resolve each path once
        self._resolved: dict[str, str] = {}
        self._article_resolved: tuple[Path, Path] | None = None

    def add(self, article, refs: Sequence[ImageRef]) -> None:
        self._sweep(article.path.parent)
        planned = self.plan(article, refs)
        if planned is not None:
            self._batch.append(planned)
        if self._batch_full():
            self.flush()

    def _batch_full(self) -> bool:
        size = len(self._batch)
        if size >= MAX_BATCH:
            return True
        elapsed = time.monotonic() - self._batch_started
        return size >= MIN_BATCH and elapsed >= SAVE_SHARE * self.manifest.last_save_seconds

    def _sweep(self, folder: Path) -> None:
        """Temp files a killed run left beside articles go (we hold the run lock)."""
        from mirror.rewrite import remove_stale_temps

        if folder not in self._swept:
            self._swept.add(folder)
            remove_stale_temps(folder)

    def plan(self, article, refs: Sequence[ImageRef]) -> _Planned | None:
        """Record the article's refs and planned edits (state "planned"); None if no write."""
        from harvester.articles import encode_article
        from mirror.records import Edit
        from mirror.rewrite import (
            EscapeError,
            RewriteError,
            UnsafeArticle,
            apply_edits,
            check_replaceable,
            context_around,
            escape_for,
        )

        edits: list[Edit] = []
        ref_records = []
        for ref in refs:
            local, sha = self.target_for(article.path, ref)
            record = self.manifest.url(ref.url) or {}
            status = "ok" if local is not None else _pending_status(record)
            reason = None if local is not None else record.get("reason")
            if local is not None and needs_site_path(ref.syntax, self.settings):
                local, status, reason = None, "skipped", NEEDS_URL_PREFIX
                self.summary.refs_need_url_prefix += 1
            if local is not None:
                context = context_around(article.text, ref.start, ref.end, ref.syntax, ref.field)
                try:
                    new = escape_for(ref.syntax, local, context)
                except EscapeError as exc:  # this reference keeps its URL, the others go on
                    local, status, reason = None, "skipped", exc.reason
                else:
                    edits.append(Edit(ref.start, ref.end, ref.raw, new))
            ref_records.append(
                {
                    "kind": ref.kind,
                    "syntax": ref.syntax,
                    "field": ref.field,
                    "line": ref.line,
                    "url": ref.url,
                    "original": ref.raw,
                    "local": local,
                    "sha256": sha,
                    "status": status,
                    "reason": reason,
                }
            )
        not_written = None if self.settings.rewrite else "no-rewrite"
        rewritten = article.text
        if edits and not_written is None:
            try:
                check_replaceable(article.path)
                rewritten = apply_edits(article.text, edits)
            except UnsafeArticle as exc:
                self.summary.articles_skipped += 1
                self.summary.warnings.append(str(exc))
                not_written = exc.reason
            except RewriteError as exc:  # edits that overlap: a scanner's bug costs one article
                self.summary.articles_skipped += 1
                self.summary.warnings.append(f"{article.path}: not rewritten: {exc}")
                not_written = exc.reason
        if not_written is not None:
            edits = _keep_urls(ref_records, not_written)
        original = encode_article(article, article.text)
        new_bytes = encode_article(article, rewritten) if edits else original
        key = self.manifest.rel(article.path)
        record = {
            "encoding": article.encoding,
            "bom": article.bom,
            "newline": article.newline,
            "original_sha256": hashlib.sha256(original).hexdigest(),
            "refs": ref_records,
            "text": article.text,
        }
        try:
            state = self.manifest.plan_article(
                key, rewritten_sha256=hashlib.sha256(new_bytes).hexdigest(), edits=edits, **record
            )
        except RewriteError as exc:  # the new edits collide with those of an earlier rewrite
            self.summary.articles_skipped += 1
            self.summary.warnings.append(f"{article.path}: not rewritten: {exc}")
            edits = _keep_urls(ref_records, exc.reason)
            self.manifest.plan_article(
                key, rewritten_sha256=record["original_sha256"], edits=edits, **record
            )
            return None
        return _Planned(key, article.path, new_bytes) if state == "planned" else None

    def flush(self) -> None:
        """Write-ahead: the plans are on disk before any article of the batch is replaced.

        The batch's files are replaced by a few threads at once (each write + fsync is
        mostly waiting on the disk, and the journal commits concurrent fsyncs together),
        and each folder is fsynced once for the batch instead of once per article: the
        renames are durable before the next save records them as rewritten.
        """
        from mirror.rewrite import sync_folders

        if not self._batch:
            return
        self.manifest.save()
        if len(self._batch) == 1:
            outcomes = [_replace(self._batch[0])]
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=WRITE_THREADS) as pool:
                outcomes = list(pool.map(_replace, self._batch))
        written = [p for p, error in zip(self._batch, outcomes, strict=True) if error is None]
        sync_folders(p.path.parent for p in written)
        for planned, error in zip(self._batch, outcomes, strict=True):
            if error is not None:
                self.summary.articles_skipped += 1
                self.summary.warnings.append(f"{planned.path}: not rewritten: {error}")
                self.manifest.mark_not_replaced(planned.key)
                continue
            self.manifest.mark_rewritten(planned.key)
            self.summary.articles_rewritten += 1
        self._batch = []
        self._batch_started = time.monotonic()
        # no save here: the next batch's write-ahead save (or the run's last) records these;
        # a crash before it leaves them "planned", which the next run settles by hashing

    def target_for(self, article_path: Path, ref: ImageRef) -> tuple[str | None, str | None]:
        """The local URL that replaces `ref` and its asset, or (None, None) if not mirrored.

        Duplicates point at their canonical copy; front-matter thumbnail keys at a thumbnail.
        """
        from mirror.rewrite import prefixed_target, relative_target

        record = self.manifest.url(ref.url)
        if not record or record.get("status") != "ok" or not record.get("sha256"):
            return None, None
        sha = self.manifest.canonical(record["sha256"])
        asset = self.manifest.asset(sha)
        if asset is None or asset.get("status") != "ok":
            return None, None
        target = asset["path"]
        top_key = ref.field.split(".", 1)[0].split("[", 1)[0]
        if ref.kind == "front-matter" and top_key in self.settings.thumbnail_keys:
            thumbs = asset.get("thumbnails") or []
            if thumbs:
                target = thumbs[0]["path"]
        absolute = self._real_path(target)
        if self.settings.url_prefix:
            store_rel = Path(os.path.relpath(absolute, self.store_root)).as_posix()
            return prefixed_target(self.settings.url_prefix, store_rel), sha
        if self._article_resolved is None or self._article_resolved[0] != article_path:
            self._article_resolved = (article_path, article_path.resolve())
        return relative_target(self._article_resolved[1], absolute), sha

    def _real_path(self, target: str) -> str:
        """The real path of a manifest path, once per path. A stored file is found below the
        store's real root when no folder on its way is a link (one lstat each): a realpath of
        every article's every asset was ~40 % of the rewrite stage."""
        real = self._resolved.get(target)
        if real is None:
            root = str(self.store_root)
            inside = target[len(self._store_prefix) :].split("/")
            below = target.startswith(self._store_prefix) and ".." not in inside
            if below and not has_link(root, inside):
                real = os.path.join(root, *inside)
            else:
                real = os.path.realpath(self.manifest.resolve(target))
            self._resolved[target] = real
        return real


def _replace(planned: _Planned) -> Exception | None:
    """Atomically replace one article (its folder is synced by the caller); the error, if any."""
    from mirror.rewrite import RewriteError, write_bytes_atomic

    try:
        write_bytes_atomic(planned.path, planned.data, sync_folder=False)
    except (OSError, RewriteError) as exc:
        return exc
    return None


def needs_site_path(syntax: str, settings: Settings) -> bool:
    """Whether a reference in `syntax` can only be rewritten to a site-root URL, and none is
    configured (`--url-prefix` starting with `/` or a full URL; every `--preset` sets one).

    A template tag's value is read by the site generator, not by a Markdown viewer, and the
    generator knows nothing of the article file's folder: a relative path breaks the picture
    (Hexo's `{% img %}` even takes such a word for a CSS class). The image is still
    mirrored; the tag keeps its URL until a prefix is given.
    """
    prefix = settings.url_prefix or ""
    return syntax == "template" and not (prefix.startswith("/") or "://" in prefix)


def _keep_urls(ref_records: list[dict], reason: str) -> list:
    """The article keeps its remote URLs: its records say so (or later runs would think it
    done), and there is nothing to edit."""
    for record in ref_records:
        if record["local"] is not None:
            record.update(local=None, status="skipped", reason=reason)
    return []


def _pending_status(record: dict) -> str:
    status = record.get("status") or "deferred"
    return "failed" if status == "ok" else status
