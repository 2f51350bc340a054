"""Every image-reference form: expected URL, kind, syntax and exact span (CommonMark / HTML)."""

from __future__ import annotations

import pytest
from scanhelpers import article, scan, span_of, urls

from harvester.extract import scan_article
from harvester.settings import Settings

# ------------------------------------------------------------------------- Markdown inline


@pytest.mark.parametrize(
    ("text", "raw", "url"),
    [
        ("![alt](https://e.org/a.png)", "https://e.org/a.png", "https://e.org/a.png"),
        ('![a](https://e.org/a.png "Title")', "https://e.org/a.png", "https://e.org/a.png"),
        ("![a](https://e.org/a.png 'Title')", "https://e.org/a.png", "https://e.org/a.png"),
        ("![a](https://e.org/a.png (Title))", "https://e.org/a.png", "https://e.org/a.png"),
        ("![a](  https://e.org/a.png  )", "https://e.org/a.png", "https://e.org/a.png"),
        ("![a](https://e.org/a_(1).png)", "https://e.org/a_(1).png", "https://e.org/a_(1).png"),
        ("![a](https://e.org/a\\).png)", "https://e.org/a\\).png", "https://e.org/a).png"),
        (
            "![a](https://e.org/a.png?x=1&amp;y=2)",
            "https://e.org/a.png?x=1&amp;y=2",
            "https://e.org/a.png?x=1&y=2",
        ),
        (
            "![a](https://e.org/a.png?x=1&from;=2)",
            "https://e.org/a.png?x=1&from;=2",
            "https://e.org/a.png?x=1&from;=2",
        ),
        (
            "![a](https://e.org/a.png#frag=1&b)",
            "https://e.org/a.png#frag=1&b",
            "https://e.org/a.png",
        ),
        ("![a](//cdn.e.org/a.png)", "//cdn.e.org/a.png", "https://cdn.e.org/a.png"),
        ("![a](HTTP://E.org/a.png)", "HTTP://E.org/a.png", "http://E.org/a.png"),
        ("![a](\nhttps://e.org/a.png\n'T')", "https://e.org/a.png", "https://e.org/a.png"),
        (
            "![a](https://i0.hdslb.com/bfs/a.png@1e_1c.webp)",
            "https://i0.hdslb.com/bfs/a.png@1e_1c.webp",
            "https://i0.hdslb.com/bfs/a.png@1e_1c.webp",
        ),
        ("![a [nested] label](https://e.org/a.png)", "https://e.org/a.png", "https://e.org/a.png"),
        ("# Heading ![a](https://e.org/a.png) #", "https://e.org/a.png", "https://e.org/a.png"),
        ("> quoted\n> ![a](https://e.org/a.png)", "https://e.org/a.png", "https://e.org/a.png"),
        ("- item\n\n    ![a](https://e.org/a.png)", "https://e.org/a.png", "https://e.org/a.png"),
        (
            "| a | b |\n|---|---|\n| ![x](https://e.org/a.png) | y |",
            "https://e.org/a.png",
            "https://e.org/a.png",
        ),
    ],
)
def test_markdown_inline_destination_span_and_url(text, raw, url):
    (ref,) = scan(text)
    assert (ref.kind, ref.syntax, ref.field) == ("markdown-inline", "markdown", "destination")
    assert (ref.start, ref.end) == span_of(text, raw)
    assert ref.raw == raw and ref.url == url


def test_angle_bracket_destination_span_is_inside_the_brackets():
    text = '![a](<https://e.org/a b.png> "t")'
    (ref,) = scan(text)
    assert ref.syntax == "markdown-angle"
    assert ref.raw == "https://e.org/a b.png" and (ref.start, ref.end) == span_of(text, ref.raw)


def test_linked_image_reports_only_the_image_not_the_link():
    text = "[![thumb](https://e.org/t.png)](https://e.org/full.png)"
    assert [(r.raw, r.start) for r in scan(text)] == [("https://e.org/t.png", 10)]


def test_image_inside_an_image_alt_is_not_loaded():
    text = "![outer ![inner](https://e.org/in.png)](https://e.org/out.png)"
    assert urls(text) == ["https://e.org/out.png"]


def test_adjacent_images_and_line_numbers():
    text = "x\n\n![](https://e.org/1.png)![](https://e.org/2.png)\n"
    refs = scan(text)
    assert [r.url for r in refs] == ["https://e.org/1.png", "https://e.org/2.png"]
    assert [r.line for r in refs] == [3, 3]
    assert refs[1].start == text.index("https://e.org/2.png")


