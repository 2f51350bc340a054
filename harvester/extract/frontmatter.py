"""Find and parse the front-matter block: article text → `FrontMatter` (or None) + warnings.

Recognised at the top of the file, after any blank lines: YAML between `---` lines (closing
`---` or `...`, trailing spaces allowed), TOML between `+++` lines, a JSON object (Hugo), and
Hexo's prefix-less YAML (key lines, then a `---` line, no opening fence). Every string scalar is
returned with the span of its text so image fields can be reported and rewritten in place.
A block that cannot be parsed keeps its span (the body is still scanned) with `data=None`.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from json.decoder import scanstring
from typing import Any

import yaml

from harvester.articles import ArticleWarning, FrontMatter, FrontMatterString
from harvester.settings import DEFAULT_IMAGE_KEYS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_LINE = re.compile(r"([^\r\n]*)(\r\n|\r|\n|$)")
_YAML_FENCE = re.compile(r"-{3}[ \t]*")
_YAML_END = re.compile(r"(?:-{3}|\.{3})[ \t]*")
_HEXO_FENCE = re.compile(r"-{3,}[ \t]*")
_TOML_FENCE = re.compile(r"\+{3}[ \t]*")
# Without an opening fence, a block is front matter only if it has keys Hexo posts have; a
# paragraph like "Note: ..." followed by a thematic break is not.
_HEXO_KEYS = frozenset(
    {"title", "date", "updated", "tags", "categories", "layout", "permalink", "author"}
    | {"comments", "description", "keywords", "excerpt", "lang", "published", "draft"}
    | {k for k in DEFAULT_IMAGE_KEYS}
)
_KEY_LINE = re.compile(r"[A-Za-z_][\w.-]*[ \t]*:(?:[ \t]|$)")


def _lines(text: str, pos: int = 0) -> Iterator[tuple[int, str, int]]:
    """(line start, line content without terminator, next line start) from `pos`."""
    n = len(text)
    while pos < n:
        m = _LINE.match(text, pos)
        assert m is not None
        yield pos, m.group(1), m.end()
        if m.end() == pos:  # pragma: no cover - defensive, $ only matches at the end
            break
        pos = m.end()


def find_front_matter(text: str) -> tuple[FrontMatter | None, list[ArticleWarning]]:
    lines = _lines(text)
    for start, content, after in lines:  # noqa: B007 - the loop finds the first text line
        if content.strip():
            break
    else:
        return None, []
    if _YAML_FENCE.fullmatch(content):
        return _fenced(text, "yaml", start, after, _YAML_END, lines)
    if _TOML_FENCE.fullmatch(content):
        return _fenced(text, "toml", start, after, _TOML_FENCE, lines)
    if content.startswith("{") and (content.strip() == "{" or content.startswith('{"')):
        return _json_block(text, start)
    if _KEY_LINE.match(content):
        return _prefixless(text, start, lines)
    return None, []


def _fenced(text, kind, start, body_start, closing, lines):
    for line_start, content, after in lines:
        if closing.fullmatch(content):
            fm, warnings = _parse(text, kind, start, after, body_start, line_start)
            return fm, warnings
    line = text.count("\n", 0, start) + 1
    warning = ArticleWarning(
        "front-matter-unclosed", f"front matter opened with {kind} fence is never closed", line
    )
    return None, [warning]


def _prefixless(text, start, lines):
    """Hexo: everything up to the first `---` line is YAML, if it parses to a mapping."""
    for line_start, content, after in lines:
        if _HEXO_FENCE.fullmatch(content):
            fm, warnings = _parse(text, "yaml-prefixless", start, after, start, line_start)
            if fm is not None and isinstance(fm.data, dict) and _HEXO_KEYS & set(fm.data):
                return fm, warnings
            return None, []  # not front matter after all: a paragraph and a thematic break
    return None, []


def _json_block(text, start):
    try:
        _, end = json.JSONDecoder().raw_decode(text, start)
    except (ValueError, RecursionError):
        # Broken JSON: take the block up to the first line that is just "}".
        m = re.compile(r"^\}[ \t]*$", re.M).search(text, start)
        if m is None:
            line = text.count("\n", 0, start) + 1
            warning = ArticleWarning("front-matter-invalid", "unclosed JSON front matter", line)
            return None, [warning]
        end = m.end()
    block_end = end
    m = _LINE.match(text, end)  # the rest of the closing line belongs to the block
    if m is not None:
        block_end = m.end()
    return _parse(text, "json", start, block_end, start, end)


def _parse(text, kind, start, end, body_start, body_end):
    body = text[body_start:body_end]
    strings: list[FrontMatterString] = []
    try:
        if kind == "toml":
            data = tomllib.loads(body)
        elif kind == "json":
            data = _json_strings(body, body_start, strings)
        else:
            data = _yaml(body, body_start, strings)
    except Exception as exc:  # any parser failure: broken front matter must not stop the scan
        line = text.count("\n", 0, body_start) + 1 + _error_line(exc)
        message = f"{kind} front matter cannot be parsed: {_short(exc)}"
        fm = FrontMatter(kind, start, end, body_start, body_end, None, ())
        return fm, [ArticleWarning("front-matter-invalid", message, line)]
    warnings = []
    if kind == "toml":
        try:
            strings = list(_toml_strings(body, body_start))
        except (ValueError, IndexError, RecursionError) as exc:  # the data is fine; spans lost
            line = text.count("\n", 0, body_start) + 1
            message = f"cannot locate the strings of this TOML front matter: {_short(exc)}"
            warnings.append(ArticleWarning("front-matter-unlocated", message, line))
    return FrontMatter(kind, start, end, body_start, body_end, data, tuple(strings)), warnings


def _error_line(exc: Exception) -> int:
    mark = getattr(exc, "problem_mark", None)
    if mark is not None:
        return mark.line
    lineno = getattr(exc, "lineno", None)
    return lineno - 1 if isinstance(lineno, int) and lineno > 0 else 0


def _short(exc: Exception) -> str:
    return " ".join(str(exc).split())[:200]


# ----------------------------------------------------------------------------------- YAML


def _yaml(body: str, offset: int, out: list[FrontMatterString]) -> Any:
    loader = _Loader(body)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        data = loader.construct_document(node)
    finally:
        loader.dispose()
    _yaml_walk(body, offset, node, (), out, set())
    return data


def _yaml_walk(body, offset, node, path, out, seen) -> None:
    if id(node) in seen:  # aliases: each node once (and no exponential alias bombs)
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else "?"
            _yaml_walk(body, offset, value, (*path, str(name)), out, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _yaml_walk(body, offset, item, (*path, i), out, seen)
    elif isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:str":
        start, end = node.start_mark.index, node.end_mark.index
        style = node.style or ""
        if style in ("'", '"'):
            start, end = start + 1, end - 1
        elif style:  # block scalars (| >): the text is not the value; not a URL anyway
            return
        raw = body[start:end]
        if "\n" in raw or "\r" in raw:  # a folded multi-line scalar is not one URL
            return
        out.append(FrontMatterString(path, offset + start, offset + end, node.value))


# ----------------------------------------------------------------------------------- JSON

_decoder = json.JSONDecoder()
_WS = re.compile(r"[ \t\n\r]*")


def _json_strings(body: str, offset: int, out: list[FrontMatterString]) -> Any:
    value, end = _json_value(body, _WS.match(body, 0).end(), (), offset, out)
    if body[_WS.match(body, end).end() :]:
        raise ValueError("extra data after the JSON object")
    return value


def _json_value(s, i, path, offset, out):
    ch = s[i : i + 1]
    if ch == "{":
        result: dict[str, Any] = {}
        i = _WS.match(s, i + 1).end()
        if s[i : i + 1] == "}":
            return result, i + 1
        while True:
            if s[i : i + 1] != '"':
                raise ValueError(f"expected a key at offset {i}")
            key, i = scanstring(s, i + 1)
            i = _WS.match(s, i).end()
            if s[i : i + 1] != ":":
                raise ValueError(f"expected ':' at offset {i}")
            i = _WS.match(s, i + 1).end()
            value, i = _json_value(s, i, (*path, key), offset, out)
            result[key] = value  # as json.loads: the last duplicate key wins
            i = _WS.match(s, i).end()
            if s[i : i + 1] == "}":
                return result, i + 1
            if s[i : i + 1] != ",":
                raise ValueError(f"expected ',' or '}}' at offset {i}")
            i = _WS.match(s, i + 1).end()
    if ch == "[":
        items: list[Any] = []
        i = _WS.match(s, i + 1).end()
        if s[i : i + 1] == "]":
            return items, i + 1
        while True:
            value, i = _json_value(s, i, (*path, len(items)), offset, out)
            items.append(value)
            i = _WS.match(s, i).end()
            if s[i : i + 1] == "]":
                return items, i + 1
            if s[i : i + 1] != ",":
                raise ValueError(f"expected ',' or ']' at offset {i}")
            i = _WS.match(s, i + 1).end()
    if ch == '"':
        value, end = scanstring(s, i + 1)
        out.append(FrontMatterString(path, offset + i + 1, offset + end - 1, value))
        return value, end
    return _decoder.raw_decode(s, i)


# ----------------------------------------------------------------------------------- TOML
# tomllib gives no positions, so string values are located by a small scanner that follows
# tables, dotted keys, arrays and inline tables; each string is decoded by tomllib itself.

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_TOML_WS = re.compile(r"[ \t]*")
_TOML_WS_NL = re.compile(r"(?:[ \t\r\n]|#[^\r\n]*)*")
_BASIC = re.compile(r'"(?:[^"\\\r\n]|\\.)*"')
_LITERAL = re.compile(r"'[^'\r\n]*'")
_ML_BASIC = re.compile(r'"""(?:[^\\]|\\.)*?"""(?!")', re.S)
_ML_LITERAL = re.compile(r"'''.*?'''(?!')", re.S)
_OTHER_VALUE = re.compile(r"[^,\]\}\s#]+")


def _toml_strings(body: str, offset: int) -> Iterator[FrontMatterString]:
    out: list[FrontMatterString] = []
    table: tuple[str | int, ...] = ()
    array_counts: dict[tuple[str | int, ...], int] = {}
    i, n = 0, len(body)
    while i < n:
        i = _TOML_WS_NL.match(body, i).end()
        if i >= n:
            break
        if body.startswith("[[", i):
            keys, i = _toml_key(body, i + 2)
            count = array_counts.get(tuple(keys), 0)
            array_counts[tuple(keys)] = count + 1
            table = (*keys, count)
            i = body.index("]]", i) + 2
        elif body[i] == "[":
            keys, i = _toml_key(body, i + 1)
            table = tuple(keys)
            i = body.index("]", i) + 1
        else:
            keys, i = _toml_key(body, i)
            i = _TOML_WS.match(body, i).end()
            if body[i : i + 1] != "=":
                raise ValueError(f"expected '=' at offset {i}")
            i = _TOML_WS.match(body, i + 1).end()
            i = _toml_value(body, i, (*table, *keys), offset, out)
            # A key/value pair ends its line (a date-time may contain a space: skip the rest).
            newline = body.find("\n", i)
            i = n if newline < 0 else newline + 1
    return iter(out)


def _toml_key(s: str, i: int) -> tuple[list[str], int]:
    keys = []
    while True:
        i = _TOML_WS.match(s, i).end()
        m = _BASIC.match(s, i) or _LITERAL.match(s, i)
        if m:
            keys.append(tomllib.loads(f"k = {m.group(0)}")["k"])
        else:
            m = _BARE_KEY.match(s, i)
            if not m:
                raise ValueError(f"expected a key at offset {i}")
            keys.append(m.group(0))
        i = _TOML_WS.match(s, m.end()).end()
        if s[i : i + 1] != ".":
            return keys, i
        i += 1


def _toml_value(s, i, path, offset, out) -> int:
    for pattern in (_ML_BASIC, _ML_LITERAL):
        m = pattern.match(s, i)
        if m:
            return m.end()  # multi-line strings are not single URLs
    m = _BASIC.match(s, i) or _LITERAL.match(s, i)
    if m:
        value = tomllib.loads(f"k = {m.group(0)}")["k"]
        out.append(FrontMatterString(path, offset + i + 1, offset + m.end() - 1, value))
        return m.end()
    if s[i : i + 1] == "[":
        i, index = i + 1, 0
        while True:
            i = _TOML_WS_NL.match(s, i).end()
            if s[i : i + 1] == "]":
                return i + 1
            i = _toml_value(s, i, (*path, index), offset, out)
            index += 1
            i = _TOML_WS_NL.match(s, i).end()
            if s[i : i + 1] == ",":
                i += 1
    if s[i : i + 1] == "{":
        i += 1
        while True:
            i = _TOML_WS.match(s, i).end()
            if s[i : i + 1] == "}":
                return i + 1
            keys, i = _toml_key(s, i)
            i = _TOML_WS.match(s, i).end()
            if s[i : i + 1] != "=":
                raise ValueError(f"expected '=' at offset {i}")
            i = _TOML_WS.match(s, i + 1).end()
            i = _toml_value(s, i, (*path, *keys), offset, out)
            i = _TOML_WS.match(s, i).end()
            if s[i : i + 1] == ",":
                i += 1
    m = _OTHER_VALUE.match(s, i)
    if not m:
        raise ValueError(f"expected a value at offset {i}")
    return m.end()
