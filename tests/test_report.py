"""`harvester report` and `harvester decide` on a small real mirror (real images, thumbnails)."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import pytest

from harvester.report import write_report
from tests.test_report_support import (
    EVIL_URL,
    RESCUED_URL,
    SNAPSHOT_URL,
    Mirror,
    Node,
    build_small_mirror,
    parse_html,
)

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "harvester", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Mirror:
    return build_small_mirror(tmp_path_factory.mktemp("site"))


@pytest.fixture(scope="module")
def rendered(mirror: Mirror) -> tuple[Path, str, Node]:
    out = mirror.root / "reports" / "report.html"
    result = cli(
        "report", "--manifest", "manifest.json", "--out", "reports/report.html", cwd=mirror.root
    )
    assert result.returncode == 0, result.stderr
    html = out.read_text("utf-8")
    return out, html, parse_html(html)


def canonical_groups(data: dict) -> dict[str, dict[str, int]]:
    groups: dict[str, dict[str, int]] = {}
    for sha, asset in data["assets"].items():
        if asset.get("duplicate_of"):
            groups.setdefault(asset["duplicate_of"], {})[sha] = asset["distance"]
    return groups


def test_the_test_mirror_is_a_valid_manifest(mirror):
    from mirror.manifest import validate

    validate(mirror.data)  # raises, listing the problems, if the fixture drifts from the schema


def test_duplicate_groups_show_every_copy_with_the_canonical_marked(mirror, rendered):
    _, _, tree = rendered
    section = tree.find("section", id="duplicates")
    groups = section.find_all("div", cls="group")
    expected = canonical_groups(mirror.data)
    assert {g.attrs["data-canonical"] for g in groups} == set(expected)
    assert len(expected) == 2
    for group in groups:
        canon = group.attrs["data-canonical"]
        canonical_cards = group.find_all("figure", cls="canonical")
        assert [c.attrs["data-sha"] for c in canonical_cards] == [canon]
        assert "canonical" in canonical_cards[0].find("span", cls="canonical").text()
        members = group.find_all("figure", cls="member")
        assert {
            m.attrs["data-sha"]: int(m.find("span", cls="distance").attrs["data-distance"])
            for m in members
        } == expected[canon]
        for card in [*canonical_cards, *members]:
            asset = mirror.data["assets"][card.attrs["data-sha"]]
            assert card.find("span", cls="dims").text() == f"{asset['width']}×{asset['height']}"
            assert card.find("span", cls="format").text() == asset["format"]
            assert card.find("span", cls="size").text().endswith("KiB")
            # each member offers the command that keeps it apart next time
        for member in members:
            cmd = member.find("code", cls="cmd").text()
            assert cmd == f"harvester decide different {canon[:12]} {member.attrs['data-sha'][:12]}"


def test_similar_pair_is_shown_side_by_side_with_its_distance(mirror, rendered):
    _, _, tree = rendered
    pairs = tree.find("section", id="similar").find_all("div", cls="pair")
    c1, c2 = mirror.sha["C1"], mirror.sha["C2"]
    assert [(p.attrs["data-a"], p.attrs["data-b"]) for p in pairs] == [tuple(sorted((c1, c2)))]
    expected = mirror.data["assets"][c1]["similar_to"][0]["distance"]
    assert pairs[0].find("span", cls="distance").attrs["data-distance"] == str(expected)
    assert {f.attrs["data-sha"] for f in pairs[0].find_all("figure")} == {c1, c2}
    assert "harvester decide same" in pairs[0].find("code", cls="cmd").text()


def test_failures_are_grouped_by_reason_with_urls_articles_attempts_and_retry(mirror, rendered):
    _, _, tree = rendered
    section = tree.find("section", id="failures")
    by_reason = {d.attrs["data-reason"]: d for d in section.find_all("details", cls="reason")}
    assert set(by_reason) == {"http-404", "dns-failure", "not-an-image", "corrupt-image"}

    urls_404 = {r.attrs["data-url"] for r in by_reason["http-404"].find_all("tr", cls="failure")}
    assert urls_404 == {"https://gone.example.com/old.jpg", EVIL_URL}

    def row(url: str) -> Node:
        return section.find("tr", cls="failure", data_url=url)

    gone = row("https://gone.example.com/old.jpg")
    articles = [li.text() for li in gone.find("td", cls="articles").find_all("li")]
    assert sorted(articles) == ["notes/sunsets.html", "posts/2014-harbour.md"]
    hot = row("https://hotlink.example.com/p.jpg")
    assert hot.find("td", cls="attempts").text() == "5"
    assert hot.find("td", cls="retry").text() == "2026-11-29T18:00:00Z"
    assert "permanent" in gone.find("td", cls="retry").text()
    # bytes that were fetched but could not be decoded are failures too, with the decoder's words
    broken = row("https://img.example.com/broken.jpg")
    assert "truncated" in broken.find("td", cls="detail").text()

    summary = tree.find("section", id="summary")
    rows = summary.find("table", cls="by-reason").find_all("tr")
    counts = {r.attrs["data-reason"]: r.find("td", cls="num").text() for r in rows[1:]}
    assert counts == {
        "http-404": "2",
        "dns-failure": "1",
        "not-an-image": "1",
        "corrupt-image": "1",
    }


def test_per_article_view_lists_each_reference_and_where_it_points_now(mirror, rendered):
    _, _, tree = rendered
    views = {d.attrs["data-path"]: d for d in tree.find_all("details", cls="article")}
    assert set(views) == set(mirror.data["articles"])
    for path, article in mirror.data["articles"].items():
        rows = views[path].find_all("tr", cls="ref")
        assert len(rows) == len(article["refs"])
        for row, ref in zip(rows, article["refs"], strict=True):
            target = row.find("td", cls="target").text()
            if ref["local"]:
                assert target.startswith(ref["local"])
                # the target really is the stored file of the canonical copy
                assert (mirror.root / path).parent.joinpath(ref["local"]).resolve().is_file()
            else:
                assert "still remote" in target
            assert row.attrs["data-status"] == ref["status"]
    remote = views["notes/sunsets.html"].attrs.get("data-remote")
    assert remote == str(
        sum(1 for r in mirror.data["articles"]["notes/sunsets.html"]["refs"] if not r["local"])
    )


def test_rescued_images_are_marked_with_their_snapshot(mirror, rendered):
    _, _, tree = rendered
    rescued = tree.find("section", id="rescued").find("tr", cls="rescue", data_url=RESCUED_URL)
    assert SNAPSHOT_URL in rescued.text()
    assert "2014-03-01 00:00:00" in rescued.text()  # the capture time, read from the snapshot
    ref_row = next(
        r
        for r in tree.find("details", data_path="posts/2014-harbour.md").find_all("tr", cls="ref")
        if RESCUED_URL in r.text()
    )
    assert "rescued from archive" in ref_row.find("span", cls="rescued").text()
    assert tree.find("div", data_stat="rescued").find("span", cls="n").text() == "1"


def test_summary_counts_and_bytes_match_the_manifest(mirror, rendered):
    _, _, tree = rendered
    data = mirror.data
    refs = [r for a in data["articles"].values() for r in a["refs"]]

    def stat(name: str) -> str:
        return tree.find("div", data_stat=name).find("span", cls="n").text()

    assert stat("articles") == "3"
    assert stat("references") == str(len(refs))
    in_use = {r["local"].split("/")[-1].split(".")[0] for r in refs if r["local"]}
    assert stat("unique-images") == str(len(in_use))
    referenced = sum(
        data["assets"][data["urls"][r["url"]]["sha256"]]["bytes"] for r in refs if r["local"]
    )
    needed = sum(data["assets"][sha]["bytes"] for sha in in_use)
    assert referenced > needed  # the fixture does save space
    text = tree.find("div", data_stat="bytes").text()
    from harvester.report import human_bytes

    assert human_bytes(referenced) in text and stat("bytes") == human_bytes(needed)
    assert f"({round(100 * (referenced - needed) / referenced)}%)" in text


def test_page_loads_nothing_from_the_network_and_thumbnails_resolve_from_disk(rendered):
    out, html, tree = rendered
    external = re.compile(r"^\s*(https?:|//)", re.I)
    for node in tree.iter():
        if node.tag in ("img", "script", "link", "source", "iframe", "video", "audio"):
            for attr in ("src", "href", "srcset"):
                value = node.attrs.get(attr)
                assert value is None or not external.match(value), (node.tag, value)
    assert not tree.find_all("link") and all("src" not in s.attrs for s in tree.find_all("script"))
    assert "@import" not in html and "url(http" not in html
    csp = tree.find("meta", http_equiv="Content-Security-Policy").attrs["content"]
    assert "default-src 'none'" in csp
    images = tree.find_all("img")
    assert len(images) >= 7
    for img in images:
        assert img.attrs["loading"] == "lazy"
        target = (out.parent / unquote(img.attrs["src"])).resolve()
        assert target.is_file() and target.suffix == ".webp", img.attrs["src"]


def test_hostile_url_is_escaped_not_executed(rendered):
    _, html, tree = rendered
    assert "<script>alert(" not in html
    assert len(tree.find_all("script")) == 1  # only the page's own filter script
    row = tree.find("tr", cls="failure", data_url=EVIL_URL)  # the attribute round-trips intact
    assert row.find("a").attrs["href"] == EVIL_URL
    assert EVIL_URL in row.find("td", cls="url").text()


def test_only_http_urls_become_links_and_paths_outside_the_site_are_never_shown(tmp_path):
    mirror = build_small_mirror(tmp_path)
    data = json.loads(mirror.manifest.read_text("utf-8"))
    data["urls"]["javascript:alert(1)"] = {"status": "failed", "reason": "bad-scheme"}
    secret = tmp_path.parent / "secret.webp"
    secret.write_bytes(b"RIFF-not-for-the-report")
    canon = mirror.sha["A"]
    data["assets"][canon]["thumbnails"] = [{"size": 320, "path": "../secret.webp"}]
    data["assets"][canon]["path"] = "/etc/passwd"
    other = mirror.sha["B"]  # a path inside the site that is not a picture is not shown either
    data["assets"][other]["thumbnails"] = [{"size": 320, "path": "manifest.json"}]
    data["assets"][other]["path"] = "posts/../manifest.json"
    mirror.manifest.write_text(json.dumps(data), "utf-8")

    result = write_report(mirror.manifest, tmp_path / "r.html", embed_thumbnails=True)
    html = result.out.read_text("utf-8")
    tree = parse_html(html)
    row = tree.find("tr", cls="failure", data_url="javascript:alert(1)")
    assert not row.find_all("a") and "javascript:alert(1)" in row.text()
    card = tree.find("figure", cls="canonical", data_sha=canon)
    assert not card.find_all("img") and "no thumbnail" in card.text()
    assert base64.b64encode(b"RIFF-not-for-the-report").decode() not in html
    assert not tree.find("figure", cls="canonical", data_sha=other).find_all("img")
    assert "data:application" not in html


def test_embedded_thumbnails_make_one_portable_file(mirror, tmp_path):
    result = write_report(mirror.manifest, tmp_path / "portable.html", embed_thumbnails=True)
    tree = parse_html(result.out.read_text("utf-8"))
    srcs = {img.attrs["src"] for img in tree.find_all("img")}
    assert srcs and all(s.startswith("data:image/webp;base64,") for s in srcs)
    thumbs = {
        (mirror.root / a["thumbnails"][0]["path"]).read_bytes()
        for a in mirror.data["assets"].values()
        if a.get("thumbnails")
    }
    assert {base64.b64decode(s.split(",", 1)[1]) for s in srcs} <= thumbs


def test_large_sections_are_split_into_linked_pages(mirror, tmp_path):
    out = tmp_path / "site-report" / "index.html"
    result = write_report(mirror.manifest, out, page_size=1)
    extra = sorted(p.name for p in (out.parent / "index.files").iterdir())
    # 2 groups, 1 pair, 5 failures, 3 articles → pages 2..n of each section
    assert extra == [
        "articles-2.html",
        "articles-3.html",
        "duplicates-2.html",
        "failures-2.html",
        "failures-3.html",
        "failures-4.html",
        "failures-5.html",
    ]
    assert len(result.pages) == 1 + len(extra)
    index = parse_html(out.read_text("utf-8"))
    hrefs = [
        a.attrs["href"]
        for a in index.find("section", id="failures").find_all("a")
        if a.parent and "pager" in a.parent.classes
    ]
    assert hrefs and all((out.parent / h.split("#")[0]).is_file() for h in hrefs)
    page = out.parent / "index.files" / "articles-3.html"
    tree = parse_html(page.read_text("utf-8"))
    assert [d.attrs["data-path"] for d in tree.find_all("details", cls="article")] == [
        sorted(mirror.data["articles"])[2]
    ]
    assert not tree.find_all("section", id="summary")
    back = tree.find("h1").find("a").attrs["href"]
    assert (page.parent / back).resolve() == out.resolve()
    dup_page = out.parent / "index.files" / "duplicates-2.html"
    for img in parse_html(dup_page.read_text("utf-8")).find_all("img"):
        assert (dup_page.parent / unquote(img.attrs["src"])).resolve().is_file()

    # a later, shorter report removes the pages nobody links to any more
    write_report(mirror.manifest, out, page_size=1000)
    assert not any((out.parent / "index.files").iterdir())


def test_bad_or_missing_manifest_is_a_clear_error_and_writes_nothing(tmp_path):
    result = cli("report", "--manifest", "nope.json", cwd=tmp_path)
    assert result.returncode == 2 and "no manifest" in result.stderr
    (tmp_path / "manifest.json").write_text("{not json", "utf-8")
    result = cli("report", cwd=tmp_path)
    assert result.returncode == 2 and "not a valid manifest" in result.stderr
    assert not (tmp_path / "report.html").exists()
    assert (tmp_path / "manifest.json").read_text("utf-8") == "{not json"


def test_report_json_output(mirror, tmp_path):
    result = cli(
        "report",
        "--manifest",
        str(mirror.manifest),
        "--out",
        str(tmp_path / "r.html"),
        "--json",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["duplicates_merged"] == 3 and payload["similar_pairs"] == 1
    assert payload["failures"] == 5 and payload["articles"] == 3
    assert payload["bytes"] == (tmp_path / "r.html").stat().st_size


# --- decide ---------------------------------------------------------------------------------


def test_decide_round_trip_records_only_the_decisions_key(tmp_path):
    mirror = build_small_mirror(tmp_path)
    before = json.loads(mirror.manifest.read_text("utf-8"))
    canon, member = mirror.sha["A"], mirror.sha["A_small"]
    c1, c2 = mirror.sha["C1"], mirror.sha["C2"]

    result = cli("decide", "different", canon[:10], member[:8], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "recorded 'different'" in result.stdout
    result = cli("decide", "same", c2, c1[:12], cwd=tmp_path)
    assert result.returncode == 0, result.stderr

    after = json.loads(mirror.manifest.read_text("utf-8"))
    assert after["decisions"] == {
        "same": [sorted([c1, c2])],
        "different": [sorted([canon, member])],
    }
    assert {k: v for k, v in after.items() if k != "decisions"} == {
        k: v for k, v in before.items() if k != "decisions"
    }

    out = tmp_path / "report.html"
    assert cli("report", cwd=tmp_path).returncode == 0
    tree = parse_html(out.read_text("utf-8"))
    card = tree.find("figure", cls="member", data_sha=member)
    assert card.find("span", cls="decision").attrs["data-decision"] == "different"
    assert tree.find("div", cls="pair").find("span", cls="decision").text() == "you said: same"
    rows = tree.find("section", id="decisions").find_all("tr", cls="decision")
    assert {(r.attrs["data-verdict"], r.attrs["data-a"], r.attrs["data-b"]) for r in rows} == {
        ("same", *sorted([c1, c2])),
        ("different", *sorted([canon, member])),
    }

    # a new verdict on the same pair replaces the old one; forget removes it
    assert cli("decide", "same", member, canon, cwd=tmp_path).returncode == 0
    decisions = json.loads(mirror.manifest.read_text("utf-8"))["decisions"]
    assert decisions == {
        "same": sorted([sorted([c1, c2]), sorted([canon, member])]),
        "different": [],
    }
    result = cli("decide", "forget", canon, member, cwd=tmp_path)
    assert result.returncode == 0 and "forgot 'same'" in result.stdout
    decisions = json.loads(mirror.manifest.read_text("utf-8"))["decisions"]
    assert decisions == {"same": [sorted([c1, c2])], "different": []}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["maybe", "A", "B"], "verdict must be one of"),
        (["same", "A", "A"], "the same asset"),
        (["same", "A", "0000000000"], "no asset"),
        (["same", "A", "abc"], "prefix of at least 6"),
        (["same", "A", "zzzzzzzz"], "prefix of at least 6"),
    ],
)
def test_decide_rejects_bad_arguments_and_leaves_the_manifest_alone(tmp_path, args, message):
    mirror = build_small_mirror(tmp_path)
    original = mirror.manifest.read_bytes()
    args = [mirror.sha.get(a, a) for a in args]
    result = cli("decide", *args, cwd=tmp_path)
    assert result.returncode == 2, result.stdout
    assert message in result.stderr
    assert mirror.manifest.read_bytes() == original


def test_decide_refuses_an_ambiguous_prefix(tmp_path):
    mirror = build_small_mirror(tmp_path)
    data = json.loads(mirror.manifest.read_text("utf-8"))
    # two assets sharing a 6-digit prefix
    a = mirror.sha["A"]
    twin = a[:6] + ("0" if a[6] != "0" else "1") + a[7:]
    data["assets"][twin] = dict(data["assets"][a])
    mirror.manifest.write_text(json.dumps(data), "utf-8")
    original = mirror.manifest.read_bytes()
    result = cli("decide", "different", a[:6], mirror.sha["B"], cwd=tmp_path)
    assert result.returncode == 2 and "ambiguous" in result.stderr
    assert mirror.manifest.read_bytes() == original
    assert cli("decide", "different", a[:7], mirror.sha["B"], cwd=tmp_path).returncode == 0


def test_decide_keeps_the_manifest_file_mode(tmp_path):
    mirror = build_small_mirror(tmp_path)
    mirror.manifest.chmod(0o640)
    assert cli("decide", "same", mirror.sha["C1"], mirror.sha["C2"], cwd=tmp_path).returncode == 0
    assert mirror.manifest.stat().st_mode & 0o777 == 0o640
    from mirror.manifest import validate

    validate(json.loads(mirror.manifest.read_text("utf-8")))  # still a valid manifest
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_failed_url_with_an_earlier_copy_and_a_failed_rescue_say_so(tmp_path):
    mirror = build_small_mirror(tmp_path)
    data = json.loads(mirror.manifest.read_text("utf-8"))
    kept = data["urls"]["https://img.example.com/c1.jpg"]  # was fetched before, now gone
    kept.update(status="failed", reason="http-410", message="410 Gone", http_status=410)
    gone = data["urls"]["https://gone.example.com/old.jpg"]
    gone.update(archive="no snapshot of this URL")
    mirror.manifest.write_text(json.dumps(data), "utf-8")

    tree = parse_html(write_report(mirror.manifest, tmp_path / "r.html").out.read_text("utf-8"))
    row = tree.find("tr", cls="failure", data_url="https://img.example.com/c1.jpg")
    assert "earlier copy kept" in row.text()
    assert row.parent.parent.parent.attrs["data-reason"] == "http-410"
    row = tree.find("tr", cls="failure", data_url="https://gone.example.com/old.jpg")
    assert "no snapshot of this URL" in row.find("td", cls="detail").text()
    assert "earlier copy kept" not in row.text()


def test_out_may_be_a_folder_and_an_unwritable_out_is_a_clear_error(mirror, tmp_path):
    folder = tmp_path / "reports"
    folder.mkdir()
    result = cli("report", "--manifest", str(mirror.manifest), "--out", str(folder), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (folder / "report.html").is_file()
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x", "utf-8")
    result = cli("report", "--manifest", str(mirror.manifest), "--out",
                 str(blocker / "report.html"), cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2
    assert "cannot write the report" in result.stderr and "Traceback" not in result.stderr


def test_an_empty_manifest_renders_every_section_with_a_plain_message(tmp_path):
    # a fresh manifest (nothing mirrored yet) and a decision about files gc already removed
    gone_a, gone_b = "a" * 64, "b" * 64
    data = {"manifest_version": 1, "store": "assets", "assets": {}, "urls": {}, "articles": {},
            "decisions": {"same": [], "different": [[gone_a, gone_b]]}}  # fmt: skip
    (tmp_path / "manifest.json").write_text(json.dumps(data), "utf-8")
    result = cli("report", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    tree = parse_html((tmp_path / "report.html").read_text("utf-8"))
    empties = {p.parent.attrs["id"] for p in tree.find_all("p", cls="empty")}
    assert empties == {"duplicates", "similar", "failures", "articles"}
    row = tree.find("section", id="decisions").find("tr", cls="decision")
    assert row.attrs["data-verdict"] == "different" and "not in the store" in row.text()


def test_report_and_decide_use_the_manifest_named_in_harvester_toml(tmp_path):
    mirror = build_small_mirror(tmp_path / "data")
    (tmp_path / "harvester.toml").write_text('manifest = "data/manifest.json"\n', "utf-8")
    result = cli("decide", "same", mirror.sha["C1"], mirror.sha["C2"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(mirror.manifest.read_text("utf-8"))["decisions"]["same"]
    assert cli("report", cwd=tmp_path).returncode == 0
    tree = parse_html((tmp_path / "report.html").read_text("utf-8"))
    assert len(tree.find_all("div", cls="group")) == 2
    for img in tree.find_all("img"):  # thumbnails resolve from the report's own folder
        assert (tmp_path / unquote(img.attrs["src"])).is_file()


def test_report_and_decide_on_a_manifest_written_by_the_manifest_class(tmp_path):
    """The real writer's manifest (tests/mirror_site.py): unicode and spaced article paths,
    store-relative thumbnails, one-sided similar_to; decide keeps it loadable and valid."""
    from mirror.manifest import Manifest
    from mirror.records import DuplicateLink
    from tests.mirror_site import FAILED, build_site

    site = build_site(tmp_path / "blog")
    m = site.manifest()
    a, b, c = sorted(site.shas.values())[:3]
    m.set_duplicates([DuplicateLink(b, a, "duplicate", 3), DuplicateLink(c, a, "similar", 10)])
    m.save()

    result = cli("decide", "different", a[:8], c[:8], cwd=site.root)
    assert result.returncode == 0, result.stderr
    assert Manifest.load(site.manifest_path).decisions == {
        "same": [],
        "different": [tuple(sorted((a, c)))],
    }
    assert cli("report", cwd=site.root).returncode == 0
    out = site.root / "report.html"
    tree = parse_html(out.read_text("utf-8"))

    group = tree.find("div", cls="group")
    assert group.attrs["data-canonical"] == a
    assert group.find("figure", cls="member").attrs["data-sha"] == b
    assert group.find("span", cls="distance").attrs["data-distance"] == "3"
    pair = tree.find("div", cls="pair")
    assert (pair.attrs["data-a"], pair.attrs["data-b"]) == tuple(sorted((a, c)))
    assert pair.find("span", cls="decision").attrs["data-decision"] == "different"
    images = tree.find_all("img")
    assert len(images) == 4 + 2  # group (2) + pair (2) + the decision row (2)
    for img in images:
        assert (out.parent / unquote(img.attrs["src"])).is_file()

    failed = {r.attrs["data-url"] for r in tree.find_all("tr", cls="failure")}
    assert failed == set(FAILED)
    paths = {d.attrs["data-path"] for d in tree.find_all("details", cls="article")}
    assert paths == set(site.articles)
    for path, article in json.loads(site.manifest_path.read_text("utf-8"))["articles"].items():
        rows = tree.find("details", data_path=path).find_all("tr", cls="ref")
        targets = [r.find("td", cls="target").text() for r in rows]
        expected = [ref["local"] or "still remote" for ref in article["refs"]]
        assert [t.split(" rescued")[0] for t in targets] == expected


def test_decide_while_a_run_holds_the_lock_records_it_and_warns(tmp_path):
    from filelock import FileLock

    from harvester.locking import lock_path

    mirror = build_small_mirror(tmp_path)
    with FileLock(str(lock_path(mirror.manifest)), timeout=0):  # another "run" holds it
        result = cli("decide", "same", mirror.sha["C1"], mirror.sha["C2"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "a run is in progress" in result.stderr
    same = json.loads(mirror.manifest.read_text("utf-8"))["decisions"]["same"]
    assert same == [sorted([mirror.sha["C1"], mirror.sha["C2"]])]
    result = cli("decide", "different", mirror.sha["C1"], mirror.sha["C2"], cwd=tmp_path)
    assert result.returncode == 0 and "in progress" not in result.stderr


def test_open_hands_the_report_file_url_to_the_browser(mirror, tmp_path):
    opened = tmp_path / "opened.txt"
    recorder = tmp_path / "browser.py"
    recorder.write_text(f"import sys; open({str(opened)!r}, 'w').write(sys.argv[1])\n", "utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BROWSER": f"{sys.executable} {recorder} %s"}
    out = tmp_path / "r.html"
    result = subprocess.run(
        [sys.executable, "-m", "harvester", "report", "--manifest", str(mirror.manifest),
         "--out", str(out), "--open", "--quiet"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert opened.read_text("utf-8") == out.resolve().as_uri()


def test_a_report_written_among_the_articles_is_not_scanned_as_an_article(rendered, tmp_path):
    from harvester.extract import iter_article_paths, scan_one
    from harvester.settings import Settings

    out, html, _tree = rendered
    assert '<meta name="generator" content="harvester report">' in html[:4096]
    posts = tmp_path / "posts"
    posts.mkdir()
    (posts / "report.html").write_bytes(out.read_bytes())
    (posts / "page.html").write_text(
        '<meta name="generator" content="Hugo"><img src="https://e.org/a.png">', "utf-8"
    )
    settings = Settings()
    assert list(iter_article_paths([posts], settings)) == [posts / "page.html"]
    assert list(iter_article_paths([posts / "report.html"], settings)) == []
    skipped = scan_one(posts / "report.html", settings)
    assert skipped.refs == () and [w.code for w in skipped.warnings] == ["harvester-report"]
    assert [r.url for r in scan_one(posts / "page.html", settings).refs] == ["https://e.org/a.png"]


def test_a_similar_pair_is_shown_once_between_canonical_copies(tmp_path):
    """Two merged copies of one picture both looking like another picture: one pair, shown
    between the canonical copies, at the closest distance."""
    from harvester.report import build_report

    a, a2, a3, b = ("a" * 64, "c" * 64, "d" * 64, "b" * 64)

    def asset(**extra):
        return {"path": "x.jpg", "bytes": 1, "status": "ok", "first_seen": "t", **extra}

    data = {
        "assets": {
            a: asset(similar_to=[{"sha256": b, "distance": 11}]),
            a2: asset(duplicate_of=a, distance=2, similar_to=[{"sha256": b, "distance": 9}]),
            a3: asset(duplicate_of=a, distance=3, similar_to=[{"sha256": b, "distance": 12}]),
            b: asset(),
        },
        "urls": {},
        "articles": {},
    }
    report = build_report(data, tmp_path)
    assert [(p.a.sha256, p.b.sha256, p.distance) for p in report.similar] == [(a, b, 9)]


def test_the_report_command_counts_the_articles_it_shows(mirror):
    """`run` counts every article it scanned; the report knows only those with images."""
    result = cli(
        "report", "--manifest", "manifest.json", "--out", "reports/count.html", cwd=mirror.root
    )
    assert result.returncode == 0, result.stderr
    assert f"— {len(mirror.data['articles'])} articles with images, " in result.stdout