@pytest.mark.parametrize(
    "text",
    [
        "\\![a](https://e.org/x.png)",  # escaped '!': a link, not an image
        "![a] (https://e.org/x.png)",  # space before '(': not an inline image
        "![a](https://e.org/a b.png)",  # space in a bare destination
        "![a](https://e.org/x.png\n&from;=appmsg)",  # a line break cuts the destination
        "![a](data:image/png;base64,iVBORw0KGgo=)",
        "![a](file:///home/me/a.png)",
        "![a](/site/root.png)",
        "![a](relative/a.png)",
        '![a](图片地址 "图片title")',
        "![a]({{ '/assets/a.jpg' | relative_url }})",
        "![a]({{site.baseurl}}/a.jpg)",
        "![a](mailto:me@e.org)",
        "![a](https://)",
        "![a]()",
        "![a](<>)",
        "<https://e.org/autolink.png>",
    ],
)
def test_not_remote_image_references(text):
    assert scan(text) == []


def test_broken_image_url_gets_a_warning():
    art = article("x\n\n![](https://e.org/x.png?a=1\n&from;=appmsg)\n")
    assert [(w.code, w.line) for w in art.warnings] == [("broken-image", 3)]


# --------------------------------------------------------------------- Markdown references


def test_reference_image_reports_the_definition_span_once():
    text = (
        "![one][Logo] and ![two][logo] and ![Logo][] and ![logo]\n\n"
        '[logo]: https://e.org/logo.png "Title"\n'
    )
    (ref,) = scan(text)
    assert ref.kind == "markdown-reference" and ref.syntax == "markdown"
    assert (ref.start, ref.end) == span_of(text, "https://e.org/logo.png")
    assert ref.line == 3 and ref.field == "logo"


def test_reference_labels_are_case_folded_and_whitespace_collapsed():
    text = "![x][Foo \n  BAR]\n\n[foo bar]: https://e.org/f.png\n"
    assert urls(text) == ["https://e.org/f.png"]
    text = "![x][STRASSE]\n\n[Straße]: https://e.org/s.png\n"  # Unicode case fold: ß -> ss
    assert urls(text) == ["https://e.org/s.png"]


def test_first_definition_wins():
    text = "![x][l]\n\n[l]: https://e.org/first.png\n[L]: https://e.org/second.png\n"
    (ref,) = scan(text)
    assert ref.url == "https://e.org/first.png"
    assert ref.start == text.index("https://e.org/first.png")


def test_definition_used_only_by_links_is_not_an_image():
    assert scan("[x][l]\n\n[l]: https://e.org/page.png\n") == []


def test_definition_with_angle_destination_and_title_on_next_line():
    text = "![x][l]\n\n[l]:\n  <https://e.org/a b.png>\n  'title'\n"
    (ref,) = scan(text)
    assert ref.syntax == "markdown-angle" and ref.raw == "https://e.org/a b.png"


def test_definition_inside_a_fence_defines_nothing():
    text = "![x][l]\n\n```\n[l]: https://e.org/in-code.png\n```\n"
    assert scan(text) == []


def test_definition_in_blockquote():
    text = "![x][q]\n\n> [q]: https://e.org/q.png\n"
    (ref,) = scan(text)
    assert (ref.start, ref.end) == span_of(text, "https://e.org/q.png")


# ---------------------------------------------------------------------------------- HTML img


@pytest.mark.parametrize(
    ("tag", "raw", "url"),
    [
        ('<img src="https://e.org/a.png" alt="x">', "https://e.org/a.png", "https://e.org/a.png"),
        ("<img alt='x' src='https://e.org/a.png'>", "https://e.org/a.png", "https://e.org/a.png"),
        ("<img src=https://e.org/a.png alt=x>", "https://e.org/a.png", "https://e.org/a.png"),
        ('<IMG SRC="https://e.org/a.png">', "https://e.org/a.png", "https://e.org/a.png"),
        (
            '<img\n  class="x"\n  src = "https://e.org/a.png"\n/>',
            "https://e.org/a.png",
            "https://e.org/a.png",
        ),
        ('<img src=" https://e.org/a.png ">', "https://e.org/a.png", "https://e.org/a.png"),
        (
            '<img src="https://e.org/a.png?a=1&amp;b=2">',
            "https://e.org/a.png?a=1&amp;b=2",
            "https://e.org/a.png?a=1&b=2",
        ),
        (
            '<img src="https://e.org/a?x=1&copy=2">',
            "https://e.org/a?x=1&copy=2",
            "https://e.org/a?x=1&copy=2",
        ),
        ('<img src="https&#58;//e.org/a.png">', "https&#58;//e.org/a.png", "https://e.org/a.png"),
        ('<img src="//e.org/a.png" title>', "//e.org/a.png", "https://e.org/a.png"),
    ],
)
def test_img_src_span_and_url(tag, raw, url):
    for text in (tag, f"<div>\n{tag}\n</div>", f"text {tag} text"):  # block and inline HTML
        (ref,) = scan(text)
        assert (ref.kind, ref.syntax, ref.field) == ("html-img", "html", "src")
        assert (ref.start, ref.end) == span_of(text, raw)
        assert ref.url == url


