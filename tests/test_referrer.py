"""The Referer harvester sends, checked branch by branch against the W3C Referrer Policy spec.

Every scenario row names the spec step it exercises (§8.3 Determine request's referrer,
§8.4 Strip url for use as a referrer, Secure Contexts §3.1, HTML §4.2.5.1 meta referrer).
"""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harvester.referrer import (
    DEFAULT_POLICY,
    POLICIES,
    apply_override,
    check_overrides,
    effective_policy,
    find_override,
    is_potentially_trustworthy,
    last_meta_policy,
    parse_meta_referrer,
    parse_policy_attribute,
    referrer_for,
    same_origin,
    strip_url_for_referrer,
)

PAGE = "https://blog.example/posts/2024/hello.html?lang=en#comments"
PAGE_FULL = "https://blog.example/posts/2024/hello.html?lang=en"  # stripped: no fragment
PAGE_ORIGIN = "https://blog.example/"
SAME = "https://blog.example/images/cat.png"
CROSS = "https://cdn.example.net/cat.png"
DOWN = "http://cdn.example.net/cat.png"  # https page -> http image: a downgrade
HTTP_PAGE = "http://blog.example/p/1"

LONG_PATH = "/" + "a" * 4100  # serialized page URL longer than 4096 characters
LONG_PAGE = "https://blog.example" + LONG_PATH
LONG_PAGE_4096 = "https://blog.example/" + "b" * (4096 - len("https://blog.example/"))

