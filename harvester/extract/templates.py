"""Image URLs written inside site-generator template tags.

Input: an article's text, where its body starts, and the tag names that show images.
Output: one `TagImage` per picture parameter of such a tag, with the span of the value as
written (inside its quotes) so the rewriter can replace exactly that text, and the span of
the whole tag.

Three families, all common in the posts harvester serves:

    Hugo shortcodes      {{< figure src="https://…" caption="…" >}}   {{% img "https://…" %}}
    Hexo/Octopress tags  {% img left https://… 300 200 'title' %}
    Jekyll includes      {% include image.html url="https://…" %}
                         {% include figure image_path="https://…" %}  (Minimal Mistakes)

A shortcode or Liquid tag counts when its name is one of `names` (`Settings.template_tags`);
an include when its file's stem is (`image.html`, `_includes/figure.liquid`). Named
parameters count when their key is one of `IMAGE_PARAMETERS` (so `figure`'s `link` does
not). Of the positional words, the picture is the first that looks like a URL or a path, as
Hexo's `{% img %}` decides (the words before it are CSS classes, those after it sizes and a
title). Whether a value is a remote URL at all is the caller's question (`urls.resolve`):
bundle-relative files, site paths and `{{ site.baseurl }}/…` are not.

Quoting follows the generators: Hugo's `"…"` (where a `\\"` inside makes Hugo drop every
backslash) and raw `` `…` ``; Liquid's `"…"` and `'…'` with backslash escapes; bare words run
to whitespace. Hugo's comment form `{{</* figure … */>}}` (how docs show a shortcode without
running it) is not a tag. Tags inside code are dropped by the caller, which knows the
protected spans.

No value is read past the next tag opener: a tag that has not closed by then never does
(Hugo allows no shortcode inside a parameter, Liquid no tag inside a tag), and the rule
keeps a post full of unclosed tags linear to scan.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["IMAGE_PARAMETERS", "TagImage", "tag_images"]

# Parameter keys that hold the picture itself (not a link, caption or size).
IMAGE_PARAMETERS = frozenset(
    {"src", "url", "image", "img", "file", "path", "source", "image_path", "image_url"}
)

# A tag longer than this is not one: an opener with no closer must not make the scan slow.
_MAX_TAG = 4096

_OPENER = re.compile(r"\{\{([<%])|\{%(-?)")
_NAME = re.compile(r"[ \t\r\n]*([A-Za-z_][\w.\-/]*)")
_SPACE = re.compile(r"[ \t\r\n]*")
_BARE = re.compile(r"[^\s\"'`]+")
_KEY = re.compile(r"([A-Za-z_][\w\-]*)[ \t\r\n]*=[ \t\r\n]*")
_LIQUID_ESCAPE = re.compile(r"\\([\"'])")  # Jekyll unescapes quotes only
# The first positional word that is a URL with a scheme, `//host/…` or a `/path` is the
# picture (Hexo: `rUrl.test(word) || word.startsWith("/")`): words before it are CSS classes.
_URL_LIKE = re.compile(r"[A-Za-z]{3,9}:|/")
_INCLUDES = ("include", "include_relative")
# What ends a tag, by its opener: `{{<` … `>}}`, `{{%` … `%}}` (both may self-close), `{%` … `%}`
_CLOSERS = {
    "<": re.compile(r"/?>\}\}"),
    "%": re.compile(r"/?%\}\}"),
    "": re.compile(r"-?%\}"),
}


@dataclass(frozen=True)
class TagImage:
    start: int  # span of the value as written, inside its quotes
    end: int
    value: str  # the value the generator sees (escapes decoded)
    field: str  # what it is, for people: "figure src", "img", "include image.html url"
    tag: tuple[int, int]  # span of the whole tag, `{{<` to `>}}`


@dataclass(frozen=True)
class _Argument:
    key: str | None
    start: int
    end: int
    value: str
    quoted: bool


def tag_images(text: str, body_start: int, names: frozenset[str]) -> Iterator[TagImage]:
    """Every picture parameter of the image tags in `text[body_start:]`, in order."""
    pos = body_start
    while (opener := _OPENER.search(text, pos)) is not None:
        pos = opener.end()
        hugo = bool(opener.group(1))
        name = _NAME.match(text, pos)
        if name is None:
            continue  # `{{</* … */>}}`, `{{< /figure >}}`, `{% %}`: not a tag we read
        if name.group(1) not in _INCLUDES and name.group(1).lower() not in names:
            pos = name.end()
            continue
        closer = _CLOSERS[opener.group(1) or ""]
        parsed = _arguments(text, name.end(), closer, hugo=hugo)
        if parsed is None:
            continue
        arguments, end = parsed
        pos = end
        yield from _images(name.group(1), arguments, names, (opener.start(), end))


def _images(
    name: str, arguments: list[_Argument], names: frozenset[str], tag: tuple[int, int]
) -> Iterator[TagImage]:
    if name in _INCLUDES:
        if not arguments or arguments[0].key is not None:
            return
        file = arguments[0].value
        stem = file.rsplit("/", 1)[-1].split(".", 1)[0]
        if stem.lower() not in names:
            return
        label = f"{name} {file}"
        # an include's unquoted values are variables (`url=page.image`), never the picture
        named = [a for a in arguments[1:] if a.key is not None and a.quoted]
        positional: list[_Argument] = []
    elif name.lower() in names:
        label = name
        named = [a for a in arguments if a.key is not None]
        positional = [a for a in arguments if a.key is None]
    else:
        return
    picture = next((a for a in positional if _URL_LIKE.match(a.value)), None)
    if picture is not None:
        yield TagImage(picture.start, picture.end, picture.value, label, tag)
    for argument in named:
        if argument.key is not None and argument.key.lower() in IMAGE_PARAMETERS:
            field = f"{label} {argument.key}"
            yield TagImage(argument.start, argument.end, argument.value, field, tag)


def _arguments(
    text: str, pos: int, closer: re.Pattern[str], *, hugo: bool
) -> tuple[list[_Argument], int] | None:
    """The tag's arguments up to its closer, and where the tag ends; None if it does not
    close before the next tag opens (or within `_MAX_TAG` characters)."""
    following = _OPENER.search(text, pos, min(len(text), pos + _MAX_TAG))
    limit = following.start() if following else min(len(text), pos + _MAX_TAG)
    arguments: list[_Argument] = []
    while True:
        pos = _SPACE.match(text, pos, limit).end()  # type: ignore[union-attr]
        if pos >= limit:
            return None
        if end := closer.match(text, pos, limit):
            return arguments, end.end()
        key = None
        if keyed := _KEY.match(text, pos, limit):
            key, pos = keyed.group(1), keyed.end()
        value = _value(text, pos, limit, closer, hugo=hugo)
        if value is None:
            return None
        start, end, raw, pos = value
        quoted = pos > end  # a closing quote follows the value
        if not quoted and end == start:
            return None  # nothing a tag can hold: no progress either
        arguments.append(_Argument(key, start, end, raw, quoted))


def _value(
    text: str, pos: int, limit: int, closer: re.Pattern[str], *, hugo: bool
) -> tuple[int, int, str, int] | None:
    """(start, end, value, next position) of the value at `pos`, quoted or bare."""
    quote = text[pos] if pos < limit else ""
    if quote and quote in ('"`' if hugo else "\"'"):
        start = end = pos + 1
        while True:
            end = text.find(quote, end, limit)
            if end == -1:
                return None
            if not _escaped(text, end, start, quote, hugo=hugo):
                break
            end += 1
        raw = text[start:end]
        if quote == "`" or "\\" not in raw:
            value = raw
        elif hugo:  # Hugo's lexer: a value with an escaped quote loses all its backslashes
            value = raw.replace("\\", "") if '\\"' in raw else raw
        else:
            value = _LIQUID_ESCAPE.sub(r"\1", raw)
        return start, end, value, end + 1
    bare = _BARE.match(text, pos, limit)
    if bare is None:
        return None
    end = bare.end()
    if (stop := closer.search(text, pos, end)) is not None:
        end = stop.start()  # `{% img https://…/a.jpg%}`: the closer ends the word
    return pos, end, text[pos:end], end


def _escaped(text: str, at: int, floor: int, quote: str, *, hugo: bool) -> bool:
    """Whether the quote at `at` is escaped. Hugo's raw strings have no escapes, and in its
    `"…"` any backslash before a quote escapes it; Liquid's `\\\\` is a backslash."""
    if quote == "`":
        return False
    count = 0
    while at - count - 1 >= floor and text[at - count - 1] == "\\":
        count += 1
    return count > 0 if hugo else count % 2 == 1
