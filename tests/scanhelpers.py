"""Helpers for the scan tests: build an Article from text and look at what the scan reports."""

from __future__ import annotations

from pathlib import Path

from harvester.articles import Article, load_article
from harvester.extract import scan_article
from harvester.records import ImageRef
from harvester.settings import Settings


def article(text: str, name: str = "post.md", encoding: str = "utf-8") -> Article:
    return load_article(Path(name), text.encode(encoding))


def scan(text: str, name: str = "post.md", **settings) -> list[ImageRef]:
    art = article(text, name)
    refs = scan_article(art, Settings(**settings))
    for ref in refs:  # the contract every test relies on
        assert ref.raw == art.text[ref.start : ref.end]
    return refs


def urls(text: str, **settings) -> list[str]:
    return [ref.url for ref in scan(text, **settings)]


def span_of(text: str, needle: str, occurrence: int = 0) -> tuple[int, int]:
    """The span of the n-th occurrence of `needle` in `text`."""
    start = -1
    for _ in range(occurrence + 1):
        start = text.index(needle, start + 1)
    return start, start + len(needle)


def protected_text(art: Article) -> list[str]:
    return [art.text[s:e] for s, e in art.protected]


def scan_article_of(art: Article, **settings) -> list[ImageRef]:
    return scan_article(art, Settings(**settings))
