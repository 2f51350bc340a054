"""Read an article body as CommonMark and HTML do: article text → `Analysis`.

Input: the decoded text, the front-matter block span (never read as Markdown or HTML) and
whether the file is an HTML page. Output: the protected spans (fenced and indented code, code
spans, HTML comments, `<pre>`/`<code>`/`<script>`/`<style>`/`<textarea>` elements, Liquid
`{% raw %}`/`{% highlight %}`/`{% codeblock %}`/`{% comment %}` blocks), the Markdown image
destinations and the reference definitions images use (exact spans), and the HTML start tags
that can carry images (each attribute value with its exact span).

How: markdown-it-py (CommonMark) finds the blocks; its inline parser runs with position-
recording versions of the image, code-span and inline-HTML rules, and inline offsets are mapped
back to the file line by line (an inline token's content is a suffix of each source line).
Only the HTML the Markdown parser hands over (HTML blocks and inline HTML) goes through the stdlib
`html.parser` tokenizer, stitched into one stream so that an element opened in one HTML block
and closed in another (a comment, a `<pre>`) covers everything between. Attribute spans are
computed from the tokenizer's own start-tag text with its own attribute pattern.
"""

from __future__ import annotations

import html.parser
import re
from bisect import bisect_right
from dataclasses import dataclass
from functools import lru_cache

from markdown_it import MarkdownIt
from markdown_it.common.utils import isStrSpace, normalizeReference, unescapeAll
from markdown_it.helpers import parseLinkDestination
from markdown_it.rules_inline.backticks import backtick as _backtick_rule
from markdown_it.rules_inline.html_inline import html_inline as _html_inline_rule

from harvester.articles import ArticleWarning

PROTECTED_ELEMENTS = frozenset({"pre", "code", "script", "style", "textarea"})
RAW_TEXT_ELEMENTS = frozenset({"script", "style", "textarea"})  # unclosed: runs to the end
# Start tags whose attributes the extractor reads; any other tag only for its `style`.
IMAGE_TAGS = frozenset({"img", "source", "meta", "base"})

_NEWLINE = re.compile(r"\r\n|\r|\n")
_NOT_NEWLINE = re.compile(r"[^\r\n]")
_BROKEN_IMAGE = re.compile(r"!\[[^\]\r\n]*\]\([ \t]*<?(?:https?:)?//[^\s)>]*[ \t]*(?:\r\n|\r|\n)")
# Liquid blocks whose content is shown as code or not at all (`comment`): never scanned.
_LIQUID_BLOCKS = ("raw", "highlight", "codeblock", "comment")
_LIQUID_OPEN = re.compile(r"\{%-?\s*(" + "|".join(_LIQUID_BLOCKS) + r")\b[^%]*?-?%\}")
_LIQUID_CLOSE = {name: re.compile(r"\{%-?\s*end" + name + r"\s*-?%\}") for name in _LIQUID_BLOCKS}


@dataclass(frozen=True)
class MarkdownImage:
    """The destination of an inline image `![alt](dest "title")`."""

    start: int  # span of the destination text; inside the brackets for `<dest>`
    end: int
    angle: bool
    value: str  # backslash escapes and entities resolved (CommonMark)


@dataclass(frozen=True)
class ReferenceDefinition:
    """`[label]: dest` used by at least one image (`![a][label]`, `![label][]`, `![label]`)."""

    label: str  # as written in the definition (whitespace collapsed)
    start: int
    end: int
    angle: bool
    value: str


@dataclass(frozen=True)
class Attribute:
    name: str  # lower-cased, as the HTML tokenizer reports it
    start: int  # span of the value text (inside quotes); start == end for an empty value
    end: int
    quote: str  # '"', "'" or "" (unquoted)
    has_value: bool


@dataclass(frozen=True)
class Tag:
    name: str
    start: int  # span of the whole start tag
    end: int
    attributes: tuple[Attribute, ...]
    picture: int | None  # id of the enclosing <picture>, if any

    def get(self, name: str) -> Attribute | None:
        for attribute in self.attributes:  # HTML: the first of duplicate attributes wins
            if attribute.name == name:
                return attribute
        return None


@dataclass(frozen=True)
class Analysis:
    protected: tuple[tuple[int, int], ...]
    images: tuple[MarkdownImage, ...]
    references: tuple[ReferenceDefinition, ...]
    tags: tuple[Tag, ...]
    warnings: tuple[ArticleWarning, ...]


@lru_cache(maxsize=8)  # load_article and scan_article read the same text back to back
def analyze(text: str, front_matter: tuple[int, int] | None, is_html: bool) -> Analysis:
    return _Analyzer(text, front_matter, is_html).run()