SCENARIOS = [
    # (spec step, policy, page URL, image URL, expected Referer)
    # --- no-referrer
    ("§8.3 no-referrer: same origin", "no-referrer", PAGE, SAME, None),
    ("§8.3 no-referrer: cross origin", "no-referrer", PAGE, CROSS, None),
    ("§8.3 no-referrer: downgrade", "no-referrer", PAGE, DOWN, None),
    # --- no-referrer-when-downgrade
    ("§8.3 nrwd.2: same origin, full URL", "no-referrer-when-downgrade", PAGE, SAME, PAGE_FULL),
    (
        "§8.3 nrwd.2: cross origin https, full URL",
        "no-referrer-when-downgrade",
        PAGE,
        CROSS,
        PAGE_FULL,
    ),
    ("§8.3 nrwd.1: https page -> http image, none", "no-referrer-when-downgrade", PAGE, DOWN, None),
    (
        "§8.3 nrwd.2: http page -> http image is no downgrade",
        "no-referrer-when-downgrade",
        HTTP_PAGE,
        DOWN,
        HTTP_PAGE,
    ),
    # --- same-origin
    ("§8.3 same-origin.1: same origin, full URL", "same-origin", PAGE, SAME, PAGE_FULL),
    ("§8.3 same-origin.2: cross origin, none", "same-origin", PAGE, CROSS, None),
    ("§8.3 same-origin.2: downgrade is cross origin, none", "same-origin", PAGE, DOWN, None),
    (
        "§8.3 same-origin.2: same host, other scheme is cross origin",
        "same-origin",
        PAGE,
        "http://blog.example/images/cat.png",
        None,
    ),
    (
        "§8.3 same-origin.2: same host, other port is cross origin",
        "same-origin",
        PAGE,
        "https://blog.example:8443/images/cat.png",
        None,
    ),
    # --- origin
    ("§8.3 origin: same origin, origin only", "origin", PAGE, SAME, PAGE_ORIGIN),
    ("§8.3 origin: cross origin, origin", "origin", PAGE, CROSS, PAGE_ORIGIN),
    ("§8.3 origin: even on downgrade", "origin", PAGE, DOWN, PAGE_ORIGIN),
    # --- strict-origin
    ("§8.3 strict-origin.2: same origin, origin only", "strict-origin", PAGE, SAME, PAGE_ORIGIN),
    ("§8.3 strict-origin.2: cross origin", "strict-origin", PAGE, CROSS, PAGE_ORIGIN),
    ("§8.3 strict-origin.1: downgrade, none", "strict-origin", PAGE, DOWN, None),
    (
        "§8.3 strict-origin.2: http page -> http image",
        "strict-origin",
        HTTP_PAGE,
        DOWN,
        "http://blog.example/",
    ),
    # --- origin-when-cross-origin
    ("§8.3 owco.1: same origin, full URL", "origin-when-cross-origin", PAGE, SAME, PAGE_FULL),
    ("§8.3 owco.2: cross origin, origin", "origin-when-cross-origin", PAGE, CROSS, PAGE_ORIGIN),
    (
        "§8.3 owco.2: downgrade still sends the origin",
        "origin-when-cross-origin",
        PAGE,
        DOWN,
        PAGE_ORIGIN,
    ),
    # --- strict-origin-when-cross-origin (the default)
    (
        "§8.3 socwo.1: same origin, full URL",
        "strict-origin-when-cross-origin",
        PAGE,
        SAME,
        PAGE_FULL,
    ),
    (
        "§8.3 socwo.3: cross origin, origin",
        "strict-origin-when-cross-origin",
        PAGE,
        CROSS,
        PAGE_ORIGIN,
    ),
    ("§8.3 socwo.2: downgrade, none", "strict-origin-when-cross-origin", PAGE, DOWN, None),
    (
        "§3 default policy (None) is strict-origin-when-cross-origin: cross origin",
        None,
        PAGE,
        CROSS,
        PAGE_ORIGIN,
    ),
    ("§3 default policy ('') on same origin gives the full URL", "", PAGE, SAME, PAGE_FULL),
    ("§3 default policy on downgrade gives none", None, PAGE, DOWN, None),
    # --- unsafe-url
    ("§8.3 unsafe-url: same origin", "unsafe-url", PAGE, SAME, PAGE_FULL),
    ("§8.3 unsafe-url: cross origin, full URL", "unsafe-url", PAGE, CROSS, PAGE_FULL),
    ("§8.3 unsafe-url: downgrade, full URL", "unsafe-url", PAGE, DOWN, PAGE_FULL),
    # --- §8.4 strip url for use as a referrer
    (
        "§8.4 steps 3-5: userinfo and fragment stripped",
        "unsafe-url",
        "https://alice:s3cret@blog.example/p?q=1#frag",
        CROSS,
        "https://blog.example/p?q=1",
    ),
    (
        "§8.4 steps 3-4: username only",
        "unsafe-url",
        "https://alice@blog.example/p",
        CROSS,
        "https://blog.example/p",
    ),
    (
        "§8.4 step 6: origin-only drops userinfo, path and query",
        "origin",
        "https://alice:pw@blog.example/p?q=1#f",
        CROSS,
        "https://blog.example/",
    ),
    (
        "§8.4: empty fragment marker dropped too",
        "unsafe-url",
        "https://blog.example/p#",
        CROSS,
        "https://blog.example/p",
    ),
    # --- §8.3 step 6: the 4096-character rule
    ("§8.3 step 6: unsafe-url, long URL -> origin", "unsafe-url", LONG_PAGE, CROSS, PAGE_ORIGIN),
    (
        "§8.3 step 6: nrwd, long URL -> origin",
        "no-referrer-when-downgrade",
        LONG_PAGE,
        CROSS,
        PAGE_ORIGIN,
    ),
    (
        "§8.3 step 6: socwo same origin, long URL -> origin",
        "strict-origin-when-cross-origin",
        LONG_PAGE,
        SAME,
        PAGE_ORIGIN,
    ),
    (
        "§8.3 step 6: owco same origin, long URL -> origin",
        "origin-when-cross-origin",
        LONG_PAGE,
        SAME,
        PAGE_ORIGIN,
    ),
    (
        "§8.3 step 6: exactly 4096 characters is kept",
        "unsafe-url",
        LONG_PAGE_4096,
        CROSS,
        LONG_PAGE_4096,
    ),
    (
        "§8.3 step 6: measured after stripping the fragment",
        "unsafe-url",
        LONG_PAGE_4096 + "#" + "f" * 100,
        CROSS,
        LONG_PAGE_4096,
    ),
    (
        "§8.3 step 6: nrwd long URL on downgrade is still none",
        "no-referrer-when-downgrade",
        LONG_PAGE,
        DOWN,
        None,
    ),
    # --- origins: default ports, case, IDNA, IPv6 (URL Standard)
    (
        "URL: :443 is https's default port, same origin",
        "same-origin",
        "https://blog.example:443/p",
        "https://blog.example/i.png",
        "https://blog.example/p",
    ),
    (
        "URL: :80 is http's default port, dropped from the origin",
        "origin",
        "http://blog.example:80/p",
        "http://cdn.example/i.png",
        "http://blog.example/",
    ),
    (
        "URL: a non-default port is kept in the origin",
        "origin",
        "https://blog.example:8443/p",
        CROSS,
        "https://blog.example:8443/",
    ),
    (
        "URL: host case and scheme case do not matter",
        "same-origin",
        "HTTPS://Blog.EXAMPLE/p",
        "https://blog.example/i.png",
        "https://blog.example/p",
    ),
    (
        "URL: IDN host serialized as punycode",
        "origin",
        "https://bücher.example/p",
        CROSS,
        "https://xn--bcher-kva.example/",
    ),
    (
        "URL: IDN and punycode forms are the same origin",
        "same-origin",
        "https://bücher.example/p",
        "https://xn--bcher-kva.example/i.png",
        "https://xn--bcher-kva.example/p",
    ),
    (
        "URL: IPv6 literal origin, compressed",
        "origin",
        "https://[2001:db8:0:0:0:0:0:1]:8443/p",
        CROSS,
        "https://[2001:db8::1]:8443/",
    ),
    (
        "URL: IPv6 spellings compare as one origin",
        "same-origin",
        "http://[0:0::1]/p",
        "http://[::1]/i.png",
        "http://[::1]/p",
    ),
    # --- Secure Contexts §3.1: potentially trustworthy origins
    (
        "SC §3.1 step 5: https page -> http://localhost is no downgrade",
        "strict-origin",
        PAGE,
        "http://localhost:8000/i.png",
        PAGE_ORIGIN,
    ),
    (
        "SC §3.1 step 5: *.localhost is trustworthy",
        "no-referrer-when-downgrade",
        PAGE,
        "http://img.localhost/i.png",
        PAGE_FULL,
    ),
    (
        "SC §3.1 step 4: 127.0.0.0/8 is trustworthy",
        "no-referrer-when-downgrade",
        PAGE,
        "http://127.8.9.10/i.png",
        PAGE_FULL,
    ),
    (
        "SC §3.1 step 4: ::1 is trustworthy",
        "strict-origin-when-cross-origin",
        PAGE,
        "http://[::1]:8080/i.png",
        PAGE_ORIGIN,
    ),
    (
        "SC §3.1: another private address is not trustworthy",
        "strict-origin",
        PAGE,
        "http://10.0.0.1/i.png",
        None,
    ),
    (
        "SC §3.1: http localhost page -> http host is a downgrade",
        "no-referrer-when-downgrade",
        "http://localhost:4000/p",
        "http://cdn.example/i.png",
        None,
    ),
    # --- §8.3 step 3 / §8.4 steps 1-2: no usable referrer source
    ("§8.4 step 1: no page URL", "unsafe-url", None, CROSS, None),
    ("§8.4 step 1: empty page URL", "unsafe-url", "", CROSS, None),
    ("§8.4 step 2: data: page", "unsafe-url", "data:text/html,<img src=x>", CROSS, None),
    ("harvester: file: page sends nothing", "unsafe-url", "file:///home/me/post.md", CROSS, None),
    ("harvester: about:blank page sends nothing", "unsafe-url", "about:blank", CROSS, None),
    (
        "harvester: unparsable page URL (bad port)",
        "unsafe-url",
        "https://blog.example:99999/",
        CROSS,
        None,
    ),
    # --- the request's current URL
    (
        "harvester: a data: image makes no HTTP request",
        "unsafe-url",
        PAGE,
        "data:image/png;base64,AAAA",
        None,
    ),
    (
        "harvester: relative image URL resolves against the page",
        "same-origin",
        PAGE,
        "../img/cat.png",
        PAGE_FULL,
    ),
    (
        "harvester: protocol-relative image URL takes the page scheme",
        "strict-origin",
        PAGE,
        "//cdn.example.net/x.png",
        PAGE_ORIGIN,
    ),
    ("harvester: policy token is ASCII case-insensitive", "Unsafe-URL", PAGE, CROSS, PAGE_FULL),
]


