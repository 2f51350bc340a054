"""Load an article: file bytes → `Article`.

Input: a path (and optionally its bytes). Output: an `Article` holding the decoded text (without
BOM, newlines untouched, so character offsets are stable and `encode_article(a, a.text)` gives
the original bytes back), the encoding and BOM, the dominant newline style, the front-matter
block (kind, spans, parsed data, and every string scalar with its span) and the protected
regions of the body (code, comments, `<pre>`/`<code>`/`<script>`/`<style>`/`<textarea>`, Liquid
raw/highlight blocks) where nothing may be reported or changed.

Files that are not text (NUL bytes, mostly control characters) raise `ArticleError` with a
reason code; a caller scanning many files records it and goes on. Non-UTF-8 text is decoded
with a fallback (GB18030, then cp1252, then latin-1) and says so in `Article.warnings`; UTF-8
with a few damaged bytes stays UTF-8, the bad bytes kept as-is (surrogate escapes).
"""

from __future__ import annotations

import codecs
import re
import sys
from bisect import bisect_right
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harvester.errors import ArticleError

# Articles are read whole; anything this large is not an article someone wrote by hand.
MAX_ARTICLE_BYTES = 64 * 1024 * 1024

_BOMS = (
    # UTF-32 first: its LE BOM starts with the UTF-16 LE BOM.
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_BOM_FOR = {name: bom for bom, name in _BOMS}

# Tried in order when the bytes are not UTF-8. GB18030 first: Chinese exports are the common
# non-UTF-8 case here, and GB18030 rejects most Western 8-bit text (an accented letter followed
# by a space or punctuation is not a valid GB18030 sequence), which then falls to cp1252.
_FALLBACK_ENCODINGS = ("gb18030", "cp1252", "latin-1")

# Control characters that never appear in text files (tab, LF, VT, FF, CR and ESC do).
_BINARY_CONTROLS = bytes(c for c in range(32) if c not in (9, 10, 11, 12, 13, 27))
_BINARY_TABLE = bytes.maketrans(b"", b"")


@dataclass(frozen=True)
class ArticleWarning:
    """Something a user should know about one article; the scan goes on."""

    code: str  # stable: "fallback-encoding", "front-matter-invalid", "unclosed-element", ...
    message: str
    line: int | None = None

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message


@dataclass(frozen=True)
class FrontMatterString:
    """One string scalar in the front matter, with the span of its text in `Article.text`.

    For quoted scalars the span is inside the quotes; `value` is the decoded string.
    """

    path: tuple[str | int, ...]  # keys and list indices from the root: ("cover", "image")
    start: int
    end: int
    value: str


@dataclass(frozen=True)
class FrontMatter:
    """The front-matter block at the top of an article."""

    kind: str  # "yaml", "toml", "json", "yaml-prefixless" (Hexo: no opening ---)
    start: int  # whole block, fences included, up to the start of the body
    end: int
    body_start: int  # the data between the fences
    body_end: int
    data: Any  # parsed value (usually a dict), or None when it could not be parsed
    strings: tuple[FrontMatterString, ...] = ()

    @property
    def syntax(self) -> str:
        return "yaml" if self.kind.startswith("yaml") else self.kind


@dataclass(frozen=True)
class Article:
    path: Path
    text: str  # decoded, without BOM, newlines as in the file
    encoding: str  # Python codec name: "utf-8", "gb18030", "utf-16-le", ...
    bom: bool
    newline: str  # the dominant newline: "\n", "\r\n" or "\r"
    front_matter: FrontMatter | None
    protected: tuple[tuple[int, int], ...]  # sorted, merged, end-exclusive character spans
    warnings: tuple[ArticleWarning, ...] = ()

    @property
    def is_html(self) -> bool:
        return self.path.suffix.lower() in (".html", ".htm")

    def is_protected(self, start: int, end: int) -> bool:
        """True when [start, end) touches a protected span."""
        spans = self.protected
        i = bisect_right(spans, (start, sys.maxsize)) - 1  # the last span starting <= start
        if i >= 0 and spans[i][1] > start:
            return True
        return i + 1 < len(spans) and spans[i + 1][0] < end


def load_article(path: Path, data: bytes | None = None) -> Article:
    """Decode and analyse one article. Raises `ArticleError` for unreadable or binary files."""
    path = Path(path)
    if data is None:
        try:
            size = path.stat().st_size
            if size > MAX_ARTICLE_BYTES:
                raise ArticleError(
                    path, "too-large", f"{size} bytes; articles above {MAX_ARTICLE_BYTES} skip"
                )
            data = path.read_bytes()
        except OSError as exc:
            raise ArticleError(path, "unreadable", exc.strerror or str(exc)) from exc
    if len(data) > MAX_ARTICLE_BYTES:
        raise ArticleError(path, "too-large", f"{len(data)} bytes")
    text, encoding, bom, warnings = _decode(path, data)

    # Imported here: the analysis modules live in the extract package, which imports us.
    from harvester.extract.document import analyze
    from harvester.extract.frontmatter import find_front_matter

    front_matter, fm_warnings = find_front_matter(text)
    is_html = path.suffix.lower() in (".html", ".htm")
    analysis = analyze(text, _fm_span(front_matter), is_html)
    return Article(
        path=path,
        text=text,
        encoding=encoding,
        bom=bom,
        newline=_dominant_newline(text),
        front_matter=front_matter,
        protected=analysis.protected,
        warnings=(*warnings, *fm_warnings, *analysis.warnings),
    )


def encode_article(article: Article, text: str) -> bytes:
    """`text` in the article's encoding, with its BOM if it had one."""
    return encode_text(text, article.encoding, article.bom, article.path)


def encode_text(text: str, encoding: str, bom: bool, path: Path | None = None) -> bytes:
    """`text` as an article file with this encoding and BOM (as recorded in the manifest)."""
    name = codecs.lookup(encoding).name
    try:
        # surrogateescape: bytes that were not valid UTF-8 go back exactly as they were read.
        body = text.encode(name, "surrogateescape")
    except UnicodeEncodeError as exc:
        raise ArticleError(
            path or Path("?"),
            "unencodable",
            f"{exc.object[exc.start : exc.end]!r} cannot be written as {encoding}",
        ) from exc
    return (_BOM_FOR.get(name, b"") if bom else b"") + body


def decode_text(data: bytes, encoding: str, bom: bool) -> str:
    """Bytes → text as the scanner saw it (BOM dropped, newlines untouched): the inverse of
    `encode_text` for bytes read with a recorded encoding."""
    name = codecs.lookup(encoding).name
    mark = _BOM_FOR.get(name) if bom else None
    if mark and data.startswith(mark):
        data = data[len(mark) :]
    return data.decode(name, errors="surrogateescape")


def _fm_span(front_matter: FrontMatter | None) -> tuple[int, int] | None:
    return None if front_matter is None else (front_matter.start, front_matter.end)


def _decode(path: Path, data: bytes) -> tuple[str, str, bool, list[ArticleWarning]]:
    for bom, name in _BOMS:
        if data.startswith(bom):
            try:
                return data[len(bom) :].decode(name), name, True, []
            except UnicodeDecodeError as exc:
                raise ArticleError(
                    path, "bad-encoding", f"starts with a {name} BOM but is not {name}: {exc}"
                ) from exc
    _refuse_binary(path, data)
    try:
        return data.decode("utf-8"), "utf-8", False, []
    except UnicodeDecodeError as exc:
        first_bad = exc.start
    line = data.count(b"\n", 0, first_bad) + 1
    # A UTF-8 file with a few damaged bytes (a truncated copy, a stray Latin-1 character) is
    # still UTF-8: keep those bytes as they are (surrogateescape round-trips them exactly)
    # rather than decoding the whole file as something else.
    text = data.decode("utf-8", "surrogateescape")
    damaged = sum(1 for ch in text if "\udc80" <= ch <= "\udcff")
    non_ascii = sum(1 for b in data if b >= 0x80)
    if damaged <= 16 and damaged * 10 <= non_ascii:
        warning = ArticleWarning(
            "invalid-utf8",
            f"{damaged} byte(s) are not valid UTF-8 (first at offset {first_bad}); kept unchanged",
            line,
        )
        return text, "utf-8", False, [warning]
    for name in _FALLBACK_ENCODINGS:
        try:
            text = data.decode(name)
        except UnicodeDecodeError:
            continue
        if text.encode(name) != data:  # the contract: re-encoding gives the bytes back
            continue
        warning = ArticleWarning(
            "fallback-encoding",
            f"not valid UTF-8 (first bad byte at offset {first_bad}); decoded as {name}",
            line,
        )
        return text, name, False, [warning]
    raise ArticleError(path, "bad-encoding", "no text encoding fits these bytes")  # unreachable


def _refuse_binary(path: Path, data: bytes) -> None:
    if b"\x00" in data:
        raise ArticleError(
            path, "binary", f"contains NUL bytes (first at offset {data.index(0)}); not text"
        )
    head = data[:8192]
    if head:
        controls = len(head) - len(head.translate(_BINARY_TABLE, _BINARY_CONTROLS))
        if controls * 10 > len(head):
            raise ArticleError(path, "binary", f"{controls} control bytes in the first 8 KiB")


_NEWLINES = re.compile(r"\r\n|\r|\n")


def _dominant_newline(text: str) -> str:
    crlf = text.count("\r\n")
    cr = text.count("\r") - crlf
    lf = text.count("\n") - crlf
    best = max((lf, "\n"), (crlf, "\r\n"), (cr, "\r"), key=lambda pair: pair[0])
    return best[1] if best[0] else "\n"
