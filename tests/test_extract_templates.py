"""Images inside Hugo shortcodes, Hexo tags and Jekyll includes: found, spans exact, rewritable."""

from __future__ import annotations

import pytest
from scanhelpers import scan, span_of

from mirror.records import Edit
from mirror.rewrite import apply_edits, context_around, escape_for

URL = "https://e.org/a.jpg"


@pytest.mark.parametrize(
    ("text", "field"),
    [
        # Hugo's built-in figure, named parameters, both delimiters, self-closing, multi-line
        (f'{{{{< figure src="{URL}" caption="c" >}}}}', "figure src"),
        (f'{{{{% figure src="{URL}" %}}}}', "figure src"),
        (f'{{{{<figure src="{URL}"/>}}}}', "figure src"),
        (f'{{{{< figure\n  src="{URL}"\n  lazy="false" >}}}}', "figure src"),
        (f"{{{{< figure src={URL} >}}}}", "figure src"),
        # theme shortcodes, positional or named
        (f'{{{{< img "{URL}" >}}}}', "img"),
        (f'{{{{< image src="{URL}" alt="x" >}}}}', "image src"),
        # Hexo / Octopress img tag: positional, class names and sizes around it
        (f"{{% img {URL} %}}", "img"),
        (f'{{% img left {URL} 300 200 \'"title" "alt"\' %}}', "img"),
        (f"{{%- img {URL} -%}}", "img"),
        (f"{{% img {URL}%}}", "img"),
        (f"{{% img {URL} '' %}}", "img"),
        # only the first URL-like word is the picture (Hexo): the rest are sizes and a title
        (f"{{% img {URL} 300 200 https://e.org/alt %}}", "img"),
        # `{{<img …>}}` reads as an <img> tag to HTML too: reported once, as the tag
        (f'{{{{<img src="{URL}">}}}}', "img src"),
        (f"{{{{<img src={URL}/>}}}}", "img src"),
        # Liquid strings with backslash escapes (Jekyll's include syntax, Nunjucks)
        (f"{{% img {URL} 'It\\'s here' %}}", "img"),
        # Jekyll includes named after a picture, the picture in a named parameter
        (f'{{% include image.html url="{URL}" description="d" %}}', "include image.html url"),
        (
            f'{{% include image.html url="{URL}" caption="a 5\\" screen" %}}',
            "include image.html url",
        ),
        (f'{{% include image.html url=\n  "{URL}" %}}', "include image.html url"),
        (
            f'{{% include figure image_path="{URL}" alt="a" caption="c" %}}',
            "include figure image_path",
        ),
        (f"{{% include figure.html\n  src='{URL}'\n  caption='c' %}}", "include figure.html src"),
        (f'{{% include_relative img.liquid image="{URL}" %}}', "include_relative img.liquid image"),
    ],
)
def test_image_tags_are_found_with_exact_spans(text, field):
    (ref,) = scan(text + "\n")
    assert (ref.kind, ref.syntax, ref.field, ref.url) == ("template-tag", "template", field, URL)
    assert (ref.start, ref.end) == span_of(text, URL)


@pytest.mark.parametrize(
    "text",
    [
        # not a picture: a figure's link, a video include, an include's variable, other tags
        f'{{{{< figure src="local.svg" link="{URL}" >}}}}',
        f'{{% include video.html url="{URL}" %}}',
        "{% include image.html url=page.image %}",
        f"{{% include image.html url={URL} %}}",  # unquoted: a variable to Liquid
        f'{{{{< youtube "{URL}" >}}}}',
        # Hugo's backtick raw string is a code span to Markdown, and code is left alone
        f"{{{{< figure src=`{URL}` >}}}}",
        f'{{% link "{URL}" %}}',
        # Hugo's comment form shows the shortcode as text; a closing tag has no parameters
        f'{{{{</* figure src="{URL}" */>}}}}',
        "{{< /figure >}}",
        # site files and template expressions are the site's own
        '{{< figure src="bundle/photo.jpg" >}}',
        '{{< figure src="/images/photo.jpg" >}}',
        '{% include image.html url="{{ site.baseurl }}/a.jpg" %}',
        # a tag that never closes is not a tag
        f'{{{{< figure src="{URL}"\n\nmore text',
        # in code or in a Liquid comment, nothing renders
        f'```\n{{{{< figure src="{URL}" >}}}}\n```',
        f'`{{{{< figure src="{URL}" >}}}}`',
        f'<!-- {{{{< figure src="{URL}" >}}}} -->',
        f"{{% raw %}}\n{{% img {URL} %}}\n{{% endraw %}}",
        f"{{% comment %}}\n{{% img {URL} %}}\n![a]({URL})\n{{% endcomment %}}",
    ],
)
def test_what_is_not_an_image_tag_is_not_reported(text):
    assert scan(text + "\n") == []


@pytest.mark.parametrize(
    "url",
    [
        "https://images.unsplash.com/photo-1?w=800&q=80",
        "https://cdn.x.org/a.jpg?x-oss-process=image/resize,w_800",
    ],
)
def test_bare_urls_with_query_strings_are_whole_words(url):
    for text in (f"{{% img {url} 300 %}}\n", f"{{{{< figure src={url} >}}}}\n"):
        (ref,) = scan(text)
        assert (ref.url, ref.raw) == (url, url)


def test_jekyll_picture_tag_is_not_a_default_and_its_link_is_not_a_picture():
    text = f"{{% picture hero {URL} --link https://e.org/page.html %}}\n"
    assert scan(text) == []  # it reads local files only: a URL never worked there
    assert [r.url for r in scan(text, template_tags=("picture",))] == [URL]


