"""restore / verify / gc over a mirrored site, through the library and the real CLI."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from harvester import maintenance
from harvester.errors import ConfigError, LockHeld
from harvester.locking import run_lock
from mirror.manifest import Manifest, validate
from tests.mirror_site import HEXO, HUGO, JEKYLL, build_site

ROOT = Path(__file__).resolve().parents[1]
HEXO_REL = "source/_posts/社区.md"
HUGO_REL = "content/posts/kyoto walk.md"
JEKYLL_REL = "source/_posts/jekyll-post.html"
ORIGINALS = {HEXO_REL: HEXO, HUGO_REL: HUGO, JEKYLL_REL: JEKYLL}


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "harvester", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def site(tmp_path):
    return build_site(tmp_path / "my blog")


def _bytes(site, rel):
    return site.path(rel).read_bytes()


# ------------------------------------------------------------------- restore


def test_restore_gives_back_every_original_byte(site):
    for rel in ORIGINALS:
        assert _bytes(site, rel) != ORIGINALS[rel].encode()  # really rewritten
    out = cli(site.root, "restore")
    assert out.returncode == 0, out.stderr
    for rel, text in ORIGINALS.items():
        assert _bytes(site, rel) == text.encode(), rel  # BOM, CRLF, code block and all
    assert "3 article(s) restored" in out.stdout
    data = json.loads(site.manifest_path.read_text())
    validate(data)
    for entry in data["articles"].values():
        assert entry["state"] == "restored" and entry["edits"] == []


def test_restore_only_touches_articles_under_the_given_paths(site):
    hugo_before = _bytes(site, HUGO_REL)
    out = cli(site.root, "restore", "source", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert sorted(a["path"] for a in report["articles"]) == [JEKYLL_REL, HEXO_REL]
    assert _bytes(site, HEXO_REL) == HEXO.encode()
    assert _bytes(site, HUGO_REL) == hugo_before
    assert site.manifest().article(HUGO_REL)["state"] == "rewritten"


def test_restore_dry_run_changes_nothing(site):
    before = {rel: _bytes(site, rel) for rel in ORIGINALS}
    manifest_before = site.manifest_path.read_bytes()
    out = cli(site.root, "restore", "--dry-run")
    assert out.returncode == 0, out.stderr
    assert "would restore" in out.stdout
    assert {rel: _bytes(site, rel) for rel in ORIGINALS} == before
    assert site.manifest_path.read_bytes() == manifest_before


def test_restore_after_hand_edits_restores_what_it_can_and_reports_the_rest(site):
    path = site.path(HEXO_REL)
    text = path.read_text(encoding="utf-8")
    # the author added a paragraph above and deleted the headimg line
    headimg = next(line for line in text.splitlines(True) if line.startswith("headimg:"))
    edited = text.replace(headimg, "").replace("<p align", "<p>New intro.</p>\n<p align", 1)
    path.write_text(edited, encoding="utf-8")
    out = cli(site.root, "restore", "--json")
    assert out.returncode == 0, out.stderr
    item = next(a for a in json.loads(out.stdout)["articles"] if a["path"] == HEXO_REL)
    assert item["status"] == "partial"
    assert item["restored_spans"] == 2
    assert [u["reason"] for u in item["unrestored"]] == ["not-found"]
    result = path.read_text(encoding="utf-8")
    assert "thumbnail: 'https://img.example.cn/2021/06/cover.jpg'" in result
    assert '<img src="https://img.example.cn/2021/06/a.jpg"' in result
    assert "<p>New intro.</p>" in result and "headimg" not in result
    entry = site.manifest().article(HEXO_REL)
    assert entry["state"] == "restored" and entry["unrestored"][0]["local"].endswith(".jpg")


def test_restore_prints_what_it_could_not_put_back(site):
    path = site.path(HUGO_REL)
    text = path.read_text(encoding="utf-8")
    gate_local = text.split('cover = "')[1].split('"')[0]
    path.write_text(text.replace(f'cover = "{gate_local}"', 'cover = "mine.png"'), "utf-8")
    out = cli(site.root, "restore")
    assert out.returncode == 0, out.stderr
    assert f"partly restored: {HUGO_REL}" in out.stderr
    assert "1 could not be located" in out.stderr
    assert 'cover = "mine.png"' in path.read_text(encoding="utf-8")
    assert "![The gate](https://photos.example.org/kyoto/gate.png" in path.read_text("utf-8")


def test_restore_resolves_a_crash_left_planned_article(site):
    # simulate a crash after the plan was saved but before the article was replaced
    m = site.manifest()
    rel = HEXO_REL
    restored_hexo = HEXO.encode()
    site.path(rel).write_bytes(restored_hexo)
    entry = m.data["articles"][rel]
    entry["state"] = "planned"
    m.save()
    report = maintenance.restore(site.manifest_path)
    assert report.planned_resolved == {rel: "not-replaced"}
    assert _bytes(site, rel) == restored_hexo
    assert site.manifest().article(rel)["state"] == "unchanged"
    assert _bytes(site, HUGO_REL) == HUGO.encode()


def test_restore_skips_a_read_only_article_and_keeps_its_record(site):
    path = site.path(HUGO_REL)
    rewritten = path.read_bytes()
    os.chmod(path, 0o444)
    out = cli(site.root, "restore")
    assert out.returncode == 0
    assert "skipped" in out.stderr and "read-only" in out.stderr
    assert path.read_bytes() == rewritten
    assert site.manifest().article(HUGO_REL)["state"] == "rewritten"
    assert _bytes(site, HEXO_REL) == HEXO.encode()


def test_restore_of_a_missing_path_is_a_usage_error(site):
    out = cli(site.root, "restore", "no/such/folder")
    assert out.returncode == 2
    assert "no/such/folder" in out.stderr


def test_commands_without_a_manifest_say_how_to_get_one(tmp_path):
    out = cli(tmp_path, "verify")
    assert out.returncode == 2
    assert "no manifest" in out.stderr and "--manifest" in out.stderr


def test_a_corrupt_manifest_is_reported_and_moved_aside(site):
    site.manifest_path.write_text("{ this is not json")
    out = cli(site.root, "restore")
    assert out.returncode == 2
    assert "corrupt" in out.stderr and "manifest.json.corrupt-" in out.stderr
    assert list(site.root.glob("manifest.json.corrupt-*"))
    assert not site.manifest_path.exists()


# ------------------------------------------------------------------- verify


def test_verify_passes_on_a_healthy_store(site):
    out = cli(site.root, "verify", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["ok"] is True and report["assets"] == 5 and report["thumbnails"] == 5


def test_verify_finds_a_missing_and_a_damaged_file(site):
    m = site.manifest()
    shas = sorted(site.shas.values())
    missing = m.resolve(m.asset(shas[0])["path"])
    damaged = m.resolve(m.asset(shas[1])["path"])
    thumb = m.resolve(m.asset(shas[2])["thumbnails"][0]["path"])
    missing.unlink()
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte
    damaged.write_bytes(bytes(data))
    thumb.unlink()
    out = cli(site.root, "verify")
    assert out.returncode == 1
    assert f"missing: {m.rel(missing)}" in out.stderr
    assert f"sha256-mismatch: {m.rel(damaged)}" in out.stderr
    assert f"thumbnail-missing: {m.rel(thumb)}" in out.stderr
    report = json.loads(cli(site.root, "verify", "--json").stdout)
    assert sorted(p["problem"] for p in report["problems"]) == [
        "missing",
        "sha256-mismatch",
        "thumbnail-missing",
    ]


def test_verify_checks_the_schema_of_a_manifest_too_big_to_check_on_load(site):
    # Loads and saves check the schema only for small manifests (speed); verify always does.
    data = json.loads(site.manifest_path.read_text())
    url, record = next(iter(data["urls"].items()))
    for k in range(1_200):  # well over the load-time limit, each record valid
        data["urls"][f"{url}?copy={k}"] = dict(record)
    sha = sorted(data["assets"])[0]
    data["assets"][sha]["width"] = "wide"  # the one invalid value
    site.manifest_path.write_text(json.dumps(data))
    out = cli(site.root, "verify", "--json")
    assert out.returncode == 1, out.stderr
    problems = json.loads(out.stdout)["problems"]
    assert [p["problem"] for p in problems] == ["schema"]
    assert "wide" in problems[0]["detail"]


def test_verify_with_an_explicit_manifest_from_elsewhere(site, tmp_path):
    out = cli(tmp_path, "verify", "--manifest", str(site.manifest_path))
    assert out.returncode == 0, out.stderr


def test_manifest_path_comes_from_the_config_file(site):
    (site.root / "harvester.toml").write_text('manifest = "state/m.json"\n')
    (site.root / "state").mkdir()
    moved = site.root / "state" / "m.json"
    site.manifest_path.rename(moved)
    m = Manifest.load(moved)
    m.set_store(site.root / "assets")  # paths inside are relative to the manifest's folder
    for asset in m.data["assets"].values():
        asset["path"] = "../" + asset["path"]
        for thumb in asset["thumbnails"]:
            thumb["path"] = "../" + thumb["path"]
    m.save()
    assert m.store == "../assets"
    out = cli(site.root, "verify")
    assert out.returncode == 0, out.stderr
    assert "checked 5 asset(s)" in out.stdout
    assert cli(site.root, "verify", "--manifest", "manifest.json").returncode == 2


# ------------------------------------------------------------------- gc


def test_gc_dry_run_lists_and_real_gc_removes_only_unreferenced_files(site):
    store = site.root / "assets"
    orphan = store / "00" / "11" / ("0011" + "a" * 60 + ".jpg")
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"left by a crashed run")
    # restoring the Hugo post makes its PNG unreferenced
    assert cli(site.root, "restore", "content").returncode == 0
    png_sha = site.shas["https://photos.example.org/kyoto/gate.png"]
    m = site.manifest()
    png = m.asset(png_sha)
    png_files = [png["path"], png["thumbnails"][0]["path"]]
    all_files = sorted(p for p in store.rglob("*") if p.is_file())

    out = cli(site.root, "gc", "--dry-run", "--json")
    assert out.returncode == 0, out.stderr
    listed = json.loads(out.stdout)
    assert sorted(listed["removed"]) == sorted([*png_files, m.rel(orphan)])
    assert listed["forgotten_assets"] == [png_sha]
    assert sorted(p for p in store.rglob("*") if p.is_file()) == all_files  # nothing removed
    said = cli(site.root, "gc", "--dry-run").stdout
    assert f"would remove: {m.rel(orphan)}" in said
    assert "3 file(s) would be removed (" in said  # the PNG, its thumbnail, the orphan

    out = cli(site.root, "gc")
    assert out.returncode == 0, out.stderr
    remaining = sorted(p for p in store.rglob("*") if p.is_file())
    assert remaining == sorted(
        p for p in all_files if m.rel(p) not in set(png_files) and p != orphan
    )
    assert not orphan.parent.exists()  # emptied folders go too
    after = site.manifest()
    assert after.asset(png_sha) is None
    assert after.url("https://photos.example.org/kyoto/gate.png") is None
    assert cli(site.root, "verify").returncode == 0  # what is left is consistent
    # the articles still rewritten still find their files
    for rel in (HEXO_REL, JEKYLL_REL):
        for ref in after.article(rel)["refs"]:
            if ref["local"]:
                assert (site.path(rel).parent / ref["local"]).is_file()


def test_gc_grace_keeps_recently_referenced_assets(site):
    assert cli(site.root, "restore", "content").returncode == 0
    png_sha = site.shas["https://photos.example.org/kyoto/gate.png"]
    out = cli(site.root, "gc", "--grace", "30d", "--json")
    report = json.loads(out.stdout)
    assert report["removed"] == [] and report["kept_by_grace"] == [png_sha]
    # a month and a day later the grace is over
    later = datetime.now(timezone.utc) + timedelta(days=31)
    report = maintenance.gc(site.manifest_path, grace=timedelta(days=30), now=later)
    assert report.forgotten_assets == [png_sha]
    assert site.manifest().asset(png_sha) is None


def test_gc_refuses_a_store_that_holds_the_articles(site):
    m = site.manifest()
    m.data["store"] = "."
    m.save()
    out = cli(site.root, "gc", "--dry-run")
    assert out.returncode == 2 and "store root" in out.stderr
    assert all(site.path(rel).exists() for rel in ORIGINALS)


@pytest.mark.parametrize(
    "text,expected",
    [
        ("30d", timedelta(days=30)),
        ("12h", timedelta(hours=12)),
        ("90m", timedelta(minutes=90)),
        ("0", timedelta(0)),
        ("2w", timedelta(weeks=2)),
    ],
)
def test_durations(text, expected):
    assert maintenance.parse_duration(text) == expected


def test_bad_duration_is_a_usage_error(site):
    with pytest.raises(ConfigError) as caught:
        maintenance.parse_duration("thirty days")
    assert caught.value.exit_code == 2
    out = cli(site.root, "gc", "--grace", "soon")
    assert out.returncode == 2 and "--grace" in out.stderr and "2h" in out.stderr


# ------------------------------------------------------------------- lock

HOLDER = """
import sys, time
from pathlib import Path
from harvester.locking import run_lock
with run_lock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(60)
"""


@pytest.fixture
def held_lock(site):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(site.manifest_path)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        yield site
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("command", [["restore"], ["verify"], ["gc"], ["gc", "--dry-run"]])
def test_a_held_lock_makes_every_command_exit_75_and_change_nothing(held_lock, command):
    site = held_lock
    before = {rel: _bytes(site, rel) for rel in ORIGINALS}
    manifest_before = site.manifest_path.read_bytes()
    started = time.monotonic()
    out = cli(site.root, *command)
    assert out.returncode == 75
    assert "manifest.json.lock" in out.stderr
    assert {rel: _bytes(site, rel) for rel in ORIGINALS} == before
    assert site.manifest_path.read_bytes() == manifest_before
    assert time.monotonic() - started < 60  # it did not wait for the holder


def test_lock_held_in_the_library_and_released_after_the_holder_dies(held_lock):
    site = held_lock
    with pytest.raises(LockHeld), run_lock(site.manifest_path):
        pass


def test_lock_is_free_again_after_a_killed_holder(site):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(site.manifest_path)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert holder.stdout.readline().strip() == "held"
    holder.kill()  # SIGKILL: no cleanup runs
    holder.wait()
    with run_lock(site.manifest_path) as path:
        assert path.name == "manifest.json.lock"


def test_restored_bytes_hash_to_the_recorded_original(site):
    m = site.manifest()
    recorded = {rel: m.article(rel)["original_sha256"] for rel in ORIGINALS}
    maintenance.restore(site.manifest_path)
    for rel, sha in recorded.items():
        assert hashlib.sha256(_bytes(site, rel)).hexdigest() == sha


def test_gc_grace_spares_young_unknown_files_and_never_touches_hidden_ones(site):
    store = site.root / "assets"
    young = store / "aa" / "bb" / ("aabb" + "0" * 60 + ".png")
    old = store / "cc" / "dd" / ("ccdd" + "0" * 60 + ".png")
    hidden = store / ".tmp" / "partial-download"
    for path in (young, old, hidden):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\x89PNG not really")
    week_ago = time.time() - 7 * 86400
    os.utime(old, (week_ago, week_ago))
    os.utime(hidden, (week_ago, week_ago))
    report = maintenance.gc(site.manifest_path, grace=timedelta(days=1))
    m = site.manifest()
    assert report.removed == [m.rel(old)]
    assert young.exists() and hidden.exists() and not old.exists()
    assert cli(site.root, "verify").returncode == 0


def test_restore_re_encodes_with_the_recorded_encoding(tmp_path):
    from mirror.records import Edit
    from mirror.rewrite import apply_edits, write_bytes_atomic

    original_text = (
        "---\r\ntitle: 图片测试\r\ncover: https://img.example.cn/封面.jpg\r\n---\r\n正文\r\n"
    )
    article = tmp_path / "post.md"
    original = original_text.encode("gb18030")
    article.write_bytes(original)
    url = "https://img.example.cn/封面.jpg"
    at = original_text.index(url)
    edits = [Edit(at, at + len(url), url, "assets/ab/cd/ab.jpg")]
    rewritten = apply_edits(original_text, edits).encode("gb18030")
    m = Manifest.load(tmp_path / "manifest.json")
    m.plan_article(
        "post.md",
        encoding="gb18030",
        bom=False,
        newline="\r\n",
        original_sha256=hashlib.sha256(original).hexdigest(),
        rewritten_sha256=hashlib.sha256(rewritten).hexdigest(),
        refs=[
            {
                "kind": "front-matter",
                "url": url,
                "original": url,
                "status": "ok",
                "local": "assets/ab/cd/ab.jpg",
                "line": 3,
            }
        ],
        edits=edits,
        text=original_text,
    )
    m.save()
    write_bytes_atomic(article, rewritten)
    m.mark_rewritten("post.md")
    m.save()
    report = maintenance.restore(tmp_path / "manifest.json")
    assert [a.status for a in report.articles] == ["restored"]
    assert article.read_bytes() == original


def _real_png(path: Path, color: tuple[int, int, int]) -> bytes:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (24, 16), color).save(path, "PNG")
    return path.read_bytes()


def test_gc_only_removes_content_addressed_files_never_a_users_own(site):
    # `--out` can be a shared images folder: the user's own files live beside the store's
    store = site.root / "assets"
    logo = store / "my-own-logo.png"
    header = store / "blog" / "header.png"
    empty_folder = store / "drafts"
    wrong_folder = store / "ff" / "ee" / ("0011" + "a" * 60 + ".png")  # sha does not fit folders
    own = {p: _real_png(p, (200, 30, 30)) for p in (logo, header, wrong_folder)}
    empty_folder.mkdir()
    week_ago = time.time() - 7 * 86400
    for path in own:
        os.utime(path, (week_ago, week_ago))
    assert cli(site.root, "restore", "content").returncode == 0  # the Hugo PNG: unreferenced
    png_sha = site.shas["https://photos.example.org/kyoto/gate.png"]
    m = site.manifest()
    png = m.asset(png_sha)
    png_files = sorted([png["path"], png["thumbnails"][0]["path"]])

    text = cli(site.root, "gc", "--dry-run")
    assert text.returncode == 0, text.stderr
    assert "left alone 4 entries that are not harvester's (e.g. blog/, drafts/," in text.stdout
    assert "my-own-logo" not in text.stdout.split("left alone")[0]  # not in the removal list

    out = cli(site.root, "gc", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert sorted(report["removed"]) == png_files
    assert report["ignored"] == ["blog/", "drafts/", "ff/ee/" + wrong_folder.name, logo.name]
    for path, data in own.items():
        assert path.read_bytes() == data
    assert empty_folder.is_dir()  # not ours to tidy away
    assert not any(m.resolve(rel).exists() for rel in png_files)
    assert cli(site.root, "verify").returncode == 0


def test_verify_reports_a_corrupt_manifest_without_moving_it(tmp_path):
    manifest = tmp_path / "manifest.json"
    manifest.write_text("{ not json", encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-m", "harvester", "verify", "--manifest", str(manifest)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert out.returncode == 2 and "corrupt" in out.stderr
    assert manifest.read_text(encoding="utf-8") == "{ not json"
    assert not list(tmp_path.glob("manifest.json.corrupt-*"))


def test_a_missing_manifest_beside_a_preset_one_says_where_it_is(tmp_path):
    """`harvester restore` (or report, verify, gc) in a site whose run used a preset: the
    manifest is in .harvester/, and the error says how to reach it instead of 'run first'."""
    site = build_site(tmp_path / "blog")
    (tmp_path / "blog" / ".harvester").mkdir()
    site.manifest_path.rename(tmp_path / "blog" / ".harvester" / "manifest.json")
    for command in ("restore", "report", "verify"):
        done = cli(tmp_path / "blog", command)
        assert done.returncode == 2, (command, done.stderr)
        assert "--preset auto" in done.stderr and ".harvester/manifest.json" in done.stderr
    plain = cli(tmp_path, "restore")
    assert plain.returncode == 2 and "run `harvester run` first" in plain.stderr
