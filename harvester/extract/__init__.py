"""Scan articles for remote image references: `Article` → `ImageRef`s with exact spans.

Input: an `Article` (from `harvester.articles.load_article`) and `Settings`. Output: one
`ImageRef` per remote image URL written in the article (Markdown inline and reference images,
`<img src>`, srcset candidates, `<picture><source>`, lazy-load attributes, `<noscript>` copies,
inline-style `url()`, front-matter image fields, and the Hugo shortcodes, Hexo tags and Jekyll
includes that show a picture), each with the span of the URL text, the URL to fetch, the
effective referrer policy and the `Referer` it allows. Nothing in a protected region
is reported; local, site-root, `{{ … }}` expression, `data:` and other non-http(s) URLs are not
reported either (relative ones resolve only against an original-page base: `<base href>` or a
`settings.source_url_keys` front-matter key).

`iter_article_paths` walks folders; `scan_paths` loads and scans files one at a time, turning a
file that cannot be read into a `ScanResult` with a warning instead of an exception.
"""

from __future__ import annotations

import collections
import itertools
import os
import re
from bisect import bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

from harvester import articles as _articles
from harvester.articles import Article, ArticleWarning
from harvester.errors import ArticleError
from harvester.extract.document import Tag, analyze
from harvester.extract.templates import tag_images
from harvester.extract.urls import (
    absolute_base,
    css_urls,
    resolve,
    srcset_candidates,
    unescape_attribute,
    unescape_css,
)
from harvester.records import ImageRef
from harvester.referrer import apply_override, effective_policy, last_meta_policy
from harvester.settings import Settings

__all__ = ["ScanResult", "iter_article_paths", "scan_article", "scan_one", "scan_paths"]

LAZY_ATTRIBUTES = (
    "data-src",
    "data-original",
    "data-original-src",
    "data-actualsrc",
    "data-lazy-src",
)
SRCSET_ATTRIBUTES = ("srcset", "data-srcset")
# Keys that name an image inside a mapping that is itself an image field (`cover: {src: ...}`).
NESTED_SOURCE_KEYS = ("src", "url", "path")
SKIPPED_FOLDERS = ("node_modules",)
# `harvester report` pages say so in their <head>; they are never articles (a report written
# into the articles folder must not be scanned by the next run). Only the first bytes are read.
REPORT_PEEK_BYTES = 4096
_REPORT_MARK = re.compile(
    rb"""<meta\s+name\s*=\s*["']?generator["']?\s+content\s*=\s*["']?harvester report\b""",
    re.IGNORECASE,
)
_NEWLINE = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class ScanResult:
    path: Path
    article: Article | None  # None when the file could not be loaded (see warnings)
    refs: tuple[ImageRef, ...]
    warnings: tuple[ArticleWarning, ...]


def is_harvester_report(head: bytes) -> bool:
    """Whether these first bytes of an HTML file are a page `harvester report` wrote."""
    return _REPORT_MARK.search(head[:REPORT_PEEK_BYTES]) is not None


def _is_report_file(path: Path) -> bool:
    if path.suffix.lower() not in (".html", ".htm"):
        return False
    try:
        with open(path, "rb") as handle:
            return is_harvester_report(handle.read(REPORT_PEEK_BYTES))
    except OSError:
        return False  # scan_one reports the unreadable file


def iter_article_paths(paths: Iterable[Path], settings: Settings) -> Iterator[Path]:
    """Files as given; folders searched recursively for `settings.extensions`, sorted.

    Hidden folders and files (`.git`, `.obsidian`, ...) and `node_modules` are skipped, and
    so are HTML pages that `harvester report` wrote (even when named directly).
    """
    extensions = {e.lower() for e in settings.extensions}
    for path in paths:
        path = Path(path)
        if not path.is_dir():
            if not _is_report_file(path):
                yield path
            continue
        for folder, dirnames, filenames in os.walk(path):
            dirnames[:] = sorted(
                d for d in dirnames if not d.startswith(".") and d not in SKIPPED_FOLDERS
            )
            for name in sorted(filenames):
                if name.startswith("."):
                    continue
                found = Path(folder, name)
                if found.suffix.lower() in extensions and not _is_report_file(found):
                    yield found


