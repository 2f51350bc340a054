"""Article dates as real posts write them → UTC datetimes (or None), and Wayback timestamps."""

from __future__ import annotations

import datetime as dt

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from harvester.fallback import (
    date_from_front_matter,
    earliest_dates,
    parse_article_date,
    parse_wayback_timestamp,
    wayback_timestamp,
)

UTC = dt.timezone.utc


def utc(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=UTC)


DATE_CASES = [
    # RSS-to-Markdown exports (corpus: "Sun, 21 Mar 2021 13:45:10 GMT")
    ("Tue, 08 Jun 2021 09:48:47 GMT", utc(2021, 6, 8, 9, 48, 47)),
    ("Tue, 08 Jun 2021 09:48:47 +0800", utc(2021, 6, 8, 1, 48, 47)),
    # Hexo: a space, no zone (taken as UTC); unpadded month/day as YAML leaves it a string
    ("2021-06-08 09:48:47", utc(2021, 6, 8, 9, 48, 47)),
    ("2018-7-24 23:31:06", utc(2018, 7, 24, 23, 31, 6)),
    ("2021-06-08 09:48", utc(2021, 6, 8, 9, 48)),
    # Hugo / ISO 8601 with an offset: converted to UTC
    ("2021-06-08T09:48:47+08:00", utc(2021, 6, 8, 1, 48, 47)),
    ("2017-11-07T21:35:19+01:00", utc(2017, 11, 7, 20, 35, 19)),
    ("2021-06-08T09:48:47Z", utc(2021, 6, 8, 9, 48, 47)),
    ("2021-06-08T09:48:47.123456-05:00", utc(2021, 6, 8, 14, 48, 47, 123456)),
    # Jekyll: space and a compact offset
    ("2021-06-08 09:48:47 +0800", utc(2021, 6, 8, 1, 48, 47)),
    ("2021-06-08 09:48:47 -03", utc(2021, 6, 8, 12, 48, 47)),
    # bare dates, other separators, quotes left in by hand-written front matter
    ("2019-08-04", utc(2019, 8, 4)),
    ("2021/06/08", utc(2021, 6, 8)),
    ("'2021-06-08'", utc(2021, 6, 8)),
    ("  2021-06-08  ", utc(2021, 6, 8)),
    ("2021年6月8日", utc(2021, 6, 8)),
    ("2021年06月08日 09:48", utc(2021, 6, 8, 9, 48)),
    ("June 8, 2021", utc(2021, 6, 8)),
    ("8 Jun 2021", utc(2021, 6, 8)),
    # Unix seconds and milliseconds (JSON front matter)
    (1623145727, utc(2021, 6, 8, 9, 48, 47)),
    ("1623145727", utc(2021, 6, 8, 9, 48, 47)),
    (1623145727000, utc(2021, 6, 8, 9, 48, 47)),
    # YAML/TOML objects
    (dt.date(2021, 6, 8), utc(2021, 6, 8)),
    (dt.datetime(2021, 6, 8, 9, 48, 47), utc(2021, 6, 8, 9, 48, 47)),
    (
        dt.datetime(2021, 6, 8, 9, 48, 47, tzinfo=dt.timezone(dt.timedelta(hours=8))),
        utc(2021, 6, 8, 1, 48, 47),
    ),
    # not dates: None, never an exception
    ("Invalid Date", None),  # a real Hexo post in the corpus
    ("", None),
    ("   ", None),
    ("yesterday", None),
    ("2021-13-08", None),
    ("2021-02-30 10:00:00", None),
    ("2021-06-08 25:00:00", None),
    ("2021-06-08T09:48:47+25:00", None),
    (None, None),
    (True, None),
    (42, None),  # an integer that is no plausible timestamp
    (["2021-06-08"], None),
    # out of range once converted to UTC, or too large for a timestamp
    ("9999-12-31T23:59:59-05:00", None),
    ("0001-01-01T00:00:00+05:00", None),
    (dt.datetime.max.replace(tzinfo=dt.timezone(dt.timedelta(hours=-5))), None),
    (10**400, None),
    (float("nan"), None),
    (float("inf"), None),
    ({"date": "2021-06-08"}, None),
]


