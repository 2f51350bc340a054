"""Every default in one place (as scrapy's default_settings does).

`Settings` is a frozen dataclass built by the CLI from defaults ← `harvester.toml` ← flags.
Library callers build one directly: `Settings(out=Path("assets"), site_url=...)`.
Options for the `mirror` stages are derived here (`imaging_options()`, `dedupe_thresholds()`),
since `mirror` holds no defaults of its own.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harvester import __version__
from harvester.errors import ConfigError
from mirror.records import DedupeThresholds, ImagingOptions, ThumbnailSpec

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_USER_AGENT = (
    f"harvester/{__version__} (+https://pypi.org/project/harvester/; mirrors images for a site)"
)

# Front-matter keys that hold the article's own URL (the referrer source).
DEFAULT_PAGE_URL_KEYS = ("permalink", "url", "link", "canonical_url", "canonical")
# Front-matter keys that say the article is a copy of a page elsewhere: relative image paths
# resolve against that page.
DEFAULT_SOURCE_URL_KEYS = ("original_url", "source_url", "origin_url")
# Front-matter keys whose values are images.
DEFAULT_IMAGE_KEYS = (
    "headimg",
    "thumbnail",
    "cover",
    "banner",
    "image",
    "images",
    "featured_image",
    "featuredImage",
    "featureImage",
    "shareImage",
    "og_image",
    "index_img",
    "photos",
    "teaser",
    "overlay_image",
    "header",
)
DEFAULT_THUMBNAIL_KEYS = ("thumbnail",)


@dataclass(frozen=True)
class Settings:
    # where things go
    out: Path = Path("assets")
    manifest: Path = Path("manifest.json")
    url_prefix: str | None = None  # site-root URL prefix for rewritten paths, e.g. "/images/mirror"

    # scanning
    site_url: str | None = None
    page_url_keys: tuple[str, ...] = DEFAULT_PAGE_URL_KEYS
    source_url_keys: tuple[str, ...] = DEFAULT_SOURCE_URL_KEYS
    image_keys: tuple[str, ...] = DEFAULT_IMAGE_KEYS
    thumbnail_keys: tuple[str, ...] = DEFAULT_THUMBNAIL_KEYS
    default_policy: str | None = None  # None → strict-origin-when-cross-origin
    extensions: tuple[str, ...] = (".md", ".markdown", ".mdown", ".mkd", ".html", ".htm")

    # network
    user_agent: str = DEFAULT_USER_AGENT
    concurrency: int = 16
    per_host: int = 4
    connect_timeout: float = 10.0
    read_timeout: float = 20.0
    total_timeout: float = 60.0  # per download, whole body included
    max_bytes: int = 25 * 1024 * 1024  # well under git's 50/100 MiB limits
    max_redirects: int = 5
    retries: int = 4  # attempts = retries + 1
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    retry_after_cap: float = 60.0  # a longer Retry-After defers the URL to a later run
    allow_private_addresses: bool = False
    resolve: tuple[str, ...] = ()  # curl-style HOST:PORT:ADDR
    ca_bundle: Path | None = None
    allow_svg: bool = False
    referer_overrides: dict[str, str] = field(default_factory=dict)  # host glob → Referer

    # imaging
    max_pixels: int = 64_000_000
    thumbnail_sizes: tuple[int, ...] = (320,)
    thumbnail_format: str = "webp"
    thumbnail_quality: int = 80
    draft: bool = True
    workers: int = 0  # 0 → os.cpu_count()
    # Memory ceiling per imaging worker, beyond its start-up size: a 64 MP RGBA frame is
    # 256 MiB and decoding needs a few copies; a hostile file fails alone instead of OOM.
    worker_memory_mb: int = 1536

    # dedupe (chosen with bench/dedupe_eval.py; see docs/imaging-and-dedupe.md)
    duplicate_distance: int = 10  # phash bits; the colour and structure checks do the rest
    similar_distance: int = 12
    dhash_distance: int = 16
    color_distance: float = 8.0  # brightness/colour difference, 0–255
    structure_distance: float = 10.0  # grey residual after aligning, 0–255

    # run behaviour
    rewrite: bool = True
    dry_run: bool = False
    strict: bool = False
    refresh: bool = False
    retry_failed: bool = False

    def imaging_options(self) -> ImagingOptions:
        return ImagingOptions(
            max_pixels=self.max_pixels,
            thumbnails=ThumbnailSpec(
                sizes=self.thumbnail_sizes,
                format=self.thumbnail_format,
                quality=self.thumbnail_quality,
            ),
            draft=self.draft,
            worker_memory_mb=self.worker_memory_mb,
        )

    def dedupe_thresholds(self) -> DedupeThresholds:
        return DedupeThresholds(
            duplicate_distance=self.duplicate_distance,
            similar_distance=self.similar_distance,
            dhash_distance=self.dhash_distance,
            color_distance=self.color_distance,
            structure_distance=self.structure_distance,
        )

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}


def load_config(path: Path) -> dict[str, Any]:
    """Read `harvester.toml` into Settings field values; unknown keys are errors."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    values: dict[str, Any] = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name not in _FIELDS:
            raise ConfigError(f"{path}: unknown setting {key!r}")
        values[name] = _coerce(path, name, value)
    return values


def _coerce(path: Path, name: str, value: Any) -> Any:
    default = _FIELDS[name].default
    if default is dataclasses.MISSING:
        default = _FIELDS[name].default_factory()  # type: ignore[misc]
    expected = type(default)
    try:
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise TypeError
            return value
        if isinstance(default, tuple):
            if isinstance(value, str):
                value = [value]
            return tuple(value)
        if isinstance(default, Path) or name in {"ca_bundle"}:
            return Path(value)
        if isinstance(default, dict):
            if not isinstance(value, dict):
                raise TypeError
            return {str(k): str(v) for k, v in value.items()}
        if default is None:
            return value
        if isinstance(default, (int, float)) and isinstance(value, bool):
            raise TypeError
        return expected(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{path}: setting {name!r} must be {expected.__name__}, got {value!r}"
        ) from None
