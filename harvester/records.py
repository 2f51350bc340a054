"""The records the crawler stages exchange (scan → fetch).

Small frozen dataclasses, so each stage's output is a plain value a test (or a cluster engine)
can build, compare and pickle. Offsets are *character* offsets into `Article.text` (the decoded
text without BOM, newlines untouched), end-exclusive.
"""

from __future__ import annotations

from dataclasses import dataclass

# The syntax a URL sits in decides how a replacement must be escaped when rewriting.
SYNTAXES = ("markdown", "markdown-angle", "html", "css", "yaml", "toml", "json", "template")

# What kind of reference it is, as reported by `scan` and recorded in the manifest.
KINDS = (
    "markdown-inline",  # ![alt](url "title")
    "markdown-reference",  # [label]: url  used by ![alt][label] / ![label][] / ![label]
    "html-img",  # <img src>
    "html-srcset",  # <img srcset> / <source srcset> / data-srcset candidate
    "html-lazy",  # data-src, data-original, ... on <img>
    "html-source",  # <source src> inside <picture>
    "css-url",  # style="background: url(...)"
    "front-matter",  # headimg: ..., cover.image: ...
    "template-tag",  # {{< figure src=... >}}, {% img ... %}, {% include image.html url=... %}
)


@dataclass(frozen=True)
class ImageRef:
    """One remote image reference found in one article."""

    article: str  # the article's path as scanned (posix form)
    start: int  # span of the URL text in Article.text
    end: int
    line: int  # 1-based line of `start`
    kind: str  # one of KINDS
    syntax: str  # one of SYNTAXES
    field: str  # attribute name (`src`, `data-src`), front-matter key path (`cover.image`), ...
    raw: str  # == Article.text[start:end], exactly as written (entities and all)
    url: str  # absolute http(s) URL to fetch: entities decoded, fragment removed
    policy: str  # effective referrer policy
    referer: str | None  # the Referer header the policy allows for `url`, or None
    page_url: str | None = None  # the referrer source (article's own URL), when known


@dataclass(frozen=True)
class FetchRequest:
    """One unique URL to bring home, with what the fetcher needs to be polite and correct."""

    url: str
    policy: str
    page_url: str | None = None  # referrer source; redirects recompute Referer from it
    referer: str | None = None
    etag: str | None = None  # from a previous run: conditional request
    last_modified: str | None = None
    # What the previous run stored for this URL; a 304 answer reports it as unchanged.
    # Conditional headers are sent only when both are given and the file is still stored.
    known_sha256: str | None = None
    known_path: str | None = None  # store-relative posix path, "ab/cd/<sha>.jpg"


@dataclass(frozen=True)
class Fetched:
    """A URL whose image is now in the store (or confirmed unchanged by a 304)."""

    url: str
    final_url: str
    sha256: str
    size: int
    media_type: str  # from the sniffed bytes, not the server's Content-Type
    ext: str  # "jpg", "png", ... from the real format
    path: str  # store path relative to the store root, posix: "ab/cd/<sha>.jpg"
    http_status: int
    etag: str | None
    last_modified: str | None
    attempts: int
    policy: str
    referer: str | None
    not_modified: bool = False  # a 304 answered a conditional request; bytes unchanged


@dataclass(frozen=True)
class FetchFailure:
    """A URL that could not be brought home this run; `reason` is a stable code."""

    url: str
    reason: str  # "http-404", "timeout", "too-large", "not-an-image", "blocked-address", ...
    message: str  # for humans
    attempts: int
    policy: str
    referer: str | None
    http_status: int | None = None
    final_url: str | None = None
    retry_after: float | None = None  # seconds the server asked us to wait (defers the URL)
