"""Properties of load + scan on generated input: spans slice to raw, nothing crashes."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from harvester.articles import encode_article, load_article
from harvester.errors import ArticleError
from harvester.extract import scan_article
from harvester.settings import Settings

# Pieces of Markdown, HTML, Liquid and front matter that interact: fences, code spans,
# comments, tags, attribute quotes, image syntax, entities, newlines, indentation.
FRAGMENTS = [
    "![", "](", ")", "[", "]", "]:", "![a][l]", "[l]: ", "<", ">", "<>", '"', "'", "(", "\\",
    "`", "``", "```", "~~~", "    ", "\t", "\n", "\r\n", "\n\n", "> ", "- ", "1. ", "# ",
    "<!--", "-->", "<img ", "src=", "srcset=", "data-src=", " 2x, ", "<pre>", "</pre>",
    "<code>", "</code>", "<script>", "</script>", "<picture>", "<source srcset=", "</picture>",
    "<noscript>", "</noscript>", 'style="background:url(', "&amp;", "&quot;", "&#x27;",
    "{% raw %}", "{% endraw %}", "{% highlight %}", "{% endhighlight %}", "---\n", "+++\n",
    "headimg: ", "cover:\n  image: ", "title: x\n", "https://e.org/a.png", "//cdn.e.org/b.jpg",
    "http://e.org/c?x=1&y=2#f", "data:image/png;base64,AA==", "/local.png", "图片", "é",
    "<meta name=referrer content=no-referrer>", "<base href=https://o.example/p/>",
    "referrerpolicy=origin ", "{", '"image": ', "}", "[[", "]]", "=",
    "{{<", "{{%", ">}}", "%}}", "{%", "%}", " figure ", " img ", " include image.html ", "`",
    "{% comment %}", "{% endcomment %}", '\\"', "src=", "url=",
]  # fmt: skip

# Whole constructs, so that most generated documents do contain references to check.
CONSTRUCTS = [
    "![a](https://e.org/a.png)", "![a](<https://e.org/a b.png> 't')", "[l]: https://e.org/l.png",
    "<img src='https://e.org/i.png'>", '<img srcset="https://e.org/1.png 1x, //e.org/2.png 2x">',
    "<img data-src=https://e.org/d.png>", '<p style="background:url(https://e.org/s.png)">',
    "---\nheadimg: https://e.org/h.png\n---\n", "\n\n", "\n",
    '{{< figure src="https://e.org/f.png" >}}', "{% img left https://e.org/t.png 30 %}",
    "{% include image.html url='https://e.org/j.png' %}",
]  # fmt: skip

documents = st.lists(
    st.one_of(st.sampled_from(FRAGMENTS), st.sampled_from(CONSTRUCTS), st.text(max_size=8)),
    max_size=60,
).map("".join)


def _check(text: str, name: str = "post.md", **options) -> None:
    data = text.encode("utf-8", "surrogatepass")
    try:
        art = load_article(Path(name), data)
    except ArticleError as exc:
        assert exc.reason in ("binary", "bad-encoding")
        return
    assert encode_article(art, art.text) == data
    for ref in scan_article(art, Settings(**options)):
        assert ref.raw == art.text[ref.start : ref.end]
        assert 0 <= ref.start < ref.end <= len(art.text)
        assert ref.url.startswith(("http://", "https://")) and "#" not in ref.url
        if ref.kind != "front-matter":
            assert not art.is_protected(ref.start, ref.end)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_markdown_documents_spans_slice_to_raw(text):
    _check(text)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_html_documents_spans_slice_to_raw(text):
    _check(text, name="page.html", site_url="https://me.example/")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_any_text_never_crashes(text):
    _check(text.replace("\x00", ""))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_load_or_raise_an_article_error(data):
    try:
        art = load_article(Path("x.md"), data)
    except ArticleError as exc:
        assert exc.reason in ("binary", "bad-encoding")
    else:
        assert encode_article(art, art.text) == data
        scan_article(art, Settings())


words = st.text(alphabet="abcdefghij ", min_size=1, max_size=30).map(str.strip).filter(bool)
paragraphs = st.lists(words, max_size=4).map(lambda ws: "\n\n".join(ws))
url_paths = st.text(alphabet="abcXYZ019-_.~/%=&?", max_size=20)


@settings(max_examples=200, deadline=None)
@given(paragraphs, words, url_paths, paragraphs)
def test_an_image_placed_anywhere_in_prose_is_found_at_its_exact_span(before, alt, path, after):
    url = f"https://img.example/{path}"
    image = f"![{alt}]({url})"
    text = f"{before}\n\n{image}\n\n{after}\n" if before else f"{image}\n\n{after}\n"
    art = load_article(Path("p.md"), text.encode())
    (ref,) = scan_article(art, Settings())
    assert ref.start == text.index(image) + len(alt) + 4
    assert ref.raw == url and ref.url == url.split("#")[0]


NEW_URL = "https://new.example/x.png"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_replacing_every_span_gives_the_same_references_to_the_new_url(text):
    """What the rewriter relies on: a span is exactly the URL, nothing more, nothing less."""
    data = text.encode("utf-8", "surrogatepass")
    try:
        art = load_article(Path("post.md"), data)
    except ArticleError:
        return
    refs = scan_article(art, Settings())
    new_text = art.text
    for ref in sorted(refs, key=lambda r: r.start, reverse=True):
        new_text = new_text[: ref.start] + NEW_URL + new_text[ref.end :]
    again = scan_article(load_article(Path("post.md"), new_text.encode()), Settings())
    assert [(r.kind, r.field, r.url) for r in again] == [(r.kind, r.field, NEW_URL) for r in refs]


# Differential check against markdown-it's own rendering: for Markdown without raw HTML, the
# images the renderer emits are exactly the Markdown images the scan reports.
MD_FRAGMENTS = [
    "![", "](", ")", "[", "]", "]:", "(", "\\", "`", "``", "```", "~~~", "    ", "\n", "\n\n",
    "> ", "- ", "1. ", "# ", "*", "_", " ", "a", "![a](https://e.org/a.png)", "[l]",
    "![a][l]", "![l]", "[l]: https://e.org/l.png", "[l]: <https://e.org/l b.png>", '"t"',
    "https://e.org/x.png", "//cdn.e.org/b.jpg", "&amp;", "#f", "\t", "===", "---",
]  # fmt: skip


MD_BLOCKS = [
    "![a][l]", "![L]", "[l]: https://e.org/l.png", "[L]: https://e.org/second.png",
    "![b](https://e.org/b.png)", "> ![q](https://e.org/q.png)", "```\n![c](https://e.org/c.png)\n```",
    "    ![i](https://e.org/i.png)", "`![s](https://e.org/s.png)`", "- ![li](https://e.org/li.png)",
    "[![in](https://e.org/in.png)](https://e.org/)", "![![alt](https://e.org/alt.png)](https://e.org/o.png)",
]  # fmt: skip
md_documents = st.lists(
    st.one_of(
        st.sampled_from(MD_BLOCKS),
        st.lists(st.sampled_from(MD_FRAGMENTS), max_size=15).map("".join),
    ),
    max_size=8,
).map(lambda blocks: "\n\n".join(blocks))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(md_documents)
def test_markdown_images_match_what_markdown_it_renders(text):
    import html.parser

    from markdown_it import MarkdownIt

    from harvester.extract.urls import resolve

    md = MarkdownIt("commonmark")

    class Images(html.parser.HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.found: set[str] = set()

        def handle_starttag(self, tag, attrs):
            if tag == "img":
                self.found.add(dict(attrs)["src"])

    art = load_article(Path("p.md"), text.encode())
    assume(art.front_matter is None)  # markdown-it alone would render front matter as Markdown
    parser = Images()
    parser.feed(md.render(text))
    rendered = {u for u in (resolve(s, None) for s in parser.found) if u}
    scanned = {resolve(md.normalizeLink(r.url), None) for r in scan_article(art, Settings())}
    assert scanned == rendered


HTML_BLOCKS = [
    "<div>\n<img src='https://e.org/div.png'>\n</div>",
    "<p>a <img src=\"https://e.org/p.png\"> b</p>",
    "<pre>\n<img src='https://e.org/pre.png'>\n</pre>",
    "<code><img src='https://e.org/code.png'></code>",
    "<!-- <img src='https://e.org/comment.png'> -->", "<!--\n\n![c](https://e.org/c.png)\n\n-->",
    "<script>var s = '<img src=\"https://e.org/js.png\">';</script>",
    "text <img src=//e.org/inline.png> text", "<textarea>\n<img src='https://e.org/t.png'>\n</textarea>",
    "<pre>\n\n![p](https://e.org/mdpre.png)\n\n</pre>", "<span>\n![s](https://e.org/span.png)\n</span>",
]  # fmt: skip
mixed_documents = st.lists(
    st.one_of(
        st.sampled_from(HTML_BLOCKS),
        st.sampled_from(MD_BLOCKS),
        st.lists(st.sampled_from(MD_FRAGMENTS), max_size=10).map("".join),
    ),
    max_size=8,
).map(lambda blocks: "\n\n".join(blocks))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mixed_documents)
def test_images_match_a_browser_reading_of_markdown_its_html_output(text):
    """Render with markdown-it, read the HTML as a browser would (no images in comments,
    <pre>, <code>, <script>, <textarea>): those are the images the scan must report."""
    import html.parser

    from markdown_it import MarkdownIt

    from harvester.extract.urls import resolve

    md = MarkdownIt("commonmark")
    art = load_article(Path("p.md"), text.encode())
    assume(art.front_matter is None)

    class Browser(html.parser.HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.found: set[str] = set()
            self.depth = 0

        def handle_starttag(self, tag, attrs):
            if tag in ("pre", "code", "script", "style", "textarea"):
                self.depth += 1
            elif tag == "img" and not self.depth:
                self.found.add(dict(attrs)["src"])

        def handle_endtag(self, tag):
            if tag in ("pre", "code", "script", "style", "textarea") and self.depth:
                self.depth -= 1

    browser = Browser()
    browser.feed(md.render(text))
    browser.close()
    rendered = {u for u in (resolve(s, None) for s in browser.found) if u}
    scanned = {resolve(md.normalizeLink(r.url), None) for r in scan_article(art, Settings())}
    assert scanned == rendered
