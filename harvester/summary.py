"""What a run did: counted by the stages, printed as a paragraph or as JSON (`--json`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from harvester.progress import human_bytes


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
    budget_exhausted: bool = False
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
    # per stage: wall_seconds, cpu_seconds (this process), and fetch's connections opened
    stages: dict[str, dict[str, float]] = field(default_factory=dict)
    manifest: str = ""
    interrupted: bool = False
    dry_run: bool = False

    def stage(self, name: str, **numbers: float) -> None:
        self.stages.setdefault(name, {}).update(numbers)

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    def paragraph(self) -> str:
        if self.dry_run:
            return (
                f"Dry run: scanned {self.articles} articles ({self.refs} remote references, "
                f"{self.urls} unique URLs). Would fetch {len(self.would_fetch)} URLs and "
                f"rewrite {len(self.would_rewrite)} articles whose images are already "
                "mirrored (more once the downloads succeed). Nothing was written."
            )
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(self.failures_by_reason.items()))
        parts = [
            f"Scanned {self.articles} articles ({self.refs} remote references, "
            f"{self.urls} unique URLs).",
            f"Fetched {self.fetched} images ({human_bytes(self.bytes_fetched)}), "
            f"{self.not_modified} unchanged on the server, {self.reused} already mirrored; "
            f"{self.failed} failed" + (f" ({reasons})" if reasons else "") + ", "
            f"{self.skipped} skipped, {self.deferred} deferred to a later run"
            + (f", {self.rescued} rescued from a web archive." if self.rescued else "."),
            f"Stored {self.assets_new} new images; {self.duplicates} duplicates point at a "
            f"canonical copy, {self.similar} similar pairs are recorded for review.",
            f"Rewrote {self.articles_rewritten} articles"
            + (f" ({self.articles_skipped} skipped, see warnings)" if self.articles_skipped else "")
            + f". Manifest: {self.manifest}. {self.elapsed:.1f} s.",
        ]
        if self.budget_exhausted:
            parts.append("The store reached --max-store-bytes; the rest waits for more room.")
        if self.interrupted:
            parts.append("Interrupted: the manifest was saved; run again to finish.")
        return " ".join(parts)
