"""Crash safety of `harvester run`: SIGKILL at random instants, again and again, then finish.

A real `python -m harvester run` works over 30 posts with 60 distinct images (plus a few
hundred archive posts reusing them, so the rewrite phase lasts) from a slow local HTTPS
server, and is killed with SIGKILL at seeded random delays and at chosen points of the
rewrite phase. After every kill each article must be byte-identical to its original or to
its fully rewritten form (taken from a clean reference run in another folder), the manifest
must parse and validate, and the killed run must leave no process behind. A final run must
finish the job, leave no temp file, and `harvester restore` must give back the originals.
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.servers import TestServer, server_ssl_context
from tests.sites import (
    FAST_CONFIG,
    group_alive,
    image_names,
    load_manifest,
    local_targets_exist,
    network_args,
    remote_urls,
    run_cli,
    serve_images,
    snapshot,
    start_cli,
    temp_leftovers,
    wait_for_change,
    wait_until,
    write_posts,
)

pytestmark = pytest.mark.timeout(240)

IMAGES = 60
CORE_POSTS = 30  # two distinct images each: all 60 are fetched
ARCHIVE_POSTS = 90  # reuse the same images: more to rewrite, nothing more to fetch
SEED = 20261128


@pytest.fixture
def slow_server(test_ca):
    """HTTPS server answering each request after 20–80 ms (so a run lasts a few seconds)."""
    with TestServer(ssl_context=server_ssl_context(test_ca), latency=(0.02, 0.08)) as server:
        yield server


def make_site(root: Path, server: TestServer, names: list[str]) -> dict[Path, bytes]:
    host = f"img.example.com:{server.port}"
    posts = root / "source" / "_posts"
    originals = write_posts(posts, host, names, CORE_POSTS, prefix="news")
    originals.update(write_posts(posts / "archive", host, names, ARCHIVE_POSTS, prefix="old"))
    (root / "harvester.toml").write_text(FAST_CONFIG, encoding="utf-8")
    return originals


def run_args(server: TestServer, ca_bundle: Path) -> list[str]:
    options = ["--per-host", "2", "--workers", "1", "--quiet"]
    return ["run", "source/_posts", *options, *network_args(server, ca_bundle)]


def kill_hard(proc: subprocess.Popen) -> None:
    """SIGKILL the run itself (not its group: a crash takes one process) and reap it."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)


def assert_consistent(root: Path, originals: dict[Path, bytes], expected: dict[Path, bytes]):
    """Every article is its original or its fully rewritten self; the manifest is sound."""
    half_done = []
    for path, original in originals.items():
        now = path.read_bytes()
        if now != original and now != expected[path]:
            half_done.append(path.relative_to(root))
    assert not half_done, f"articles neither original nor fully rewritten: {half_done[:5]}"
    manifest = root / "manifest.json"
    if manifest.exists():  # a run killed before its first save has written none yet
        data = load_manifest(manifest)
        for rel, article in data["articles"].items():
            assert article["state"] in ("planned", "rewritten", "unchanged", "restored"), rel


