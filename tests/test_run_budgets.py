"""Budgets for CI: `--deadline` and `--max-store-bytes`, through the real CLI.

A slow local HTTPS server makes the deadline bite; a small byte budget makes the store fill.
In both cases the run exits 0, the manifest records the rest as `deferred` with the reason
(`deadline`, `store-budget`), the summary says so, and a later run without the limit (or with
a bigger one) completes the job.

What the store budget counts: everything harvester puts in the store folder — the mirrored
originals and their thumbnails — because that is what a Pages site publishes and what its
~1 GB limit counts (docs/sites.md: "refuses to grow the mirror past 900 MB").
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.servers import TestServer, encoded_image, image_reply, server_ssl_context
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

pytestmark = pytest.mark.timeout(180)


def site_with(root: Path, server: TestServer, names: list[str]) -> dict[Path, bytes]:
    posts = write_posts(root / "posts", f"img.example.com:{server.port}", names, len(names) // 2)
    (root / "harvester.toml").write_text(FAST_CONFIG, encoding="utf-8")
    return posts


def cli_args(server: TestServer, ca_bundle: Path, *extra: str) -> list[str]:
    options = ["--per-host", "2", "--workers", "1", *extra]
    return ["run", "posts", *options, *network_args(server, ca_bundle)]


def store_files(root: Path) -> list[Path]:
    return [p for p in (root / "assets").rglob("*") if p.is_file() and ".tmp" not in p.parts]


# --------------------------------------------------------------------------- --deadline


def test_deadline_defers_the_rest_and_a_later_run_completes_it(tmp_path, test_ca, ca_bundle):
    images = 40
    # Each answer takes 0.4-0.6 s and two run at a time: all 40 would need ~10 s.
    with TestServer(ssl_context=server_ssl_context(test_ca), latency=(0.4, 0.6)) as server:
        names = image_names(images)
        serve_images(server, names)
        root = tmp_path / "site"
        originals = site_with(root, server, names)

        first = run_cli(cli_args(server, ca_bundle, "--deadline", "1s", "--json"), root)
        assert first.returncode == 0, first.stderr
        summary = json.loads(first.stdout)
        data = load_manifest(root / "manifest.json")
        states = [r["status"] for r in data["urls"].values()]
        deferred = {u: r for u, r in data["urls"].items() if r["status"] == "deferred"}
        assert deferred, f"nothing deferred at the deadline: {states}"
        assert {r["reason"] for r in deferred.values()} == {"deadline"}
        assert len(data["urls"]) == images, "every URL is accounted for: done or deferred"
        assert summary["deferred"] == len(deferred)
        assert summary["fetched"] + summary["deferred"] == images
        requested = {r.path for r in server.requests}
        assert len(requested) < images, "downloads stopped starting at the deadline"
        # What was mirrored is used already; the deferred images keep their remote URL.
        still_remote = set(remote_urls([root / "posts"]))
        assert still_remote == set(deferred)

        server.latency = (0.0, 0.0)
        second = run_cli(cli_args(server, ca_bundle, "--json"), root)
        assert second.returncode == 0, second.stderr
        assert json.loads(second.stdout)["fetched"] == len(deferred)
        assert not remote_urls([root / "posts"])
        data = load_manifest(root / "manifest.json")
        assert {r["status"] for r in data["urls"].values()} == {"ok"}
        assert snapshot(originals) != originals


# --------------------------------------------------------------------------- --max-store-bytes


def big_images(server: TestServer, count: int) -> tuple[list[str], dict[str, bytes]]:
    """Photos large enough to get a thumbnail (longest side > 320 px)."""
    names = [f"photo{i:02d}.jpg" for i in range(count)]
    served = {}
    for i, name in enumerate(names):
        data = encoded_image("JPEG", (640 + 8 * i, 480), seed=500 + i, quality=90)
        server.route(f"/img/{name}", image_reply(data))
        served[name] = data
    return names, served


def test_store_budget_keeps_the_originals_under_it_and_a_bigger_budget_completes(
    tmp_path, tls_server, ca_bundle
):
    names, served = big_images(tls_server, 12)
    root = tmp_path / "site"
    originals = site_with(root, tls_server, names)
    budget = sum(len(d) for d in served.values()) * 2 // 5  # room for about 40 % of them

    first = run_cli(cli_args(tls_server, ca_bundle, "--max-store-bytes", str(budget)), root)
    assert first.returncode == 0, first.stderr
    assert "--max-store-bytes" in first.stdout, first.stdout  # the summary says so
    data = load_manifest(root / "manifest.json")
    ok = {u: r for u, r in data["urls"].items() if r["status"] == "ok"}
    deferred = {u: r for u, r in data["urls"].items() if r["status"] == "deferred"}
    assert ok and deferred and len(ok) + len(deferred) == len(names)
    assert {r["reason"] for r in deferred.values()} == {"store-budget"}
    originals_bytes = sum(a["bytes"] for a in data["assets"].values())
    assert originals_bytes <= budget
    on_disk = sum((root / a["path"]).stat().st_size for a in data["assets"].values())
    assert on_disk == originals_bytes
    assert set(remote_urls([root / "posts"])) == set(deferred)

    bigger = str(sum(len(d) for d in served.values()) * 3)
    second = run_cli(cli_args(tls_server, ca_bundle, "--max-store-bytes", bigger, "--json"), root)
    assert second.returncode == 0, second.stderr
    summary = json.loads(second.stdout)
    assert summary["budget_exhausted"] is False and summary["fetched"] == len(deferred)
    assert not remote_urls([root / "posts"])
    assert snapshot(originals) != originals


def test_store_budget_counts_the_whole_store_folder_thumbnails_included(
    tmp_path, tls_server, ca_bundle
):
    """What a Pages site publishes is the whole store folder, thumbnails included."""
    names, served = big_images(tls_server, 12)
    root = tmp_path / "site"
    site_with(root, tls_server, names)
    budget = sum(len(d) for d in served.values()) * 2 // 5

    done = run_cli(cli_args(tls_server, ca_bundle, "--max-store-bytes", str(budget)), root)
    assert done.returncode == 0, done.stderr
    data = load_manifest(root / "manifest.json")
    assert any(a["thumbnails"] for a in data["assets"].values()), "thumbnails were made"
    assert sum(p.stat().st_size for p in store_files(root)) <= budget
