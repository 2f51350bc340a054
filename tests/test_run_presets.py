"""`harvester run --preset hexo|hugo|jekyll` from a site's root, through the real CLI.

Small Hexo, Hugo and Jekyll sites (our own config and posts) whose posts hotlink images on a
local HTTPS server. Checked as the site owner would: the pictures land in the folder the
generator publishes (Hexo `source/images/mirror`, Hugo `static/images/mirror`, Jekyll
`assets/images/mirror`), the manifest in `.harvester/manifest.json`, every rewritten URL is a
site-root URL under the site's path that maps to an existing file once published, and when
the generator rewrites every post from scratch the next run fetches nothing new.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers import TestServer
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


@dataclass(frozen=True)
class Site:
    preset: str
    config_name: str
    config: str
    posts: str  # where the generator writes posts
    static_root: str  # the folder published at the site's path
    url_base: str  # the site's path: what site-root URLs start with
    store: str  # where the mirrored pictures must land


SITES = {
    "hexo": Site(
        "hexo",
        "_config.yml",
        "title: Feed mirror\nurl: https://feeds.example.org/blog\nroot: /blog/\n"
        "source_dir: source\npublic_dir: public\nnew_post_name: :title.md\n",
        posts="source/_posts",
        static_root="source",
        url_base="/blog/",
        store="source/images/mirror",
    ),
    "hugo": Site(
        "hugo",
        "hugo.toml",
        'baseURL = "https://example.org/docs/"\nlanguageCode = "en-us"\ntitle = "Docs"\n',
        posts="content",
        static_root="static",
        url_base="/docs/",
        store="static/images/mirror",
    ),
    "jekyll": Site(
        "jekyll",
        "_config.yml",
        'title: Notes\nbaseurl: "/notes"\nurl: "https://example.com"\nmarkdown: kramdown\n',
        posts="_posts",
        static_root=".",
        url_base="/notes/",
        store="assets/images/mirror",
    ),
}


def build(site: Site, root: Path, server: TestServer) -> dict[Path, bytes]:
    """The site's config, a few extra files a real site has, and six posts with 12 images."""
    root.mkdir(parents=True)
    (root / site.config_name).write_text(site.config, encoding="utf-8")
    (root / "harvester.toml").write_text(FAST_CONFIG, encoding="utf-8")
    if site.preset == "hexo":
        (root / "package.json").write_text(json.dumps({"dependencies": {"hexo": "^7.3.0"}}))
    if site.preset == "hugo":
        for folder in ("static", "archetypes", "layouts"):
            (root / folder).mkdir()
    if site.preset == "jekyll":
        (root / "Gemfile").write_text('gem "jekyll", "~> 4.3"\n', encoding="utf-8")
        (root / "index.md").write_text("---\nlayout: home\n---\n", encoding="utf-8")
    names = image_names(12)
    serve_images(server, names)
    return write_posts(root / site.posts, f"img.example.com:{server.port}", names, 6)


def published_file(site: Site, root: Path, url: str) -> Path:
    """Where a site-root URL is served from once the generator copies the static folder."""
    assert url.startswith(site.url_base), url
    return root / site.static_root / url[len(site.url_base) :]


def regenerate(originals: dict[Path, bytes]) -> dict[Path, bytes]:
    """The generator writes every post afresh; a plugin adds a front-matter key."""
    fresh = {}
    for path, data in originals.items():
        fresh[path] = data.replace(b"title:", b"abbrlink: 1a2b3c\ntitle:", 1)
        path.write_bytes(fresh[path])
    return fresh


