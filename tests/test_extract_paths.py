"""Walking folders and scanning many files: order, skipping, bad files, worker processes."""

from __future__ import annotations

from pathlib import Path

import pytest

import harvester.extract as extract
from harvester.extract import iter_article_paths, scan_paths
from harvester.settings import Settings

# shared/ sits beside the project root (in CI too, beside the fresh clone)
SHARED = Path(__file__).resolve().parents[2] / "shared"
CORPUS = SHARED / "corpus" / "articles"


def _tree(root: Path) -> None:
    for rel, text in {
        "b.md": "![b](https://e.org/b.png)",
        "a.markdown": "![a](https://e.org/a.png)",
        "sub/c.HTML": "<img src='https://e.org/c.png'>",
        "sub/d.txt": "![d](https://e.org/d.png)",
        ".git/e.md": "![e](https://e.org/e.png)",
        "node_modules/pkg/f.md": "![f](https://e.org/f.png)",
        ".draft.md": "![g](https://e.org/g.png)",
    }.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_folders_are_walked_sorted_by_extension_skipping_hidden_and_node_modules(tmp_path):
    _tree(tmp_path)
    found = [p.relative_to(tmp_path).as_posix() for p in iter_article_paths([tmp_path], Settings())]
    assert found == ["a.markdown", "b.md", "sub/c.HTML"]


def test_explicit_files_are_taken_as_given_in_the_given_order(tmp_path):
    _tree(tmp_path)
    given = [tmp_path / "sub" / "d.txt", tmp_path / "b.md"]
    assert list(iter_article_paths(given, Settings())) == given


def test_worker_processes_give_the_same_results_in_the_same_order(tmp_path):
    for i in range(150):
        body = f"---\nheadimg: https://e.org/h{i}.png\n---\n![a](https://e.org/{i}.png)\n"
        (tmp_path / f"p{i:03d}.md").write_text(body)
    (tmp_path / "p100.md").write_bytes(b"\x00\x01binary")
    serial = list(scan_paths([tmp_path], Settings()))
    parallel = list(scan_paths([tmp_path], Settings(), workers=2))
    assert [r.path for r in parallel] == [r.path for r in serial]
    assert [r.refs for r in parallel] == [r.refs for r in serial]
    assert [r.warnings for r in parallel] == [r.warnings for r in serial]
    bad = [r for r in serial if r.article is None]
    assert [(r.path.name, r.warnings[0].code) for r in bad] == [("p100.md", "binary")]
    assert sum(len(r.refs) for r in serial) == 298


def test_an_internal_error_in_one_file_becomes_a_warning_and_the_scan_goes_on(
    tmp_path, monkeypatch
):
    (tmp_path / "a.md").write_text("![a](https://e.org/a.png)")
    (tmp_path / "b.md").write_text("![b](https://e.org/b.png)")
    real = extract.scan_article

    def failing_for_a(article, settings):  # narrow: simulate a bug on one file
        if article.path.name == "a.md":
            raise RuntimeError("boom")
        return real(article, settings)

    monkeypatch.setattr(extract, "scan_article", failing_for_a)
    results = list(scan_paths([tmp_path], Settings()))
    assert [w.code for w in results[0].warnings] == ["scan-failed"]
    assert "boom" in results[0].warnings[0].message
    assert [r.url for r in results[1].refs] == ["https://e.org/b.png"]


@pytest.mark.skipif(not CORPUS.is_dir(), reason="shared corpus not present")
def test_the_real_corpus_scans_without_crash_and_spans_hold():
    results = list(scan_paths([CORPUS], Settings(site_url="https://me.example/")))
    assert len(results) == 31
    for result in results:
        assert result.article is not None
        assert not [w for w in result.warnings if w.code == "scan-failed"]
        for ref in result.refs:
            assert result.article.text[ref.start : ref.end] == ref.raw
            assert not result.article.is_protected(ref.start, ref.end) or ref.kind == "front-matter"
    by_name = {r.path.name: r for r in results}
    # the negative cases: images that exist only inside code fences
    assert by_name["zh-note-wechat-img-data-src-only-inside-code-fence.md"].refs == ()
    assert by_name["zh-note-css-background-image-entity-quoted-in-code-fence.md"].refs == ()