@pytest.mark.slow
def test_sigkill_at_random_points_never_leaves_a_half_written_article(
    tmp_path, slow_server, ca_bundle
):
    names = image_names(IMAGES)
    serve_images(slow_server, names)
    args = run_args(slow_server, ca_bundle)

    # A clean reference run in another folder gives each article's fully rewritten bytes.
    reference = tmp_path / "reference"
    ref_originals = make_site(reference, slow_server, names)
    started = time.monotonic()
    done = run_cli(args, reference)
    reference_seconds = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert not remote_urls([reference / "source/_posts"]), "the reference run mirrored all"
    expected_of = {p.relative_to(reference): p.read_bytes() for p in ref_originals}

    site = tmp_path / "site"
    originals = make_site(site, slow_server, names)
    expected = {p: expected_of[p.relative_to(site)] for p in originals}
    assert all(expected[p] != originals[p] for p in originals)
    articles = sorted(originals)

    rng = random.Random(SEED)
    kinds = ["delay"] * 4 + ["rewrite"] * 5
    rng.shuffle(kinds)
    killed_mid_rewrite = 0
    for kind in kinds:
        if all(p.read_bytes() == expected[p] for p in articles):
            # All rewritten: put the originals back (the URLs stay mirrored) so the next
            # run has a rewrite phase to be killed in.
            restored = run_cli(["restore", "--quiet"], site)
            assert restored.returncode == 0, restored.stderr
            assert snapshot(articles) == originals
        proc = start_cli(args, site)
        if kind == "delay":
            time.sleep(rng.uniform(0.05, reference_seconds))
        else:
            # Kill just after the k-th article (in rewrite order) was replaced.
            watched = articles[rng.randrange(len(articles) - 1)]
            wait_for_change(proc, watched, originals[watched])
        kill_hard(proc)
        changed = sum(p.read_bytes() != originals[p] for p in articles)
        if 0 < changed < len(articles):
            killed_mid_rewrite += 1
        assert_consistent(site, originals, expected)
        # The kernel reaps what a crash leaves: image workers must not outlive the run.
        assert wait_until(lambda pg=proc.pid: not group_alive(pg), timeout=15, interval=0.1), (
            "image worker processes outlived the killed run"
        )

    assert killed_mid_rewrite >= 3, "the kills should land inside the rewrite phase"

    final = run_cli(args, site)
    assert final.returncode == 0, final.stderr
    assert snapshot(articles) == expected
    data = load_manifest(site / "manifest.json")
    assert all(a["state"] == "rewritten" for a in data["articles"].values())
    assert not local_targets_exist(site / "manifest.json")
    assert not temp_leftovers(site), temp_leftovers(site)
    verified = run_cli(["verify", "--quiet"], site)
    assert verified.returncode == 0, verified.stderr

    restored = run_cli(["restore", "--quiet"], site)
    assert restored.returncode == 0, restored.stderr
    assert snapshot(articles) == originals


@pytest.mark.slow
def test_sigkill_during_restore_then_restore_again_gives_the_originals(
    tmp_path, slow_server, ca_bundle
):
    """Restore rewrites articles too; a kill in the middle must not lose an original."""
    names = image_names(IMAGES)
    serve_images(slow_server, names)
    site = tmp_path / "site"
    originals = make_site(site, slow_server, names)
    done = run_cli(run_args(slow_server, ca_bundle), site)
    assert done.returncode == 0, done.stderr
    rewritten = snapshot(originals)
    articles = sorted(originals)

    rng = random.Random(SEED + 1)
    for _ in range(3):
        proc = start_cli(["restore", "--quiet"], site)
        watched = articles[rng.randrange(len(articles))]
        wait_for_change(proc, watched, rewritten[watched])
        kill_hard(proc)
        for path in articles:
            assert path.read_bytes() in (originals[path], rewritten[path]), path
        load_manifest(site / "manifest.json")
        if snapshot(articles) == originals:
            break

    again = run_cli(["restore", "--quiet"], site)
    assert again.returncode == 0, again.stderr
    assert snapshot(articles) == originals
    assert not temp_leftovers(site), temp_leftovers(site)


def test_a_second_concurrent_run_exits_75_and_changes_nothing(tmp_path, slow_server, ca_bundle):
    names = image_names(IMAGES)
    serve_images(slow_server, names)
    site = tmp_path / "site"
    originals = make_site(site, slow_server, names)
    args = run_args(slow_server, ca_bundle)

    first = start_cli(args, site)
    try:
        assert wait_until(lambda: len(slow_server.requests) > 0, timeout=60), "first run started"
        requests_before = len(slow_server.requests)
        second = run_cli(args, site)
        assert second.returncode == 75, second.stderr
        assert "another harvester run holds the lock" in second.stderr
        assert "Traceback" not in second.stderr
        _, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            kill_hard(first)
    assert first.returncode == 0, err.decode()
    # Only the first run talked to the server: one request per image (plus retries, none).
    assert len(slow_server.requests) == IMAGES >= requests_before
    data = json.loads((site / "manifest.json").read_text(encoding="utf-8"))
    assert len(data["urls"]) == IMAGES
    assert all(path.read_bytes() != original for path, original in originals.items())
    shutil.rmtree(site / "assets")  # tidy: nothing else to check