def scan_paths(paths: Iterable[Path], settings: Settings, workers: int = 1) -> Iterator[ScanResult]:
    """Load and scan each article in turn, in path order; one bad file never stops the others.

    `workers` > 1 scans in that many processes once more than a few dozen files are seen
    (small runs are not worth starting processes for). Results still come in path order and
    at most a small window of them is in flight, so memory does not grow with the file count.
    """
    found = iter_article_paths(paths, settings)
    if workers <= 1:
        for path in found:
            yield scan_one(path, settings)
        return
    head = list(itertools.islice(found, _SERIAL_HEAD))
    for path in head:
        yield scan_one(path, settings)
    if len(head) < _SERIAL_HEAD:
        return
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=workers) as pool:
        window: collections.deque = collections.deque()
        while batch := list(itertools.islice(found, _BATCH)):
            window.append(pool.submit(_scan_batch, batch, settings))
            if len(window) >= workers * 4:
                yield from window.popleft().result()
        while window:
            yield from window.popleft().result()


_SERIAL_HEAD = 64
_BATCH = 16


def _scan_batch(paths: list[Path], settings: Settings) -> list[ScanResult]:
    return [scan_one(path, settings) for path in paths]


def scan_one(path: Path, settings: Settings, data: bytes | None = None) -> ScanResult:
    """Load and scan one file (or its `data`, already read); a file that cannot be read or
    scanned becomes warnings."""
    if path.suffix.lower() in (".html", ".htm") and (
        is_harvester_report(data) if data is not None else _is_report_file(path)
    ):
        warning = ArticleWarning("harvester-report", "a page `harvester report` wrote; skipped")
        return ScanResult(path, None, (), (warning,))
    try:
        article = _articles.load_article(path, data)
    except ArticleError as exc:
        return ScanResult(path, None, (), (ArticleWarning(exc.reason, exc.message),))
    try:
        refs = scan_article(article, settings)
    except Exception as exc:  # a bug must not cost the other files their scan; say so loudly
        warning = ArticleWarning("scan-failed", f"internal error while scanning: {exc!r}")
        return ScanResult(path, article, (), (*article.warnings, warning))
    return ScanResult(path, article, tuple(refs), article.warnings)


def scan_article(article: Article, settings: Settings) -> list[ImageRef]:
    return _Scan(article, settings).run()