def test_first_of_duplicate_attributes_wins():
    (ref,) = scan('<img src="https://e.org/1.png" src="https://e.org/2.png">')
    assert ref.url == "https://e.org/1.png"


def test_srcset_candidates_keep_descriptors_out_of_the_span():
    text = '<img srcset="https://e.org/a.png 1x,\n  https://e.org/b,c.png 2x, //e.org/c.png 300w">'
    refs = scan(text)
    assert [(r.kind, r.field, r.raw) for r in refs] == [
        ("html-srcset", "srcset", "https://e.org/a.png"),
        ("html-srcset", "srcset", "https://e.org/b,c.png"),
        ("html-srcset", "srcset", "//e.org/c.png"),
    ]
    assert [r.start for r in refs] == [text.index(r.raw) for r in refs]
    assert refs[2].url == "https://e.org/c.png"


def test_srcset_without_spaces_is_one_url_with_commas():
    # HTML "parse a srcset attribute": a URL runs to whitespace; only trailing commas end it.
    text = '<img srcset="https://e.org/a.png,https://e.org/b.png,,">'
    assert [r.raw for r in scan(text)] == ["https://e.org/a.png,https://e.org/b.png"]


def test_srcset_descriptor_with_parentheses_and_commas():
    text = '<img srcset="https://e.org/a.png (x, y), https://e.org/b.png 2x">'
    assert [r.raw for r in scan(text)] == ["https://e.org/a.png", "https://e.org/b.png"]


def test_picture_sources_use_the_img_policy():
    text = (
        "<picture>\n"
        '  <source type="image/webp" srcset="https://e.org/a.webp 1x, https://e.org/a2.webp 2x">\n'
        '  <source media="(min-width: 800px)" src="https://e.org/wide.png">\n'
        '  <img src="https://e.org/a.png" referrerpolicy="no-referrer">\n'
        "</picture>\n"
        '<img src="https://e.org/other.png">\n'
    )
    refs = scan(text, site_url="https://me.example/")
    got = [(r.kind, r.raw, r.policy) for r in refs]
    assert got == [
        ("html-srcset", "https://e.org/a.webp", "no-referrer"),
        ("html-srcset", "https://e.org/a2.webp", "no-referrer"),
        ("html-source", "https://e.org/wide.png", "no-referrer"),
        ("html-img", "https://e.org/a.png", "no-referrer"),
        ("html-img", "https://e.org/other.png", "strict-origin-when-cross-origin"),
    ]
    assert [r.referer for r in refs] == [None, None, None, None, "https://me.example/"]


def test_video_and_audio_sources_are_not_images():
    text = '<video controls><source src="https://e.org/v.mp4" type="video/mp4"></video>'
    assert scan(text) == []


@pytest.mark.parametrize(
    "attribute",
    ["data-src", "data-original", "data-original-src", "data-actualsrc", "data-lazy-src"],
)
def test_lazy_attributes(attribute):
    text = f'<img {attribute}="https://e.org/lazy.png" src="data:image/gif;base64,R0lGOD">'
    (ref,) = scan(text)
    assert (ref.kind, ref.field) == ("html-lazy", attribute)
    assert (ref.start, ref.end) == span_of(text, "https://e.org/lazy.png")


def test_data_srcset_and_wechat_style_lazy_img():
    text = (
        '<img data-srcset="https://e.org/a.png 2x" '
        'data-src="https://mmbiz.qpic.cn/x/640?wx_fmt=png&amp;wx_lazy=1" src="">'
    )
    got = [(r.kind, r.field, r.url) for r in scan(text)]
    assert got == [
        ("html-srcset", "data-srcset", "https://e.org/a.png"),
        ("html-lazy", "data-src", "https://mmbiz.qpic.cn/x/640?wx_fmt=png&wx_lazy=1"),
    ]


