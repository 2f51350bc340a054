"""`harvester run` as a user meets it on the command line: output modes and exit codes.

Each test runs `python -m harvester run` in a subprocess over a small folder of posts whose
images live on a local HTTPS server (one of them answers 404), and checks what the user sees
(stdout, stderr, exit code) and what is left on disk.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.servers import TestServer, status_reply
from tests.sites import (
    FAST_CONFIG,
    image_names,
    load_manifest,
    network_args,
    remote_urls,
    run_cli,
    serve_images,
    snapshot,
    write_posts,
)

pytestmark = pytest.mark.timeout(120)

IMAGES = 8


def make_site(root: Path, server: TestServer, *, dead: bool = False) -> dict[Path, bytes]:
    """Four posts, eight images (plus one 404 image in the last post when `dead`)."""
    names = image_names(IMAGES)
    serve_images(server, names)
    posts = write_posts(root / "posts", f"img.example.com:{server.port}", names, IMAGES // 2)
    if dead:
        server.route("/img/gone.jpg", status_reply(404))
        last = sorted(posts)[-1]
        text = last.read_text(encoding="utf-8") + (
            f"\n![gone](https://img.example.com:{server.port}/img/gone.jpg)\n"
        )
        last.write_text(text, encoding="utf-8")
        posts[last] = last.read_bytes()
    (root / "harvester.toml").write_text(FAST_CONFIG, encoding="utf-8")
    return posts


def net(server: TestServer, ca_bundle: Path) -> list[str]:
    return ["--workers", "1", *network_args(server, ca_bundle)]


def nothing_written(root: Path, originals: dict[Path, bytes]) -> None:
    assert snapshot(originals) == originals, "no article changed"
    assert not (root / "assets").exists(), "no store folder"
    leftovers = [p.name for p in root.iterdir() if p.name.startswith("manifest.json")]
    assert leftovers in ([], ["manifest.json.lock"]), leftovers


# --------------------------------------------------------------------------- output modes


def test_json_summary_parses_and_counts_what_happened(tmp_path, tls_server, ca_bundle):
    originals = make_site(tmp_path, tls_server, dead=True)
    done = run_cli(["run", "posts", "--json", *net(tls_server, ca_bundle)], tmp_path)

    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)  # stdout is the JSON document and nothing else
    assert summary["articles"] == len(originals) == 4
    assert summary["urls"] == IMAGES + 1
    assert summary["refs"] == 4 * len(originals) + 1
    assert summary["fetched"] == IMAGES
    assert summary["failed"] == 1 and summary["failures_by_reason"] == {"http-404": 1}
    assert summary["articles_rewritten"] == len(originals)
    assert summary["interrupted"] is False and summary["dry_run"] is False
    assert Path(summary["manifest"]).name == "manifest.json"
    assert remote_urls([tmp_path / "posts"]) == [
        f"https://img.example.com:{tls_server.port}/img/gone.jpg"
    ]


def test_plain_run_prints_one_summary_paragraph_and_no_progress_when_not_a_terminal(
    tmp_path, tls_server, ca_bundle
):
    make_site(tmp_path, tls_server)
    done = run_cli(["run", "posts", *net(tls_server, ca_bundle)], tmp_path)

    assert done.returncode == 0, done.stderr
    assert done.stderr == "", "no progress display when output is not a terminal"
    paragraph = done.stdout.strip()
    assert "\n" not in paragraph
    assert paragraph.startswith("Scanned 4 articles")
    assert f"Fetched {IMAGES} images" in paragraph and "0 failed" in paragraph


def test_quiet_prints_nothing_on_success(tmp_path, tls_server, ca_bundle):
    originals = make_site(tmp_path, tls_server)
    done = run_cli(["run", "posts", "--quiet", *net(tls_server, ca_bundle)], tmp_path)

    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and done.stderr == ""
    assert snapshot(originals) != originals, "and it did the work"


def test_dry_run_lists_what_would_be_fetched_and_writes_nothing(tmp_path, tls_server, ca_bundle):
    originals = make_site(tmp_path, tls_server)
    done = run_cli(["run", "posts", "--dry-run", "--json", *net(tls_server, ca_bundle)], tmp_path)

    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["dry_run"] is True
    assert len(summary["would_fetch"]) == IMAGES
    assert not tls_server.requests, "a dry run sends no request"
    nothing_written(tmp_path, originals)
    assert not (tmp_path / "manifest.json.lock").exists()


def test_plain_dry_run_lists_each_url_then_the_paragraph(tmp_path, tls_server, ca_bundle):
    originals = make_site(tmp_path, tls_server)
    done = run_cli(["run", "posts", "--dry-run", *net(tls_server, ca_bundle)], tmp_path)

    assert done.returncode == 0, done.stderr
    *listed, paragraph = done.stdout.strip().splitlines()
    host = f"https://img.example.com:{tls_server.port}/img/"
    assert sorted(listed) == sorted(f"would fetch: {host}{name}" for name in image_names(IMAGES))
    assert paragraph.startswith("Dry run: scanned 4 articles") and "Would fetch 8 URLs" in paragraph
    assert not tls_server.requests
    nothing_written(tmp_path, originals)


def test_plain_dry_run_lists_articles_it_would_rewrite(tmp_path, tls_server, ca_bundle):
    """Images mirrored, articles put back as they were: the next run would only rewrite."""
    originals = make_site(tmp_path, tls_server)
    first = run_cli(["run", "posts", "--quiet", *net(tls_server, ca_bundle)], tmp_path)
    assert first.returncode == 0, first.stderr
    assert run_cli(["restore", "posts", "--quiet"], tmp_path).returncode == 0
    assert snapshot(originals) == originals
    done = run_cli(["run", "posts", "--dry-run", *net(tls_server, ca_bundle)], tmp_path)

    assert done.returncode == 0, done.stderr
    *listed, paragraph = done.stdout.strip().splitlines()
    assert sorted(listed) == sorted(f"would rewrite: {p.relative_to(tmp_path)}" for p in originals)
    assert "Would fetch 0 URLs" in paragraph and "rewrite 4 articles" in paragraph


def test_strict_exits_1_when_an_image_failed_but_keeps_the_rest(tmp_path, tls_server, ca_bundle):
    originals = make_site(tmp_path, tls_server, dead=True)
    done = run_cli(["run", "posts", "--strict", *net(tls_server, ca_bundle)], tmp_path)

    assert done.returncode == 1, done.stderr
    assert "1 images failed" in done.stderr or "1 image failed" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    # --strict changes the exit code, not the work: the good images are mirrored and used.
    data = load_manifest(tmp_path / "manifest.json")
    assert sum(r["status"] == "ok" for r in data["urls"].values()) == IMAGES
    assert len(remote_urls(list(originals))) == 1


def test_strict_exits_0_when_nothing_failed(tmp_path, tls_server, ca_bundle):
    make_site(tmp_path, tls_server)
    done = run_cli(["run", "posts", "--strict", "--quiet", *net(tls_server, ca_bundle)], tmp_path)
    assert done.returncode == 0, done.stderr


# --------------------------------------------------------------------------- errors


def assert_clear_error(done, *needles: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("harvester: error:") or "Error" in done.stderr, done.stderr
    for needle in needles:
        assert needle in done.stderr, (needle, done.stderr)


def test_missing_folder_exits_2_naming_it(tmp_path, tls_server, ca_bundle):
    originals = make_site(tmp_path, tls_server)
    done = run_cli(["run", "postz", *net(tls_server, ca_bundle)], tmp_path)

    assert_clear_error(done, "postz", "no such file or folder")
    nothing_written(tmp_path, originals)
    assert not tls_server.requests


@pytest.mark.parametrize(
    ("config", "needles"),
    [
        ('concurrency = "lots"\n', ("harvester.toml", "concurrency", "whole number")),
        ('deadline = "soon"\n', ("harvester.toml", "deadline")),
        ("concurency = 4\n", ("harvester.toml", "unknown setting", "concurency")),
        ("retries = [1\n", ("harvester.toml", "not valid TOML")),
    ],
    ids=["wrong-type", "bad-duration", "typo", "broken-toml"],
)
def test_bad_config_value_exits_2_naming_file_and_setting(
    tmp_path, tls_server, ca_bundle, config, needles
):
    originals = make_site(tmp_path, tls_server)
    (tmp_path / "harvester.toml").write_text(config, encoding="utf-8")
    done = run_cli(["run", "posts", *net(tls_server, ca_bundle)], tmp_path)

    assert_clear_error(done, *needles)
    nothing_written(tmp_path, originals)
    assert not tls_server.requests


def test_bad_flag_value_exits_2(tmp_path, tls_server, ca_bundle):
    originals = make_site(tmp_path, tls_server)
    done = run_cli(
        ["run", "posts", "--max-store-bytes", "lots", *net(tls_server, ca_bundle)], tmp_path
    )
    assert_clear_error(done, "max_store_bytes")
    nothing_written(tmp_path, originals)


def test_corrupt_manifest_exits_2_and_is_moved_aside_never_overwritten(
    tmp_path, tls_server, ca_bundle
):
    originals = make_site(tmp_path, tls_server)
    damaged = b'{"manifest_version": 1, "assets": {'  # cut off mid-write by a full disk
    (tmp_path / "manifest.json").write_bytes(damaged)
    done = run_cli(["run", "posts", *net(tls_server, ca_bundle)], tmp_path)

    assert_clear_error(done, "manifest.json", "moved aside")
    moved = sorted(tmp_path.glob("manifest.json.corrupt-*"))
    assert len(moved) == 1 and moved[0].read_bytes() == damaged
    assert str(moved[0].name) in done.stderr, "the message says where the file went"
    assert not (tmp_path / "manifest.json").exists(), "no fresh manifest written in its place"
    assert snapshot(originals) == originals
    assert not tls_server.requests

    # The next run starts a new manifest and does the job; the damaged copy stays put.
    again = run_cli(["run", "posts", "--quiet", *net(tls_server, ca_bundle)], tmp_path)
    assert again.returncode == 0, again.stderr
    assert moved[0].read_bytes() == damaged
    load_manifest(tmp_path / "manifest.json")


def test_unwritable_store_folder_exits_2_and_changes_nothing(tmp_path, tls_server, ca_bundle):
    """The store path is blocked by a file (root ignores permission bits, a file does not)."""
    originals = make_site(tmp_path, tls_server)
    (tmp_path / "media").write_text("not a folder", encoding="utf-8")
    done = run_cli(["run", "posts", "--out", "media/mirror", *net(tls_server, ca_bundle)], tmp_path)

    assert_clear_error(done, "media/mirror", "--out")
    assert not tls_server.requests, "no download was made only to be thrown away"
    assert snapshot(originals) == originals
    assert (tmp_path / "media").read_text(encoding="utf-8") == "not a folder"
    assert not (tmp_path / "manifest.json").exists() or load_manifest(tmp_path / "manifest.json")


def test_unwritable_manifest_folder_exits_2_and_changes_nothing(tmp_path, tls_server, ca_bundle):
    originals = make_site(tmp_path, tls_server)
    (tmp_path / "state").write_text("not a folder", encoding="utf-8")
    done = run_cli(
        ["run", "posts", "--manifest", "state/manifest.json", *net(tls_server, ca_bundle)],
        tmp_path,
    )

    assert_clear_error(done, "state", "is a file, not a folder", "--manifest")
    assert snapshot(originals) == originals
    assert not tls_server.requests


def test_a_second_run_says_when_the_failed_image_is_due_again(tmp_path, tls_server, ca_bundle):
    make_site(tmp_path, tls_server, dead=True)
    first = run_cli(["run", "posts", "--quiet", *net(tls_server, ca_bundle)], tmp_path)
    assert first.returncode == 0, first.stderr
    gone = f"https://img.example.com:{tls_server.port}/img/gone.jpg"
    due = load_manifest(tmp_path / "manifest.json")["urls"][gone]["next_retry_at"]
    assert due

    again = run_cli(["run", "posts", "--json", *net(tls_server, ca_bundle)], tmp_path)
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert summary["waiting"] == 1 and summary["next_retry_at"] == due
    said = run_cli(["run", "posts", *net(tls_server, ca_bundle)], tmp_path).stdout
    assert f"1 waiting to be retried (the first from {due[:10]} {due[11:16]} UTC)" in said
