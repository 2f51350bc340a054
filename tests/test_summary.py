"""The run's closing paragraph: counts in correct English, and a dry run that counts only
what `run` would really fetch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from harvester.summary import RunSummary

ROOT = Path(__file__).resolve().parents[1]


def test_one_of_a_kind_is_singular_and_everything_else_plural():
    one = RunSummary(
        articles=1,
        refs=1,
        urls=1,
        fetched=1,
        assets_new=1,
        duplicates=1,
        similar=1,
        articles_rewritten=1,
        manifest="manifest.json",
    ).paragraph()
    assert "Scanned 1 article (1 remote reference, 1 unique URL)." in one
    assert "Fetched 1 image (" in one
    assert "Stored 1 new image; 1 duplicate points at a canonical copy" in one
    assert "1 similar pair is recorded for review." in one
    assert "Rewrote 1 article. Manifest" in one

    many = RunSummary(
        articles=3, refs=0, urls=2, fetched=0, similar=2, articles_rewritten=0
    ).paragraph()
    assert "Scanned 3 articles (0 remote references, 2 unique URLs)." in many
    assert "Fetched 0 images (" in many
    assert "Stored 0 new images; 0 duplicates point at" in many
    assert "2 similar pairs are recorded for review." in many
    assert "Rewrote 0 articles. Manifest" in many


def _dry_run(folder: Path) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "harvester", "run", "--dry-run", str(folder)],
        cwd=folder.parent,
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return " ".join(out.stdout.split())


def test_dry_run_does_not_count_random_placeholders_as_would_fetch(tmp_path):
    posts = tmp_path / "posts"
    posts.mkdir()
    (posts / "a.md").write_text(
        "![real](https://img.example.org/photos/kyoto.jpg)\n\n"
        "![random](https://picsum.photos/200/300)\n\n"
        "![random behind a proxy](https://images.weserv.nl/?url=picsum.photos/400/300)\n",
        encoding="utf-8",
    )
    text = _dry_run(posts)
    assert "Dry run: scanned 1 article (3 remote references, 3 unique URLs)." in text
    assert "Would fetch 1 URL (and skip 2 random placeholders) and rewrite 0 articles" in text
    assert not (tmp_path / "manifest.json").exists() and not (tmp_path / "assets").exists()

    (posts / "b.md").write_text("![x](https://img.example.org/photos/nara.png)\n", "utf-8")
    text = _dry_run(posts)
    assert "Would fetch 2 URLs (and skip 2 random placeholders)" in text


def test_urls_backing_off_say_when_the_first_is_due():
    summary = RunSummary(articles=2, refs=3, urls=3)
    for due in ("2026-11-29T04:10:00Z", "2026-11-29T02:45:30Z", None, "2026-11-30T00:00:00Z"):
        summary.note_waiting(due)
    assert summary.waiting == 4
    assert summary.next_retry_at == "2026-11-29T02:45:30Z"
    assert summary.to_json()["next_retry_at"] == "2026-11-29T02:45:30Z"
    assert "4 waiting to be retried (the first from 2026-11-29 02:45 UTC)" in summary.paragraph()
    assert "waiting" not in RunSummary().paragraph()
