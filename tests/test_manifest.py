"""The manifest: typed records, atomic sorted save, schema, corrupt files, write-ahead."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from mirror.manifest import (
    Manifest,
    ManifestCorrupt,
    ManifestSaveError,
    ManifestVersionError,
    load_schema,
    validate,
    validation_errors,
)
from mirror.records import DuplicateLink, Edit
from mirror.rewrite import apply_edits, restore_text
from tests.mirror_site import build_site

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def site(tmp_path):
    return build_site(tmp_path / "blog")


def test_a_mirrored_site_manifest_validates_and_is_written_sorted(site):
    raw = site.manifest_path.read_text(encoding="utf-8")
    data = json.loads(raw)
    validate(data)

    def keys_sorted(pairs):
        keys = [k for k, _ in pairs]
        assert keys == sorted(keys), keys
        return dict(pairs)

    json.loads(raw, object_pairs_hook=keys_sorted)  # every object, at every depth
    # one line per record, so diffs and grep stay useful
    lines = raw.splitlines()
    for table in ("assets", "urls", "articles"):
        for name in data[table]:
            assert (
                sum(line.startswith(json.dumps(name, ensure_ascii=False) + ":{") for line in lines)
                == 1
            )
    assert data["manifest_version"] == 1
    assert data["generator"]["name"] == "harvester"
    assert TS.match(data["created_at"]) and TS.match(data["updated_at"])
    assert data["store"] == "assets"
    # every path inside is posix and relative to the manifest's folder, and exists
    for sha, asset in data["assets"].items():
        assert (site.root / asset["path"]).is_file()
        assert asset["path"] == f"assets/{sha[:2]}/{sha[2:4]}/{sha}.{asset['path'][-3:]}"
        for thumb in asset["thumbnails"]:
            assert (site.root / thumb["path"]).is_file()
    assert set(data["articles"]) == {
        "source/_posts/社区.md",
        "content/posts/kyoto walk.md",
        "source/_posts/jekyll-post.html",
    }
    assert all(a["state"] == "rewritten" for a in data["articles"].values())
    hugo = data["articles"]["content/posts/kyoto walk.md"]
    assert hugo["newline"] == "\r\n"
    assert [r["status"] for r in hugo["refs"]] == ["ok", "ok", "failed"]
    assert data["urls"]["https://photos.example.org/kyoto/gone.jpg"]["status"] == "failed"


def test_saving_the_same_content_twice_gives_the_same_bytes(tmp_path):
    clock = Clock(datetime(2026, 11, 28, 18, 0, tzinfo=timezone.utc))
    site = build_site(tmp_path / "blog", clock=clock)
    first = site.manifest_path.read_bytes()
    Manifest.load(site.manifest_path, clock=clock).save()
    assert site.manifest_path.read_bytes() == first


def test_a_save_that_changes_nothing_leaves_the_file_alone(tmp_path):
    """A no-op run must not leave a diff in a manifest kept in git: not even updated_at."""
    clock = Clock(datetime(2026, 11, 28, 18, 0, tzinfo=timezone.utc))
    site = build_site(tmp_path / "blog", clock=clock)
    before, stat = site.manifest_path.read_bytes(), site.manifest_path.stat()
    clock.now += timedelta(hours=1)
    m = Manifest.load(site.manifest_path, clock=clock)
    m.save()
    assert site.manifest_path.read_bytes() == before
    assert site.manifest_path.stat().st_ino == stat.st_ino  # not even replaced
    m.record_url_state("https://e.org/new.png", "skipped", "blocked-address")
    m.save()
    after = json.loads(site.manifest_path.read_text(encoding="utf-8"))
    assert after["updated_at"] == "2026-11-28T19:00:00Z"
    assert "https://e.org/new.png" in after["urls"]


def test_load_then_save_round_trips_the_document(site):
    before = json.loads(site.manifest_path.read_text(encoding="utf-8"))
    m = Manifest.load(site.manifest_path)
    assert m.to_dict() == before
    m.save()
    after = json.loads(site.manifest_path.read_text(encoding="utf-8"))
    assert {k: v for k, v in after.items() if k != "updated_at"} == {
        k: v for k, v in before.items() if k != "updated_at"
    }


def test_missing_file_gives_a_new_empty_manifest_and_nothing_is_written(tmp_path):
    path = tmp_path / "manifest.json"
    m = Manifest.load(path)
    assert m.to_dict()["assets"] == {} and m.to_dict()["manifest_version"] == 1
    assert not path.exists()
    m.save()
    validate(json.loads(path.read_text()))


def test_corrupt_manifest_is_moved_aside_never_overwritten(site):
    garbage = b'{"manifest_version": 1, "assets": {'  # a truncated write by some other tool
    site.manifest_path.write_bytes(garbage)
    with pytest.raises(ManifestCorrupt) as info:
        Manifest.load(site.manifest_path)
    moved = info.value.moved_to
    assert moved is not None and moved.name.startswith("manifest.json.corrupt-")
    assert moved.read_bytes() == garbage
    assert not site.manifest_path.exists()
    assert "not valid JSON" in str(info.value) and str(moved) in str(info.value)


def test_schema_invalid_manifest_is_moved_aside_too(site):
    data = json.loads(site.manifest_path.read_text())
    next(iter(data["urls"].values()))["status"] = "fine"
    site.manifest_path.write_text(json.dumps(data))
    with pytest.raises(ManifestCorrupt) as info:
        Manifest.load(site.manifest_path)
    assert "status" in info.value.problem
    assert info.value.moved_to.exists() and not site.manifest_path.exists()


def test_two_corrupt_manifests_in_the_same_second_both_survive(tmp_path):
    clock = Clock(datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc))
    path = tmp_path / "manifest.json"
    moved = []
    for body in (b"nope", b"[1, 2]"):
        path.write_bytes(body)
        with pytest.raises(ManifestCorrupt) as info:
            Manifest.load(path, clock=clock)
        moved.append(info.value.moved_to)
    assert moved[0] != moved[1]
    assert [p.read_bytes() for p in moved] == [b"nope", b"[1, 2]"]


def test_a_newer_manifest_version_is_left_alone(site):
    data = json.loads(site.manifest_path.read_text())
    data["manifest_version"] = 2
    site.manifest_path.write_text(json.dumps(data))
    before = site.manifest_path.read_bytes()
    with pytest.raises(ManifestVersionError):
        Manifest.load(site.manifest_path)
    assert site.manifest_path.read_bytes() == before


BAD_DOCUMENTS = {
    "no version": lambda d: d.pop("manifest_version"),
    "wrong version": lambda d: d.update(manifest_version="1"),
    "unknown top-level field": lambda d: d.update(extra=1),
    "asset key not a sha256": lambda d: d["assets"].update(
        {"ABC": next(iter(d["assets"].values()))}
    ),
    "absolute asset path": lambda d: next(iter(d["assets"].values())).update(path="/etc/passwd"),
    "windows asset path": lambda d: next(iter(d["assets"].values())).update(path="assets\\x.jpg"),
    "timestamp without Z": lambda d: d.update(updated_at="2026-11-28T18:00:00+01:00"),
    "url status unknown": lambda d: next(iter(d["urls"].values())).update(status="done"),
    "url key with fragment": lambda d: d["urls"].update(
        {"https://h/x.jpg#frag": next(iter(d["urls"].values()))}
    ),
    "negative attempts": lambda d: next(iter(d["urls"].values())).update(attempts=-1),
    "article state unknown": lambda d: next(iter(d["articles"].values())).update(state="done"),
    "edit without original": lambda d: next(iter(d["articles"].values()))["edits"][0].pop(
        "original"
    ),
    "http status out of range": lambda d: next(iter(d["urls"].values())).update(http_status=42),
    "decision not a pair": lambda d: d["decisions"]["same"].append(["a" * 64]),
}


@pytest.mark.parametrize("mutation", BAD_DOCUMENTS.values(), ids=BAD_DOCUMENTS.keys())
def test_schema_rejects_bad_documents(site, mutation):
    data = json.loads(site.manifest_path.read_text())
    assert validation_errors(data) == []
    bad = copy.deepcopy(data)
    mutation(bad)
    assert validation_errors(bad), "the schema accepted a broken manifest"


def test_schema_ships_as_package_data():
    schema = load_schema()
    assert schema["properties"]["manifest_version"] == {"const": 1}
    assert (Path(__file__).parents[1] / "mirror" / "manifest.schema.json").is_file()


def test_save_refuses_an_invalid_document_and_keeps_the_old_file(site):
    before = site.manifest_path.read_bytes()
    m = Manifest.load(site.manifest_path)
    m.data["urls"]["https://h/x.jpg"] = {"status": "ok"}  # missing attempts/failures
    with pytest.raises(ValueError, match="schema"):
        m.save()
    assert site.manifest_path.read_bytes() == before


def test_large_manifests_skip_validation_on_save_but_stay_valid(site):
    m = Manifest.load(site.manifest_path, validate_limit=5)  # the site has more records
    m.record_url_state("https://e.org/new.png", "skipped", "blocked-address")  # a change
    m.save()
    assert m.last_save_validated is False
    validate(json.loads(site.manifest_path.read_text()))  # what was written is still valid
    m.validate_limit = 10_000
    m.save()
    assert m.last_save_validated is True
    # the skip is a speed trade-off, not a blind spot: forcing it still catches mistakes
    m.validate_limit = 5
    m.data["articles"]["x.md"] = {"state": "bogus"}
    with pytest.raises(ValueError):
        m.save(validate_schema=True)


def test_save_is_atomic_and_keeps_the_manifest_mode(site):
    os.chmod(site.manifest_path, 0o600)
    m = Manifest.load(site.manifest_path)
    m.record_url_state("https://e.org/new.png", "skipped", "blocked-address")  # a change
    m.save()
    assert json.loads(site.manifest_path.read_text())["urls"]["https://e.org/new.png"]
    assert os.stat(site.manifest_path).st_mode & 0o777 == 0o600
    leftovers = [p.name for p in site.root.iterdir() if "harvester-tmp" in p.name]
    assert leftovers == []


def test_save_into_a_missing_folder_is_a_clear_error(tmp_path):
    m = Manifest.load(tmp_path / "no" / "such" / "manifest.json")
    with pytest.raises(ManifestSaveError, match="cannot write manifest"):
        m.save()


# ------------------------------------------------------------------- urls, assets, dedupe


def test_failed_url_keeps_the_last_good_copy_and_counts_failures(tmp_path):
    clock = Clock(datetime(2026, 11, 28, 18, 0, tzinfo=timezone.utc))
    m = Manifest.load(tmp_path / "manifest.json", clock=clock)
    url = "https://img.example.com/p.jpg"
    sha = "ab" * 32
    m.record_url_ok(
        url,
        sha256=sha,
        http_status=200,
        final_url="https://cdn.example.com/p.jpg",
        etag='"v1"',
        last_modified=None,
        attempts=2,
        policy="no-referrer",
        referer=None,
    )
    for n in (1, 2):
        clock.now += timedelta(days=1)
        m.record_url_failed(
            url,
            reason="http-503",
            message="Service Unavailable",
            http_status=503,
            attempts=5,
            policy="no-referrer",
            referer=None,
            next_retry_at=clock.now + timedelta(hours=2**n),
        )
        entry = m.url(url)
        assert entry["failures"] == n
    assert entry["status"] == "failed" and entry["sha256"] == sha and entry["etag"] == '"v1"'
    assert entry["fetched_at"] == "2026-11-28T18:00:00Z"
    assert entry["next_retry_at"] == "2026-11-30T22:00:00Z"
    assert not m.retry_due(url)
    assert m.retry_due(url, now=datetime(2026, 12, 1, tzinfo=timezone.utc))
    m.record_url_ok(
        url,
        sha256=sha,
        http_status=200,
        final_url=url,
        etag='"v1"',
        last_modified=None,
        attempts=1,
        policy="no-referrer",
        referer=None,
    )
    assert m.url(url)["failures"] == 0 and m.url(url)["next_retry_at"] is None


def test_skipped_and_deferred_urls(tmp_path):
    m = Manifest.load(tmp_path / "manifest.json")
    m.record_url_state(
        "https://h/big.jpg",
        "deferred",
        "retry-after",
        "server said 1h",
        next_retry_at="2026-11-28T20:00:00Z",
    )
    m.record_url_state("https://10.0.0.1/x.jpg", "skipped", "blocked-address")
    assert m.url("https://h/big.jpg")["status"] == "deferred"
    assert m.url("https://10.0.0.1/x.jpg")["reason"] == "blocked-address"
    with pytest.raises(ValueError):
        m.record_url_state("https://h/x.jpg", "ok", None)
    m.save()
    validate(json.loads((tmp_path / "manifest.json").read_text()))


def test_duplicates_point_at_the_canonical_and_decisions_are_kept(site):
    m = site.manifest()
    a, b, c = sorted(site.shas.values())[:3]
    m.set_duplicates([DuplicateLink(b, a, "duplicate", 3), DuplicateLink(c, a, "similar", 10)])
    assert m.canonical(b) == a and m.canonical(a) == a and m.canonical(c) == c
    assert m.asset(b)["distance"] == 3
    assert m.asset(c)["similar_to"] == [{"sha256": a, "distance": 10}]
    m.add_decision("different", c, a)
    m.add_decision("same", b, a)
    m.add_decision("same", b, a)
    assert m.decisions == {"same": [tuple(sorted((a, b)))], "different": [tuple(sorted((a, c)))]}
    m.save()
    again = site.manifest()
    assert again.decisions == m.decisions and again.canonical(b) == a
    again.set_duplicates([], replace_all=True)
    assert again.canonical(b) == b


def test_asset_failure_is_recorded_with_nulls(site):
    m = site.manifest()
    m.record_asset_failure(
        "cd" * 32,
        "assets/cd/cd/" + "cd" * 32 + ".jpg",
        "corrupt-image",
        "cannot identify image file",
        1234,
    )
    m.save()
    entry = site.manifest().asset("cd" * 32)
    assert entry["status"] == "failed" and entry["width"] is None and entry["bytes"] == 1234


# ------------------------------------------------------------------- write-ahead protocol


def _plan(m: Manifest, article: Path, text: str, edits: list[Edit]) -> bytes:
    new = apply_edits(text, edits).encode()
    m.plan_article(
        m.rel(article),
        encoding="utf-8",
        bom=False,
        newline="\n",
        original_sha256=hashlib.sha256(text.encode()).hexdigest(),
        rewritten_sha256=hashlib.sha256(new).hexdigest(),
        refs=[
            {
                "kind": "markdown-inline",
                "url": e.old,
                "original": e.old,
                "local": e.new,
                "status": "ok",
                "line": 1,
            }
            for e in edits
        ],
        edits=edits,
        text=text,
    )
    return new


def _edit(text: str, url: str, new: str) -> Edit:
    at = text.index(url)
    return Edit(at, at + len(url), url, new)


def test_the_plan_is_on_disk_with_the_original_text_before_the_article_changes(tmp_path):
    article = tmp_path / "post.md"
    text = "![a](https://h/a.jpg) and ![b](https://h/b.jpg)\n"
    article.write_text(text)
    m = Manifest.load(tmp_path / "manifest.json")
    _plan(m, article, text, [_edit(text, "https://h/a.jpg", "assets/a.jpg")])
    m.save()
    on_disk = json.loads((tmp_path / "manifest.json").read_text())["articles"]["post.md"]
    assert on_disk["state"] == "planned"
    assert on_disk["edits"] == [
        {"start": 5, "end": 17, "original": "https://h/a.jpg", "local": "assets/a.jpg"}
    ]
    assert on_disk["original_sha256"] == hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize("crash_point", ["before-replace", "after-replace", "then-edited"])
def test_a_planned_article_is_resolved_by_hashing_the_file(tmp_path, crash_point):
    article = tmp_path / "post.md"
    text = "![a](https://h/a.jpg)\n"
    article.write_text(text)
    m = Manifest.load(tmp_path / "manifest.json")
    new = _plan(m, article, text, [_edit(text, "https://h/a.jpg", "assets/a.jpg")])
    m.save()
    if crash_point != "before-replace":
        article.write_bytes(new)
    if crash_point == "then-edited":
        article.write_bytes(new + b"a line added by hand\n")
    # the process died here; a new one loads the manifest
    m2 = Manifest.load(tmp_path / "manifest.json")
    outcome = m2.resolve_planned()["post.md"]
    entry = m2.article("post.md")
    if crash_point == "before-replace":
        assert outcome == "not-replaced" and entry["state"] == "unchanged"
        assert entry["edits"] == []
    else:
        assert outcome == ("rewritten" if crash_point == "after-replace" else "edited")
        assert entry["state"] == "rewritten"
        restored = restore_text(article.read_text(), m2.recorded_edits("post.md")).text
        assert restored.startswith(text)
    m2.save()
    validate(json.loads((tmp_path / "manifest.json").read_text()))


def test_a_second_rewrite_composes_and_restore_gives_the_first_original(tmp_path):
    article = tmp_path / "post.md"
    original = "![a](https://h/a.jpg)\n![b](https://h/b.jpg)\n"
    article.write_text(original)
    m = Manifest.load(tmp_path / "manifest.json")
    first = _plan(m, article, original, [_edit(original, "https://h/a.jpg", "assets/aa.jpg")])
    article.write_bytes(first)
    m.mark_rewritten("post.md")
    # next night b.jpg downloads at last
    text1 = first.decode()
    second = _plan(m, article, text1, [_edit(text1, "https://h/b.jpg", "assets/b.jpg")])
    # a crash before this write would restore the first plan
    assert m.article("post.md")["previous"]["rewritten_sha256"] == hashlib.sha256(first).hexdigest()
    article.write_bytes(second)
    m.mark_rewritten("post.md")
    entry = m.article("post.md")
    assert entry["original_sha256"] == hashlib.sha256(original.encode()).hexdigest()
    assert "previous" not in entry
    restored = restore_text(article.read_text(), m.recorded_edits("post.md"))
    assert restored.complete and restored.text == original


def test_crash_during_a_second_rewrite_brings_back_the_first_record(tmp_path):
    article = tmp_path / "post.md"
    original = "![a](https://h/a.jpg)\n![b](https://h/b.jpg)\n"
    article.write_text(original)
    m = Manifest.load(tmp_path / "manifest.json")
    first = _plan(m, article, original, [_edit(original, "https://h/a.jpg", "assets/aa.jpg")])
    article.write_bytes(first)
    m.mark_rewritten("post.md")
    first_entry = m.article("post.md")
    text1 = first.decode()
    _plan(m, article, text1, [_edit(text1, "https://h/b.jpg", "assets/b.jpg")])
    m.save()  # planned on disk, then the process is killed before the article is replaced
    m2 = Manifest.load(tmp_path / "manifest.json")
    assert m2.resolve_planned() == {"post.md": "not-replaced"}
    assert m2.article("post.md") == first_entry


def test_an_unchanged_rerun_keeps_the_rewrite_record(site):
    m = site.manifest()
    rel = "source/_posts/社区.md"
    before = m.article(rel)
    current = hashlib.sha256(site.path(rel).read_bytes()).hexdigest()
    state = m.plan_article(
        rel,
        encoding="utf-8",
        bom=False,
        newline="\n",
        original_sha256=current,
        rewritten_sha256=current,
        refs=[],
        edits=[],
    )
    assert state == "rewritten"
    assert m.article(rel) == before


def test_an_article_without_remote_images_is_recorded_unchanged(tmp_path):
    m = Manifest.load(tmp_path / "manifest.json")
    sha = hashlib.sha256(b"no images").hexdigest()
    state = m.plan_article(
        "plain.md",
        encoding="utf-8",
        bom=False,
        newline="\n",
        original_sha256=sha,
        rewritten_sha256=sha,
        refs=[],
        edits=[],
    )
    assert state == "unchanged" and m.article("plain.md")["edits"] == []
    m.mark_rewritten("plain.md")  # a no-op for an unchanged article
    assert m.article("plain.md")["state"] == "unchanged"


def test_a_rerun_over_a_hand_edited_article_keeps_what_restore_needs(tmp_path):
    article = tmp_path / "post.md"
    original = "![a](https://h/a.jpg)\n"
    article.write_text(original)
    m = Manifest.load(tmp_path / "manifest.json")
    new = _plan(m, article, original, [_edit(original, "https://h/a.jpg", "assets/a.jpg")])
    article.write_bytes(new)
    m.mark_rewritten("post.md")
    edited = "My notes.\n" + new.decode()
    article.write_text(edited)  # the author edits the post by hand
    # next night: nothing new to rewrite in it
    state = m.plan_article(
        "post.md",
        encoding="utf-8",
        bom=False,
        newline="\n",
        original_sha256=hashlib.sha256(edited.encode()).hexdigest(),
        rewritten_sha256=hashlib.sha256(edited.encode()).hexdigest(),
        refs=[],
        edits=[],
        text=edited,
    )
    entry = m.article("post.md")
    assert state == "rewritten" and entry["hand_edited"] is True
    assert restore_text(edited, m.recorded_edits("post.md")).text == "My notes.\n" + original


def test_new_edits_over_a_hand_edited_rewrite_are_composed_with_the_located_old_ones(tmp_path):
    article = tmp_path / "post.md"
    original = "![a](https://h/a.jpg)\n![b](https://h/b.jpg)\n"
    article.write_text(original)
    m = Manifest.load(tmp_path / "manifest.json")
    first = _plan(m, article, original, [_edit(original, "https://h/a.jpg", "assets/a.jpg")])
    m.mark_rewritten("post.md")
    edited = "Intro added by hand.\n" + first.decode()
    second = _plan(m, article, edited, [_edit(edited, "https://h/b.jpg", "assets/b.jpg")])
    m.mark_rewritten("post.md")
    entry = m.article("post.md")
    assert entry["hand_edited"] is True and "unrestored" not in entry
    assert entry["original_sha256"] == hashlib.sha256(original.encode()).hexdigest()
    restored = restore_text(second.decode(), m.recorded_edits("post.md"))
    assert restored.complete and restored.text == "Intro added by hand.\n" + original
    m.save()
    validate(json.loads((tmp_path / "manifest.json").read_text()))


def test_the_file_to_point_at_follows_the_canonical_copy(site):
    m = site.manifest()
    cover = "https://img.example.cn/2021/06/cover.jpg"
    other = "https://img.example.cn/2021/06/a.jpg"
    assert m.asset_file_for(cover) == m.resolve(m.asset(site.shas[cover])["path"])
    assert m.asset_file_for(cover).is_file()
    m.set_duplicates([DuplicateLink(site.shas[other], site.shas[cover], "duplicate", 2)])
    assert m.asset_file_for(other) == m.asset_file_for(cover)
    thumb = m.thumbnail_file_for(other, 320)
    assert thumb is not None and thumb.is_file() and thumb.suffix == ".webp"
    assert m.thumbnail_file_for(other, 640) is None
    assert m.asset_file_for("https://photos.example.org/kyoto/gone.jpg") is None
    assert m.asset_file_for("https://never.seen/x.jpg") is None
    assert m.in_store("ab/cd/x.jpg") == "assets/ab/cd/x.jpg"


def test_large_manifest_loads_with_structural_checks_only(site):
    data = json.loads(site.manifest_path.read_text())
    next(iter(data["urls"].values()))["status"] = "fine"  # deep problem: not looked at
    site.manifest_path.write_text(json.dumps(data))
    m = Manifest.load(site.manifest_path, validate_limit=1)
    assert len(m.data["assets"]) == 5
    del data["urls"]  # structural problem: still caught and moved aside
    site.manifest_path.write_text(json.dumps(data))
    with pytest.raises(ManifestCorrupt, match="urls"):
        Manifest.load(site.manifest_path, validate_limit=1)


def test_a_plan_over_a_partly_restored_article_resolves_by_its_base_hash(tmp_path):
    article = tmp_path / "post.md"
    text = "Edited by hand, restored in part: ![a](https://h/a.jpg)\n"
    article.write_text(text)
    m = Manifest.load(tmp_path / "manifest.json")
    sha = hashlib.sha256(b"the very first bytes").hexdigest()
    # an earlier record: restored, but the file is not the very first original any more
    m.data["articles"]["post.md"] = {
        "encoding": "utf-8",
        "bom": False,
        "newline": "\n",
        "state": "restored",
        "original_sha256": sha,
        "rewritten_sha256": sha,
        "refs": [],
        "edits": [],
        "planned_at": None,
        "rewritten_at": None,
        "restored_at": "2026-11-28T18:00:00Z",
    }
    _plan(m, article, text, [_edit(text, "https://h/a.jpg", "assets/a.jpg")])
    assert m.article("post.md")["base_sha256"] == hashlib.sha256(text.encode()).hexdigest()
    m.save()
    # killed before the replace: the file still has the bytes the plan was made from
    m2 = Manifest.load(tmp_path / "manifest.json")
    assert m2.resolve_planned() == {"post.md": "not-replaced"}
    assert m2.article("post.md")["state"] == "restored"


def test_image_infos_give_back_what_record_asset_stored(tmp_path):
    """Dedupe on a later run sees every earlier asset exactly as it was processed."""
    from dataclasses import replace

    from mirror.records import ImageInfo, Thumbnail

    m = Manifest.new(tmp_path / "manifest.json")
    first = ImageInfo(
        sha256="a" * 64,
        format="JPEG",
        media_type="image/jpeg",
        width=800,
        height=600,
        frames=1,
        has_alpha=False,
        bytes=12345,
        phash="8f3c0e1a2b4d6f70",
        dhash="0f0f0f0f0f0f0f0f",
        color="c81e1e" * 4,
        flat=False,
        quality=82,
        thumbnails=(Thumbnail(320, "webp", 320, 240, "thumbs/320/aa/" + "a" * 64 + ".webp"),),
        structure="AAEC",
    )
    second = replace(first, sha256="b" * 64, quality=None, structure="")
    m.record_asset(first, "assets/aa/aa/x.jpg")
    m.record_asset(second, "assets/bb/bb/y.jpg")
    m.record_asset_failure("c" * 64, "assets/cc/cc/z.png", "corrupt-image", "truncated", 10)

    assert m.image_infos() == [replace(first, thumbnails=()), replace(second, thumbnails=())]
