"""Image-proxy unwrapping, random placeholders and per-host Referer overrides, table-tested."""

from __future__ import annotations

import pytest

from harvester.quirks import (
    DEFAULT_REFERER_OVERRIDES,
    NO_REFERER,
    UrlPlan,
    is_random_placeholder,
    merge_overrides,
    plan_url,
    unwrap_proxy,
    unwrap_proxy_detail,
)
from harvester.referrer import find_override

# (wrapper URL as found in an article, the original image URL or None)
UNWRAP_CASES = [
    # weserv / wsrv: `url` may lack a scheme (→ https) or use the old `ssl:` prefix
    ("https://images.weserv.nl/?url=example.com/a.jpg", "https://example.com/a.jpg"),
    (
        "https://images.weserv.nl/?url=ssl:example.com/a.jpg&w=300&h=200",
        "https://example.com/a.jpg",
    ),
    ("https://wsrv.nl/?url=http://example.com/b.png&output=webp", "http://example.com/b.png"),
    (
        "https://wsrv.nl/?url=https%3A%2F%2Fcdn.example.com%2Fp%2Fc.jpg%3Fv%3D2",
        "https://cdn.example.com/p/c.jpg?v=2",
    ),
    ("//images.weserv.nl/?url=example.com/a.jpg", None),  # not absolute: the scanner resolves
    (
        "https://images.weserv.nl/?url=images.weserv.nl/?url=ssl:example.com/n.jpg",
        "https://example.com/n.jpg",
    ),
    # Jetpack Photon: the query is resizing only; ssl=1 means the origin is https
    (
        "https://i0.wp.com/example.com/wp-content/uploads/a.jpg",
        "http://example.com/wp-content/uploads/a.jpg",
    ),
    (
        "https://i2.wp.com/example.com/wp-content/uploads/a.jpg?resize=640%2C480&ssl=1",
        "https://example.com/wp-content/uploads/a.jpg",
    ),
    (
        "https://i3.wp.com/blog.example.org/img/x.png?w=300&quality=80",
        "http://blog.example.org/img/x.png",
    ),
    ("http://i1.wp.com/example.com:8080/a.gif?ssl=1", "https://example.com:8080/a.gif"),
    # DuckDuckGo's image proxy
    (
        "https://proxy.duckduckgo.com/iu/?u=https%3A%2F%2Fexample.com%2Fa.jpg&f=1",
        "https://example.com/a.jpg",
    ),
    (
        "https://external-content.duckduckgo.com/iu/?u=http%3A%2F%2Fexample.com%2Fb.jpg&f=1&nofb=1",
        "http://example.com/b.jpg",
    ),
    # CORS relays on Cloudflare workers and friends
    ("https://relay.alice.workers.dev/?https://example.com/a.jpg", "https://example.com/a.jpg"),
    (
        "https://relay.alice.workers.dev/?https://example.com/a.jpg?x=1&y=2",
        "https://example.com/a.jpg?x=1&y=2",
    ),
    (
        "https://cors.bob.workers.dev/?https%3A%2F%2Fexample.com%2Fq.jpg",
        "https://example.com/q.jpg",
    ),
    (
        "https://relay.alice.workers.dev/?url=https%3A%2F%2Fexample.com%2Fa.jpg",
        "https://example.com/a.jpg",
    ),
    ("https://cors-anywhere.herokuapp.com/https://example.com/a.jpg", "https://example.com/a.jpg"),
    ("https://corsproxy.io/?https://example.com/c.webp", "https://example.com/c.webp"),
    ("https://api.allorigins.win/raw?url=https://example.com/d.png", "https://example.com/d.png"),
    # a relay wrapping weserv: both layers peeled
    (
        "https://relay.alice.workers.dev/?https://wsrv.nl/?url=example.com/deep.jpg",
        "https://example.com/deep.jpg",
    ),
    # negative cases: nothing to unwrap
    ("https://example.com/a.jpg", None),
    ("https://example.com/?url=https://other.example/a.jpg", None),  # not a known proxy
    ("https://images.weserv.nl/?w=300&h=200", None),  # weserv without url
    ("https://images.weserv.nl/?url=", None),
    ("https://wsrv.nl/?url=ftp://example.com/a.jpg", None),  # not a web URL
    ("https://i0.wp.com/", None),
    ("https://i0.wp.com/notahost/a.jpg", None),  # first segment is not a host name
    ("https://i0.wp.com/example.com", None),  # host but no path
    ("https://s0.wp.com/wp-content/themes/a.png", None),  # a wp.com host that is not Photon
    ("https://i4.wp.com/example.com/a.jpg", None),  # Photon only has i0–i3
    ("https://proxy.duckduckgo.com/?q=cats", None),
    ("https://relay.alice.workers.dev/api/status", None),  # a worker that is no relay shape
    ("data:image/png;base64,AAAA", None),
    ("not a url", None),
]