@pytest.mark.parametrize(
    ("step", "policy", "page_url", "image_url", "expected"),
    SCENARIOS,
    ids=[row[0] for row in SCENARIOS],
)
def test_referrer_for_follows_the_spec_step(step, policy, page_url, image_url, expected):
    assert referrer_for(policy, page_url, image_url) == expected


def test_the_table_covers_every_policy_in_all_three_situations():
    # A guard on the table itself: dropping a row for one policy x situation fails here.
    for policy in POLICIES:
        images = {
            image
            for (_, p, page, image, _) in SCENARIOS
            if (p or DEFAULT_POLICY) == policy and page == PAGE
        }
        assert {SAME, CROSS, DOWN} <= images, policy


def test_an_unknown_policy_token_is_an_error_not_a_guess():
    with pytest.raises(ValueError, match="unknown referrer policy 'no-referer'"):
        referrer_for("no-referer", PAGE, CROSS)


# --- redirect hops: same function, original page as source, hop URL as target -------------


@pytest.mark.parametrize(
    ("policy", "hops", "expected"),
    [
        # socwo: cross-origin https hop keeps the origin; a hop to http loses it (§8.3 socwo.2)
        (None, [CROSS, "http://mirror.example/cat.png"], [PAGE_ORIGIN, None]),
        # a hop back to the page's own origin gets the full URL again (§8.3 socwo.1)
        (None, [CROSS, SAME], [PAGE_ORIGIN, PAGE_FULL]),
        # no-referrer-when-downgrade: downgrade hop loses everything (§8.3 nrwd.1)
        ("no-referrer-when-downgrade", [CROSS, DOWN], [PAGE_FULL, None]),
    ],
)
def test_redirect_hops_recompute_from_the_original_page(policy, hops, expected):
    assert [referrer_for(policy, PAGE, hop) for hop in hops] == expected