def test_noscript_copy_is_reported_too():
    text = (
        '<figure><img data-actualsrc="https://pic1.zhimg.com/a.jpg" '
        'src="data:image/svg+xml;utf8,<svg>">'
        '<noscript><img src="https://pic1.zhimg.com/a.jpg"></noscript></figure>'
    )
    refs = scan(text)
    assert [(r.kind, r.field) for r in refs] == [
        ("html-lazy", "data-actualsrc"),
        ("html-img", "src"),
    ]
    assert refs[1].start == text.index("https://pic1.zhimg.com/a.jpg", refs[0].end)


def test_lazy_attributes_on_other_elements_are_not_images():
    assert scan('<div data-src="https://e.org/a.png"></div>') == []


# ------------------------------------------------------------------------------- CSS url()


@pytest.mark.parametrize(
    ("style", "raw", "url"),
    [
        (
            "background: url(https://e.org/bg.png) no-repeat",
            "https://e.org/bg.png",
            "https://e.org/bg.png",
        ),
        (
            "background-image:url('https://e.org/bg.png')",
            "https://e.org/bg.png",
            "https://e.org/bg.png",
        ),
        (
            "background-image: URL( &quot;https://e.org/bg.png?a=1&amp;b=2&quot; )",
            "https://e.org/bg.png?a=1&amp;b=2",
            "https://e.org/bg.png?a=1&b=2",
        ),
        (
            "background:url(https://e.org/b\\(1\\).png)",
            "https://e.org/b\\(1\\).png",
            "https://e.org/b(1).png",
        ),
    ],
)
def test_inline_style_url(style, raw, url):
    text = f'<p>x</p>\n<div style="{style}">y</div>'
    (ref,) = scan(text)
    assert (ref.kind, ref.syntax, ref.field) == ("css-url", "css", "style")
    assert (ref.start, ref.end) == span_of(text, raw)
    assert ref.url == url


def test_style_with_two_urls_single_quoted_attribute():
    text = (
        "<span style='background: url(\"https://e.org/1.png\"), url(https://e.org/2.png)'>x</span>"
    )
    assert urls(text) == ["https://e.org/1.png", "https://e.org/2.png"]


# ---------------------------------------------------------------------------- front matter


def test_front_matter_image_fields_nested_lists_and_list_of_dicts():
    text = (
        "---\n"
        "headimg: 'https://e.org/h.jpg'\n"
        "thumbnail: https://e.org/t.jpg # comment\n"
        "# image: https://e.org/commented.jpg\n"
        "link: https://e.org/page-not-an-image.png\n"
        "cover:\n"
        '  image: "https://e.org/c.jpg"\n'
        "  alt: https://e.org/alt-is-not-an-image.png\n"
        "photos:\n"
        "  - https://e.org/p0.jpg\n"
        "  - /local.jpg\n"
        "carousels:\n"
        "  - images:\n"
        "      - image: https://e.org/deep.jpg\n"
        "header:\n"
        "  overlay_image: https://e.org/o.jpg\n"
        "  actions:\n"
        "    - url: https://e.org/button-link\n"
        "gallery_images:\n"
        "  - src: https://e.org/not-an-image-key.jpg\n"
        "images:\n"
        "  - src: https://e.org/src-under-images.jpg\n"
        "---\n"
        "body\n"
    )
    refs = scan(text)
    got = [(r.field, r.raw, r.syntax, r.kind) for r in refs]
    assert got == [
        ("headimg", "https://e.org/h.jpg", "yaml", "front-matter"),
        ("thumbnail", "https://e.org/t.jpg", "yaml", "front-matter"),
        ("cover.image", "https://e.org/c.jpg", "yaml", "front-matter"),
        ("photos[0]", "https://e.org/p0.jpg", "yaml", "front-matter"),
        ("carousels[0].images[0].image", "https://e.org/deep.jpg", "yaml", "front-matter"),
        ("header.overlay_image", "https://e.org/o.jpg", "yaml", "front-matter"),
        ("images[0].src", "https://e.org/src-under-images.jpg", "yaml", "front-matter"),
    ]
    assert all((r.start, r.end) == span_of(text, r.raw) for r in refs)