@pytest.mark.parametrize("name", sorted(SITES))
def test_preset_run_puts_files_where_the_generator_publishes_them(
    tmp_path, tls_server, ca_bundle, name
):
    site = SITES[name]
    root = tmp_path / name
    originals = build(site, root, tls_server)
    args = ["run", "--preset", name, "--workers", "1", *network_args(tls_server, ca_bundle)]

    done = run_cli(args, root)
    assert done.returncode == 0, done.stderr

    manifest_path = root / ".harvester" / "manifest.json"
    data = load_manifest(manifest_path)
    assert (
        not (root / "manifest.json").exists() and not (root / "assets" / "manifest.json").exists()
    )
    store = (root / site.store).resolve()
    assert data["assets"], "images were mirrored"
    for sha, asset in data["assets"].items():
        stored = (manifest_path.parent / asset["path"]).resolve()
        assert stored.is_file() and store in stored.parents, (sha, asset["path"])
    if name != "jekyll":
        assert not (root / "assets").exists(), "nothing in the default store folder"

    # Every rewritten reference is a site-root URL under the site's path, and the file it
    # names exists in the published static folder; no remote image is left.
    locals_seen = 0
    for path in originals:
        text = path.read_text(encoding="utf-8")
        # manifest paths are relative to the manifest's folder
        entry = data["articles"][Path(os.path.relpath(path, manifest_path.parent)).as_posix()]
        for ref in entry["refs"]:
            local = ref["local"]
            assert local is not None, ref
            assert local.startswith(site.url_base.rstrip("/") + "/"), local
            assert local in text
            target = published_file(site, root, local.split(" ")[0])
            assert target.is_file(), local
            locals_seen += 1
    assert locals_seen == 4 * len(originals)  # headimg, two <img>, one Markdown image
    assert not remote_urls(list(originals))


@pytest.mark.parametrize("name", sorted(SITES))
def test_regenerating_every_post_then_running_again_fetches_nothing_new(
    tmp_path, tls_server, ca_bundle, name
):
    site = SITES[name]
    root = tmp_path / name
    originals = build(site, root, tls_server)
    args = ["run", "--preset", name, "--json", "--workers", "1"]
    args += network_args(tls_server, ca_bundle)
    first = run_cli(args, root)
    assert first.returncode == 0, first.stderr
    rewritten = snapshot(originals)
    requests_after_first = len(tls_server.requests)

    regenerate(originals)
    second = run_cli(args, root)

    assert second.returncode == 0, second.stderr
    assert len(tls_server.requests) == requests_after_first, "nothing was downloaded again"
    summary = json.loads(second.stdout)
    assert summary["fetched"] == 0 and summary["articles_rewritten"] == len(originals)
    for path, data in rewritten.items():
        # The same local URLs as before, and the plugin's key kept.
        assert path.read_bytes() == data.replace(b"title:", b"abbrlink: 1a2b3c\ntitle:", 1)
    load_manifest(root / ".harvester" / "manifest.json")


TEMPLATE_POSTS = {
    # each generator's own way to show a picture from a template tag
    "hexo": "---\ntitle: tagged\n---\n{{% img left {url} 300 200 'Tag' %}}\n",
    "hugo": '---\ntitle: tagged\n---\n{{{{< figure src="{url}" >}}}}\n',
    "jekyll": '---\ntitle: tagged\n---\n{{% include image.html url="{url}" %}}\n',
}


@pytest.mark.parametrize("name", sorted(SITES))
def test_a_template_tag_gets_a_site_root_url_and_restore_names_files_from_the_site_root(
    tmp_path, tls_server, ca_bundle, name
):
    """The tag a preset site uses for pictures is rewritten to the published file's site-root
    URL, the rest of the tag as it was; `restore --preset` lists the posts as paths from
    where it runs (not from .harvester/, where the manifest is) and gives the bytes back."""
    site = SITES[name]
    root = tmp_path / name
    originals = build(site, root, tls_server)
    tagged = root / site.posts / "tagged.md"
    url = f"https://img.example.com:{tls_server.port}/img/{image_names(12)[0]}"
    tagged.write_text(TEMPLATE_POSTS[name].format(url=url), encoding="utf-8")
    originals[tagged] = tagged.read_bytes()
    args = ["run", "--preset", name, "--workers", "1", *network_args(tls_server, ca_bundle)]

    done = run_cli(args, root)
    assert done.returncode == 0, done.stderr

    text = tagged.read_text(encoding="utf-8")
    local = text.split(site.url_base, 1)[1].split()[0].rstrip("\"'")
    assert published_file(site, root, site.url_base + local).is_file(), text
    assert text.replace(site.url_base + local, url) == originals[tagged].decode()

    restored = run_cli(["restore", "--preset", name], root)
    assert restored.returncode == 0, restored.stderr
    assert f"restored: {os.path.relpath(tagged, root)}\n" in restored.stdout
    assert snapshot(originals) == originals
