"""What a run did: counted by the stages, printed as a paragraph or as JSON (`--json`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from harvester.units import format_size


@dataclass
class RunSummary:
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
    rescued: int = 0  # dead images found in a web archive (--archive)
    waiting: int = 0  # failed or deferred earlier, not due for a retry yet
    next_retry_at: str | None = None  # the earliest retry among the waiting (UTC, ISO 8601)
    budget_exhausted: bool = False
    bytes_fetched: int = 0
    assets_new: int = 0
    rehashed: int = 0  # stored images hashed again: the signature definition changed
    duplicates: int = 0
    similar: int = 0
    refs_need_url_prefix: int = 0  # mirrored, but in a template tag with no site-root prefix
    failures_by_reason: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    would_fetch: list[str] = field(default_factory=list)  # --dry-run
    would_refuse: list[str] = field(default_factory=list)  # --dry-run: "URL (reason: why)"
    would_rewrite: list[str] = field(default_factory=list)  # --dry-run
    elapsed: float = 0.0
    fetch_cpu_seconds: float = 0.0
    # per stage: wall_seconds, cpu_seconds (this process), and fetch's connections opened
    stages: dict[str, dict[str, float]] = field(default_factory=dict)
    manifest: str = ""
    interrupted: bool = False
    dry_run: bool = False

    def note_waiting(self, next_retry_at: str | None) -> None:
        """One more URL backing off; keep the earliest time one of them is due."""
        self.waiting += 1
        # the manifest's fixed "YYYY-MM-DDTHH:MM:SSZ" form sorts as the times do
        if next_retry_at and (self.next_retry_at is None or next_retry_at < self.next_retry_at):
            self.next_retry_at = next_retry_at

    def stage(self, name: str, **numbers: float) -> None:
        self.stages.setdefault(name, {}).update(numbers)

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    def paragraph(self) -> str:
        scanned = (
            f"{_n(self.articles, 'article')} ({_n(self.refs, 'remote reference')}, "
            f"{_n(self.urls, 'unique URL')})"
        )
        if self.dry_run:
            skipped = (
                f" (and skip {_n(self.skipped, 'random placeholder')})" if self.skipped else ""
            ) + (f", refuse {_n(len(self.would_refuse), 'URL')}" if self.would_refuse else "")
            return (
                f"Dry run: scanned {scanned}. Would fetch {_n(len(self.would_fetch), 'URL')}"
                f"{skipped} and rewrite {_n(len(self.would_rewrite), 'article')} whose images "
                "are already mirrored (more once the downloads succeed). Nothing was written."
            )
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(self.failures_by_reason.items()))
        duplicates = (
            f"{self.duplicates} duplicate points"
            if self.duplicates == 1
            else f"{self.duplicates} duplicates point"
        )
        similar = (
            f"{self.similar} similar pair is"
            if self.similar == 1
            else f"{self.similar} similar pairs are"
        )
        parts = [
            f"Scanned {scanned}.",
            f"Fetched {_n(self.fetched, 'image')} ({format_size(self.bytes_fetched)}), "
            f"{self.not_modified} unchanged on the server, {self.reused} already mirrored; "
            f"{self.failed} failed" + (f" ({reasons})" if reasons else "") + ", "
            f"{self.skipped} skipped, {self.deferred} deferred to a later run"
            + (f", {self.waiting} waiting to be retried" if self.waiting else "")
            + (
                f" (the first from {self.next_retry_at[:10]} {self.next_retry_at[11:16]} UTC)"
                if self.waiting and self.next_retry_at
                else ""
            )
            + (f", {self.rescued} rescued from a web archive." if self.rescued else "."),
            f"Stored {_n(self.assets_new, 'new image')}; {duplicates} at a "
            f"canonical copy, {similar} recorded for review.",
            f"Rewrote {_n(self.articles_rewritten, 'article')}"
            + (f" ({self.articles_skipped} skipped, see warnings)" if self.articles_skipped else "")
            + f". Manifest: {self.manifest}. {self.elapsed:.1f} s.",
        ]
        if self.refs_need_url_prefix:
            parts.append(
                f"{_n(self.refs_need_url_prefix, 'image')} inside template tags (Hugo "
                "shortcodes, Hexo tags, Jekyll includes) kept their URLs: the site reads them, "
                "so they need a site-root path; give --url-prefix or --preset."
            )
        if self.rehashed:
            parts.append(
                f"Hashed {_n(self.rehashed, 'stored image')} again: the signatures are now made "
                "differently (an upgrade), and only like compares with like."
            )
        if self.budget_exhausted:
            parts.append("The store reached --max-store-bytes; the rest waits for more room.")
        if self.interrupted:
            parts.append("Interrupted: the manifest was saved; run again to finish.")
        return " ".join(parts)


def _n(count: int, noun: str) -> str:
    """`count` and `noun`, plural unless the count is exactly one ("1 image", "0 images")."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