# --- stripping, trustworthiness and origins as public helpers ------------------------------


def test_strip_url_for_referrer_both_variants():
    url = "https://u:p@Blog.Example:443/a/./b/../c?x=1#top"
    assert strip_url_for_referrer(url) == "https://blog.example/a/c?x=1"
    assert strip_url_for_referrer(url, origin_only=True) == "https://blog.example/"
    assert strip_url_for_referrer("data:,x") is None
    assert strip_url_for_referrer(None) is None


@pytest.mark.parametrize(
    ("url", "trustworthy"),
    [
        ("https://a.example/", True),
        ("http://a.example/", False),
        ("http://localhost/", True),
        ("http://LOCALHOST./", True),
        ("http://127.0.0.1:8080/", True),
        ("http://2130706433/", True),  # URL Standard IPv4 parser: 127.0.0.1
        ("http://[::1]/", True),
        ("http://[::2]/", False),
        ("http://localhost.example/", False),
        ("http://128.0.0.1/", False),
    ],
)
def test_potentially_trustworthy_origins(url, trustworthy):
    assert is_potentially_trustworthy(url) is trustworthy


def test_same_origin_compares_parsed_origins():
    assert same_origin("http://Example.com:80/a", "http://example.com/b")
    assert not same_origin("http://example.com/", "https://example.com/")
    assert not same_origin("http://example.com/", "data:,x")


def test_referer_value_is_percent_encoded_like_a_browser_sends_it():
    page = "https://blog.example/文章/a b.html?q=猫"
    assert referrer_for("unsafe-url", page, CROSS) == (
        "https://blog.example/%E6%96%87%E7%AB%A0/a%20b.html?q=%E7%8C%AB"
    )


