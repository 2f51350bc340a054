"""Image URLs written inside site-generator template tags.

Input: an article's text, where its body starts, and the tag names that show images.
Output: one `TagImage` per literal parameter value of such a tag, with the span of the value
(inside its quotes) so the rewriter can replace exactly that text.

Three families, all common in the posts harvester serves:

    Hugo shortcodes      {{< figure src="https://…" caption="…" >}}   {{% img "https://…" %}}
    Hexo/Octopress tags  {% img left https://… 300 200 'title' %}
    Jekyll includes      {% include image.html url="https://…" description="…" %}

A shortcode or Liquid tag counts when its name is one of `names` (`Settings.template_tags`);
an include when its file's stem is (`image.html`, `_includes/figure.liquid`). Named parameters
count when their key is one of `IMAGE_PARAMETERS` (so `figure`'s `link` is not an image);
positional ones always do. Whether a value is a remote URL at all is the caller's question
(`urls.resolve`): bundle-relative files, site paths and `{{ site.baseurl }}/…` are not.

Hugo's comment form `{{</* figure … */>}}` (how docs show a shortcode without running it) is
not a tag. Tags inside code are dropped by the caller, which knows the protected spans.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["IMAGE_PARAMETERS", "TagImage", "tag_images"]

# Parameter keys that hold the picture itself (not a link, caption or size).
IMAGE_PARAMETERS = frozenset({"src", "url", "image", "img", "file", "path", "source"})

# A tag longer than this is not one: an opener with no closer must not make the scan quadratic.
_MAX_TAG = 4096

_OPENER = re.compile(r"\{\{([<%])|\{%(-?)")
_NAME = re.compile(r"[ \t\r\n]*([A-Za-z_][\w.\-/]*)")
_SPACE = re.compile(r"[ \t\r\n]*")
_BARE = re.compile(r"[^\s\"'`=]+")
_KEY = re.compile(r"([A-Za-z_][\w\-]*)[ \t]*=[ \t]*")
_HUGO_ESCAPE = re.compile(r"\\(.)", re.S)
_HUGO_STRING = re.compile(r'(?:[^"\\]|\\.)*"', re.S)  # the rest of a Go-style "…\"…"
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
    value: str  # the value the generator sees (Hugo's `\"` escapes decoded)
    field: str  # what it is, for people: "figure src", "img", "include image.html url"


@dataclass(frozen=True)
class _Argument:
    key: str | None
    start: int
    end: int
    value: str
    quoted: bool


def tag_images(text: str, body_start: int, names: frozenset[str]) -> Iterator[TagImage]:
    """Every image-parameter value of the image tags in `text[body_start:]`, in order."""
    pos = body_start
    while (opener := _OPENER.search(text, pos)) is not None:
        pos = opener.end()
        hugo = bool(opener.group(1))
        closer = _CLOSERS[opener.group(1) or ""]
        quotes = '"`' if hugo else "\"'"
        name = _NAME.match(text, pos)
        if name is None:
            continue  # `{{</* … */>}}`, `{{< /figure >}}`, `{% %}`: not a tag we read
        if name.group(1) not in _INCLUDES and name.group(1).lower() not in names:
            pos = name.end()
            continue
        parsed = _arguments(text, name.end(), closer, quotes, hugo=hugo)
        if parsed is None:
            continue
        arguments, end = parsed
        pos = end
        yield from _images(name.group(1), arguments, names)


def _images(name: str, arguments: list[_Argument], names: frozenset[str]) -> Iterator[TagImage]:
    if name in _INCLUDES:
        if not arguments or arguments[0].key is not None:
            return
        file = arguments[0].value
        stem = file.rsplit("/", 1)[-1].split(".", 1)[0]
        if stem.lower() not in names:
            return
        label, arguments = f"{name} {file}", arguments[1:]
        # an include's unquoted values are variables (`url=page.image`), never the picture
        arguments = [a for a in arguments if a.quoted]
        positional = False
    elif name.lower() in names:
        label, positional = name, True
    else:
        return
    for argument in arguments:
        if argument.key is None:
            if positional:
                yield TagImage(argument.start, argument.end, argument.value, label)
        elif argument.key.lower() in IMAGE_PARAMETERS:
            field = f"{label} {argument.key}"
            yield TagImage(argument.start, argument.end, argument.value, field)


def _arguments(
    text: str, pos: int, closer: re.Pattern[str], quotes: str, *, hugo: bool
) -> tuple[list[_Argument], int] | None:
    """The tag's arguments up to its closer, and where the tag ends; None if it never closes
    (within `_MAX_TAG` characters) or holds something no tag can."""
    limit = min(len(text), pos + _MAX_TAG)
    arguments: list[_Argument] = []
    while True:
        pos = _SPACE.match(text, pos).end()  # type: ignore[union-attr]
        if pos >= limit:
            return None
        if end := closer.match(text, pos):
            return arguments, end.end()
        key = None
        if keyed := _KEY.match(text, pos):
            key, pos = keyed.group(1), keyed.end()
        value = _value(text, pos, limit, closer, quotes, hugo=hugo)
        if value is None:
            return None
        start, end, raw, pos = value
        quoted = pos > end  # a closing quote follows the value
        if not quoted and end == start:
            return None  # nothing a tag can hold: no progress either
        arguments.append(_Argument(key, start, end, raw, quoted))


def _value(
    text: str, pos: int, limit: int, closer: re.Pattern[str], quotes: str, *, hugo: bool
) -> tuple[int, int, str, int] | None:
    """(start, end, value, next position) of the value at `pos`, quoted or bare."""
    quote = text[pos] if pos < limit else ""
    if quote and quote in quotes:
        start = pos + 1
        if quote == '"' and hugo:
            m = _HUGO_STRING.match(text, start, limit)
            if m is None:
                return None
            end = m.end() - 1
            return start, end, _HUGO_ESCAPE.sub(r"\1", text[start:end]), m.end()
        end = text.find(quote, start, limit)  # Liquid and raw strings: no escapes
        if end == -1:
            return None
        return start, end, text[start:end], end + 1
    bare = _BARE.match(text, pos, limit)
    if bare is None:
        return None
    end = bare.end()
    if (stop := closer.search(text, pos, end)) is not None:
        end = stop.start()  # `{% img https://…/a.jpg%}`: the closer ends the word
    if _OPENER.search(text, pos, end):
        # another tag starts before this one closed: it never did. Giving up here keeps a
        # post full of unclosed `{% img` linear to scan (each try stops at the next one)
        return None
    return pos, end, text[pos:end], end