def test_only_the_configured_tag_names_count():
    text = f'{{{{< photo src="{URL}" >}}}}\n{{{{< figure src="{URL}" >}}}}\n'
    assert [r.field for r in scan(text)] == ["figure src"]
    assert [r.field for r in scan(text, template_tags=("photo",))] == ["photo src"]
    assert scan(text, template_tags=()) == []


def test_hugo_escapes_inside_quotes_are_decoded_and_the_span_keeps_them():
    text = '{{< figure src="https://e.org/a\\"b.jpg" >}}\n'
    (ref,) = scan(text)
    assert ref.raw == 'https://e.org/a\\"b.jpg'
    assert ref.url == 'https://e.org/a"b.jpg'  # httpx percent-encodes it on the wire


def test_a_closer_inside_a_quoted_parameter_does_not_end_the_tag():
    text = f'{{{{< figure caption="a >}}}} b" src="{URL}" >}}}}\n'
    (ref,) = scan(text)
    assert (ref.start, ref.end) == span_of(text, URL)


def test_front_matter_is_not_read_for_tags():
    text = f'---\nnote: "{{{{< figure src=\\"{URL}\\" >}}}}"\n---\nbody\n'
    assert scan(text) == []


def test_template_tags_and_the_images_around_them_are_all_reported_in_order():
    text = (
        "![a](https://e.org/1.jpg)\n\n"
        '{{< figure src="https://e.org/2.jpg" >}}\n\n'
        '<img src="https://e.org/3.jpg">\n\n'
        "{% img https://e.org/4.jpg %}\n"
    )
    assert [r.url.rsplit("/", 1)[1] for r in scan(text)] == ["1.jpg", "2.jpg", "3.jpg", "4.jpg"]


@pytest.mark.parametrize(
    "text",
    [
        f'{{{{< figure src="{URL}" >}}}}',
        f"{{{{< figure src={URL} >}}}}",
        f"{{% img {URL} 300 %}}",
        f"{{% include image.html url='{URL}' %}}",
    ],
)
@pytest.mark.parametrize(
    "local",
    [
        "/images/mirror/ab/cd/x.jpg",
        "/images/mirror/50% off/it's {x}.jpg",
        "/a=b/c.jpg",
        "https://cdn.example.org/mirror/x.jpg",
    ],
)
def test_a_rewritten_tag_reads_back_as_the_local_file(text, local):
    """What the rewriter writes into the span (a site-root path or URL: the only targets a
    template tag gets) parses back, through the same scanner, as the same parameter of the
    same tag, whose value is the local path (percent-encoded if need be)."""
    text += "\n"
    (ref,) = scan(text)
    context = context_around(text, ref.start, ref.end, ref.syntax, ref.field)
    new = escape_for(ref.syntax, local, context)
    rewritten = apply_edits(text, [Edit(ref.start, ref.end, ref.raw, new)])
    assert rewritten.replace(new, ref.raw) == text  # nothing else changed
    from urllib.parse import unquote

    from harvester.extract.templates import tag_images

    names = frozenset({"figure", "img", "image"})
    (image,) = [i for i in tag_images(rewritten, 0, names) if i.start == ref.start]
    assert (image.field, unquote(image.value)) == (ref.field, local)


@pytest.mark.parametrize(
    "unit",
    [
        "{% img ",
        "{{< figure src=",
        '{% img "',
        "{% img a=b ",
        '{{< img `"\\"',
        '{{< figure src="x\\"',
    ],
)
def test_a_post_full_of_unclosed_tags_costs_work_in_proportion_to_its_length(unit, monkeypatch):
    """Each unclosed tag is given up at the next tag's opener, so doubling such a post doubles
    the values read (counted, not timed): before that, a 200 KB post took 46 s to scan."""
    from harvester.extract import templates

    calls = 0
    real = templates._value

    def counted(*args, **kwargs):
        nonlocal calls
        calls += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(templates, "_value", counted)
    work = []
    for count in (1_000, 2_000):
        calls = 0
        assert list(templates.tag_images(unit * count, 0, frozenset({"figure", "img"}))) == []
        work.append(calls)
    assert work[1] <= 2 * work[0] + 2


def test_html_inside_an_image_shortcode_is_the_shortcode_but_a_caption_image_stays():
    """`{{<img src=… srcset=…>}}` reads as an <img> to the HTML scanner: none of that is
    reported (the tag is what Hugo reads; half of it rewritten would be worse). A Markdown
    image in a figure's caption is Markdown Hugo renders, and stays reported."""
    text = (
        f'{{{{<img src="{URL}" srcset="https://e.org/b.jpg 2x">}}}}\n\n'
        '{{< figure src="https://e.org/c.jpg" caption="see ![d](https://e.org/d.jpg)" >}}\n'
    )
    refs = scan(text)
    assert [(r.kind, r.url.rsplit("/", 1)[1]) for r in refs] == [
        ("template-tag", "a.jpg"),
        ("template-tag", "c.jpg"),
        ("markdown-inline", "d.jpg"),
    ]


def test_a_class_word_with_a_colon_is_not_the_picture():
    # Hexo's URL test wants a 3-9 letter scheme: `md:float-left` is a CSS class
    (ref,) = scan(f"{{% img md:float-left {URL} %}}\n")
    assert ref.url == URL


def test_liquid_unescapes_quotes_only_as_jekyll_does():
    (ref,) = scan('{% include image.html url="https://e.org/a\\\\b\\"c.jpg" %}\n')
    assert ref.url == 'https://e.org/a\\\\b"c.jpg'
