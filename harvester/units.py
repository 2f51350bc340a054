"""Durations and sizes as people write them in flags and config files.

Input: a string (or a plain number) such as ``"90s"``, ``"1h30m"``, ``"900M"``, ``"1.5GiB"``.
Output: seconds as a ``float`` (:func:`parse_duration`) or bytes as an ``int``
(:func:`parse_size`). Junk raises :class:`UnitError`, which is both a ``ConfigError`` (so the
CLI exits 2 with the message) and a ``ValueError`` (so typer/click callbacks and plain callers
can catch it the usual way).

Sizes: decimal and binary units are both accepted and mean what they say — ``K``/``KB`` =
1000, ``KiB`` = 1024, ``M``/``MB`` = 1000², ``MiB`` = 1024², and so on up to ``T``. A bare
number is bytes. This follows SI/IEC; the one-letter forms are decimal (as in ``du --si`` and
systemd), because a limit such as GitHub Pages' "1 GB" is a decimal gigabyte. Case does not
matter (``1gib`` = ``1GiB``); a lone ``b`` means bytes.

Durations: one or more ``<number><unit>`` parts with units ``ms``, ``s``, ``m``, ``h``, ``d``,
``w`` (``"1h30m"``, ``"1.5h"``, ``"2d 12h"``); a bare number is seconds. ``m`` is minutes
(never months). Negative values are refused.
"""

from __future__ import annotations

import math
import re

from harvester.errors import ConfigError

__all__ = ["UnitError", "format_size", "parse_duration", "parse_size"]


class UnitError(ConfigError, ValueError):
    """A duration or size that cannot be read."""


_DURATION_UNITS = {
    "ms": 0.001,
    "s": 1.0,
    "sec": 1.0,
    "m": 60.0,
    "min": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
}
_DURATION_PART = re.compile(r"\s*(\d+(?:\.\d+)?|\.\d+)\s*([a-z]+)\s*")

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1024**3,
    "t": 1000**4,
    "tb": 1000**4,
    "tib": 1024**4,
}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?|\.\d+)\s*([a-z]*)\s*")


def parse_duration(value: str | int | float, *, name: str = "duration") -> float:
    """Seconds in `value` ("90s", "15m", "2h", "7d", "1h30m", "45"); `name` labels errors."""
    if isinstance(value, bool):
        raise UnitError(f"{name}: expected a duration such as 90s, 15m, 2h, got {value!r}")
    if isinstance(value, (int, float)):
        return _check_number(float(value), name, value)
    if not isinstance(value, str):
        raise UnitError(f"{name}: expected a duration such as 90s, 15m, 2h, got {value!r}")
    text = value.strip().lower()
    if not text:
        raise UnitError(f"{name}: empty duration; write e.g. 90s, 15m, 2h or 1h30m")
    if _is_plain_number(text):
        return _check_number(float(text), name, value)
    total = 0.0
    position = 0
    seen: set[str] = set()
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            break
        number, unit = match.groups()
        if unit not in _DURATION_UNITS:
            raise UnitError(
                f"{name}: unknown unit {unit!r} in {value!r}; use ms, s, m (minutes), h, d or w"
            )
        if unit in seen:
            raise UnitError(f"{name}: unit {unit!r} given twice in {value!r}")
        seen.add(unit)
        total += float(number) * _DURATION_UNITS[unit]
        position = match.end()
    if position != len(text) or not seen:
        raise UnitError(f"{name}: cannot read {value!r} as a duration; write e.g. 90s, 2h, 1h30m")
    return _check_number(total, name, value)


def parse_size(value: str | int, *, name: str = "size") -> int:
    """Bytes in `value` ("900M", "1G", "1.5GiB", "500KB", "1048576"); `name` labels errors."""
    if isinstance(value, (bool, float)):
        raise UnitError(f"{name}: expected a size such as 900M or 1GiB, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise UnitError(f"{name}: a size cannot be negative, got {value}")
        return value
    if not isinstance(value, str):
        raise UnitError(f"{name}: expected a size such as 900M or 1GiB, got {value!r}")
    text = value.strip().lower().replace("_", "")
    match = _SIZE.fullmatch(text)
    if not match:
        if text.startswith("-"):
            raise UnitError(f"{name}: a size cannot be negative, got {value!r}")
        raise UnitError(f"{name}: cannot read {value!r} as a size; write e.g. 900M, 1G, 1.5GiB")
    number, unit = match.groups()
    if unit not in _SIZE_UNITS:
        raise UnitError(
            f"{name}: unknown unit {unit!r} in {value!r}; use B, K/KB (1000), KiB (1024), "
            "M/MB, MiB, G/GB, GiB, T/TB, TiB"
        )
    size = float(number) * _SIZE_UNITS[unit]
    if not math.isfinite(size):
        raise UnitError(f"{name}: {value!r} is too large")
    if unit in ("", "b") and size != int(size):
        raise UnitError(f"{name}: a number of bytes must be whole, got {value!r}")
    return round(size)


def format_size(size: int) -> str:
    """A short human form for reports: 1536 → "1.5 KiB" (binary, as `du -h` prints)."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def _is_plain_number(text: str) -> bool:
    return re.fullmatch(r"\d+(?:\.\d+)?|\.\d+", text) is not None


def _check_number(seconds: float, name: str, original: object) -> float:
    if not math.isfinite(seconds):
        raise UnitError(f"{name}: {original!r} is not a finite duration")
    if seconds < 0:
        raise UnitError(f"{name}: a duration cannot be negative, got {original!r}")
    return seconds