@pytest.mark.parametrize(("wrapper", "original"), UNWRAP_CASES)
def test_unwrap_proxy(wrapper, original):
    assert unwrap_proxy(wrapper) == original


def test_unwrap_table_is_big_enough_and_has_negatives():
    assert len(UNWRAP_CASES) >= 15
    assert sum(1 for _, original in UNWRAP_CASES if original is None) >= 5


def test_unwrap_detail_names_each_layer():
    detail = unwrap_proxy_detail(
        "https://images.weserv.nl/?url=i0.wp.com/example.com/a.jpg%3Fssl%3D1&w=100"
    )
    assert detail is not None
    assert detail.services == ("weserv", "photon")
    assert detail.original == "https://example.com/a.jpg"
    assert detail.wrapper.startswith("https://images.weserv.nl/")


def test_unwrap_stops_at_a_bounded_depth():
    url = "example.com/a.jpg"
    for _ in range(20):
        url = "images.weserv.nl/?url=" + url.replace("?", "%3F").replace("=", "%3D")
    detail = unwrap_proxy_detail("https://" + url)
    assert detail is not None
    assert len(detail.services) == 5  # never loops forever on a hostile chain
    assert detail.original.startswith("https://images.weserv.nl/")


PLACEHOLDER_CASES = [
    ("https://picsum.photos/200/300", True),  # no id: a different photo each time
    ("https://picsum.photos/200", True),
    ("https://picsum.photos/200/300.jpg", True),
    ("https://picsum.photos/200/300?random=1", True),
    ("https://picsum.photos/200/300?grayscale&blur=2", True),
    ("https://picsum.photos/g/200/300", True),
    ("https://unsplash.it/400/300", True),
    ("https://picsum.photos/id/237/200/300", False),
    ("https://picsum.photos/seed/abc/200/300", False),
    ("https://picsum.photos/id/237/200/300?random=2", False),
    ("https://picsum.photos/200/300?image=0", False),  # legacy fixed id
    ("https://fastly.picsum.photos/id/237/200/300.jpg?hmac=abc", False),
    ("https://picsum.photos/v2/list", False),  # the API, not an image
    ("https://source.unsplash.com/random", True),
    ("https://source.unsplash.com/random/800x600", True),
    ("https://source.unsplash.com/1600x900/?nature,water", True),
    ("https://source.unsplash.com/featured/?cats", True),
    ("https://source.unsplash.com/user/erondu", True),
    ("https://source.unsplash.com/500×200/?sunset", True),  # "500&#215;200" in a real post
    ("https://source.unsplash.com/WLUHO9A_xik/1600x900", False),  # one photo
    ("https://loremflickr.com/320/240/dog", True),
    ("https://loremflickr.com/320/240?lock=12", False),
    ("https://loremflickr.com/cache/resized/65535_1_320_240.jpg", False),
    ("https://placeimg.com/640/480/any", True),
    ("http://lorempixel.com/400/200/sports", True),
    ("http://lorempixel.com/400/200/sports/3", False),
    ("https://placehold.co/600x400", False),
    ("https://via.placeholder.com/150", False),
    ("https://dummyimage.com/300x200/000/fff", False),
    ("https://example.com/random/200/300", False),
    ("https://images.unsplash.com/photo-1503023345310-bd7c1de61c7d", False),
]


@pytest.mark.parametrize(("url", "random"), PLACEHOLDER_CASES)
def test_is_random_placeholder(url, random):
    assert is_random_placeholder(url) is random