@pytest.mark.parametrize(("value", "expected"), DATE_CASES, ids=[repr(c[0]) for c in DATE_CASES])
def test_parse_article_date(value, expected):
    parsed = parse_article_date(value)
    assert parsed == expected
    if parsed is not None:
        assert parsed.utcoffset() == dt.timedelta(0)


@pytest.mark.parametrize(
    ("front_matter", "expected"),
    [
        ("date: 2013-12-25 00:16:18", utc(2013, 12, 25, 0, 16, 18)),  # YAML → naive datetime
        ("date: 2019-08-04", utc(2019, 8, 4)),  # YAML → date
        ("date: 2020-09-15T11:30:03+00:00", utc(2020, 9, 15, 11, 30, 3)),  # aware datetime
        ("date: 2018-7-24 23:31:06", utc(2018, 7, 24, 23, 31, 6)),  # YAML → str
        ("date: Wed, 09 Mar 2022 13:38:44 GMT", utc(2022, 3, 9, 13, 38, 44)),
        ("date: Invalid Date", None),
    ],
)
def test_dates_as_yaml_loads_them(front_matter, expected):
    """What the loader hands over is whatever PyYAML made of the text; all shapes work."""
    value = yaml.safe_load(front_matter)["date"]
    assert parse_article_date(value) == expected


def test_earliest_date_per_url_wins_and_unknown_dates_do_not_hide_known_ones():
    uses = [
        ("https://a.example/x.jpg", "2021-06-08"),
        ("https://a.example/x.jpg", "Invalid Date"),
        ("https://a.example/x.jpg", "2019-01-02 03:04:05"),
        ("https://a.example/x.jpg", "2020-01-01"),
        ("https://b.example/y.jpg", None),
        ("https://c.example/z.jpg", None),
        ("https://c.example/z.jpg", dt.date(2015, 5, 5)),
    ]
    assert earliest_dates(uses) == {
        "https://a.example/x.jpg": utc(2019, 1, 2, 3, 4, 5),
        "https://b.example/y.jpg": None,
        "https://c.example/z.jpg": utc(2015, 5, 5),
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (utc(2021, 6, 8, 9, 48, 47), "20210608094847"),
        (dt.datetime(2021, 6, 8, 9, 48, 47), "20210608094847"),  # naive is UTC
        (
            dt.datetime(2021, 6, 8, 1, 0, tzinfo=dt.timezone(dt.timedelta(hours=8))),
            "20210607170000",
        ),
    ],
)
def test_wayback_timestamp(value, expected):
    assert wayback_timestamp(value) == expected


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        ("20210608094847", utc(2021, 6, 8, 9, 48, 47)),
        ("2021", utc(2021, 1, 1)),
        ("202106", utc(2021, 6, 1)),
        ("20210608", utc(2021, 6, 8)),
        ("20211308094847", None),
        ("2021x608094847", None),
        ("", None),
        ("202106080948471", None),
    ],
)
def test_parse_wayback_timestamp(stamp, expected):
    assert parse_wayback_timestamp(stamp) == expected


@pytest.mark.parametrize(
    ("front_matter", "expected"),
    [
        ({"title": "x", "date": "2021-06-08 09:48:47"}, utc(2021, 6, 8, 9, 48, 47)),
        ({"date": "Invalid Date", "updated": "2022-01-01"}, None),  # `updated` is no pub date
        (
            {"date": "Invalid Date", "pubDate": "Wed, 09 Mar 2022 13:38:44 GMT"},
            utc(2022, 3, 9, 13, 38, 44),
        ),
        ({"published": dt.date(2019, 8, 4)}, utc(2019, 8, 4)),
        ({"title": "no date"}, None),
        (None, None),  # front matter that could not be parsed
        (["date", "2021-06-08"], None),
    ],
)
def test_date_from_front_matter(front_matter, expected):
    assert date_from_front_matter(front_matter) == expected


@given(
    st.one_of(
        st.text(),
        st.integers(min_value=-(10**500), max_value=10**500),
        st.floats(allow_nan=True, allow_infinity=True),
        st.dates(),
        st.datetimes(timezones=st.one_of(st.none(), st.timezones())),
        st.binary(),
    )
)
@settings(max_examples=300, deadline=None)
def test_parse_article_date_never_raises_and_answers_utc(value):
    parsed = parse_article_date(value)
    assert parsed is None or parsed.utcoffset() == dt.timedelta(0)
