"""Loading articles: decoding, newlines, front matter, protected regions (CommonMark/HTML rules)."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest
from scanhelpers import article, protected_text

from harvester.articles import encode_article, load_article
from harvester.errors import ArticleError

# shared/ sits beside the project root (in CI too, beside the fresh clone)
SHARED = Path(__file__).resolve().parents[2] / "shared"
CORPUS = SHARED / "corpus" / "articles"
EXAMPLES = SHARED / "examples"


# ------------------------------------------------------------------------------- decoding


@pytest.mark.parametrize(
    ("data", "encoding", "bom"),
    [
        ("# Titel\nGrüße ![x](https://e.org/ä.png)\n".encode(), "utf-8", False),
        (codecs.BOM_UTF8 + "---\ntitle: ü\n---\nbody\n".encode(), "utf-8", True),
        (codecs.BOM_UTF16_LE + "---\ntitle: ü\n---\n".encode("utf-16-le"), "utf-16-le", True),
        (codecs.BOM_UTF16_BE + "text\r\n".encode("utf-16-be"), "utf-16-be", True),
    ],
)
def test_utf_encodings_and_boms_round_trip_exactly(data, encoding, bom):
    art = load_article(Path("a.md"), data)
    assert (art.encoding, art.bom) == (encoding, bom)
    assert not art.text.startswith("\ufeff")  # the BOM is not part of the text
    assert encode_article(art, art.text) == data
    assert not art.warnings


def test_gb18030_fallback_is_recorded_and_warned():
    data = "---\ntitle: 社区要搞好\n---\n正文 ![图](https://e.cn/a.jpg)\n".encode("gb18030")
    art = load_article(Path("a.md"), data)
    assert art.encoding == "gb18030"
    assert "社区要搞好" in art.text
    assert [w.code for w in art.warnings] == ["fallback-encoding"]
    assert encode_article(art, art.text) == data


def test_western_8bit_text_falls_back_to_cp1252_not_gb18030():
    data = "Café – voilà, naïve “quotes”.\n".encode("cp1252")
    art = load_article(Path("a.md"), data)
    assert art.encoding == "cp1252"
    assert art.text == "Café – voilà, naïve “quotes”.\n"
    assert encode_article(art, art.text) == data


@pytest.mark.parametrize(
    "data",
    [b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", b"text\x00more", bytes(range(1, 9)) * 100],
)
def test_binary_junk_is_an_article_error_with_a_reason(data):
    with pytest.raises(ArticleError) as info:
        load_article(Path("junk.md"), data)
    assert info.value.reason == "binary"
    assert "junk.md" in str(info.value)


def test_missing_file_is_an_unreadable_article_error(tmp_path):
    with pytest.raises(ArticleError) as info:
        load_article(tmp_path / "nope.md")
    assert info.value.reason == "unreadable"


def test_encode_article_refuses_text_the_encoding_cannot_hold():
    art = load_article(Path("a.md"), "Café\n".encode("cp1252"))
    with pytest.raises(ArticleError) as info:
        encode_article(art, "Café 图\n")
    assert info.value.reason == "unencodable"


@pytest.mark.parametrize(
    ("text", "newline"),
    [("a\nb\n", "\n"), ("a\r\nb\r\n", "\r\n"), ("a\rb\r", "\r"), ("one line", "\n")],
)
def test_newline_style_is_recorded_and_text_is_not_translated(text, newline):
    art = article(text)
    assert art.newline == newline
    assert art.text == text


def test_crlf_offsets_point_at_the_same_characters():
    text = "---\r\nheadimg: https://e.org/h.jpg\r\n---\r\n\r\nx ![a](https://e.org/a.png)\r\n"
    art = article(text)
    assert art.front_matter.body_start == text.index("headimg")
    from scanhelpers import scan

    refs = scan(text)
    assert [r.raw for r in refs] == ["https://e.org/h.jpg", "https://e.org/a.png"]
    assert [r.line for r in refs] == [2, 5]


# ---------------------------------------------------------------------------- front matter


def test_yaml_front_matter_after_blank_lines_with_spans():
    text = "\n\n---\ntitle: T\ncover:\n  image: 'https://e.org/c.jpg' # note\n---\nbody\n"
    fm = article(text).front_matter
    assert fm.kind == "yaml"
    assert (fm.start, fm.end) == (2, text.index("body"))
    assert (
        text[fm.body_start : fm.body_end]
        == "title: T\ncover:\n  image: 'https://e.org/c.jpg' # note\n"
    )
    assert fm.data == {"title": "T", "cover": {"image": "https://e.org/c.jpg"}}
    (image,) = [s for s in fm.strings if s.path == ("cover", "image")]
    assert text[image.start : image.end] == "https://e.org/c.jpg"


def test_yaml_fence_with_trailing_space_and_dots_closing():
    text = "--- \ntitle: T\n...\nbody\n"
    fm = article(text).front_matter
    assert fm.kind == "yaml" and fm.data == {"title": "T"}
    assert text[fm.end :] == "body\n"


def test_toml_front_matter_strings_with_tables_arrays_and_dates():
    text = (
        "+++\n"
        'title = "T"\n'
        "date = 1979-05-27 07:32:00Z\n"
        "images = [\n  \"https://e.org/1.png\",\n  'https://e.org/2.png',\n]\n"
        "[cover]\n"
        'image = "https://e.org/c.png" # comment\n'
        "[[gallery]]\n"
        'src = "https://e.org/g0.png"\n'
        "[[gallery]]\n"
        'src = "https://e.org/g1.png"\n'
        "+++\n"
        "body\n"
    )
    fm = article(text).front_matter
    assert fm.kind == "toml"
    assert fm.data["cover"] == {"image": "https://e.org/c.png"}
    located = {s.path: text[s.start : s.end] for s in fm.strings}
    assert located[("images", 0)] == "https://e.org/1.png"
    assert located[("images", 1)] == "https://e.org/2.png"
    assert located[("cover", "image")] == "https://e.org/c.png"
    assert located[("gallery", 1, "src")] == "https://e.org/g1.png"
    assert not article(text).warnings


def test_json_front_matter():
    text = '{\n  "title": "T",\n  "cover": {"image": "https://e.org/c\\u002epng"}\n}\n\nbody\n'
    fm = article(text).front_matter
    assert fm.kind == "json"
    assert fm.data["cover"]["image"] == "https://e.org/c.png"
    (s,) = [s for s in fm.strings if s.path == ("cover", "image")]
    assert text[s.start : s.end] == "https://e.org/c\\u002epng"  # raw text, value decoded
    assert s.value == "https://e.org/c.png"


def test_hexo_prefixless_front_matter():
    text = "title: Gallery\nphotos:\n- https://e.org/1.jpg\n- /local.jpg\n---\n\nbody\n"
    fm = article(text).front_matter
    assert fm.kind == "yaml-prefixless"
    assert fm.start == 0 and text[fm.end :] == "\nbody\n"
    assert fm.data["photos"] == ["https://e.org/1.jpg", "/local.jpg"]


def test_a_paragraph_and_thematic_break_are_not_prefixless_front_matter():
    text = "Just a sentence with a colon: here it is\n\nand more\n---\n"
    assert article(text).front_matter is None
    text = "Title line\n---\n"  # a setext heading
    assert article(text).front_matter is None


def test_broken_yaml_keeps_its_span_warns_and_the_body_is_still_scanned():
    from scanhelpers import scan

    text = "---\ntitle: [unclosed\nheadimg: https://e.org/h.jpg\n---\n![a](https://e.org/a.png)\n"
    art = article(text)
    assert art.front_matter.data is None
    assert [w.code for w in art.warnings] == ["front-matter-invalid"]
    assert art.warnings[0].line >= 2
    assert [r.url for r in scan(text)] == ["https://e.org/a.png"]


def test_invalid_date_in_yaml_is_a_warning_not_a_crash():
    art = article("---\ndate: 2021-13-45\n---\nx\n")
    assert art.front_matter.data is None
    assert art.warnings[0].code == "front-matter-invalid"


def test_unclosed_front_matter_fence_is_not_front_matter():
    art = article("---\ntitle: T\n\nbody text\n")
    assert art.front_matter is None
    assert [w.code for w in art.warnings] == ["front-matter-unclosed"]


def test_yaml_alias_bomb_does_not_explode():
    lines = ["---", "a: &a ['https://e.org/x.png', 'https://e.org/x.png']"]
    for i in range(1, 20):
        lines.append(f"{chr(97 + i)}: &{chr(97 + i)} [*{chr(96 + i)}, *{chr(96 + i)}]")
    art = article("\n".join(lines) + "\n---\nbody\n")
    assert len(art.front_matter.strings) == 2  # each node once


# ------------------------------------------------------------------------------ protected


def test_fenced_code_backticks_and_tildes_are_protected():
    text = (
        "a\n\n```md\n![x](https://e.org/1.png)\n```\n\n~~~\n<img src='https://e.org/2.png'>\n~~~\n"
    )
    art = article(text)
    assert protected_text(art) == [
        "```md\n![x](https://e.org/1.png)\n```",
        "~~~\n<img src='https://e.org/2.png'>\n~~~",
    ]


def test_unclosed_fence_runs_to_the_end_of_the_document():
    text = "a\n\n```\n![x](https://e.org/1.png)\n\nstill code\n"
    art = article(text)
    assert protected_text(art) == ["```\n![x](https://e.org/1.png)\n\nstill code"]


def test_fence_inside_list_item_and_blockquote_is_protected():
    text = (
        "- item\n\n  ```\n  ![x](https://e.org/1.png)\n  ```\n\n"
        "> ```\n> ![y](https://e.org/2.png)\n> ```\n"
    )
    texts = protected_text(article(text))
    assert any("e.org/1.png" in t for t in texts)
    assert any("e.org/2.png" in t for t in texts)


def test_indented_code_block_is_protected_but_list_continuation_is_not():
    text = (
        "para\n\n    ![x](https://e.org/code.png)\n\n- item\n\n    ![y](https://e.org/list.png)\n"
    )
    texts = protected_text(article(text))
    assert texts == ["    ![x](https://e.org/code.png)"]


def test_indented_line_after_paragraph_is_a_lazy_continuation_not_code():
    text = "para\n    ![x](https://e.org/p.png)\n"
    assert protected_text(article(text)) == []


def test_code_spans_follow_backtick_run_matching():
    text = "a `![x](https://e.org/1.png)` b ``![y](https://e.org/`2`.png)`` c `unmatched ![z](https://e.org/3.png)\n"
    texts = protected_text(article(text))
    assert texts == ["`![x](https://e.org/1.png)`", "``![y](https://e.org/`2`.png)``"]


def test_html_comments_block_inline_and_unclosed():
    text = (
        "<!--\n```yaml\nteaser: https://e.org/1.png\n```\n-->\n\n"
        "text <!-- <img src='https://e.org/2.png'> --> more\n\n"
        "<!-- never closed\n\n![x](https://e.org/3.png)\n"
    )
    texts = protected_text(article(text))
    assert texts[0] == "<!--\n```yaml\nteaser: https://e.org/1.png\n```\n-->"
    assert texts[1] == "<!-- <img src='https://e.org/2.png'> -->"
    assert texts[2].startswith("<!-- never closed") and texts[2].endswith("3.png)\n")


@pytest.mark.parametrize("tag", ["pre", "code", "script", "style", "textarea"])
def test_protected_html_elements(tag):
    inner = "<img src='https://e.org/1.png'> url(https://e.org/2.png)"
    text = f"before\n\n<{tag} class=x>{inner}</{tag}>\n\nafter\n"
    assert protected_text(article(text)) == [f"<{tag} class=x>{inner}</{tag}>"]


def test_pre_element_spanning_markdown_blocks_protects_everything_between():
    text = "<div><pre>\n\n![x](https://e.org/1.png)\n\n</pre></div>\n"
    (span,) = protected_text(article(text))
    assert span.startswith("<pre>") and span.endswith("</pre>") and "1.png" in span


def test_inline_code_element_around_a_markdown_image():
    text = "see <code>![x](https://e.org/1.png)</code> here\n"
    assert protected_text(article(text)) == ["<code>![x](https://e.org/1.png)</code>"]


def test_unclosed_script_protects_to_the_end_and_warns():
    text = (
        "x\n\n<script>\nvar a = '<img src=\"https://e.org/1.png\">';\n\n![y](https://e.org/2.png)\n"
    )
    art = article(text)
    assert protected_text(art)[0].startswith("<script>")
    assert art.protected[-1][1] == len(text)
    assert [w.code for w in art.warnings] == ["unclosed-element"]


@pytest.mark.parametrize(
    ("open_tag", "close_tag"),
    [
        ("{% raw %}", "{% endraw %}"),
        ("{%- highlight ruby linenos -%}", "{%- endhighlight -%}"),
        ("{% codeblock lang:js %}", "{% endcodeblock %}"),
        ("{% comment %}", "{% endcomment %}"),  # Jekyll renders nothing of it
    ],
)
def test_liquid_raw_and_highlight_blocks_are_protected(open_tag, close_tag):
    block = f"{open_tag}\n![a][l]\n\n[l]: https://e.org/in.png\n{close_tag}"
    text = f"x\n\n{block}\n\n![b][l]\n"
    art = article(text)
    assert protected_text(art) == [block]
    from scanhelpers import scan

    assert scan(text) == []  # the definition inside the block defines nothing


def test_front_matter_is_not_read_as_markdown_or_html():
    text = "---\nnote: '<!-- not a comment'\ncode: '```'\n---\n![a](https://e.org/a.png)\n"
    art = article(text)
    assert art.protected == ()
    from scanhelpers import scan

    assert [r.url for r in scan(text)] == ["https://e.org/a.png"]


def test_fence_in_body_with_yaml_example_is_not_front_matter():
    text = "---\ntitle: T\n---\n\n```yaml\n---\nindex_img: https://e.org/x.png \n---\n```\n"
    art = article(text)
    assert art.front_matter.data == {"title": "T"}
    assert protected_text(art)[0].startswith("```yaml")


# --------------------------------------------------------------------------- the real corpus


@pytest.mark.skipif(not CORPUS.is_dir(), reason="shared corpus not present")
@pytest.mark.parametrize(
    "path",
    sorted([*CORPUS.glob("*.md"), *EXAMPLES.glob("*.md")]) if CORPUS.is_dir() else [],
    ids=lambda p: p.name[:40],
)
def test_every_corpus_file_round_trips_byte_for_byte(path):
    data = path.read_bytes()
    art = load_article(path, data)
    assert encode_article(art, art.text) == data
    assert art.protected == tuple(sorted(art.protected))
    assert all(s < e for s, e in art.protected)
    assert all(a[1] < b[0] for a, b in zip(art.protected, art.protected[1:], strict=False))


def test_unclosed_inline_code_element_protects_to_the_end_of_its_paragraph():
    from scanhelpers import scan

    text = "Use the <code> element ![a](https://e.org/a.png) here\nstill\n\n![b](https://e.org/b.png)\n"
    art = article(text)
    assert protected_text(art) == ["<code> element ![a](https://e.org/a.png) here\nstill"]
    assert [(w.code, w.line) for w in art.warnings] == [("unclosed-element", 1)]
    assert [r.url for r in scan(text)] == ["https://e.org/b.png"]


def test_utf8_with_a_few_damaged_bytes_stays_utf8_and_round_trips():
    data = (
        "---\ntitle: 社区\n---\n正文很长很长 ![图](https://e.cn/a.jpg)\n".encode() + b"\xe4\xb8\n"
    )
    art = load_article(Path("a.md"), data)
    assert art.encoding == "utf-8" and "社区" in art.text
    assert [(w.code, w.line) for w in art.warnings] == [("invalid-utf8", 5)]
    assert encode_article(art, art.text) == data
    from scanhelpers import scan_article_of

    assert [r.url for r in scan_article_of(art)] == ["https://e.cn/a.jpg"]


@pytest.mark.parametrize(
    "text",
    [
        "{" + '"a": [' * 5000 + "]" * 5000 + "}\nbody\n",
        "+++\na = " + "[" * 5000 + "]" * 5000 + "\n+++\nbody\n",
        "---\na: " + "[" * 5000 + "]" * 5000 + "\n---\nbody\n",
        "> " * 3000 + "![a](https://e.org/a.png)\n",
    ],
    ids=["json", "toml", "yaml", "blockquotes"],
)
def test_deeply_nested_input_is_a_warning_not_a_crash(text):
    art = article(text)
    assert encode_article(art, art.text) == text.encode()


def test_key_value_paragraph_before_a_thematic_break_is_not_prefixless_front_matter():
    text = "Summary: a short one\nStatus: done\n---\n![a](https://e.org/a.png)\n"
    assert article(text).front_matter is None


def test_unclosed_liquid_blocks_warn_once_per_kind_and_are_read_as_usual():
    text = "{% raw %} a\n{% comment %} b\n{% raw %} c\n![x](https://e.org/a.png)\n"
    art = article(text)
    assert [(w.code, w.line) for w in art.warnings] == [
        ("unclosed-liquid", 1),
        ("unclosed-liquid", 2),
    ]
    assert art.protected == ()
    from scanhelpers import scan

    assert [r.url for r in scan(text)] == ["https://e.org/a.png"]
    # a post of nothing but openers: one warning, not one per opener (and no search each)
    assert len(article("{% comment %}" * 5000).warnings) == 1
