"""Span rewriting: only the edited characters change, and restore undoes it exactly."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mirror.records import Edit, RecordedEdit
from mirror.rewrite import (
    TEMP_MARKER,
    EditMismatch,
    EditOutOfRange,
    EditOverlap,
    UnsafeArticle,
    apply_edits,
    compose_edits,
    edits_from_recorded,
    prefixed_target,
    recorded_edits,
    relative_target,
    remove_stale_temps,
    restore_text,
    write_bytes_atomic,
)

HEXO_POST = (
    "---\n"
    "title: 'Spring in Kyoto'\n"
    "headimg: 'https://img.example.com/2021/06/cover.jpg'\n"
    "---\n"
    "\r\n"
    '<img src="https://img.example.com/2021/06/a.jpg" title="点击查看大图" width="530">\n'
    '![alt](https://img.example.com/2021/06/b.png "title")\n'
)


def _edit_for(text: str, url: str, new: str, nth: int = 0) -> Edit:
    start = -1
    for _ in range(nth + 1):
        start = text.index(url, start + 1)
    return Edit(start, start + len(url), url, new)


def test_apply_edits_changes_only_the_spans():
    edits = [
        _edit_for(HEXO_POST, "https://img.example.com/2021/06/cover.jpg", "../assets/ab/cd/1.jpg"),
        _edit_for(HEXO_POST, "https://img.example.com/2021/06/a.jpg", "../assets/ef/01/2.jpg"),
        _edit_for(HEXO_POST, "https://img.example.com/2021/06/b.png", "../assets/23/45/3.png"),
    ]
    out = apply_edits(HEXO_POST, edits)
    expected = (
        HEXO_POST.replace("https://img.example.com/2021/06/cover.jpg", "../assets/ab/cd/1.jpg")
        .replace("https://img.example.com/2021/06/a.jpg", "../assets/ef/01/2.jpg")
        .replace("https://img.example.com/2021/06/b.png", "../assets/23/45/3.png")
    )
    assert out == expected
    assert "\r\n" in out and 'title="点击查看大图"' in out  # newline style and attributes kept


def test_apply_edits_refuses_a_span_that_no_longer_holds_the_old_text():
    edit = Edit(0, 5, "https", "local")
    with pytest.raises(EditMismatch):
        apply_edits("http://x", [edit])


def test_apply_edits_refuses_overlaps_and_out_of_range():
    text = "https://a/b.jpg"
    with pytest.raises(EditOverlap):
        apply_edits(text, [Edit(0, 10, text[:10], "x"), Edit(5, 15, text[5:], "y")])
    with pytest.raises(EditOutOfRange):
        apply_edits(text, [Edit(10, 99, text[10:], "y")])


def test_apply_edits_checks_everything_before_changing_anything():
    text = "one https://a/1.jpg two https://a/2.jpg"
    good = _edit_for(text, "https://a/1.jpg", "L1")
    bad = Edit(24, 39, "https://a/X.jpg", "L2")
    with pytest.raises(EditMismatch):
        apply_edits(text, [good, bad])


# ----------------------------------------------------------------- property: rewrite ∘ restore


ALPHABET = st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="⟦⟧")


@st.composite
def text_and_edits(draw, distinctive: bool = False):
    alphabet = ALPHABET
    text = draw(st.text(alphabet=alphabet, max_size=300))
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=12)))
    edits = []
    for a, b in zip(cuts[0::2], cuts[1::2], strict=False):
        if b <= a:
            continue  # zero-length spans: nothing to replace
        new = draw(st.text(alphabet=alphabet, min_size=1, max_size=40))
        if distinctive:  # like real targets: a path that appears nowhere else in the text
            new = f"⟦{len(edits)}:{new}⟧"
        edits.append(Edit(a, b, text[a:b], new))
    return text, edits


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(text_and_edits())
def test_rewrite_then_restore_is_the_identity(case):
    text, edits = case
    rewritten = apply_edits(text, edits)
    recorded = recorded_edits(text, edits)
    # every recorded span holds its local text, and outside the spans nothing changed
    cursor_old = 0
    cursor_new = 0
    for edit, rec in zip(edits, recorded, strict=True):
        assert rewritten[rec.start : rec.end] == edit.new == rec.local
        assert rec.original == edit.old
        assert text[cursor_old : edit.start] == rewritten[cursor_new : rec.start]
        cursor_old, cursor_new = edit.end, rec.end
    assert text[cursor_old:] == rewritten[cursor_new:]
    result = restore_text(rewritten, recorded)
    assert result.complete
    assert result.text == text
    assert edits_from_recorded(recorded) == sorted(edits, key=lambda e: e.start)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(text_and_edits(distinctive=True), st.text(alphabet=ALPHABET, max_size=30))
def test_restore_survives_text_inserted_above_all_edits(case, prefix):
    text, edits = case
    rewritten = apply_edits(text, edits)
    recorded = recorded_edits(text, edits)
    result = restore_text(prefix + rewritten, recorded)
    # inserting above shifts every span by the same amount: all are found at the shift
    assert result.complete
    assert result.text == prefix + text


def test_second_rewrite_composes_so_one_restore_gives_the_first_original():
    original = "a ![x](https://h/1.jpg) b ![y](https://h/2.jpg) c"
    first = [_edit_for(original, "https://h/1.jpg", "../assets/one.jpg")]
    text1 = apply_edits(original, first)
    rec1 = recorded_edits(original, first)
    # a later run mirrors the second image (it failed the first time)
    second = [_edit_for(text1, "https://h/2.jpg", "../assets/two-two.jpg")]
    text2 = apply_edits(text1, second)
    combined = compose_edits(rec1, text1, second)
    locals_now = [text2[e.start : e.end] for e in combined]
    assert locals_now == ["../assets/one.jpg", "../assets/two-two.jpg"]
    assert restore_text(text2, combined).text == original


def test_compose_keeps_the_first_original_when_a_local_target_is_replaced():
    original = "x https://h/1.jpg y"
    text1 = apply_edits(original, [_edit_for(original, "https://h/1.jpg", "old/1.jpg")])
    rec1 = recorded_edits(original, [_edit_for(original, "https://h/1.jpg", "old/1.jpg")])
    second = [_edit_for(text1, "old/1.jpg", "new/canonical.jpg")]
    combined = compose_edits(rec1, text1, second)
    assert combined == [RecordedEdit(2, 19, "https://h/1.jpg", "new/canonical.jpg")]
    assert restore_text(apply_edits(text1, second), combined).text == original


# ----------------------------------------------------------------- restore after hand edits

POST = (
    "---\nthumbnail: https://cdn.example.org/t.jpg\n---\n"
    "Intro.\n\n![one](https://cdn.example.org/1.jpg)\n\n"
    "Middle.\n\n![two](https://cdn.example.org/2.jpg)\n"
)


def _rewrite_post():
    edits = [
        _edit_for(POST, "https://cdn.example.org/t.jpg", "../assets/t.jpg"),
        _edit_for(POST, "https://cdn.example.org/1.jpg", "../assets/1.jpg"),
        _edit_for(POST, "https://cdn.example.org/2.jpg", "../assets/2.jpg"),
    ]
    return apply_edits(POST, edits), recorded_edits(POST, edits)


def test_restore_after_a_paragraph_was_added_and_another_changed():
    rewritten, recorded = _rewrite_post()
    edited = rewritten.replace("Intro.", "Intro, now longer.\n\nA new paragraph.").replace(
        "Middle.", "Mid."
    )
    result = restore_text(edited, recorded)
    assert result.complete
    assert result.text == POST.replace("Intro.", "Intro, now longer.\n\nA new paragraph.").replace(
        "Middle.", "Mid."
    )


def test_restore_reports_a_deleted_image_and_restores_the_rest():
    rewritten, recorded = _rewrite_post()
    edited = rewritten.replace("![one](../assets/1.jpg)\n\n", "")
    result = restore_text(edited, recorded)
    assert [u.edit.local for u in result.unrestored] == ["../assets/1.jpg"]
    assert result.unrestored[0].reason == "not-found"
    assert "thumbnail: https://cdn.example.org/t.jpg" in result.text
    assert "![two](https://cdn.example.org/2.jpg)" in result.text


def test_restore_does_not_guess_between_two_copies_of_a_local_target():
    rewritten, recorded = _rewrite_post()
    # the author copied the image line twice and moved text so no offset matches any more
    edited = rewritten.replace(
        "Intro.\n\n![one](../assets/1.jpg)", "X\n![one](../assets/1.jpg)\n![again](../assets/1.jpg)"
    )
    result = restore_text(edited, recorded)
    assert [u.edit.local for u in result.unrestored] == ["../assets/1.jpg"]
    assert result.unrestored[0].reason == "ambiguous"
    assert result.text.count("../assets/1.jpg") == 2  # both copies left as they were
    assert "https://cdn.example.org/2.jpg" in result.text


def test_restore_pairs_repeated_targets_in_order_when_counts_match():
    text = "a https://h/x.jpg b https://h/x.jpg c"
    edits = [_edit_for(text, "https://h/x.jpg", "L.jpg", n) for n in (0, 1)]
    rewritten = apply_edits(text, edits)
    recorded = recorded_edits(text, edits)
    edited = "new first line\n" + rewritten.replace(" b ", " bee ")
    result = restore_text(edited, recorded)
    assert result.complete
    assert result.text == "new first line\n" + text.replace(" b ", " bee ")


# ----------------------------------------------------------------- targets


def test_relative_target_from_nested_article_with_spaces_and_non_ascii(tmp_path):
    article = tmp_path / "my site" / "文章" / "2021" / "post.md"
    store_file = tmp_path / "my site" / "assets" / "ab" / "cd" / "abcd.jpg"
    assert relative_target(article, store_file) == "../../assets/ab/cd/abcd.jpg"
    assert relative_target(tmp_path / "p.md", store_file) == "my site/assets/ab/cd/abcd.jpg"


def test_prefixed_target_joins_with_exactly_one_slash():
    assert prefixed_target("/images/mirror/", "ab/cd/x.jpg") == "/images/mirror/ab/cd/x.jpg"
    assert prefixed_target("/images/mirror", "/ab/cd/x.jpg") == "/images/mirror/ab/cd/x.jpg"
    assert (
        prefixed_target("https://cdn.example.com", "ab/x.jpg") == "https://cdn.example.com/ab/x.jpg"
    )


# ----------------------------------------------------------------- atomic write


def test_atomic_write_keeps_mode_and_leaves_no_temp_file(tmp_path):
    article = tmp_path / "post.md"
    article.write_bytes(b"old")
    os.chmod(article, 0o640)
    write_bytes_atomic(article, "new ✓".encode())
    assert article.read_bytes() == "new ✓".encode()
    assert stat.S_IMODE(article.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["post.md"]


def test_atomic_write_creates_a_new_file_with_the_default_mode(tmp_path):
    target = tmp_path / "manifest.json"
    old = os.umask(0o022)
    try:
        write_bytes_atomic(target, b"{}")
    finally:
        os.umask(old)
    assert target.read_bytes() == b"{}"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_atomic_write_refuses_symlinks_and_read_only_files(tmp_path):
    real = tmp_path / "real.md"
    real.write_bytes(b"keep me")
    link = tmp_path / "link.md"
    link.symlink_to(real)
    with pytest.raises(UnsafeArticle) as info:
        write_bytes_atomic(link, b"x")
    assert info.value.reason == "symlink"
    os.chmod(real, 0o444)
    with pytest.raises(UnsafeArticle) as info:
        write_bytes_atomic(real, b"x")
    assert info.value.reason == "read-only"
    assert real.read_bytes() == b"keep me"
    assert link.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.md", "real.md"]


def test_failed_replace_keeps_the_old_bytes_and_removes_the_temp(tmp_path, monkeypatch):
    article = tmp_path / "post.md"
    article.write_bytes(b"original")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        write_bytes_atomic(article, b"rewritten")
    monkeypatch.undo()
    assert article.read_bytes() == b"original"
    assert [p.name for p in tmp_path.iterdir()] == ["post.md"]


def test_stale_temps_from_a_killed_run_are_swept(tmp_path):
    (tmp_path / "post.md").write_text("x")
    leftover = tmp_path / f".post.md{TEMP_MARKER}abc123"
    leftover.write_text("half")
    (tmp_path / ".hidden-but-ours-not").write_text("keep")
    assert remove_stale_temps(tmp_path) == [leftover]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden-but-ours-not", "post.md"]


def test_restore_of_untouched_text_gives_back_exact_bytes_with_bom_and_crlf(tmp_path: Path):
    original = "\ufeff---\r\ncover: 'https://h/c.jpg'\r\n---\r\n<img src=\"https://h/a.jpg\">\r\n"
    edits = [
        _edit_for(original, "https://h/c.jpg", "../a/c.jpg"),
        _edit_for(original, "https://h/a.jpg", "../a/a.jpg"),
    ]
    rewritten = apply_edits(original, edits)
    restored = restore_text(rewritten, recorded_edits(original, edits)).text
    assert restored.encode() == original.encode()


def test_restore_never_puts_the_wrong_original_back_for_a_shared_local_target():
    # two different URLs folded onto one canonical copy share the same local target
    text = 'top\n![a](https://h/x.jpg)\n<img src="https://mirror.h/x-big.jpg">\n'
    edits = [
        _edit_for(text, "https://h/x.jpg", "../assets/c.jpg"),
        _edit_for(text, "https://mirror.h/x-big.jpg", "../assets/c.jpg"),
    ]
    rewritten = apply_edits(text, edits)
    recorded = recorded_edits(text, edits)
    # the author rewrote the top and deleted the markdown image: one local target is left,
    # and either recorded edit could own it
    edited = rewritten.replace("top\n![a](../assets/c.jpg)\n", "a new beginning\n")
    result = restore_text(edited, recorded)
    assert result.text == edited  # nothing guessed
    assert sorted(u.reason for u in result.unrestored) == ["ambiguous", "ambiguous"]


def test_restore_puts_back_a_shared_target_when_all_owners_agree():
    text = "top\n![a](https://h/x.jpg)\n![b](https://h/x.jpg)\n"
    edits = [_edit_for(text, "https://h/x.jpg", "../assets/c.jpg", n) for n in (0, 1)]
    rewritten = apply_edits(text, edits)
    edited = rewritten.replace("top\n![a](../assets/c.jpg)\n", "a new beginning\n")
    result = restore_text(edited, recorded_edits(text, edits))
    assert result.text == "a new beginning\n![b](https://h/x.jpg)\n"
    assert [u.reason for u in result.unrestored] == ["not-found"]


@st.composite
def two_runs(draw):
    text, first = draw(text_and_edits())
    text1 = apply_edits(text, first)
    rec1 = recorded_edits(text, first)
    # the second run edits free stretches of text1 and may replace earlier local targets
    taken = [(r.start, r.end) for r in rec1]
    second: list[Edit] = []
    for r in rec1:
        if draw(st.booleans()):
            second.append(Edit(r.start, r.end, r.local, draw(st.text(min_size=1, max_size=9))))
    cuts = sorted(draw(st.lists(st.integers(0, len(text1)), max_size=8)))
    for a, b in zip(cuts[0::2], cuts[1::2], strict=False):
        if b > a and all(b <= s or a >= e for s, e in taken):
            second.append(Edit(a, b, text1[a:b], draw(st.text(min_size=1, max_size=9))))
            taken.append((a, b))
    return text, text1, rec1, second


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(two_runs())
def test_composed_runs_restore_to_the_first_original(case):
    text, text1, rec1, second = case
    text2 = apply_edits(text1, second)
    combined = compose_edits(rec1, text1, second)
    for r in combined:
        assert text2[r.start : r.end] == r.local
    result = restore_text(text2, combined)
    assert result.complete and result.text == text


@pytest.mark.parametrize(
    "layout", ["plain", "store-is-a-link", "link-inside-store", "store-is-the-site"]
)
def test_rewriter_finds_the_real_path_of_a_stored_file_as_realpath_does(tmp_path, layout):
    """Links are computed between real paths; the shortcut below the store's real root must
    give what realpath gives, links or not."""
    from harvester.maintenance import open_manifest
    from harvester.rewriting import Rewriter
    from harvester.settings import Settings
    from harvester.summary import RunSummary
    from mirror.store import Store

    site = tmp_path / "site"
    site.mkdir()
    real_store = tmp_path / "elsewhere" / "assets"
    real_store.mkdir(parents=True)
    store_path = site / "assets"
    if layout == "store-is-the-site":
        store_path = site
    elif layout == "store-is-a-link":
        store_path.symlink_to(real_store, target_is_directory=True)
    elif layout == "plain":
        store_path = real_store
    else:  # link-inside-store
        store_path.mkdir()
    folder = store_path / "ab" / "cd"
    if layout == "link-inside-store":
        other = tmp_path / "other-cd"
        other.mkdir()
        (store_path / "ab").mkdir()
        folder.symlink_to(other, target_is_directory=True)
    else:
        folder.mkdir(parents=True)
    (folder / "abcd.jpg").write_bytes(b"x")
    manifest = open_manifest(site / "manifest.json", must_exist=False)
    store = Store(store_path)
    manifest.set_store(store.root)
    rewriter = Rewriter(manifest, store, Settings(), RunSummary(manifest="m", dry_run=False))
    target = manifest.rel(folder / "abcd.jpg")
    assert rewriter._real_path(target) == os.path.realpath(manifest.resolve(target))
    assert os.path.isfile(rewriter._real_path(target))


def test_an_article_whose_edits_overlap_is_skipped_and_the_run_goes_on(tmp_path):
    """Two scanners claiming overlapping spans is a bug; it must cost that one article
    (kept as it was, with a warning and the refs' reason), not the whole rewrite stage."""
    from harvester.articles import load_article
    from harvester.records import ImageRef
    from harvester.rewriting import Rewriter
    from harvester.settings import Settings
    from harvester.summary import RunSummary

    class Manifest:  # the parts of mirror.manifest.Manifest that planning reads
        last_save_seconds = 0.0

        def __init__(self):
            self.planned = {}

        def url(self, url):
            return {"status": "ok", "sha256": "a" * 64}

        def canonical(self, sha):
            return sha

        def asset(self, sha):
            return {"status": "ok", "path": "assets/a.jpg"}

        def resolve(self, path):
            return tmp_path / path

        def rel(self, path):
            return Path(path).relative_to(tmp_path).as_posix()

        def plan_article(self, key, **fields):
            self.planned[key] = fields
            return "planned" if fields["edits"] else "unchanged"

    class Store:
        root = tmp_path / "assets"

    Store.root.mkdir()
    (Store.root / "a.jpg").write_bytes(b"x")
    post = tmp_path / "post.md"
    text = "![a](https://e.org/a.jpg/) x\n"
    post.write_text(text)

    def ref(end: int) -> ImageRef:
        raw = text[5:end]
        return ImageRef(str(post), 5, end, 1, "markdown-inline", "markdown", "destination",
                        raw, raw, "no-referrer", None)  # fmt: skip

    summary = RunSummary(manifest="m", dry_run=False)
    manifest = Manifest()
    rewriter = Rewriter(manifest, Store(), Settings(url_prefix="/m"), summary)

    assert rewriter.plan(load_article(post), [ref(24), ref(25)]) is None
    assert summary.articles_skipped == 1 and "overlap" in summary.warnings[0].lower()
    refs = manifest.planned["post.md"]["refs"]
    assert {(r["local"], r["status"], r["reason"]) for r in refs} == {
        (None, "skipped", "edit-overlap")
    }
    assert post.read_text() == text


@pytest.mark.parametrize(
    ("prefix", "needs"),
    [
        (None, True),
        ("", True),
        ("images/mirror", True),  # relative: Hexo would read the word as a CSS class
        ("/images/mirror", False),
        ("https://cdn.example.org/mirror", False),
    ],
)
def test_a_template_tag_is_rewritten_only_to_a_site_root_or_full_url(prefix, needs):
    from harvester.rewriting import needs_site_path
    from harvester.settings import Settings

    settings = Settings(url_prefix=prefix)
    assert needs_site_path("template", settings) is needs
    assert needs_site_path("markdown", settings) is False  # other syntaxes take any target