# --- attribute, meta and defaults (HTML) ----------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("no-referrer", "no-referrer"),
        ("NO-REFERRER", "no-referrer"),  # enumerated attribute: ASCII case-insensitive
        (" origin\t", "origin"),  # harvester trims ASCII whitespace
        ("Strict-Origin-When-Cross-Origin", "strict-origin-when-cross-origin"),
        ("", None),  # empty: the empty-string state, document policy applies
        (None, None),  # missing
        ("no-referer", None),  # invalid value default
        ("never", None),  # legacy keywords are for <meta> only
        ("unsafe-url, origin", None),  # not a list
        ("\u212aeep", None),  # non-ASCII is never folded
        ("no-referrer\u00a0", None),  # NBSP is not ASCII whitespace
    ],
)
def test_parse_policy_attribute(value, expected):
    assert parse_policy_attribute(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("never", "no-referrer"),  # HTML §4.2.5.1 step 5 legacy table
        ("always", "unsafe-url"),
        ("default", "strict-origin-when-cross-origin"),
        ("origin-when-crossorigin", "origin-when-cross-origin"),
        ("NEVER", "no-referrer"),  # step 4: ASCII lowercase first
        ("Same-Origin", "same-origin"),
        ("", None),  # step 3
        (None, None),
        ("sometimes", None),  # step 6: not a policy, document policy unchanged
    ],
)
def test_parse_meta_referrer(value, expected):
    assert parse_meta_referrer(value) == expected


def test_last_valid_meta_wins():
    assert last_meta_policy(["origin", "never", "bogus", ""]) == "no-referrer"
    assert last_meta_policy(["bogus", None]) is None
    assert last_meta_policy([]) is None


@pytest.mark.parametrize(
    ("attribute", "meta", "default", "expected"),
    [
        ("no-referrer", "unsafe-url", "origin", "no-referrer"),  # attribute first
        ("bogus", "unsafe-url", "origin", "unsafe-url"),  # invalid attribute falls back
        ("", "always", "origin", "unsafe-url"),  # empty attribute; legacy meta mapped
        (None, "bogus", "origin", "origin"),  # invalid meta -> configured default
        (None, None, "same-origin", "same-origin"),
        (None, None, "never", DEFAULT_POLICY),  # configured default must be a real token
        (None, None, None, DEFAULT_POLICY),  # §3 default
    ],
)
def test_effective_policy_precedence(attribute, meta, default, expected):
    assert effective_policy(attribute, meta, default) == expected


# --- per-host overrides ----------------------------------------------------------------------

OVERRIDES = {
    "*.sinaimg.cn": "https://weibo.com/u/123?from=feed#x",
    "i0.hdslb.com": "https://www.bilibili.com/video/BV1",
    "*.hdslb.com": "https://space.bilibili.com/",
    "blank.example": "",
    "none.example": "No-Referrer",
    "bad.example": "not a url",
    "self.example": "https://blog.example/other",
}
SINA = "https://wx1.sinaimg.cn/large/abc.jpg"


