"""URL text → absolute http(s) URL to fetch, and the sub-spans of srcset and CSS values.

Input: the raw text of a URL as written (entities and all) and the base to resolve against.
Output: `resolve()` gives the URL to fetch (fragment removed, protocol-relative → https,
relative paths only against an original-page base) or None when it is not a remote image
reference; `srcset_candidates()` and `css_urls()` give (start, end) spans inside a value.
"""

from __future__ import annotations

import html
import re
from urllib.parse import urljoin, urlsplit

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
_ASCII_WS = " \t\n\r\f"
_TAB_NEWLINE = re.compile(r"[\t\n\r]")
_SURROGATE = re.compile("[\ud800-\udfff]")
# Character references as HTML attribute values have them. A named reference without its
# ';' is left alone: browsers do not decode `&copy=` inside attribute values, and URLs are
# full of `&name=` query parameters.
_CHARREF = re.compile(r"&(?:#[0-9]+;?|#[xX][0-9A-Fa-f]+;?|[A-Za-z][A-Za-z0-9]*;)")
_CSS_ESCAPE = re.compile(r"\\(?:([0-9A-Fa-f]{1,6})[ \t\n]?|(.))", re.S)


def unescape_attribute(raw: str) -> str:
    if "&" not in raw:
        return raw
    return _CHARREF.sub(lambda m: html.unescape(m.group(0)), raw)


def unescape_css(raw: str) -> str:
    if "\\" not in raw:
        return raw

    def replace(m: re.Match[str]) -> str:
        if m.group(1):
            code = int(m.group(1), 16)
            return chr(code) if 0 < code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF else "\ufffd"
        return m.group(2) if m.group(2) != "\n" else ""

    return _CSS_ESCAPE.sub(replace, raw)


def is_template(value: str) -> bool:
    """Liquid/Hugo/Jinja expressions are not URLs; they are left exactly as written."""
    return "{{" in value or "{%" in value


def resolve(value: str, base: str | None) -> str | None:
    """The absolute http(s) URL `value` stands for, or None when it is not remote."""
    url = _TAB_NEWLINE.sub("", value.strip(_ASCII_WS))  # URL parsers drop these, as browsers
    if not url or is_template(url):
        return None
    if _SURROGATE.search(url):  # bytes that were not valid UTF-8: no URL can be made of them
        return None
    if url.startswith("//"):
        url = "https:" + url
    m = _SCHEME.match(url)
    if m:
        scheme = m.group(1).lower()
        if scheme not in ("http", "https"):
            return None  # data:, file:, mailto:, javascript:, C:\... are never fetched
        url = scheme + url[m.end(1) :]
    elif base is None:
        return None  # the site's own file: left alone
    else:
        try:
            url = urljoin(base, url)
        except ValueError:
            return None
        if not url.startswith(("http://", "https://")):
            return None
    url = url.split("#", 1)[0]
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return None
    if not host:
        return None
    return url


def absolute_base(value: str | None) -> str | None:
    """An http(s) URL usable as a base (page URL, <base href>), else None."""
    if not isinstance(value, str):
        return None
    url = resolve(value, None)
    return url


def srcset_candidates(value: str) -> list[tuple[int, int]]:
    """Spans of the URLs in a srcset value (HTML "parse a srcset attribute").

    A URL runs to the next whitespace, so it may contain commas; trailing commas end the
    candidate. Descriptors (`2x`, `300w`) are skipped up to a comma outside parentheses.
    """
    out = []
    pos, n = 0, len(value)
    while True:
        while pos < n and (value[pos] in _ASCII_WS or value[pos] == ","):
            pos += 1
        if pos >= n:
            return out
        start = pos
        while pos < n and value[pos] not in _ASCII_WS:
            pos += 1
        end = pos
        if value[end - 1] == ",":
            while end > start and value[end - 1] == ",":
                end -= 1
        else:
            in_parens = False
            while pos < n:
                ch = value[pos]
                pos += 1
                if ch == "(":
                    in_parens = True
                elif ch == ")":
                    in_parens = False
                elif ch == "," and not in_parens:
                    break
        if end > start:
            out.append((start, end))


# url( ... ) in a style attribute, quoted with ' or " or their character references.
_CSS_URL = re.compile(r"url\(", re.I)
_CSS_QUOTES = ('"', "'", "&quot;", "&#34;", "&#x22;", "&apos;", "&#39;", "&#x27;")
_QUOTE_CHAR = {q: html.unescape(q) for q in _CSS_QUOTES}


def css_urls(value: str) -> list[tuple[int, int]]:
    """Spans of the URLs inside `url(...)` in raw CSS text (as written in an attribute)."""
    out = []
    pos = 0
    while True:
        m = _CSS_URL.search(value, pos)
        if m is None:
            return out
        if m.start() > 0 and (value[m.start() - 1].isalnum() or value[m.start() - 1] in "-_"):
            pos = m.end()  # part of a longer identifier, e.g. `myurl(`
            continue
        i = m.end()
        while i < len(value) and value[i] in _ASCII_WS:
            i += 1
        quote = next((q for q in _CSS_QUOTES if value.startswith(q, i)), None)
        if quote is not None:
            start = i + len(quote)
            char = _QUOTE_CHAR[quote]
            end = start
            while end < len(value):
                closing = next(
                    (q for q in _CSS_QUOTES if _QUOTE_CHAR[q] == char and value.startswith(q, end)),
                    None,
                )
                if closing is not None:
                    break
                end += 2 if value[end] == "\\" else 1
            end = min(end, len(value))
        else:
            start = i
            end = start
            while end < len(value) and value[end] != ")" and value[end] not in _ASCII_WS:
                end += 2 if value[end] == "\\" else 1
            end = min(end, len(value))
        if end > start:
            out.append((start, end))
        pos = max(end, m.end())