def test_toml_and_json_front_matter_refs():
    toml = '+++\nimages = ["https://e.org/1.png", "/x.png"]\n[cover]\nimage = "https://e.org/c.png"\n+++\n'
    assert [(r.field, r.syntax) for r in scan(toml)] == [
        ("images[0]", "toml"),
        ("cover.image", "toml"),
    ]
    json_text = '{"featured_image": "https://e.org/f.png", "og_image": "//e.org/o.png"}\nbody\n'
    refs = scan(json_text)
    assert [(r.field, r.syntax, r.url) for r in refs] == [
        ("featured_image", "json", "https://e.org/f.png"),
        ("og_image", "json", "https://e.org/o.png"),
    ]


def test_image_keys_come_from_settings():
    text = "---\nposter: https://e.org/p.png\nheadimg: https://e.org/h.png\n---\n"
    assert urls(text, image_keys=("poster",)) == ["https://e.org/p.png"]


def test_hexo_prefixless_front_matter_refs():
    text = "title: G\nphotos:\n- https://e.org/1.jpg\n---\n![a](https://e.org/b.jpg)\n"
    assert [(r.kind, r.url) for r in scan(text)] == [
        ("front-matter", "https://e.org/1.jpg"),
        ("markdown-inline", "https://e.org/b.jpg"),
    ]


# ------------------------------------------------------------------------------ protected


@pytest.mark.parametrize(
    "text",
    [
        "```\n![a](https://e.org/a.png)\n```\n",
        "~~~ html\n<img src='https://e.org/a.png'>\n~~~\n",
        "    ![a](https://e.org/a.png)\n",
        "`![a](https://e.org/a.png)`\n",
        "`` <img src='https://e.org/a.png'> ``\n",
        "<!-- ![a](https://e.org/a.png) -->\n",
        "x <!-- <img src='https://e.org/a.png'> --> y\n",
        "<pre>\n![a](https://e.org/a.png)\n</pre>\n",
        "<code><img src='https://e.org/a.png'></code>\n",
        "a <code>![a](https://e.org/a.png)</code> b\n",
        "<script>document.write('<img src=\"https://e.org/a.png\">')</script>\n",
        "<style>.x { background: url(https://e.org/a.png) }</style>\n",
        "<textarea><img src='https://e.org/a.png'></textarea>\n",
        "{% raw %}\n![a](https://e.org/a.png)\n{% endraw %}\n",
        "{% highlight html %}\n<img src='https://e.org/a.png'>\n{% endhighlight %}\n",
        '```\n<i style="background-image: url(&quot;https://e.org/a.png&quot;)"></i>\n```\n',
        "<pre><code style='background:url(https://e.org/a.png)'>x</code></pre>\n",
        "> ```\n> ![a](https://e.org/a.png)\n> ```\n",
        "1. item\n\n   ```\n   ![a](https://e.org/a.png)\n   ```\n",
    ],
)
def test_nothing_is_reported_inside_protected_regions(text):
    assert scan(text) == []
    assert scan("![ok](https://e.org/ok.png)\n\n" + text) != []  # and the scan still works


def test_meta_and_base_inside_code_are_ignored():
    text = (
        "```\n<meta name=referrer content=no-referrer>\n<base href=https://x.org/>\n```\n\n"
        "![a](https://e.org/a.png) ![b](b.png)\n"
    )
    refs = scan(text)
    assert [(r.url, r.policy) for r in refs] == [
        ("https://e.org/a.png", "strict-origin-when-cross-origin")
    ]


# ------------------------------------------------------------------- policy and referer


def test_img_referrerpolicy_is_ascii_case_insensitive_and_invalid_falls_back():
    text = (
        '<meta name="Referrer" content="origin">\n'
        '<img src="https://e.org/1.png" referrerpolicy="NO-REFERRER">\n'
        '<img src="https://e.org/2.png" referrerpolicy="bogus">\n'
        '<img src="https://e.org/3.png" referrerpolicy="">\n'
        "\n![m](https://e.org/4.png)\n"  # after a blank line: Markdown again
    )
    refs = scan(text, site_url="https://me.example/blog/")
    assert [(r.policy, r.referer) for r in refs] == [
        ("no-referrer", None),
        ("origin", "https://me.example/"),
        ("origin", "https://me.example/"),
        ("origin", "https://me.example/"),
    ]


def test_markdown_inside_an_html_block_is_html_text_not_an_image():
    # CommonMark: an HTML block (here type 7, a lone complete tag) runs to a blank line.
    assert scan("<span>\n![a](https://e.org/a.png)\n</span>\n") == []
    assert urls("<span>\n\n![a](https://e.org/a.png)\n\n</span>\n") == ["https://e.org/a.png"]


