"""escape_for: a target written into each syntax parses back as that target in a real parser.

URL-bearing syntaxes (Markdown, HTML, CSS) must give back the target once percent-decoded (a
URL with `%20` for a space is the same file); data syntaxes (YAML, TOML, JSON) must give back
the exact string.
"""

from __future__ import annotations

import json
import sys
from html.parser import HTMLParser
from urllib.parse import unquote

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from mirror.records import Edit
from mirror.rewrite import (
    EscapeContext,
    EscapeError,
    apply_edits,
    context_around,
    escape_for,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# Targets we really produce, with the awkward folders users really have.
TARGETS = [
    "../../assets/ab/cd/abcdef0123.jpg",
    "/images/mirror/ab/cd/abcdef0123.jpg",
    "../my assets/ab/cd/abc.jpg",
    "../图片 (2021)/ab/cd/abc.webp",
    '../it\'s "quoted"/a&b/x<y>.png',
    "../50% off/#1/a.jpg",
    "../a: b #c/- [x]{y}, z.jpg",
    "../tab\there/back\\slash/x.jpg",
    "- leading dash.jpg",
    "true",
    "123",
    "~",
]

path_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=40
).map(lambda s: "../" + s + ".jpg")


class _Attrs(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.attrs: dict[str, str | None] = {}

    def handle_starttag(self, tag, attrs):
        self.attrs.update(attrs)


def _html_attr(markup: str) -> dict[str, str | None]:
    parser = _Attrs()
    parser.feed(markup)
    parser.close()
    return parser.attrs


def _srcset_urls(value: str) -> list[str]:
    # the HTML spec's candidate split: URL runs to whitespace; descriptors follow
    return [part.strip().split()[0] for part in value.split(", ")]


def _markdown_src(markdown: str) -> str:
    tokens = MarkdownIt("commonmark").parse(markdown)
    images = [t for t in tokens[1].children if t.type == "image"]
    assert len(images) == 1, markdown
    return images[0].attrs["src"]


@pytest.mark.parametrize("target", TARGETS)
def test_markdown_bare_destination_parses_back(target):
    escaped = escape_for("markdown", target)
    md = f'![alt text](https://old.example/x.jpg "title") and ![alt]({escaped} "t")'
    md = md.split(" and ")[1]
    assert unquote(_markdown_src(md)) == target
    assert not set(escaped) & set(" ()<>\n\t\\")


@pytest.mark.parametrize("target", TARGETS)
def test_markdown_angle_destination_parses_back(target):
    escaped = escape_for("markdown-angle", target)
    assert unquote(_markdown_src(f"![alt](<{escaped}>)")) == target


@pytest.mark.parametrize("target", TARGETS)
def test_markdown_reference_definition_parses_back(target):
    escaped = escape_for("markdown", target)
    tokens = MarkdownIt("commonmark").parse(f'![pic][p]\n\n[p]: {escaped} "title"\n')
    image = next(t for t in tokens[1].children if t.type == "image")
    assert unquote(image.attrs["src"]) == target


@settings(max_examples=200)
@given(path_text)
def test_markdown_destination_property(target):
    assert unquote(_markdown_src(f"![a]({escape_for('markdown', target)})")) == target


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("quote", ['"', "'", None])
def test_html_attribute_parses_back(target, quote):
    escaped = escape_for("html", target, EscapeContext(quote=quote))
    q = quote or ""
    attrs = _html_attr(f'<img src={q}{escaped}{q} title="kept" width=530>')
    assert unquote(attrs["src"]) == target
    assert attrs["title"] == "kept" and attrs["width"] == "530"


@pytest.mark.parametrize("target", TARGETS)
def test_html_srcset_candidate_keeps_its_descriptor(target):
    ctx = EscapeContext(quote='"', srcset=True)
    a = escape_for("html", target, ctx)
    b = escape_for("html", target.replace(".jpg", "@2x.jpg"), ctx)
    attrs = _html_attr(f'<img srcset="{a} 1x, {b} 2x">')
    urls = _srcset_urls(attrs["srcset"])
    assert [unquote(u) for u in urls] == [target, target.replace(".jpg", "@2x.jpg")]
    assert attrs["srcset"].endswith(" 2x")


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("quote", ['"', "'", None])
def test_css_url_parses_back(target, quote):
    escaped = escape_for("css", target, EscapeContext(quote=quote))
    q = quote or ""
    # inside a style attribute, as in `<div style="background:url(...)">`
    outer = "'" if quote == '"' else '"'
    attrs = _html_attr(f"<div style={outer}background: url({q}{escaped}{q}) no-repeat{outer}>")
    style = attrs["style"]
    inner = style[style.index("url(") + 4 : style.index(")", style.index("url("))]
    assert inner.strip(q) == escaped  # nothing in the target ended the url() early
    assert unquote(escaped) == target
    assert style.endswith(" no-repeat")


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("quote", [None, "'", '"'])
def test_yaml_scalar_parses_back(target, quote):
    escaped = escape_for("yaml", target, EscapeContext(quote=quote))
    q = quote or ""
    doc = f"title: Post\ncover: {q}{escaped}{q}\ntags: [a, b]\n"
    assert yaml.safe_load(doc) == {"title": "Post", "cover": target, "tags": ["a", "b"]}


@pytest.mark.parametrize("target", TARGETS)
def test_yaml_plain_scalar_in_a_flow_list_and_a_block_list(target):
    flow = escape_for("yaml", target, EscapeContext(flow=True))
    block = escape_for("yaml", target, EscapeContext())
    assert yaml.safe_load(f"photos: [{flow}, other.jpg]\n") == {"photos": [target, "other.jpg"]}
    assert yaml.safe_load(f"photos:\n  - {block}\n  - other.jpg\n") == {
        "photos": [target, "other.jpg"]
    }


@settings(max_examples=200)
@given(path_text, st.sampled_from([None, "'", '"']), st.booleans())
def test_yaml_property(target, quote, flow):
    escaped = escape_for("yaml", target, EscapeContext(quote=quote, flow=flow))
    q = quote or ""
    doc = f"image: [{q}{escaped}{q}]\n" if flow else f"image: {q}{escaped}{q}\n"
    value = yaml.safe_load(doc)["image"]
    assert (value[0] if flow else value) == target


@settings(max_examples=300)
@given(
    st.text(alphabet="abcXYZ019_.~/+-", min_size=1, max_size=30).filter(
        lambda s: "/" in s and s[0] not in "+-"
    ),
    st.booleans(),
)
def test_path_like_targets_stay_plain_and_read_back_unparsed(target, flow):
    """The fast path (no YAML parse for path-like targets) must agree with PyYAML: such a
    target is written plain and reads back as itself, in block and flow context."""
    escaped = escape_for("yaml", target, EscapeContext(flow=flow))
    assert escaped == target
    doc = f"image: [{escaped}]\n" if flow else f"image: {escaped}\n"
    value = yaml.safe_load(doc)["image"]
    assert (value[0] if flow else value) == target


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("quote", ['"', '"""'])
def test_toml_basic_strings_parse_back(target, quote):
    escaped = escape_for("toml", target, EscapeContext(quote=quote))
    assert tomllib.loads(f"cover = {quote}{escaped}{quote}\n") == {"cover": target}


@pytest.mark.parametrize("target", [t for t in TARGETS if "'" not in t and "\t" not in t])
def test_toml_literal_strings_parse_back(target):
    escaped = escape_for("toml", target, EscapeContext(quote="'"))
    assert tomllib.loads(f"cover = '{escaped}'\n") == {"cover": target}


def test_toml_literal_string_cannot_hold_a_quote_and_says_so():
    with pytest.raises(EscapeError):
        escape_for("toml", "../it's.jpg", EscapeContext(quote="'"))


@settings(max_examples=200)
@given(path_text)
def test_json_and_toml_property(target):
    assert json.loads('{"cover": "' + escape_for("json", target) + '"}') == {"cover": target}
    escaped = escape_for("toml", target, EscapeContext(quote='"'))
    assert tomllib.loads(f'cover = "{escaped}"') == {"cover": target}


def test_context_is_read_from_the_characters_around_the_span():
    text = "headimg: 'https://h/a.jpg'\nphotos: [https://h/b.jpg]\n<img src=https://h/c.jpg>"
    a = text.index("https://h/a.jpg")
    b = text.index("https://h/b.jpg")
    c = text.index("https://h/c.jpg")
    assert context_around(text, a, a + 15, "yaml") == EscapeContext(quote="'")
    assert context_around(text, b, b + 15, "yaml") == EscapeContext(flow=True)
    assert context_around(text, c, c + 15, "html") == EscapeContext()
    toml = 'cover = """https://h/d.jpg"""'
    d = toml.index("https")
    assert context_around(toml, d, d + 15, "toml").quote == '"""'
    srcset = '<img srcset="https://h/e.jpg 2x">'
    e = srcset.index("https")
    expected = EscapeContext(quote='"', srcset=True)
    assert context_around(srcset, e, e + 15, "html", "srcset") == expected


def test_yaml_front_matter_rewrite_through_the_span_stays_valid():
    text = "---\ncover: https://h/a.jpg\ntitle: x # comment\n---\n"
    start = text.index("https://h/a.jpg")
    end = start + len("https://h/a.jpg")
    target = "../a: b #c/x.jpg"
    new = escape_for("yaml", target, context_around(text, start, end, "yaml"))
    out = apply_edits(text, [Edit(start, end, text[start:end], new)])
    front = out.split("---\n")[1]
    assert yaml.safe_load(front) == {"cover": target, "title": "x"}
    assert out.endswith("title: x # comment\n---\n")
