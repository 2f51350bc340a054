"""Signals as cron and CI send them: SIGHUP, SIGTERM and SIGINT stop `harvester run` cleanly.

A real `python -m harvester run` fetches from a slow local HTTPS server and gets a signal
mid-fetch (or mid-rewrite). It must exit 128+signal (129/143/130) within a few seconds with
the manifest saved and valid, every article either original or fully rewritten, every image
it recorded as mirrored really in the store, and a later run must finish the job without
downloading again what was already mirrored.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.servers import TestServer, server_ssl_context
from tests.sites import (
    FAST_CONFIG,
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

pytestmark = pytest.mark.timeout(180)

IMAGES = 40


@pytest.fixture
def slow_server(test_ca):
    """Every answer takes 0.3–0.5 s: with two downloads at a time, a run fetches for ~8 s."""
    with TestServer(ssl_context=server_ssl_context(test_ca), latency=(0.3, 0.5)) as server:
        yield server


def make_site(root: Path, server: TestServer, posts: int = IMAGES // 2) -> dict[Path, bytes]:
    names = image_names(IMAGES)
    serve_images(server, names)
    written = write_posts(root / "posts", f"img.example.com:{server.port}", names, posts)
    (root / "harvester.toml").write_text(FAST_CONFIG, encoding="utf-8")
    return written


def run_args(server: TestServer, ca_bundle: Path) -> list[str]:
    options = ["--per-host", "2", "--workers", "1"]
    return ["run", "posts", *options, *network_args(server, ca_bundle)]


def stop(proc: subprocess.Popen, signum: int, whole_group: bool) -> tuple[int, str]:
    """Send `signum` (to the run, or to its process group as a terminal's Ctrl-C does) and
    wait for the exit; the timeout only guards against a hang."""
    if whole_group:
        os.killpg(proc.pid, signum)
    else:
        os.kill(proc.pid, signum)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"the run did not stop within 30 s of signal {signum}")
    return proc.returncode, err.decode("utf-8", "replace")


def check_interrupted_state(root: Path, server: TestServer) -> dict:
    """The manifest is valid and everything it calls mirrored is in the store."""
    data = load_manifest(root / "manifest.json")
    for url, record in data["urls"].items():
        if record["status"] == "ok":
            asset = data["assets"][record["sha256"]]
            assert (root / asset["path"]).is_file(), url
    verified = run_cli(["verify", "--quiet"], root)
    assert verified.returncode == 0, verified.stderr
    return data


@pytest.mark.parametrize(
    ("signum", "whole_group", "code"),
    [
        (signal.SIGHUP, False, 129),  # the CI runner's shell or a closed terminal
        (signal.SIGTERM, False, 143),  # `kill`, systemd, a CI job timeout
        (signal.SIGINT, True, 130),  # Ctrl-C in a terminal: the whole process group
    ],
    ids=["SIGHUP", "SIGTERM", "SIGINT-group"],
)
def test_a_signal_mid_fetch_saves_the_manifest_and_a_later_run_finishes(
    tmp_path, slow_server, ca_bundle, signum, whole_group, code
):
    root = tmp_path / "site"
    originals = make_site(root, slow_server)
    args = run_args(slow_server, ca_bundle)

    proc = start_cli(args, root)
    assert wait_until(lambda: len(slow_server.requests) >= 3, timeout=60), "fetch started"
    returncode, stderr = stop(proc, signum, whole_group)

    assert returncode == code, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr, stderr
    interrupted = snapshot(originals)
    data = check_interrupted_state(root, slow_server)
    mirrored = {url for url, r in data["urls"].items() if r["status"] == "ok"}
    assert len(mirrored) < IMAGES, "the signal came before the fetch could finish"
    assert not temp_leftovers(root / "assets")

    slow_server.latency = (0.0, 0.0)  # the next run may be quick
    requests_before = len(slow_server.requests)
    done = run_cli(args, root)
    assert done.returncode == 0, done.stderr
    assert not remote_urls([root / "posts"])
    assert not local_targets_exist(root / "manifest.json")
    final = snapshot(originals)
    for path, data_then in interrupted.items():
        assert data_then in (originals[path], final[path]), f"{path} was half-rewritten"
    # What the interrupted run mirrored was kept: the later run did not download it again.
    again = {r.path for r in slow_server.requests[requests_before:]}
    refetched = [url for url in mirrored if url.split(f":{slow_server.port}", 1)[1] in again]
    assert not refetched, refetched
    assert not temp_leftovers(root)


def test_sigterm_mid_rewrite_stops_after_the_current_batch_and_saves(tmp_path, test_ca, ca_bundle):
    """A signal during the rewrite phase: the run finishes the writes of the current
    write-ahead batch, saves and exits 143 — it does not carry on through every article —
    and nothing is half-written."""
    from harvester.extract import iter_article_paths
    from harvester.settings import Settings

    with TestServer(ssl_context=server_ssl_context(test_ca)) as server:
        root = tmp_path / "site"
        originals = make_site(root, server, posts=400)  # many articles, 40 images
        args = run_args(server, ca_bundle)
        articles = sorted(originals)
        first = next(iter(iter_article_paths([root / "posts"], Settings())))  # rewrite order

        proc = start_cli(args, root)
        wait_for_change(proc, first, originals[first])
        returncode, stderr = stop(proc, signal.SIGTERM, whole_group=False)

        assert returncode == 143, stderr
        interrupted = snapshot(articles)
        changed_then = sum(interrupted[p] != originals[p] for p in articles)
        assert 0 < changed_then < len(articles), (
            f"{changed_then} of {len(articles)} articles rewritten: the signal was only "
            "acted on after the whole rewrite pass"
        )
        data = load_manifest(root / "manifest.json")
        assert not [a for a in data["articles"].values() if a["state"] == "planned"], (
            "a clean stop leaves no planned write unresolved"
        )
        assert not temp_leftovers(root)

        done = run_cli(args, root)
        assert done.returncode == 0, done.stderr
        final = snapshot(articles)
        assert not remote_urls([root / "posts"])
        for path in articles:
            assert interrupted[path] in (originals[path], final[path]), path
