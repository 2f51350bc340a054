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
from typing import TYPE_CHECKING, Any

from harvester import __version__
from harvester.errors import ConfigError
from mirror.records import DedupeThresholds, ImagingOptions, ThumbnailSpec

if TYPE_CHECKING:
    from harvester.presets import PresetResult

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
# Template tags that show a picture: Hugo shortcodes (`{{< figure src=… >}}`), Hexo/Octopress
# tags (`{% img … %}`), and Jekyll includes by file stem (`image.html`, Minimal Mistakes'
# `figure`). Not jekyll-picture-tag's `picture`: it reads local files only, never a URL.
DEFAULT_TEMPLATE_TAGS = ("figure", "img", "image")
THUMBNAIL_FORMATS = ("webp", "jpeg", "jpg", "png", "avif")
HTTP_TRANSPORTS = ("aiohttp", "httpcore")


DEFAULT_ARCHIVE_API = "https://archive.org"
DEFAULT_ARCHIVE_CDX_API = "https://web.archive.org"


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
    template_tags: tuple[str, ...] = DEFAULT_TEMPLATE_TAGS
    default_policy: str | None = None  # None → strict-origin-when-cross-origin
    extensions: tuple[str, ...] = (".md", ".markdown", ".mdown", ".mkd", ".html", ".htm")

    # network
    user_agent: str = DEFAULT_USER_AGENT
    # 32 in flight: at 20–50 ms per image, 16 left the CPU waiting once a run was light
    # enough (JPEG thumbnails: −13 % wall, bench/README.md); per_host keeps hosts safe
    concurrency: int = 32
    per_host: int = 4
    connect_timeout: float = 10.0
    read_timeout: float = 20.0
    total_timeout: float = 60.0  # per attempt, whole body included; no retry starts after it
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
    # what carries the GETs under httpx: "aiohttp" (C parser; ≈ 1 ms less CPU a request,
    # harvester/aio.py) or "httpcore" (httpx's own). Both go through the same address guard.
    http_transport: str = "aiohttp"
    # host glob → Referer for CDNs that demand one; built-in table in harvester/quirks.py,
    # a config table is laid over it ("" disables a default)
    referer_overrides: dict[str, str] = field(default_factory=lambda: _default_overrides())

    # web-archive fallback for dead images (docs/archive.md); off unless sources are named
    archive: tuple[str, ...] = ()  # in order: "wayback", "wayback-cdx", a mirror base URL
    archive_api: str = DEFAULT_ARCHIVE_API  # the Wayback availability API's base
    archive_cdx_api: str = DEFAULT_ARCHIVE_CDX_API  # the Wayback CDX index's base
    archive_per_host: int = 2  # requests at once per archive host (lookups and captures)
    placeholder_sha256: tuple[str, ...] = ()  # sha256 of "image removed" pictures: count as dead

    # imaging
    max_pixels: int = 64_000_000
    thumbnail_sizes: tuple[int, ...] = (320,)
    thumbnail_format: str = "webp"
    thumbnail_quality: int = 80
    # libwebp effort 0–6 for WebP thumbnails. 256 px news photos, q80, one core (ms per
    # thumbnail / average size / PSNR): 0 → 1.03 ms / 8.1 KB / 36.6 dB, 2 → 1.52 / 7.2 / 36.4,
    # 4 (libwebp's default) → 3.3 / 7.0 / 36.6. Effort buys bytes, not picture quality: 0 is
    # a third cheaper than 2 (the encode is the largest single step per image) for 13 % more
    # bytes.
    thumbnail_webp_method: int = 0
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

    # quirks of real-world URLs (harvester/quirks.py)
    skip_placeholders: bool = True  # random-picture services: a different image every fetch
    unwrap_proxies: bool = True  # fetch the original behind images.weserv.nl & co. first

    # budgets (for CI)
    deadline: float | None = None  # seconds from start; then stop starting downloads
    max_store_bytes: int | None = None  # refuse to grow the store past this

    # run behaviour
    rewrite: bool = True
    dry_run: bool = False
    strict: bool = False
    refresh: bool = False
    retry_failed: bool = False

    def __post_init__(self) -> None:
        problems = [message for ok, message in self._checks() if not ok]
        if problems:
            raise ConfigError("; ".join(problems))
        # Checked here, not only in load_config, so `--archive` and library callers fail
        # before any fetch instead of half-way through a run.
        if self.archive or self.placeholder_sha256:  # the archive settings only matter then
            from harvester.fallback import check_archive_settings

            problems = check_archive_settings(
                self.archive,
                self.archive_api,
                self.placeholder_sha256,
                self.archive_per_host,
                self.archive_cdx_api,
            )
            if problems:
                raise ConfigError("; ".join(problems))

    def _checks(self) -> list[tuple[bool, str]]:
        """Values that would hang, crash or silently misbehave later are refused up front."""
        from harvester.referrer import POLICIES

        positive = ("concurrency", "per_host", "max_bytes", "max_pixels", "max_redirects")
        checks = [(getattr(self, n) >= 1, f"{n} must be at least 1") for n in positive]
        checks += [
            (self.workers >= 0, "workers must be 0 (one per core) or more"),
            (self.retries >= 0, "retries must be 0 or more"),
            (
                min(self.connect_timeout, self.read_timeout, self.total_timeout) > 0,
                "timeouts must be positive",
            ),
            (
                all(isinstance(n, int) and 16 <= n <= 4096 for n in self.thumbnail_sizes),
                f"thumbnail sizes must be whole numbers of px from 16 to 4096, "
                f"got {list(self.thumbnail_sizes)}",
            ),
            (
                self.thumbnail_format.lower() in THUMBNAIL_FORMATS,
                f"thumbnail_format must be one of {', '.join(THUMBNAIL_FORMATS)}, "
                f"got {self.thumbnail_format!r}",
            ),
            (1 <= self.thumbnail_quality <= 100, "thumbnail_quality must be 1-100"),
            (
                self.http_transport in HTTP_TRANSPORTS,
                f"http_transport must be one of {', '.join(HTTP_TRANSPORTS)}, "
                f"got {self.http_transport!r}",
            ),
            (
                0 <= self.thumbnail_webp_method <= 6,
                f"thumbnail_webp_method must be 0-6, got {self.thumbnail_webp_method!r}",
            ),
            (self.deadline is None or self.deadline > 0, "deadline must be positive"),
            (
                self.max_store_bytes is None or self.max_store_bytes > 0,
                "max_store_bytes must be positive",
            ),
            (
                self.default_policy is None or self.default_policy in POLICIES,
                f"default_policy must be one of {', '.join(sorted(POLICIES))}",
            ),
        ]
        if self.site_url is not None:  # the scanner's own test of a usable page URL
            from harvester.extract.urls import absolute_base

            checks.append(
                (
                    absolute_base(self.site_url) is not None,
                    f"site_url must be an absolute http(s) URL, got {self.site_url!r}",
                )
            )
        return checks

    def imaging_options(self) -> ImagingOptions:
        return ImagingOptions(
            max_pixels=self.max_pixels,
            thumbnails=ThumbnailSpec(
                sizes=self.thumbnail_sizes,
                format=self.thumbnail_format,
                quality=self.thumbnail_quality,
                webp_method=self.thumbnail_webp_method,
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


def _default_overrides(user: dict[str, str] | None = None) -> dict[str, str]:
    from harvester.quirks import DEFAULT_REFERER_OVERRIDES, merge_overrides

    return merge_overrides(DEFAULT_REFERER_OVERRIDES, user or {})


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}
# Fields written with units in config files and flags ("2h", "900M").
_DURATIONS = frozenset({"deadline"})
_SIZES = frozenset({"max_store_bytes", "max_bytes"})


def load_config(path: Path, allow: frozenset[str] | set[str] = frozenset()) -> dict[str, Any]:
    """Read `harvester.toml` into Settings field values; unknown keys are errors.

    Keys in `allow` are passed through as written (e.g. `preset`, read by `build_settings`).
    """
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    values: dict[str, Any] = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name in allow:
            values[name] = value
            continue
        if name not in _FIELDS:
            raise ConfigError(f"{path}: unknown setting {key!r}")
        values[name] = _coerce(path, name, value)
    _check_referrer_settings(path, values)
    _check_archive_settings(path, values)
    return values


def _check_archive_settings(path: Path, values: dict[str, Any]) -> None:
    """An unknown fallback source must not silently leave dead images unrescued."""
    from harvester.fallback import check_archive_settings

    problems = check_archive_settings(
        values.get("archive", ()),
        values.get("archive_api", DEFAULT_ARCHIVE_API),
        values.get("placeholder_sha256", ()),
        values.get("archive_per_host", 2),
        values.get("archive_cdx_api", DEFAULT_ARCHIVE_CDX_API),
    )
    if problems:
        raise ConfigError(f"{path}: " + "; ".join(problems))


def _check_referrer_settings(path: Path, values: dict[str, Any]) -> None:
    """A typo in a policy or an override must not silently change which Referer is sent."""
    from harvester.referrer import POLICIES, check_overrides, parse_policy_attribute

    policy = values.get("default_policy")
    if policy is not None and parse_policy_attribute(str(policy)) is None:
        raise ConfigError(
            f"{path}: default_policy {policy!r} is not a referrer policy; "
            f"expected one of {', '.join(sorted(POLICIES))}"
        )
    problems = check_overrides(values.get("referer_overrides", {}))
    if problems:
        raise ConfigError(f"{path}: " + "; ".join(problems))
    if "referer_overrides" in values:
        try:
            values["referer_overrides"] = _default_overrides(values["referer_overrides"])
        except ValueError as exc:
            raise ConfigError(f"{path}: {exc}") from None


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
            if not isinstance(value, (list, tuple)):
                raise TypeError
            return tuple(value)
        if name in _DURATIONS:
            from harvester.units import parse_duration

            return parse_duration(value, name=name)
        if name in _SIZES:
            from harvester.units import parse_size

            return parse_size(value, name=name)
        if isinstance(default, Path) or name in {"ca_bundle"}:
            if not isinstance(value, str):
                raise TypeError
            return Path(value)
        if isinstance(default, dict):
            if not isinstance(value, dict):
                raise TypeError
            return {str(k): str(v) for k, v in value.items()}
        if default is None:
            if not isinstance(value, str):
                raise TypeError
            return value
        if isinstance(default, (int, float)) and isinstance(value, bool):
            raise TypeError
        if isinstance(default, int) and not isinstance(default, bool) and isinstance(value, float):
            raise TypeError
        return expected(value)
    except ConfigError as exc:  # units explain themselves ("write e.g. 90s, 2h")
        raise ConfigError(f"{path}: {exc}") from None
    except (TypeError, ValueError):
        kind = _KIND_NAMES.get(expected, expected.__name__)
        if default is None:
            kind = "a string"
        raise ConfigError(f"{path}: setting {name!r} must be {kind}, got {value!r}") from None


_KIND_NAMES = {
    bool: "true or false",
    int: "a whole number",
    float: "a number",
    str: "a string",
    tuple: "a list",
    dict: "a table",
}
_KIND_NAMES.update({type(Path()): "a path (a string)"})


DEFAULT_CONFIG = Path("harvester.toml")


def _checked_site_url(value: str) -> str:
    from harvester.errors import UsageError
    from harvester.extract.urls import absolute_base

    if absolute_base(value) is None:
        raise UsageError(f"--site-url must be an absolute http(s) URL, got {value!r}")
    return value


def _checked_policy(value: str) -> str:
    from harvester.errors import UsageError
    from harvester.referrer import POLICIES, parse_policy_attribute

    policy = parse_policy_attribute(value)
    if policy is None:
        raise UsageError(
            f"--default-policy {value!r} is not a referrer policy; "
            f"expected one of {', '.join(sorted(POLICIES))}"
        )
    return policy


# Command-line values checked before use: a typo must not silently change what is sent.
_FLAG_CHECKS = {"site_url": _checked_site_url, "default_policy": _checked_policy}


def build_settings(
    config: Path | None = None, *, preset: str | None = None, **overrides: Any
) -> tuple[Settings, PresetResult | None]:
    """Explicit options > config file (`./harvester.toml` when present) > preset > defaults.

    `overrides` whose value is None were not given on the command line. `preset` is a name,
    "auto", or None (then the config file's `preset`, if any). Returns the settings and the
    preset applied, whose `article_paths` are the default PATHs.
    """
    from harvester.presets import apply_preset, resolve_preset

    values: dict[str, Any] = {}
    if config is None and DEFAULT_CONFIG.is_file():
        config = DEFAULT_CONFIG
    config_preset = None
    if config is not None:
        if not config.is_file():
            raise ConfigError(f"config file not found: {config}")
        text_values = load_config(config, allow={"preset"})
        config_preset = text_values.pop("preset", None)
        values.update(text_values)
    for name, value in overrides.items():
        if name not in _FIELDS:
            raise ConfigError(f"unknown setting {name!r}")
        if name in _FLAG_CHECKS and value is not None:
            value = _FLAG_CHECKS[name](value)
        if value is not None:
            values[name] = (
                _coerce(Path("command line"), name, value)
                if name in (_DURATIONS | _SIZES)
                else value
            )
    chosen = resolve_preset(preset or config_preset, Path.cwd())
    values = apply_preset(values, chosen, explicit=set(values))
    return Settings(**values), chosen