def test_last_valid_meta_referrer_wins_and_legacy_keywords_map():
    text = (
        "<meta name=referrer content=unsafe-url>\n\n"
        "![a](https://e.org/a.png)\n\n"
        "<meta name=referrer content=never>\n\n"
        "<meta name=referrer content=nonsense>\n"
    )
    (ref,) = scan(text, site_url="https://me.example/")
    assert (ref.policy, ref.referer) == ("no-referrer", None)


def test_default_policy_setting_applies_when_the_document_sets_none():
    text = "---\nheadimg: https://e.org/h.png\n---\n![a](https://e.org/a.png)\n"
    refs = scan(text, site_url="https://me.example/p/", default_policy="unsafe-url")
    assert [(r.policy, r.referer) for r in refs] == [("unsafe-url", "https://me.example/p/")] * 2


def test_page_url_from_front_matter_key_absolute_or_relative_to_the_site():
    text = "---\npermalink: /2021/06/post/\nheadimg: https://e.org/h.png\n---\n"
    (ref,) = scan(text, site_url="https://me.example/", default_policy="unsafe-url")
    assert ref.page_url == "https://me.example/2021/06/post/"
    assert ref.referer == "https://me.example/2021/06/post/"
    text = "---\nurl: https://other.example/post/#x\nheadimg: https://e.org/h.png\n---\n"
    (ref,) = scan(text, default_policy="unsafe-url")
    assert ref.referer == "https://other.example/post/"


def test_no_page_url_means_no_referer():
    (ref,) = scan("![a](https://e.org/a.png)", default_policy="unsafe-url")
    assert ref.page_url is None and ref.referer is None


def test_downgrade_from_https_page_to_http_image_sends_nothing_by_default():
    (ref,) = scan("![a](http://e.org/a.png)", site_url="https://me.example/")
    assert ref.referer is None


# ---------------------------------------------------------------------- relative resolution


def test_site_url_never_turns_local_paths_into_downloads():
    text = "![a](/img/a.png) <img src='b.png'>\n\n---\n"
    assert scan(text, site_url="https://me.example/") == []


def test_base_href_resolves_relative_paths_in_the_body():
    text = (
        '<base href="https://orig.example/posts/1/">\n\n'
        "![a](img/a.png) <img src='/b.png'> <img src='//cdn.example/c.png'>\n"
    )
    assert urls(text) == [
        "https://orig.example/posts/1/img/a.png",
        "https://orig.example/b.png",
        "https://cdn.example/c.png",
    ]


def test_source_url_front_matter_key_resolves_relative_paths():
    text = "---\noriginal_url: https://orig.example/a/b.html\ncover: c.jpg\n---\n![x](x.png)\n"
    refs = scan(text)
    assert [r.url for r in refs] == ["https://orig.example/a/c.jpg", "https://orig.example/a/x.png"]
    assert [r.raw for r in refs] == ["c.jpg", "x.png"]


# -------------------------------------------------------------------------- HTML articles


def test_html_files_are_read_as_html_not_markdown():
    text = (
        "<html><head><meta name='referrer' content='same-origin'></head><body>\n"
        "    <img src='https://e.org/indented.png'>\n"
        "<p>`<img src='https://e.org/backticks.png'>`</p>\n"
        "![not markdown](https://e.org/md.png)\n"
        "</body></html>\n"
    )
    refs = scan(text, name="page.html")
    assert [r.url for r in refs] == ["https://e.org/indented.png", "https://e.org/backticks.png"]
    assert {r.policy for r in refs} == {"same-origin"}


def test_malformed_html_does_not_stop_the_scan():
    text = (
        "<div><img src=\"https://e.org/1.png\" <p unclosed <img src='https://e.org/2.png'\n\n"
        '![c](https://e.org/3.png)\n\n<img src="https://e.org/4.png'
    )
    refs = scan(text)
    assert "https://e.org/3.png" in [r.url for r in refs]


def test_scan_article_returns_refs_sorted_by_position():
    text = "![b](https://e.org/b.png)\n\n<img src='https://e.org/a.png'>\n\n---\n"
    refs = scan_article(article(text), Settings())
    assert [r.start for r in refs] == sorted(r.start for r in refs)


def test_text_after_an_inline_liquid_raw_tag_is_still_markdown():
    text = "{% raw %}{{ page.x }}{% endraw %} ![a](https://e.org/after.png)\n"
    assert urls(text) == ["https://e.org/after.png"]
    text = "![b](https://e.org/before.png) {% raw %}{{ x }}\n{% endraw %}\n"
    assert urls(text) == ["https://e.org/before.png"]