def test_default_referer_overrides_are_well_formed():
    # Every default is a URL or the no-referer marker; weibo's is the one the issue names.
    assert DEFAULT_REFERER_OVERRIDES["*.sinaimg.cn"] == "https://weibo.com/"
    for pattern, value in DEFAULT_REFERER_OVERRIDES.items():
        assert pattern == pattern.lower()
        assert value == NO_REFERER or value.startswith("https://"), pattern
    # Merging the defaults with nothing keeps them all (and validates them).
    assert merge_overrides(DEFAULT_REFERER_OVERRIDES, {}) == DEFAULT_REFERER_OVERRIDES


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://wx1.sinaimg.cn/large/abc.jpg",
            "https://weibo.com/",
        ),
        ("https://tvax3.sinaimg.cn/a.jpg", "https://weibo.com/"),
        (
            "https://i0.hdslb.com/bfs/a.jpg",
            "https://www.bilibili.com/",
        ),
        (
            "https://mmbiz.qpic.cn/mmbiz_jpg/x/640?wx_fmt=jpeg",
            "no-referrer",
        ),
        ("https://pic1.zhimg.com/v2-abc.jpg", "no-referrer"),
        ("https://WX2.SINAIMG.CN/a.jpg", "https://weibo.com/"),
        ("https://sinaimg.cn/a.jpg", None),  # the glob is for subdomains
        ("https://example.com/a.jpg", None),
        ("https://notsinaimg.cn/a.jpg", None),
    ],
)
def test_referer_override_defaults(url, expected):
    assert find_override(url, DEFAULT_REFERER_OVERRIDES) == expected


def test_user_overrides_win_and_empty_disables_a_default():
    merged = merge_overrides(
        DEFAULT_REFERER_OVERRIDES,
        {
            "*.sinaimg.cn": "",  # disable: the page's own policy applies again
            "*.hdslb.com": "https://space.bilibili.com/",  # replace
            "IMG.Example.org": "none",  # a synonym for no-referrer
            "*.cdn.example.net": "https://example.net/",
        },
    )
    assert find_override("https://wx1.sinaimg.cn/a.jpg", merged) is None
    assert find_override("https://i0.hdslb.com/a.jpg", merged) == "https://space.bilibili.com/"
    assert find_override("https://img.example.org/a.jpg", merged) == "no-referrer"
    assert find_override("https://a.cdn.example.net/x", merged) == "https://example.net/"
    # the defaults table itself is not modified
    assert DEFAULT_REFERER_OVERRIDES["*.sinaimg.cn"] == "https://weibo.com/"


def test_exact_host_beats_glob_and_longer_glob_beats_shorter():
    overrides = {
        "*.example.com": "https://a.example/",
        "*.img.example.com": "https://b.example/",
        "x.img.example.com": "https://c.example/",
    }
    assert find_override("https://x.img.example.com/p", overrides) == "https://c.example/"
    assert find_override("https://y.img.example.com/p", overrides) == "https://b.example/"
    assert find_override("https://www.example.com/p", overrides) == "https://a.example/"


@pytest.mark.parametrize("bad", ["weibo.com", "ftp://weibo.com/", "javascript:alert(1)"])
def test_merge_overrides_rejects_values_that_are_not_urls(bad):
    with pytest.raises(ValueError, match=r"\*\.sinaimg\.cn"):
        merge_overrides({}, {"*.sinaimg.cn": bad})


def test_plan_url_orders_original_before_wrapper():
    wrapper = "https://i1.wp.com/example.com/a.jpg?w=300&ssl=1"
    plan = plan_url(wrapper)
    assert plan == UrlPlan(
        url=wrapper, candidates=("https://example.com/a.jpg", wrapper), services=("photon",)
    )
    assert plan.unwrapped == "https://example.com/a.jpg"


def test_plan_url_plain_and_placeholder():
    assert plan_url("https://example.com/a.jpg") == UrlPlan(
        url="https://example.com/a.jpg", candidates=("https://example.com/a.jpg",)
    )
    assert plan_url("https://example.com/a.jpg").unwrapped is None
    skipped = plan_url("https://picsum.photos/200/300")
    assert skipped.skip_reason == "placeholder"
    assert skipped.candidates == ()
    # a random placeholder behind a proxy is still a random placeholder
    hidden = plan_url("https://wsrv.nl/?url=picsum.photos/200/300&w=100")
    assert hidden.skip_reason == "placeholder"
    assert hidden.services == ("weserv",)
    # the skip can be turned off (config), then the placeholder is fetched like any image
    assert plan_url("https://picsum.photos/200/300", skip_placeholders=False).candidates == (
        "https://picsum.photos/200/300",
    )