def test_an_article_whose_write_failed_is_rewritten_by_the_next_run(
    tmp_path, tls_server, ca_bundle, monkeypatch
):
    """The write-ahead recorded the plan, then the replace failed (disk full here; a kill
    between the manifest save and `os.replace` leaves the same state). The article keeps its
    original bytes, and the next run must still rewrite it, not take it as done."""
    import mirror.rewrite
    from harvester.pipeline import run
    from tests.servers import settings_for

    names = image_names(4)
    serve_images(tls_server, names)
    posts = tmp_path / "posts"
    originals = write_posts(posts, f"img.example.com:{tls_server.port}", names, 2)
    settings = settings_for(
        tls_server,
        ca_bundle=ca_bundle,
        out=tmp_path / "assets",
        manifest=tmp_path / "manifest.json",
        workers=1,
    )
    victim = sorted(originals)[0]
    real_write = mirror.rewrite.write_bytes_atomic

    def disk_full_for_victim(path, data, **kwargs):
        if Path(path) == victim:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(path, data, **kwargs)

    monkeypatch.setattr(mirror.rewrite, "write_bytes_atomic", disk_full_for_victim)
    first = run([posts], settings)
    assert victim.read_bytes() == originals[victim]
    assert any("No space left" in w for w in first.warnings)
    data = load_manifest(tmp_path / "manifest.json")
    entry = data["articles"][victim.relative_to(tmp_path).as_posix()]
    assert all(ref["local"] is None for ref in entry["refs"]), "the file has no local target"

    monkeypatch.setattr(mirror.rewrite, "write_bytes_atomic", real_write)
    requests_before = len(tls_server.requests)
    second = run([posts], settings)
    assert second.articles_rewritten == 1
    assert not remote_urls([posts]), "every article now points at the local copies"
    assert len(tls_server.requests) == requests_before, "nothing was fetched again"
    assert not local_targets_exist(tmp_path / "manifest.json")


def _leave_temp_like_a_killed_write(target: Path) -> Path:
    """What SIGKILL between mkstemp and os.replace in write_bytes_atomic leaves behind."""
    import tempfile

    from mirror.rewrite import TEMP_MARKER

    fd, name = tempfile.mkstemp(prefix=f".{target.name}{TEMP_MARKER}", dir=target.parent)
    os.write(fd, target.read_bytes()[:10])
    os.close(fd)
    return Path(name)


def test_run_and_restore_remove_the_temp_files_of_killed_writes(tmp_path, tls_server, ca_bundle):
    """Deterministic companion of the kill loop: the leftovers of a write killed half-way
    (beside the manifest and beside articles) go on the next run and the next restore;
    other hidden files are not ours and stay."""
    from harvester.maintenance import restore
    from harvester.pipeline import run
    from tests.servers import settings_for

    names = image_names(4)
    serve_images(tls_server, names)
    posts = tmp_path / "posts"
    originals = write_posts(posts, f"img.example.com:{tls_server.port}", names, 2)
    manifest = tmp_path / "manifest.json"
    settings = settings_for(
        tls_server, ca_bundle=ca_bundle, out=tmp_path / "assets", manifest=manifest, workers=1
    )
    article = sorted(originals)[0]
    editor_swap = article.with_name(f".{article.name}.swp")
    editor_swap.write_bytes(b"an editor's swap file")
    run([posts], settings)
    assert not temp_leftovers(tmp_path)

    _leave_temp_like_a_killed_write(manifest)
    _leave_temp_like_a_killed_write(article)
    assert len(temp_leftovers(tmp_path)) == 2
    restore(manifest)
    assert not temp_leftovers(tmp_path)
    assert snapshot(originals) == originals

    _leave_temp_like_a_killed_write(manifest)
    _leave_temp_like_a_killed_write(article)
    run([posts], settings)
    assert not temp_leftovers(tmp_path)
    assert not remote_urls([posts])
    assert editor_swap.read_bytes() == b"an editor's swap file"
