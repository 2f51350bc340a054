"""Durations and sizes as users write them for --deadline, gc --grace and --max-store-bytes."""

from __future__ import annotations

import pytest

from harvester.errors import ConfigError
from harvester.units import UnitError, format_size, parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90.0),
        ("15m", 900.0),
        ("2h", 7200.0),
        ("7d", 604800.0),
        ("1h30m", 5400.0),
        ("1h 30m", 5400.0),
        ("2d12h", 216000.0),
        ("1.5h", 5400.0),
        ("500ms", 0.5),
        ("1w", 604800.0),
        ("45", 45.0),
        ("0", 0.0),
        (" 10M ", 600.0),  # case-insensitive: M is minutes in a duration
        ("3min", 180.0),
        (30, 30.0),  # TOML numbers are seconds
        (2.5, 2.5),
    ],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("soon", "cannot read"),
        ("10x", "unknown unit 'x'"),
        ("1h1h", "twice"),
        ("-5s", "cannot read"),
        (-5, "negative"),
        ("h", "cannot read"),
        ("1h30", "cannot read"),  # a trailing bare number is ambiguous
        (True, "expected a duration"),
        (None, "expected a duration"),
        ("1mo", "unknown unit 'mo'"),
    ],
)
def test_parse_duration_rejects_junk(text, fragment):
    with pytest.raises(UnitError) as info:
        parse_duration(text, name="--deadline")
    assert fragment in str(info.value)
    assert str(info.value).startswith("--deadline:")


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("900M", 900_000_000),
        ("1G", 1_000_000_000),
        ("1GB", 1_000_000_000),
        ("1.5GiB", 1_610_612_736),
        ("500KB", 500_000),
        ("500KiB", 512_000),
        ("1048576", 1_048_576),
        ("25MiB", 26_214_400),
        ("25 MiB", 26_214_400),
        ("1k", 1000),
        ("10b", 10),
        ("2TiB", 2 * 1024**4),
        ("1_000", 1000),
        (4096, 4096),
        ("0", 0),
    ],
)
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "cannot read"),
        ("big", "cannot read"),
        ("10 parsecs", "unknown unit"),
        ("-1M", "negative"),
        (-1, "negative"),
        ("1.5", "whole"),
        (1.5, "expected a size"),
        ("1GB2", "cannot read"),
        ("1Gi", "unknown unit 'gi'"),
    ],
)
def test_parse_size_rejects_junk(text, fragment):
    with pytest.raises(UnitError) as info:
        parse_size(text, name="--max-store-bytes")
    assert fragment in str(info.value)


def test_unit_errors_are_config_errors_and_value_errors():
    # The CLI maps ConfigError to exit 2; click callbacks and library callers catch ValueError.
    with pytest.raises(ConfigError):
        parse_size("lots")
    with pytest.raises(ValueError):
        parse_duration("later")


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1536, "1.5 KiB"),
        (26_214_400, "25.0 MiB"),
        (3 * 1024**4, "3072.0 GiB"),
    ],
)
def test_format_size(size, text):
    assert format_size(size) == text