# --------------------------------------------------------------------------- markdown-it setup


def _record(state, item) -> None:
    env = state.env
    if state.src is env.get("_hv_root"):  # not inside an image's alt text (never rendered)
        env["_hv_items"].append(item)


def _recording(rule, token_type: str, kind: str):
    """markdown-it-py's inline `rule`, also recording the span of each `token_type` token it
    makes as a `kind` region."""

    def wrapped(state, silent: bool) -> bool:
        start, count = state.pos, len(state.tokens)
        ok = rule(state, silent)
        if ok and not silent and len(state.tokens) > count and state.tokens[-1].type == token_type:
            _record(state, (kind, start, state.pos))
        return ok

    return wrapped


_backticks = _recording(_backtick_rule, "code_inline", "code")
_html_inline = _recording(_html_inline_rule, "html_inline", "html")


def _image(state, silent: bool) -> bool:
    """markdown-it-py's image rule, recording where the destination text is."""
    label = None
    old_pos = state.pos
    maximum = state.posMax
    src = state.src
    if src[state.pos] != "!":
        return False
    if state.pos + 1 < maximum and src[state.pos + 1] != "[":
        return False
    label_start = state.pos + 2
    label_end = state.md.helpers.parseLinkLabel(state, state.pos + 1, False)
    if label_end < 0:
        return False
    pos = label_end + 1
    found = None
    if pos < maximum and src[pos] == "(":
        pos += 1
        while pos < maximum and (isStrSpace(src[pos]) or src[pos] == "\n"):
            pos += 1
        if pos >= maximum:
            return False
        dest_start = pos
        res = parseLinkDestination(src, pos, maximum)
        if res.ok and state.md.validateLink(state.md.normalizeLink(res.str)):
            pos = res.pos
            if src[dest_start] == "<":
                found = ("image", dest_start + 1, res.pos - 1, True, res.str)
            elif res.pos > dest_start:
                found = ("image", dest_start, res.pos, False, res.str)
        start = pos
        while pos < maximum and (isStrSpace(src[pos]) or src[pos] == "\n"):
            pos += 1
        res = state.md.helpers.parseLinkTitle(src, pos, maximum)  # 3 arguments: also 3.x
        if pos < maximum and start != pos and res.ok:
            pos = res.pos
            while pos < maximum and (isStrSpace(src[pos]) or src[pos] == "\n"):
                pos += 1
        if pos >= maximum or src[pos] != ")":
            state.pos = old_pos
            return False
        pos += 1
    else:
        if "references" not in state.env:
            return False
        if pos < maximum and src[pos] == "[":
            start = pos + 1
            pos = state.md.helpers.parseLinkLabel(state, pos)
            if pos >= 0:
                label = src[start:pos]
                pos += 1
            else:
                pos = label_end + 1
        else:
            pos = label_end + 1
        if not label:
            label = src[label_start:label_end]
        label = normalizeReference(label)
        if label not in state.env["references"]:
            state.pos = old_pos
            return False
        found = ("reference", label)
    if not silent:
        # The alt text is parsed (markdown-it does it for the token) but never recorded.
        tokens: list = []
        state.md.inline.parse(src[label_start:label_end], state.md, state.env, tokens)
        state.push("image", "img", 0)
        if found is not None:
            _record(state, found)
    state.pos = pos
    state.posMax = maximum
    return True


def _inline_core(state) -> None:
    """Parse only inline content that can hold an image, code span or HTML."""
    env = state.env
    for token in state.tokens:
        if token.type != "inline":
            continue
        content = token.content
        if "!" not in content and "`" not in content and "<" not in content:
            continue
        env["_hv_root"] = content
        env["_hv_items"] = items = []
        state.md.inline.parse(content, state.md, env, [])
        if items:
            env["_hv_found"].append((token, items))


def _build_markdown() -> MarkdownIt:
    md = MarkdownIt("commonmark")
    md.inline.ruler.at("image", _image)
    md.inline.ruler.at("backticks", _backticks)
    md.inline.ruler.at("html_inline", _html_inline)
    md.core.ruler.at("inline", _inline_core)
    # Emphasis never changes where code, HTML, links or images are (they bind tighter).
    md.disable(["emphasis", "text_join", "entity"], ignoreInvalid=True)
    return md


_MD = _build_markdown()


# --------------------------------------------------------------------------------- the work