@pytest.mark.parametrize(
    ("rule", "policy", "page_url", "image_url", "expected"),
    [
        (
            "rule 1: no-referrer sends only the override's foreign origin",
            "no-referrer",
            PAGE,
            SINA,
            "https://weibo.com/",
        ),
        (
            "rule 1: downgrade under socwo sends only the override's origin",
            DEFAULT_POLICY,
            PAGE,
            "http://wx1.sinaimg.cn/a.jpg",
            "https://weibo.com/",
        ),
        (
            "rule 1: same-origin to another origin: the override's origin",
            "same-origin",
            PAGE,
            SINA,
            "https://weibo.com/",
        ),
        (
            "rule 1: no page URL: the override's origin",
            "unsafe-url",
            None,
            SINA,
            "https://weibo.com/",
        ),
        ("rule 1: no-referrer and no override: nothing", "no-referrer", PAGE, CROSS, None),
        (
            "rule 1: an override naming the page's own site is withheld",
            "no-referrer",
            PAGE,
            "https://self.example/a.jpg",
            None,
        ),
        (
            "rule 2: host without an entry keeps the computed value",
            "unsafe-url",
            PAGE,
            CROSS,
            PAGE_FULL,
        ),
        (
            "rule 2: the bare domain does not match *.sinaimg.cn",
            "origin",
            PAGE,
            "https://sinaimg.cn/a.jpg",
            PAGE_ORIGIN,
        ),
        (
            "rule 2: '' is no override, the computed value stands",
            "unsafe-url",
            PAGE,
            "https://blank.example/a",
            PAGE_FULL,
        ),
        ("rule 3: 'no-referrer' withholds it", "unsafe-url", PAGE, "https://none.example/a", None),
        (
            "rule 3: trailing-dot host still matches",
            "origin",
            PAGE,
            "https://none.example./a",
            None,
        ),
        (
            "rule 4: an unusable value is ignored",
            "unsafe-url",
            PAGE,
            "https://bad.example/a",
            PAGE_FULL,
        ),
        (
            "rule 5: origin-only policy cuts the override to its origin",
            DEFAULT_POLICY,
            PAGE,
            SINA,
            "https://weibo.com/",
        ),
        (
            "rule 5: full-URL policy sends the stripped override",
            "unsafe-url",
            PAGE,
            SINA,
            "https://weibo.com/u/123?from=feed",
        ),
        (
            "rule 5: strict-origin cuts a full override",
            "strict-origin",
            PAGE,
            "https://I0.HDSLB.com/x.png",
            "https://www.bilibili.com/",
        ),
        (
            "find: exact host beats glob",
            "unsafe-url",
            PAGE,
            "https://i0.hdslb.com/x.png",
            "https://www.bilibili.com/video/BV1",
        ),
        (
            "find: glob for the other hosts",
            "unsafe-url",
            PAGE,
            "https://i1.hdslb.com/x.png",
            "https://space.bilibili.com/",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) and v.startswith(("rule", "find")) else "",
)
def test_apply_override_rules(rule, policy, page_url, image_url, expected):
    assert apply_override(policy, page_url, image_url, OVERRIDES) == expected


def test_override_longer_than_4096_falls_back_to_its_origin():
    value = "https://weibo.com/" + "z" * 5000
    assert apply_override("unsafe-url", PAGE, SINA, {"*.sinaimg.cn": value}) == (
        "https://weibo.com/"
    )


def test_override_redirect_hop_uses_the_hops_host():
    # The hop's host decides the override; the page stays the referrer source.
    assert apply_override(DEFAULT_POLICY, PAGE, "https://i0.hdslb.com/x", OVERRIDES) == (
        "https://www.bilibili.com/"
    )
    assert find_override("https://other.example/x", OVERRIDES) is None


def test_override_keys_match_idn_and_ipv6_hosts():
    table = {"*.例子.cn": "https://a.example/", "[::1]": "https://b.example/"}
    assert find_override("https://img.xn--fsqu00a.cn/x", table) == "https://a.example/"
    assert find_override("https://IMG.例子.CN/x", table) == "https://a.example/"
    assert find_override("http://[0::1]:8080/x", table) == "https://b.example/"


def test_check_overrides_reports_unusable_entries():
    problems = check_overrides(OVERRIDES | {"https://x.example/": "https://ok.example/"})
    assert any("'bad.example'" in p for p in problems)
    assert any("https://x.example/" in p and "host glob" in p for p in problems)
    assert any("host glob" in p for p in check_overrides({"a.example:8080": ""}))
    assert check_overrides({"*.sinaimg.cn": "https://weibo.com/", "a.example": ""}) == []
    assert check_overrides({"mmbiz.qpic.cn": "no-referrer", "*.zhimg.com": "None"}) == []
    assert check_overrides({"[::1]": "http://localhost/"}) == []


# --- property: never a fragment, never userinfo, never over 4096 unless an origin --------------

_label = st.text(alphabet=string.ascii_lowercase + string.digits, min_size=1, max_size=12)
_host = st.one_of(
    st.lists(_label, min_size=1, max_size=3).map(".".join),
    st.sampled_from(["localhost", "127.0.0.1", "[::1]", "bücher.example", "10.0.0.8"]),
)
_path = st.text(alphabet=string.printable + "éü猫", max_size=5000)
_url = st.builds(
    lambda scheme, userinfo, host, port, path, frag: (
        f"{scheme}://{userinfo}{host}{port}/{path}{frag}"
    ),
    st.sampled_from(["http", "https", "HTTPS"]),
    st.sampled_from(["", "user@", "user:pass@"]),
    _host,
    st.sampled_from(["", ":80", ":443", ":8080"]),
    _path,
    st.sampled_from(["", "#", "#frag", "#user:pass@x"]),
)


@settings(max_examples=300, deadline=None)
@given(
    policy=st.sampled_from([None, "", *sorted(POLICIES)]),
    page_url=st.one_of(st.none(), _url),
    image_url=_url,
)
def test_referer_never_leaks_fragment_userinfo_or_length(policy, page_url, image_url):
    result = referrer_for(policy, page_url, image_url)
    if result is None:
        return
    assert isinstance(result, str)
    assert "#" not in result
    authority = result.split("://", 1)[1].split("/", 1)[0]
    assert "@" not in authority
    origin = strip_url_for_referrer(page_url, origin_only=True)
    assert len(result) <= 4096 or result == origin
    # Only ever the page's own stripped URL or its origin: nothing from the image URL.
    assert result in (strip_url_for_referrer(page_url), origin)


@settings(max_examples=200, deadline=None)
@given(
    policy=st.sampled_from(sorted(POLICIES)),
    page_url=st.one_of(st.none(), _url),
    image_url=_url,
    override=st.one_of(st.sampled_from(["", "no-referrer", "NONE", "junk"]), _url),
)
def test_an_override_never_sends_more_than_the_policy(policy, page_url, image_url, override):
    computed = referrer_for(policy, page_url, image_url)
    host = image_url.split("://", 1)[1].split("/", 1)[0].rpartition("@")[2]
    result = apply_override(policy, page_url, image_url, {"*": override, host: override})
    if computed is None:
        # rule 1: where the policy sends nothing, at most the override's own (foreign) origin
        page_origin = strip_url_for_referrer(page_url, origin_only=True) if page_url else None
        override_origin = strip_url_for_referrer(override, origin_only=True)
        assert result is None or (result == override_origin and result != page_origin)
        return
    if override.lower() in ("no-referrer", "none"):
        assert result is None  # rule 3
        return
    if override in ("", "junk"):
        assert result == computed  # rules 2 and 4
        return
    if override and strip_url_for_referrer(override) is None:
        assert result == computed  # rule 4: an unparsable URL changes nothing
        return
    assert result is not None and "#" not in result
    assert "@" not in result.split("://", 1)[1].split("/", 1)[0]
    origin_only = strip_url_for_referrer(override, origin_only=True)
    cross = not same_origin(page_url, image_url)
    if policy in {"origin", "strict-origin"} or (
        cross and policy in {"origin-when-cross-origin", "strict-origin-when-cross-origin"}
    ):
        assert result == origin_only  # rule 5: origin-only branches cut the override
    else:
        assert result in (strip_url_for_referrer(override), origin_only)
        assert len(result) <= 4096 or result == origin_only


# --- configuration: typos are errors, not silent policy changes -------------------------------


def test_config_rejects_an_unknown_default_policy(tmp_path):
    from harvester.errors import ConfigError
    from harvester.settings import load_config

    config = tmp_path / "harvester.toml"
    config.write_text('default_policy = "no-referer"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="default_policy 'no-referer' is not a referrer policy"):
        load_config(config)
    config.write_text('default_policy = "No-Referrer"\n', encoding="utf-8")
    assert load_config(config) == {"default_policy": "No-Referrer"}


def test_config_rejects_an_unusable_override(tmp_path):
    from harvester.errors import ConfigError
    from harvester.settings import load_config

    config = tmp_path / "harvester.toml"
    config.write_text(
        '[referer_overrides]\n"*.sinaimg.cn" = "weibo.com"\n"a.example" = ""\n', encoding="utf-8"
    )
    with pytest.raises(
        ConfigError, match=r"'\*\.sinaimg\.cn': 'weibo\.com' must be an http\(s\) URL"
    ):
        load_config(config)
    config.write_text('[referer_overrides]\n"*.sinaimg.cn" = "https://weibo.com/u/1"\n')
    loaded = load_config(config)["referer_overrides"]
    # laid over the built-in table (harvester/quirks.py), the user's value winning
    assert loaded["*.sinaimg.cn"] == "https://weibo.com/u/1"
    assert loaded["mmbiz.qpic.cn"] == "no-referrer"
    config.write_text('[referer_overrides]\n"mmbiz.qpic.cn" = ""\n')
    assert "mmbiz.qpic.cn" not in load_config(config)["referer_overrides"]  # "" disables


def test_a_lone_surrogate_in_the_page_url_is_sent_as_the_replacement_character():
    assert referrer_for("unsafe-url", "https://blog.example/a\udc80", CROSS) == (
        "https://blog.example/a%EF%BF%BD"
    )
