"""`harvester scan` as a user runs it: files and folders, table or JSON, warnings, exit codes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

# An RSSHub-style Hexo post written for this test: a blank line before the front matter, image
# fields in it, and <img> tags that ask for no Referer.
IMAGES = [f"https://img.example.cn/news/2021/06/08/{n:04d}.jpg" for n in range(12)]
RSS_POST = (
    "\n---\ntitle: 'A post'\ncategories:\n - news\n"
    f"headimg: '{IMAGES[0]}'\nauthor: someone\ndate: Tue, 08 Jun 2021 09:48:47 GMT\n"
    f"thumbnail: '{IMAGES[0]}'\n---\n\n<div>\n"
    + "".join(
        f'<p align="center">\n<img src="{url}" title="big" class="bigimg" '
        f'referrerpolicy="no-referrer"> \n</p>\n'
        for url in IMAGES
    )
    + "</div>\n"
)


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harvester", "scan", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={"PYTHONPATH": str(Path(__file__).resolve().parents[1]), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )


@pytest.fixture
def site(tmp_path: Path) -> Path:
    (tmp_path / "posts").mkdir()
    (tmp_path / "posts" / "rss.md").write_text(RSS_POST, encoding="utf-8")
    (tmp_path / "posts" / "gbk.md").write_bytes(
        "标题\n\n![图](https://img.example.cn/gbk.png)\n".encode("gb18030")
    )
    (tmp_path / "posts" / "junk.md").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00")
    (tmp_path / "posts" / "broken.md").write_text(
        "---\ntitle: [oops\n---\n![a](https://e.org/after-broken.png)\n", encoding="utf-8"
    )
    (tmp_path / "posts" / "page.html").write_text(
        "<p><img src='https://e.org/page.png'></p>", encoding="utf-8"
    )
    (tmp_path / "posts" / "notes.txt").write_text("![t](https://e.org/txt.png)", encoding="utf-8")
    (tmp_path / "posts" / ".hidden").mkdir()
    (tmp_path / "posts" / ".hidden" / "h.md").write_text("![h](https://e.org/h.png)")
    (tmp_path / "posts" / "node_modules").mkdir()
    (tmp_path / "posts" / "node_modules" / "n.md").write_text("![n](https://e.org/n.png)")
    return tmp_path


def test_json_on_an_rss_post_reports_12_img_and_2_front_matter_refs(site):
    out = run("--json", str(site / "posts" / "rss.md"))
    assert out.returncode == 0, out.stderr
    refs = json.loads(out.stdout)
    imgs = [r for r in refs if r["kind"] == "html-img"]
    fm = [r for r in refs if r["kind"] == "front-matter"]
    assert [r["url"] for r in imgs] == IMAGES
    assert {(r["policy"], r["referer"]) for r in imgs} == {("no-referrer", None)}
    assert [(r["field"], r["policy"], r["referer"]) for r in fm] == [
        ("headimg", "strict-origin-when-cross-origin", None),
        ("thumbnail", "strict-origin-when-cross-origin", None),
    ]
    text = (site / "posts" / "rss.md").read_text(encoding="utf-8")
    for r in refs:
        assert text[r["start"] : r["end"]] == r["raw"]
        assert set(r) >= {"article", "line", "kind", "url", "raw", "policy", "referer"}
        assert set(r) >= {"field", "syntax", "start", "end"}


def test_site_url_gives_front_matter_refs_the_referer_the_default_policy_allows(site):
    out = run("--json", "--site-url", "https://example.org/", str(site / "posts" / "rss.md"))
    refs = json.loads(out.stdout)
    fm = [r for r in refs if r["kind"] == "front-matter"]
    assert {r["referer"] for r in fm} == {"https://example.org/"}
    assert {r["referer"] for r in refs if r["kind"] == "html-img"} == {None}


def test_default_policy_flag(site):
    out = run(
        "--json",
        "--site-url",
        "https://example.org/blog/",
        "--default-policy",
        "Unsafe-URL",
        str(site / "posts" / "rss.md"),
    )
    fm = [r for r in json.loads(out.stdout) if r["kind"] == "front-matter"]
    assert {(r["policy"], r["referer"]) for r in fm} == {
        ("unsafe-url", "https://example.org/blog/")
    }


def test_page_url_key_flag_replaces_the_defaults(tmp_path):
    post = tmp_path / "p.md"
    post.write_text("---\nsource: https://me.example/p/\nheadimg: https://e.org/h.png\n---\n")
    refs = json.loads(run("--json", "--page-url-key", "source", str(post)).stdout)
    assert refs[0]["page_url"] == "https://me.example/p/"
    assert refs[0]["referer"] == "https://me.example/"


def test_folder_scan_goes_on_past_bad_files_and_warns_on_stderr(site):
    out = run("--json", str(site))
    assert out.returncode == 0
    refs = json.loads(out.stdout)
    articles = sorted({Path(r["article"]).name for r in refs})
    assert articles == ["broken.md", "gbk.md", "page.html", "rss.md"]
    assert "junk.md" in out.stderr and "NUL" in out.stderr
    assert "gbk.md" in out.stderr and "gb18030" in out.stderr
    assert "broken.md" in out.stderr and "front matter" in out.stderr
    gbk = [r for r in refs if r["article"].endswith("gbk.md")]
    assert gbk[0]["url"] == "https://img.example.cn/gbk.png" and gbk[0]["line"] == 3


def test_explicit_file_is_taken_whatever_its_extension(site):
    refs = json.loads(run("--json", str(site / "posts" / "notes.txt")).stdout)
    assert [r["url"] for r in refs] == ["https://e.org/txt.png"]


def test_table_output_when_piped_is_one_line_per_ref(site):
    out = run(str(site / "posts" / "rss.md"))
    assert out.returncode == 0
    lines = out.stdout.splitlines()
    assert len(lines) == 14
    assert lines[0].split("\t")[1:] == [
        "front-matter",
        "strict-origin-when-cross-origin",
        "-",
        IMAGES[0],
    ]
    assert "14 remote image reference(s) in 1 file(s)." in out.stderr


def test_table_on_a_terminal_has_the_columns(site):
    from typer.testing import CliRunner

    from harvester.cli import app

    env = {"COLUMNS": "220", "FORCE_COLOR": "1", "TTY_COMPATIBLE": "1", "NO_COLOR": "1"}
    result = CliRunner().invoke(app, ["scan", str(site / "posts" / "rss.md")], env=env)
    assert result.exit_code == 0
    output = re.sub(r"\x1b\[[0-9;]*m", "", result.output)  # bold headers
    header = next(line for line in output.splitlines() if "kind" in line)
    assert [c.strip() for c in header.strip("┃│ ").split("┃")] == [
        "line",
        "kind",
        "policy",
        "referer",
        "url",
    ]
    assert IMAGES[11] in output
    assert "14 remote image reference(s) in 1 file(s)." in output


def test_missing_path_is_a_usage_error(tmp_path):
    out = run(str(tmp_path / "nope.md"))
    assert out.returncode == 2
    assert "no such file or folder" in out.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--site-url", "example.org"], "--site-url"),
        (["--default-policy", "sometimes"], "--default-policy"),
    ],
)
def test_bad_flags_are_usage_errors(tmp_path, args, message):
    (tmp_path / "a.md").write_text("x")
    out = run(*args, str(tmp_path / "a.md"))
    assert out.returncode == 2
    assert message in out.stderr


def test_config_file_then_flags(tmp_path):
    (tmp_path / "a.md").write_text("---\nheadimg: https://e.org/h.png\n---\n")
    config = tmp_path / "conf.toml"
    config.write_text('site_url = "https://conf.example/"\ndefault_policy = "unsafe-url"\n')
    refs = json.loads(run("--json", "--config", str(config), str(tmp_path / "a.md")).stdout)
    assert refs[0]["referer"] == "https://conf.example/"
    refs = json.loads(
        run(
            "--json",
            "--config",
            str(config),
            "--site-url",
            "https://flag.example/",
            str(tmp_path / "a.md"),
        ).stdout
    )
    assert refs[0]["referer"] == "https://flag.example/"


def test_harvester_toml_in_the_current_folder_is_read(tmp_path):
    (tmp_path / "a.md").write_text("---\nheadimg: https://e.org/h.png\n---\n")
    (tmp_path / "harvester.toml").write_text('site_url = "https://cwd.example/"\n')
    refs = json.loads(run("--json", "a.md", cwd=tmp_path).stdout)
    assert refs[0]["referer"] == "https://cwd.example/"


def test_bad_config_is_a_config_error(tmp_path):
    (tmp_path / "a.md").write_text("x")
    (tmp_path / "c.toml").write_text("no_such_setting = 1\n")
    out = run("--config", str(tmp_path / "c.toml"), str(tmp_path / "a.md"))
    assert out.returncode == 2 and "unknown setting" in out.stderr


def test_empty_folder_prints_an_empty_json_array(tmp_path):
    out = run("--json", str(tmp_path))
    assert out.returncode == 0 and json.loads(out.stdout) == []


def test_help_teaches_the_options():
    out = run("--help")
    for option in ("--json", "--site-url", "--page-url-key", "--default-policy", "--config"):
        assert option in out.stdout


def test_file_names_that_are_not_utf8_do_not_break_the_output(tmp_path):
    name = bytes(tmp_path) + b"/caf\xe9.md"
    with open(name, "wb") as handle:
        handle.write(b"![a](https://e.org/a.png)\n")
    out = run("--json", str(tmp_path))
    assert out.returncode == 0, out.stderr
    (ref,) = json.loads(out.stdout)
    assert ref["url"] == "https://e.org/a.png" and ref["article"].endswith("caf\udce9.md")
    out = run(str(tmp_path))
    assert out.returncode == 0 and "caf\ufffd.md:1" in out.stdout


def test_scan_shows_the_referer_run_sends_to_hosts_in_the_override_table(tmp_path):
    import httpx

    from harvester.fetch import Fetcher
    from harvester.records import FetchRequest
    from harvester.settings import Settings
    from mirror.store import Store

    bilibili = "https://i0.hdslb.com/bfs/archive/cover.jpg"
    wechat = "https://mmbiz.qpic.cn/mmbiz_png/abc/640?wx_fmt=png"
    post = tmp_path / "post.md"
    post.write_text(
        "---\npermalink: https://blog.example.org/2024/post/\n---\n"
        f"![cover]({bilibili})\n\n![qr]({wechat})\n\n![own](https://img.example.org/a.png)\n",
        encoding="utf-8",
    )
    out = run("--json", str(post))
    assert out.returncode == 0, out.stderr
    shown = {r["url"]: r["referer"] for r in json.loads(out.stdout)}
    assert shown[bilibili] == "https://www.bilibili.com/"  # the table, not the blog's origin
    assert shown[wechat] is None  # mmbiz.qpic.cn: no Referer at all
    assert shown["https://img.example.org/a.png"] == "https://blog.example.org/"
    # ... and that is what the fetcher sends on the first request for each of them
    refs = {r["url"]: r for r in json.loads(out.stdout)}
    fetcher = Fetcher(httpx.AsyncClient(), Store(tmp_path / "store"), Settings())
    for url, ref in refs.items():
        request = FetchRequest(url=url, policy=ref["policy"], page_url=ref["page_url"])
        assert fetcher._referer_for(request, url, 0) == shown[url], url