class _Tokenizer(html.parser.HTMLParser):
    """Records every event with its position; spans are computed afterwards."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.events: list[tuple[str, tuple[int, int], str | None, str | None]] = []

    def handle_starttag(self, tag, attrs):
        self.events.append(("start", self.getpos(), tag, self.get_starttag_text()))

    def handle_startendtag(self, tag, attrs):
        self.events.append(("startend", self.getpos(), tag, self.get_starttag_text()))

    def handle_endtag(self, tag):
        self.events.append(("end", self.getpos(), tag, None))

    def handle_comment(self, data):
        self.events.append(("comment", self.getpos(), None, None))

    def handle_data(self, data):
        self.events.append(("data", self.getpos(), None, data))

    def handle_entityref(self, name):
        self.events.append(("other", self.getpos(), None, None))

    handle_charref = handle_entityref
    handle_decl = handle_entityref
    handle_pi = handle_entityref
    unknown_decl = handle_entityref


class _Analyzer:
    def __init__(self, text: str, front_matter: tuple[int, int] | None, is_html: bool) -> None:
        self.text = text
        self.body_start = front_matter[1] if front_matter else 0
        self.is_html = is_html
        self.protected: list[tuple[int, int]] = []
        self.warnings: list[ArticleWarning] = []
        self.images: list[MarkdownImage] = []
        self.references: list[ReferenceDefinition] = []
        self.tags: list[Tag] = []
        # Spans of src fed to the tokenizer, each with the end of the Markdown block it sits in
        # (where an unclosed <pre> or <code> stops being code).
        self.html_pieces: list[tuple[int, int, int]] = []

    def run(self) -> Analysis:
        self.src = self._blanked_source()
        starts = [0]
        ends = []
        for m in _NEWLINE.finditer(self.src):
            ends.append(m.start())
            starts.append(m.end())
        ends.append(len(self.src))
        self.line_starts, self.line_ends = starts, ends
        if self.is_html:
            if self.body_start < len(self.src):
                self.html_pieces.append((self.body_start, len(self.src), len(self.src)))
        else:
            self._markdown()
        self._html()
        if not self.is_html:
            self._broken_images()
        return Analysis(
            protected=_merge(self.protected),
            images=tuple(self.images),
            references=tuple(self.references),
            tags=tuple(self.tags),
            warnings=tuple(self.warnings),
        )

    def line_of(self, offset: int) -> int:
        return bisect_right(self.line_starts, offset)

    def _blanked_source(self) -> str:
        """The text, its front matter and Liquid raw/code/comment blocks made inert (`_neutral`).

        Offsets and line structure stay identical, so every position found in it is a
        position in the article text; the parsers simply never see those regions.
        """
        text = self.text
        parts = []
        if self.body_start:
            parts.append(_NOT_NEWLINE.sub(" ", text[: self.body_start]))
        pos = self.body_start
        search = pos
        unclosed: set[str] = set()  # no end tag after one of these: none after a later one
        while True:
            m = _LIQUID_OPEN.search(text, search)
            if m is None:
                break
            name = m.group(1)
            close = None if name in unclosed else _LIQUID_CLOSE[name].search(text, m.end())
            if close is None:
                if name not in unclosed:  # one warning (and one search) per kind of block
                    unclosed.add(name)
                    self.warnings.append(
                        ArticleWarning(
                            "unclosed-liquid",
                            f"{{% {name} %}} is never closed; its text is read as usual",
                            self.text.count("\n", 0, m.start()) + 1,
                        )
                    )
                search = m.end()
                continue
            parts.append(text[pos : m.start()])
            parts.append(_neutral(text, m.start(), close.end()))
            self.protected.append((m.start(), close.end()))
            pos = search = close.end()
        parts.append(text[pos:])
        return "".join(parts)

    # ------------------------------------------------------------------------- Markdown

    def _markdown(self) -> None:
        env: dict = {"_hv_found": []}
        tokens = _MD.parse(self.src, env)
        starts, ends = self.line_starts, self.line_ends
        last_line = len(starts) - 1
        for token in tokens:
            if token.map is None:
                continue
            first, stop = token.map
            span = (starts[min(first, last_line)], ends[min(max(stop - 1, first), last_line)])
            if token.type in ("fence", "code_block"):
                self.protected.append(span)
            elif token.type == "html_block":  # with its last newline, so text never glues
                end = starts[stop] if stop <= last_line else span[1]
                self.html_pieces.append((span[0], end, end))
        used_labels: dict[str, None] = {}
        for token, items in env["_hv_found"]:
            mapper = self._content_mapper(token)
            block_end = self.line_ends[min(token.map[1], len(self.line_ends)) - 1]
            if mapper is None:
                self.warnings.append(
                    ArticleWarning(
                        "unmapped-inline",
                        "could not locate this paragraph's text in the file; skipped",
                        token.map[0] + 1,
                    )
                )
                continue
            for item in items:
                if item[0] == "reference":
                    used_labels.setdefault(item[1], None)
                    continue
                start, end = mapper(item[1]), mapper(item[2])
                if item[0] == "code":
                    self.protected.append((start, end))
                elif item[0] == "html":
                    self.html_pieces.append((start, end, block_end))
                elif unescapeAll(self.src[start:end]) == item[4]:
                    self.images.append(MarkdownImage(start, end, item[3], item[4]))
                else:  # never report a span whose text is not the URL the parser read
                    self.warnings.append(
                        ArticleWarning(
                            "unmapped-inline",
                            "could not locate this image's URL in the file; skipped",
                            self.line_of(start),
                        )
                    )
        references = env.get("references", {})
        for label in used_labels:
            definition = self._definition(label, references[label].get("map"))
            if definition is not None:
                self.references.append(definition)

    def _broken_images(self) -> None:
        """Warn about `![](http...` whose destination a line break cuts: not an image."""
        starts = {image.start for image in self.images}
        for m in _BROKEN_IMAGE.finditer(self.src):
            if any(m.start() <= s < m.end() for s in starts):
                continue
            if any(a <= m.start() < b for a, b in self.protected):
                continue
            self.warnings.append(
                ArticleWarning(
                    "broken-image",
                    "a line break inside this image's URL makes it plain text in CommonMark; "
                    "not reported",
                    self.line_of(m.start()),
                )
            )

    def _content_mapper(self, token):
        """Map offsets in `token.content` to offsets in the file, or None if it cannot."""
        content_lines = token.content.split("\n")
        first = token.map[0]
        if first + len(content_lines) > len(self.line_starts):
            return None
        content_starts, file_starts = [], []
        offset = 0
        for k, line in enumerate(content_lines):
            file_line = self.src[self.line_starts[first + k] : self.line_ends[first + k]]
            if file_line.endswith(line):
                where = len(file_line) - len(line)
            else:
                stripped = file_line.rstrip()
                if stripped.endswith(line):
                    where = len(stripped) - len(line)
                else:
                    core = line.lstrip()
                    found = file_line.rfind(core) if core else 0
                    if found < 0:
                        return None
                    where = found - (len(line) - len(core))  # tab expansion added spaces
            content_starts.append(offset)
            file_starts.append(self.line_starts[first + k] + where)
            offset += len(line) + 1

        def to_file(position: int) -> int:
            k = bisect_right(content_starts, position) - 1
            return file_starts[k] + position - content_starts[k]

        return to_file

    def _definition(self, label: str, line_map) -> ReferenceDefinition | None:
        """Find the destination span of a reference definition in its lines."""
        if not line_map:
            return None
        first, stop = line_map
        last = min(stop, len(self.line_starts)) - 1
        start = self.line_starts[first]
        segment = self.src[start : self.line_ends[last]]
        i = segment.find("[")
        if i < 0:
            return None
        i += 1
        label_start = i
        while i < len(segment) and segment[i] != "]":
            i += 2 if segment[i] == "\\" else 1
        if segment[i + 1 : i + 2] != ":":
            return None
        written = " ".join(segment[label_start:i].split())
        i += 2
        while i < len(segment) and segment[i] in " \t\r\n":
            i += 1
        res = parseLinkDestination(segment, i, len(segment))
        if not res.ok:
            return None
        if segment[i : i + 1] == "<":
            return ReferenceDefinition(written, start + i + 1, start + res.pos - 1, True, res.str)
        return ReferenceDefinition(written, start + i, start + res.pos, False, res.str)

    # ----------------------------------------------------------------------------- HTML

    def _html(self) -> None:
        if not self.html_pieces:
            return
        pieces = sorted(self.html_pieces)
        src = self.src
        virtual_starts, chunks, total = [], [], 0
        for start, end, _ in pieces:
            virtual_starts.append(total)
            chunks.append(src[start:end])
            total += end - start
        virtual = "".join(chunks)

        def to_src(v: int) -> int:
            k = bisect_right(virtual_starts, v) - 1
            return pieces[k][0] + v - virtual_starts[k]

        def to_src_end(v: int) -> int:  # an end offset belongs to the piece before it
            if v <= 0:
                return pieces[0][0]
            return to_src(v - 1) + 1

        def block_end(v: int) -> int:
            return pieces[bisect_right(virtual_starts, v) - 1][2]

        tokenizer = _Tokenizer()
        try:
            tokenizer.feed(virtual)
            tokenizer.close()
        except Exception as exc:  # the stdlib tokenizer is tolerant; this is a last resort
            self.warnings.append(ArticleWarning("html-tokenizer", f"HTML not read fully: {exc}"))
        line_starts = [0] + [m.end() for m in re.finditer("\n", virtual)]
        events = tokenizer.events
        positions = [line_starts[line - 1] + column for _, (line, column), _, _ in events]
        positions.append(len(virtual))
        open_elements: list[tuple[str, int]] = []  # protected elements, outermost first
        pictures: list[int] = []
        picture_count = 0
        for index, (kind, _, name, payload) in enumerate(events):
            vstart, vend = positions[index], positions[index + 1]
            if kind in ("start", "startend"):
                assert name is not None and payload is not None
                if kind == "start" and name in PROTECTED_ELEMENTS:
                    open_elements.append((name, vstart))
                if kind == "start" and name == "picture":
                    picture_count += 1
                    pictures.append(picture_count)
                if name in IMAGE_TAGS or "style" in payload.lower():
                    start = to_src(vstart)
                    end = to_src_end(vstart + len(payload))
                    if end - start != len(payload):
                        continue  # a tag torn across two HTML pieces: positions unknown
                    attributes = _attributes(payload, start)
                    picture = pictures[-1] if pictures else None
                    self.tags.append(Tag(name, start, end, attributes, picture))
            elif kind == "end":
                if name == "picture" and pictures:
                    pictures.pop()
                if name in PROTECTED_ELEMENTS:
                    for depth in range(len(open_elements) - 1, -1, -1):
                        if open_elements[depth][0] == name:
                            if depth == 0:
                                span = (to_src(open_elements[0][1]), to_src_end(vend))
                                self.protected.append(span)
                            del open_elements[depth:]
                            break
            elif kind == "comment":
                self.protected.append((to_src(vstart), to_src_end(vend)))
            elif kind == "data" and virtual.startswith("<!--", vstart):
                # A comment never closed: browsers read it to the end of the document (the
                # stdlib tokenizer, depending on its version, hands it over as text).
                self.protected.append((to_src(vstart), len(src)))
        if open_elements:
            name, vstart = open_elements[0]
            start = to_src(vstart)
            if name in RAW_TEXT_ELEMENTS:
                end, where = len(src), "the end of the file"
            else:
                end, where = block_end(vstart), "the end of its block"
            self.protected.append((start, end))
            self.warnings.append(
                ArticleWarning(
                    "unclosed-element",
                    f"<{name}> is never closed; protected up to {where}",
                    self.line_of(start),
                )
            )


_ATTRIBUTE = html.parser.attrfind_tolerant
_TAG_NAME = html.parser.tagfind_tolerant


def _attributes(tag_text: str, offset: int) -> tuple[Attribute, ...]:
    """Attributes of a start tag, as `html.parser.parse_starttag` splits them, with spans."""
    m = _TAG_NAME.match(tag_text, 1)
    if m is None:
        return ()
    k = m.end()
    end = len(tag_text) - (2 if tag_text.endswith("/>") else 1)
    out = []
    while k < end:
        m = _ATTRIBUTE.match(tag_text, k)
        if not m:
            break
        name = m.group(1).lower()
        if m.group(2) is None:
            out.append(Attribute(name, offset + m.end(1), offset + m.end(1), "", False))
        else:
            v_start, v_end = m.start(3), m.end(3)
            value = m.group(3)
            quote = ""
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                quote = value[0]
                v_start, v_end = v_start + 1, v_end - 1
            out.append(Attribute(name, offset + v_start, offset + v_end, quote, True))
        if m.end() == k:
            break
        k = m.end()
    return tuple(out)


_SEGMENT = re.compile(r"([^\r\n]*)(\r\n|\r|\n)?")


def _neutral(text: str, start: int, end: int) -> str:
    """text[start:end] made inert for the Markdown parser, same length and line structure.

    Whole lines become blank (a Liquid block is a block of its own); parts of a line become
    letters, so text around an inline `{% raw %}…{% endraw %}` stays one paragraph (spaces at
    a line start would turn what follows into an indented code block).
    """
    pieces = []
    for m in _SEGMENT.finditer(text, start, end):
        body, newline = m.group(1), m.group(2) or ""
        if not body and not newline:
            break
        s, e = m.start(1), m.end(1)
        whole_line = (s == 0 or text[s - 1] in "\r\n") and (e == len(text) or text[e] in "\r\n")
        pieces.append((" " if whole_line else "x") * len(body) + newline)
    return "".join(pieces)


def _merge(spans: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if end <= start:
            continue
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return tuple((s, e) for s, e in merged)