def _field_name(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _is_image_field(path: tuple[str | int, ...], image_keys: frozenset[str]) -> bool:
    names = [p.lower() for p in path if isinstance(p, str)]
    if not names:
        return False
    if names[-1] in image_keys:
        return True
    return names[-1] in NESTED_SOURCE_KEYS and len(names) >= 2 and names[-2] in image_keys


def _in_tag(
    ref: ImageRef,
    spans: list[tuple[int, int]],
    starts: list[int],
    pictures: dict[tuple[int, int], list[tuple[int, int]]],
) -> bool:
    """Whether another scanner's `ref` is really part of an image template tag (`spans`,
    sorted, with their `starts`; `pictures`: each tag's picture spans). The tag is what the
    generator reads, so it wins: `{{<img src="…" srcset="…">}}` is an <img> to the HTML
    scanner too, and all of that HTML goes; a Markdown image in a figure's caption stays,
    unless it overlaps the picture's span (two edits of one span must never overlap)."""
    at = bisect_right(starts, ref.start) - 1
    if at < 0 or ref.start >= spans[at][1]:
        return False
    if ref.syntax == "html":
        return True
    return any(ref.start < end and start < ref.end for start, end in pictures[spans[at]])


class _Scan:
    def __init__(self, article: Article, settings: Settings) -> None:
        self.article = article
        self.settings = settings
        self.text = article.text
        self.name = article.path.as_posix()
        self.refs: list[ImageRef] = []
        self._line_starts: list[int] | None = None

    def run(self) -> list[ImageRef]:
        article, settings = self.article, self.settings
        fm = article.front_matter
        fm_span = None if fm is None else (fm.start, fm.end)
        analysis = analyze(article.text, fm_span, article.is_html)
        data = fm.data if fm is not None and isinstance(fm.data, dict) else {}
        self.page_url = self._page_url(data)
        source_base = next(
            (b for k in settings.source_url_keys if (b := absolute_base(data.get(k)))), None
        )
        tags = [t for t in analysis.tags if not article.is_protected(t.start, t.end)]
        meta = last_meta_policy(self._meta_referrers(tags))
        self.document_policy = effective_policy(None, meta, settings.default_policy)
        self.meta = meta
        body_base = self._base_href(tags, source_base)

        if fm is not None:
            keys = frozenset(k.lower() for k in settings.image_keys)
            for s in fm.strings:
                if _is_image_field(s.path, keys):
                    self._add(
                        s.start,
                        s.end,
                        "front-matter",
                        fm.syntax,
                        _field_name(s.path),
                        s.value,
                        self.document_policy,
                        source_base,
                        check=False,
                    )
        for image in analysis.images:
            syntax = "markdown-angle" if image.angle else "markdown"
            self._add(
                image.start,
                image.end,
                "markdown-inline",
                syntax,
                "destination",
                image.value,
                self.document_policy,
                body_base,
            )
        for ref in analysis.references:
            syntax = "markdown-angle" if ref.angle else "markdown"
            self._add(
                ref.start,
                ref.end,
                "markdown-reference",
                syntax,
                ref.label,
                ref.value,
                self.document_policy,
                body_base,
            )
        self._html(tags, body_base)
        # a template tag's relative value is the site's own file (a page-bundle resource, a
        # static path), never a path on the page the article was copied from: no base
        names = frozenset(n.lower() for n in settings.template_tags)
        others = len(self.refs)
        tags: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for image in tag_images(article.text, 0 if fm is None else fm.end, names):
            tags.setdefault(image.tag, []).append((image.start, image.end))
            self._add(
                image.start,
                image.end,
                "template-tag",
                "template",
                image.field,
                image.value,
                self.document_policy,
                None,
            )
        if tags:
            spans = sorted(tags)  # tags follow each other, never nest
            starts = [start for start, _ in spans]
            kept = [r for r in self.refs[:others] if not _in_tag(r, spans, starts, tags)]
            self.refs = kept + self.refs[others:]

        unique: dict[tuple[int, int], ImageRef] = {}
        for ref in sorted(self.refs, key=lambda r: (r.start, r.end)):
            unique.setdefault((ref.start, ref.end), ref)
        return list(unique.values())

    # --------------------------------------------------------------------------- helpers

    def _page_url(self, data: dict) -> str | None:
        site = absolute_base(self.settings.site_url)
        for key in self.settings.page_url_keys:
            value = data.get(key)
            if not isinstance(value, str) or not value.strip():
                continue
            url = absolute_base(value)
            if url:
                return url
            if site and not value.strip().startswith(("{{", "{%")):
                joined = absolute_base(urljoin(site, value.strip()))
                if joined:
                    return joined
        return site

    def _meta_referrers(self, tags: list[Tag]) -> Iterator[str | None]:
        for tag in tags:
            if tag.name != "meta":
                continue
            name = tag.get("name")
            content = tag.get("content")
            if name is None or content is None:
                continue
            if self._value(name).strip(" \t\n\r\f").lower() == "referrer":
                yield self._value(content)

    def _base_href(self, tags: list[Tag], source_base: str | None) -> str | None:
        for tag in tags:  # HTML: the first <base> with an href sets the document base URL
            if tag.name == "base" and (href := tag.get("href")) is not None:
                value = unescape_attribute(self._value(href))
                return resolve(value, source_base) or source_base
        return source_base

    def _value(self, attribute) -> str:
        return self.text[attribute.start : attribute.end]

    def _line(self, offset: int) -> int:
        if self._line_starts is None:
            self._line_starts = [0] + [m.end() for m in _NEWLINE.finditer(self.text)]
        return bisect_right(self._line_starts, offset)

    def _referer(self, policy: str, url: str) -> str | None:
        """The Referer `run` sends on the first request: the policy's, with the per-host
        override table applied as the fetcher applies it (`referrer.apply_override`)."""
        return apply_override(policy, self.page_url, url, self.settings.referer_overrides)

    def _add(self, start, end, kind, syntax, field, value, policy, base, check=True) -> None:
        if check and self.article.is_protected(start, end):
            return
        url = resolve(value, base)
        if url is None:
            return
        self.refs.append(
            ImageRef(
                article=self.name,
                start=start,
                end=end,
                line=self._line(start),
                kind=kind,
                syntax=syntax,
                field=field,
                raw=self.text[start:end],
                url=url,
                policy=policy,
                referer=self._referer(policy, url),
                page_url=self.page_url,
            )
        )

    def _add_attribute(self, attribute, kind, field, policy, base) -> None:
        start, end = attribute.start, attribute.end
        raw = self.text[start:end]
        stripped = raw.strip(" \t\n\r\f")
        if not stripped:
            return
        start += len(raw) - len(raw.lstrip(" \t\n\r\f"))
        end = start + len(stripped)
        self._add(start, end, kind, "html", field, unescape_attribute(stripped), policy, base)

    def _add_srcset(self, attribute, policy, base) -> None:
        raw = self._value(attribute)
        for s, e in srcset_candidates(raw):
            start, end = attribute.start + s, attribute.start + e
            value = unescape_attribute(raw[s:e])
            self._add(start, end, "html-srcset", "html", attribute.name, value, policy, base)

    # ------------------------------------------------------------------------------ HTML

    def _html(self, tags: list[Tag], base: str | None) -> None:
        default = self.settings.default_policy
        picture_policy: dict[int, str | None] = {}
        for tag in tags:  # a <picture>'s sources use its <img>'s policy; the img comes last
            if tag.name == "img" and tag.picture is not None:
                attr = tag.get("referrerpolicy")
                value = unescape_attribute(self._value(attr)) if attr is not None else None
                picture_policy.setdefault(tag.picture, value)
        for tag in tags:
            # <source> outside <picture> belongs to <video>/<audio>: not an image.
            if tag.name == "img" or (tag.name == "source" and tag.picture is not None):
                if tag.name == "img":
                    attr = tag.get("referrerpolicy")
                    own = unescape_attribute(self._value(attr)) if attr is not None else None
                else:
                    own = picture_policy.get(tag.picture)  # type: ignore[arg-type]
                policy = effective_policy(own, self.meta, default)
                self._image_attributes(tag, policy, base)
            style = tag.get("style")
            if style is not None and style.end > style.start:
                raw = self._value(style)
                for s, e in css_urls(raw):
                    value = unescape_css(unescape_attribute(raw[s:e]))
                    start, end = style.start + s, style.start + e
                    self._add(
                        start, end, "css-url", "css", "style", value, self.document_policy, base
                    )

    def _image_attributes(self, tag: Tag, policy: str, base: str | None) -> None:
        seen: set[str] = set()
        for attribute in tag.attributes:
            name = attribute.name
            if name in seen or not attribute.has_value:
                continue
            seen.add(name)
            if name == "src":
                kind = "html-img" if tag.name == "img" else "html-source"
                self._add_attribute(attribute, kind, name, policy, base)
            elif name in SRCSET_ATTRIBUTES:
                self._add_srcset(attribute, policy, base)
            elif name in LAZY_ATTRIBUTES and tag.name == "img":
                self._add_attribute(attribute, "html-lazy", name, policy, base)
