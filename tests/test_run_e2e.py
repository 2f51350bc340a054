"""`harvester run` end to end over a folder of realistic posts, against local HTTPS servers.

The posts are our own: an RSS-generated Hexo post (referrerpolicy images, headimg/thumbnail),
a Hugo post with a TOML front-matter cover and srcset, a Jekyll post with reference images,
lazy `data-src` and images inside code that must stay untouched.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from harvester.settings import Settings
from tests.servers import encoded_image, image_reply, settings_for, status_reply

HEXO_POST = """\

---
title: 'RSS post'
headimg: 'https://{IMG}/news/lead.jpg'
thumbnail: 'https://{IMG}/news/lead.jpg'
date: Tue, 08 Jun 2021 09:48:47 GMT
---

<div>
<p align="center">
<img src="https://{IMG}/news/lead.jpg" title="big" width="530" referrerpolicy="no-referrer">
</p>
<p><img src="https://{IMG}/news/second.png" referrerpolicy="no-referrer"><br></p>
<p><img src="https://{IMG}/news/gone.jpg" referrerpolicy="no-referrer"></p>
</div>
"""

HUGO_POST = """\
+++
title = "Hugo post"
[cover]
image = "https://{CDN}/covers/cover.jpg"
alt = "cover"
+++

Some text with an image ![a photo](https://{CDN}/photos/p1.jpg "The title").

<picture>
  <source srcset="https://{CDN}/photos/p1.webp 1x, https://{CDN}/photos/p1-2x.webp 2x">
  <img src="https://{CDN}/photos/p1.jpg" alt="same picture again">
</picture>
"""

JEKYLL_POST = """\
---
layout: post
title: Jekyll post
image: https://{STATIC}/teaser.jpg
---

A reference image: ![diagram][fig1] and the lazy one:

<img data-src="https://{STATIC}/lazy.jpg" src="data:image/gif;base64,R0lGODlhAQABAAAAACw=">

```markdown
![in a fence](https://{STATIC}/never-fetch-1.jpg)
```

    ![indented code](https://{STATIC}/never-fetch-2.jpg)

Inline code `![x](https://{STATIC}/never-fetch-3.jpg)` stays too.

[fig1]: https://{STATIC}/figure.png "Figure 1"
"""

NEVER = ("never-fetch-1.jpg", "never-fetch-2.jpg", "never-fetch-3.jpg")


@pytest.fixture
def site(tmp_path, tls_server, image_server, ca_bundle):
    """A site folder with three posts, its images served over HTTPS by `tls_server`."""
    root = tmp_path / "site"
    posts = root / "source" / "_posts"
    posts.mkdir(parents=True)
    hosts = {
        "IMG": f"img.example.com:{tls_server.port}",
        "CDN": f"cdn.example.net:{tls_server.port}",
        "STATIC": f"static.example.org:{tls_server.port}",
    }
    for name, text in (("rss.md", HEXO_POST), ("hugo.md", HUGO_POST), ("jekyll.md", JEKYLL_POST)):
        (posts / name).write_text(text.format(**hosts), encoding="utf-8")
    lead = encoded_image("JPEG", (400, 300), seed=1)
    routes = {
        "/news/lead.jpg": image_reply(lead),
        "/news/second.png": image_reply(encoded_image("PNG", (120, 90), seed=2), "image/png"),
        "/news/gone.jpg": status_reply(404),
        "/covers/cover.jpg": image_reply(encoded_image("JPEG", (640, 360), seed=3)),
        "/photos/p1.jpg": image_reply(encoded_image("JPEG", (300, 200), seed=4)),
        "/photos/p1.webp": image_reply(encoded_image("WEBP", (300, 200), seed=5), "image/webp"),
        "/photos/p1-2x.webp": image_reply(encoded_image("WEBP", (600, 400), seed=6), "image/webp"),
        "/teaser.jpg": image_reply(encoded_image("JPEG", (200, 200), seed=7)),
        "/lazy.jpg": image_reply(encoded_image("JPEG", (220, 160), seed=8)),
        "/figure.png": image_reply(encoded_image("PNG", (100, 100), seed=9), "image/png"),
    }
    for path, reply in routes.items():
        tls_server.route(path, reply)
    originals = {p: p.read_bytes() for p in posts.iterdir()}
    settings = settings_for(
        tls_server,
        image_server,
        ca_bundle=ca_bundle,
        out=root / "assets",
        manifest=root / "manifest.json",
        workers=1,
    )
    return root, posts, originals, settings, hosts


def _remote_refs(posts: Path, settings: Settings):
    from harvester.extract import scan_paths

    return [ref for r in scan_paths([posts], settings) for ref in r.refs]


def test_run_mirrors_rewrites_and_restores_byte_for_byte(site, tls_server):
    from harvester.maintenance import restore, verify
    from harvester.pipeline import run
    from mirror.manifest import validate

    root, posts, originals, settings, hosts = site
    summary = run([posts], settings)

    assert summary.articles == 3
    assert summary.failed == 1 and summary.failures_by_reason == {"http-404": 1}
    # Everything that was fetched is now local; only the dead image is still remote.
    remaining = _remote_refs(posts, settings)
    gone = f"https://{hosts['IMG']}/news/gone.jpg"
    assert [r.url for r in remaining] == [gone]
    manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    validate(manifest)
    assert manifest["urls"][gone]["reason"] == "http-404"

    # Every rewritten reference points at a file that exists, with the right bytes.
    for rel, article in manifest["articles"].items():
        folder = (root / rel).parent
        for ref in article["refs"]:
            if ref["local"] is None:
                continue
            target = (folder / ref["local"]).resolve()
            assert target.is_file(), (rel, ref)
    for sha, asset in manifest["assets"].items():
        data = (root / asset["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == sha
        for thumb in asset["thumbnails"]:
            assert (root / thumb["path"]).is_file()

    # Code blocks were neither fetched nor changed; the no-referrer images sent no Referer.
    requested = {r.path for r in tls_server.requests}
    assert not any(name in path for path in requested for name in NEVER)
    jekyll = (posts / "jekyll.md").read_text(encoding="utf-8")
    for name in NEVER:
        assert f"https://{hosts['STATIC']}/{name}" in jekyll
    assert all(r.referer is None for r in tls_server.requests if r.path.startswith("/news/"))

    # The RSS post: quoting, titles and attributes kept; the thumbnail key got a thumbnail.
    rss = (posts / "rss.md").read_text(encoding="utf-8")
    assert 'title="big" width="530" referrerpolicy="no-referrer">' in rss
    assert "thumbnail: '../../assets/thumbs/320/" in rss
    assert "headimg: '../../assets/" in rss and ".jpg'" in rss

    assert not verify(root / "manifest.json").problems

    # Restore gives back every original byte.
    restore(root / "manifest.json")
    for path, data in originals.items():
        assert path.read_bytes() == data, path.name


def test_a_second_run_changes_nothing_and_sends_no_request(site, tls_server):
    from harvester.pipeline import run

    root, posts, _, settings, _hosts = site
    (posts / "random.md").write_text("![r](https://picsum.photos/200/300)\n", encoding="utf-8")
    run([posts], settings)
    after_first = {p: p.read_bytes() for p in posts.iterdir()}
    manifest_first = (root / "manifest.json").read_bytes()
    requests_before = len(tls_server.requests)

    summary = run([posts], settings)

    assert len(tls_server.requests) == requests_before
    assert {p: p.read_bytes() for p in posts.iterdir()} == after_first
    assert summary.fetched == 0 and summary.articles_rewritten == 0
    assert (summary.waiting, summary.skipped) == (1, 1)  # the 404 backs off; the placeholder
    # Not a byte of the manifest either, so one kept in git shows no diff after a cron run.
    assert (root / "manifest.json").read_bytes() == manifest_first


def test_regenerated_posts_are_rewritten_again_without_fetching(site, tls_server):
    """A generator that rewrites every post from scratch (plus a plugin key) costs nothing."""
    from harvester.pipeline import run

    _root, posts, originals, settings, _hosts = site
    run([posts], settings)
    rewritten = {p: p.read_bytes() for p in posts.iterdir()}
    requests_before = len(tls_server.requests)
    for path, data in originals.items():  # the generator writes the posts afresh
        path.write_bytes(data.replace(b"title:", b"abbrlink: 1a2b\ntitle:", 1))

    run([posts], settings)

    assert len(tls_server.requests) == requests_before
    for path, data in rewritten.items():
        assert path.read_bytes() == data.replace(b"title:", b"abbrlink: 1a2b\ntitle:", 1)


def test_dry_run_writes_nothing(site, tls_server):
    from harvester.pipeline import run

    root, posts, originals, settings, hosts = site
    summary = run([posts], settings.replace(dry_run=True))

    assert not tls_server.requests
    assert not (root / "manifest.json").exists() and not (root / "assets").exists()
    assert {p: p.read_bytes() for p in posts.iterdir()} == originals
    assert f"https://{hosts['IMG']}/news/lead.jpg" in summary.would_fetch


def test_a_concurrent_run_exits_75_and_changes_nothing(site):
    from harvester.errors import LockHeld
    from harvester.locking import run_lock
    from harvester.pipeline import run

    root, posts, originals, settings, _hosts = site
    with run_lock(settings.manifest), pytest.raises(LockHeld) as caught:
        run([posts], settings)
    assert caught.value.exit_code == 75
    assert {p: p.read_bytes() for p in posts.iterdir()} == originals
    assert not (root / "manifest.json").exists()


def test_refresh_revalidates_with_conditional_requests(site, tls_server):
    """--refresh asks the server whether each mirrored image changed; a 304 keeps the copy."""
    from harvester.pipeline import run
    from tests.servers import Reply

    _root, posts, _, settings, _hosts = site
    lead = encoded_image("JPEG", (400, 300), seed=1)

    def lead_with_etag(request):
        if request.headers.get("if-none-match") == '"v1"':
            return Reply(status=304, headers={"ETag": '"v1"'}, content_type=None)
        return image_reply(lead, headers={"ETag": '"v1"'})

    tls_server.route("/news/lead.jpg", lead_with_etag)
    run([posts], settings)
    after_first = {p: p.read_bytes() for p in posts.iterdir()}

    summary = run([posts], settings.replace(refresh=True))

    revalidations = [r for r in tls_server.requests_for("/news/lead.jpg")[1:]]
    assert [r.headers.get("if-none-match") for r in revalidations] == ['"v1"']
    assert summary.not_modified == 1
    assert {p: p.read_bytes() for p in posts.iterdir()} == after_first


def test_proxy_wrappers_are_unwrapped_and_random_placeholders_skipped(
    tmp_path, tls_server, image_server, ca_bundle
):
    """The original behind images.weserv.nl is fetched (the proxy is never asked), and a
    random-picture service is recorded as skipped, its URL left as written."""
    from harvester.pipeline import run

    host = f"img.example.com:{tls_server.port}"
    tls_server.route("/news/lead.jpg", image_reply(encoded_image("JPEG", (200, 150), seed=11)))
    wrapped = f"https://images.weserv.nl/?url={host}/news/lead.jpg&w=300"
    random_picture = "https://picsum.photos/200/300"
    post = tmp_path / "post.md"
    post.write_text(f"![a]({wrapped})\n\n![b]({random_picture})\n", encoding="utf-8")
    settings = settings_for(
        tls_server,
        image_server,
        ca_bundle=ca_bundle,
        out=tmp_path / "assets",
        manifest=tmp_path / "manifest.json",
        workers=1,
    )

    summary = run([post], settings)

    manifest = json.loads((tmp_path / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["urls"][wrapped]["status"] == "ok"
    assert manifest["urls"][wrapped]["unwrapped_url"] == f"https://{host}/news/lead.jpg"
    assert manifest["urls"][random_picture]["status"] == "skipped"
    assert manifest["urls"][random_picture]["reason"] == "placeholder"
    assert summary.skipped == 1 and summary.failed == 0
    text = post.read_text(encoding="utf-8")
    assert wrapped not in text and "](assets/" in text
    assert random_picture in text
    assert [r.path for r in tls_server.requests] == ["/news/lead.jpg"]


def test_an_article_skipped_as_read_only_is_rewritten_once_writable(site, tls_server):
    """Skipping a file must not be remembered as done: after `chmod u+w`, the next run
    rewrites it from the mirror (no new downloads)."""
    import stat

    from harvester.pipeline import run

    _root, posts, originals, settings, _hosts = site
    rss = posts / "rss.md"
    rss.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)

    first = run([posts], settings)
    assert first.articles_skipped == 1
    assert rss.read_bytes() == originals[rss]
    requests_before = len(tls_server.requests)

    rss.chmod(stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IROTH)
    second = run([posts], settings)

    assert second.articles_rewritten == 1
    assert rss.read_bytes() != originals[rss] and b"../../assets/" in rss.read_bytes()
    assert len(tls_server.requests) == requests_before


def test_no_rewrite_then_rewrite(site, tls_server):
    from harvester.pipeline import run

    _root, posts, originals, settings, _hosts = site
    run([posts], settings.replace(rewrite=False))
    assert {p: p.read_bytes() for p in posts.iterdir()} == originals
    requests_before = len(tls_server.requests)

    summary = run([posts], settings)

    assert summary.articles_rewritten == 3
    assert len(tls_server.requests) == requests_before


def test_an_article_edited_during_the_downloads_is_rewritten_from_its_new_text(site, tls_server):
    # The rewrite pass reuses pass 1's scan only for files whose bytes did not change: an
    # edit made while images download (an editor saving, a generator running) must be kept.
    from harvester.pipeline import run

    _root, posts, _originals, settings, hosts = site
    post = posts / "rss.md"
    lead = image_reply(encoded_image("JPEG", (400, 300), seed=1))

    def edit_then_answer(request):
        text = post.read_text(encoding="utf-8")
        if "Edited mid-run" not in text:
            post.write_text(text + "\nEdited mid-run.\n", encoding="utf-8")
        return lead

    tls_server.route("/news/lead.jpg", edit_then_answer)
    run([posts], settings)

    text = post.read_text(encoding="utf-8")
    assert "Edited mid-run." in text  # the edit survived the rewrite
    assert f"https://{hosts['IMG']}/news/lead.jpg" not in text  # and it was rewritten


def test_every_manifest_save_names_only_files_already_synced(site, monkeypatch):
    # Downloads are committed without an fsync each and synced in batches: whenever the
    # manifest is written, every stored file it names must already have been fsynced.
    import mirror.store as store_module
    from harvester.pipeline import run
    from mirror.manifest import Manifest

    _root, posts, _originals, settings, _hosts = site
    synced: set[Path] = set()
    real_fsync = store_module.fsync_file

    def fsync_and_note(path):
        real_fsync(path)
        synced.add(Path(path).resolve())

    monkeypatch.setattr(store_module, "fsync_file", fsync_and_note)
    real_save = Manifest.save
    saves = []

    def checked_save(self, **kw):
        real_save(self, **kw)  # before_save (the sync) runs inside
        named = {self.resolve(asset["path"]).resolve() for _, asset in self.iter_assets()}
        saves.append(len(named))
        assert named <= synced, sorted(map(str, named - synced))

    monkeypatch.setattr(Manifest, "save", checked_save)
    summary = run([posts], settings)
    assert summary.fetched == 9 and saves and max(saves) == 9


def _phashes(data: dict) -> dict[str, str | None]:
    return {sha: asset["phash"] for sha, asset in data["assets"].items()}


def _mirrored_once(site) -> tuple[Path, dict]:
    """Run once over the site; the manifest's path and what it holds."""
    from harvester.pipeline import run

    root, posts, _originals, settings, _hosts = site
    run([posts], settings)
    path = root / "manifest.json"
    return path, json.loads(path.read_text(encoding="utf-8"))


def _as_an_older_harvester_left_it(path: Path, data: dict) -> None:
    """Write `data` back as a manifest whose signatures were made another way (another hash
    input size; every phash different from what this harvester computes)."""
    for block in data["hashing"].values():
        block["base"] = 256
    for asset in data["assets"].values():
        asset["phash"] = "0000000000000000"
    path.write_text(json.dumps(data), encoding="utf-8")


def test_signatures_made_under_another_definition_are_made_again(site, tls_server):
    # An older harvester hashed from another input size: its stored images are hashed again
    # (no download) before anything compares them with new ones, and the block is updated.
    from harvester.pipeline import run
    from mirror.imaging import hashing_versions

    _root, posts, _originals, settings, _hosts = site
    path, data = _mirrored_once(site)
    right = _phashes(data)
    _as_an_older_harvester_left_it(path, data)
    served = sum(len(tls_server.requests_for(p)) for p in ("/news/lead.jpg", "/teaser.jpg"))

    summary = run([posts], settings)

    again = json.loads(path.read_text(encoding="utf-8"))
    assert summary.rehashed == len(right) and summary.fetched == 0
    assert _phashes(again) == right
    assert again["hashing"] == json.loads(json.dumps(hashing_versions()))
    assert served == sum(len(tls_server.requests_for(p)) for p in ("/news/lead.jpg", "/teaser.jpg"))
    assert run([posts], settings).rehashed == 0  # settled


def test_a_rehash_whose_file_is_gone_clears_its_signatures(site, tls_server):
    # A stored file that vanished cannot be hashed again: its old signatures (made another
    # way) are cleared so it sits out of dedupe instead of being compared wrongly, and the
    # run still settles on the new definition (`harvester verify` reports the missing file).
    from harvester.pipeline import run

    root, posts, _originals, settings, _hosts = site
    path, data = _mirrored_once(site)
    right = _phashes(data)
    gone_sha = sorted(right)[0]
    gone_file = root / data["assets"][gone_sha]["path"]
    gone_bytes = gone_file.read_bytes()
    gone_file.unlink()
    _as_an_older_harvester_left_it(path, data)

    summary = run([posts], settings)

    again = json.loads(path.read_text(encoding="utf-8"))
    assert summary.rehashed == len(right) - 1
    assert _phashes(again) == {**right, gone_sha: None}
    assert run([posts], settings).rehashed == 0

    # The same bytes arrive again from another URL: they are stored and hashed afresh.
    tls_server.route("/copy.jpg", image_reply(gone_bytes))
    (posts / "copy.md").write_text(
        f"![copy]({tls_server.url('/copy.jpg', host='img.example.com')})\n", encoding="utf-8"
    )
    later = run([posts], settings)
    final = json.loads(path.read_text(encoding="utf-8"))
    assert later.fetched == 1 and later.rehashed == 1
    assert final["assets"][gone_sha]["phash"] == right[gone_sha]


def test_a_stop_cancels_a_pending_rehash_instead_of_waiting_for_it(tmp_path):
    # Upgrading a big store re-hashes every image; Ctrl-C or SIGTERM must not wait for all of
    # them. The run stops, what was not re-hashed is left for the next run (block unchanged).
    import asyncio
    import time

    from harvester.acquire import Acquirer
    from harvester.progress import NullProgress
    from harvester.summary import RunSummary
    from mirror.manifest import Manifest
    from mirror.store import Store

    settings = Settings(out=tmp_path / "assets", manifest=tmp_path / "manifest.json", workers=1)
    store = Store(settings.out)
    rehash = []
    for k in range(120):
        data = encoded_image("PNG", (64 + k, 48), seed=k)
        temp = store.temp_file()
        temp.write_bytes(data)
        stored = store.commit(temp, hashlib.sha256(data).hexdigest(), "png")
        rehash.append((stored.sha256, store.abspath(stored.path)))
    stop = asyncio.Event()
    stop.set()  # the stop came while the run was starting
    acquirer = Acquirer(
        Manifest.new(settings.manifest),
        store,
        settings,
        RunSummary(),
        NullProgress(),
        stop_event=stop,
        started=time.monotonic(),
    )
    asyncio.run(acquirer.run([], rehash=rehash))
    assert acquirer.rehash_finished < len(rehash)  # it did not wait for the whole list


def test_images_in_shortcodes_and_includes_are_mirrored_and_restored(
    tmp_path, tls_server, image_server, ca_bundle
):
    """A Hugo figure shortcode, a Hexo img tag and a Jekyll image include are mirrored at once
    but keep their URLs until the run has a site-root prefix (the generator, not the file,
    reads them); then they point at the local copies, the rest of each tag untouched, and
    restore gives the bytes back."""
    import dataclasses

    from harvester.extract import scan_paths
    from harvester.maintenance import restore
    from harvester.pipeline import run

    host = f"cdn.example.net:{tls_server.port}"
    posts = tmp_path / "posts"
    posts.mkdir()
    texts = {
        "hugo.md": '{{{{< figure src="https://{h}/a.jpg" link="https://{h}/big" >}}}}\n',
        "hexo.md": "{{% img left https://{h}/b.png 300 200 'Title' %}}\n",
        "jekyll.md": '{{% include image.html\n  url="https://{h}/a.jpg"\n  description="d" %}}\n',
    }
    for name, text in texts.items():
        (posts / name).write_text(text.format(h=host), encoding="utf-8")
    originals = {p: p.read_bytes() for p in posts.iterdir()}
    tls_server.route("/a.jpg", image_reply(encoded_image("JPEG", (300, 200), seed=11)))
    tls_server.route("/b.png", image_reply(encoded_image("PNG", (90, 60), seed=12), "image/png"))
    settings = settings_for(
        tls_server,
        image_server,
        ca_bundle=ca_bundle,
        out=tmp_path / "static" / "mirror",
        manifest=tmp_path / "manifest.json",
        workers=1,
    )

    summary = run([posts], settings)

    assert (summary.articles, summary.fetched, summary.failed) == (3, 2, 0)
    assert summary.refs_need_url_prefix == 3 and "--url-prefix" in summary.paragraph()
    assert {p: p.read_bytes() for p in posts.iterdir()} == originals
    manifest = json.loads((tmp_path / "manifest.json").read_text(encoding="utf-8"))
    refs = [ref for article in manifest["articles"].values() for ref in article["refs"]]
    assert {(r["status"], r["reason"], r["local"]) for r in refs} == {
        ("skipped", "needs-url-prefix", None)
    }

    prefixed = dataclasses.replace(settings, url_prefix="/mirror")
    # a dry run agrees: nothing to rewrite without the prefix, the three posts with it
    assert run([posts], dataclasses.replace(settings, dry_run=True)).would_rewrite == []
    dry = run([posts], dataclasses.replace(prefixed, dry_run=True))
    assert sorted(dry.would_rewrite) == sorted(str(p) for p in originals)
    summary = run([posts], prefixed)

    assert (summary.fetched, summary.articles_rewritten, summary.refs_need_url_prefix) == (0, 3, 0)
    assert [ref for r in scan_paths([posts], settings) for ref in r.refs] == []
    hugo = (posts / "hugo.md").read_text(encoding="utf-8")
    assert hugo.startswith('{{< figure src="/mirror/') and hugo.endswith(
        f'.jpg" link="https://{host}/big" >}}}}\n'
    )
    hexo = (posts / "hexo.md").read_text(encoding="utf-8")
    assert hexo.startswith("{% img left /mirror/") and hexo.endswith(".png 300 200 'Title' %}\n")
    jekyll = (posts / "jekyll.md").read_text(encoding="utf-8")
    local = jekyll.split('url="', 1)[1].split('"', 1)[0]
    assert (tmp_path / "static" / local.lstrip("/")).is_file() and local in hugo

    restore(tmp_path / "manifest.json")
    for path, data in originals.items():
        assert path.read_bytes() == data, path.name


def test_a_url_refused_by_a_setting_is_fetched_as_soon_as_the_setting_allows_it(
    tmp_path, image_server
):
    """A loopback image refused by default is not left backing off for an hour once the
    user allows private addresses: the next run fetches it."""
    import dataclasses

    from harvester.pipeline import run

    image_server.route("/a.png", image_reply(encoded_image("PNG", (40, 30), seed=13), "image/png"))
    post = tmp_path / "post.md"
    a = image_server.url("/a.png", host="127.0.0.1")
    post.write_text(f"![a]({a})\n")
    settings = Settings(
        out=tmp_path / "assets", manifest=tmp_path / "manifest.json", workers=1, retries=0
    )

    dry = run([post], dataclasses.replace(settings, dry_run=True))  # says so beforehand
    assert dry.would_fetch == [] and len(dry.would_refuse) == 1
    assert dry.would_refuse[0].startswith(f"{a} (blocked-address: ")
    assert "refuse 1 URL" in dry.paragraph()
    first = run([post], settings)
    assert first.failures_by_reason == {"blocked-address": 1}
    assert not image_server.requests
    record = json.loads((tmp_path / "manifest.json").read_text(encoding="utf-8"))["urls"][a]
    assert "allow_private_addresses lifts this" in record["message"]  # the way out, said
    assert (run([post], settings).waiting, image_server.requests) == (1, [])  # backs off

    allowed = run([post], dataclasses.replace(settings, allow_private_addresses=True))
    assert (allowed.fetched, allowed.waiting, allowed.failed) == (1, 0, 0)
    assert post.read_text().startswith("![a](assets/")


def test_an_svg_is_refused_by_default_and_mirrored_as_it_is_once_allowed(tmp_path, image_server):
    """SVG can carry script, so it is refused unless allow_svg; once allowed, the next run
    fetches it at once, stores it byte for byte (no raster: no thumbnail, no perceptual hash)
    and points the article at it. verify and report take it in their stride."""
    import dataclasses

    from harvester.maintenance import verify
    from harvester.pipeline import run
    from harvester.report import write_report

    svg = b'<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"><rect/></svg>'
    image_server.route("/logo.svg", image_reply(svg, "image/svg+xml"))
    post = tmp_path / "post.md"
    url = image_server.url("/logo.svg")
    post.write_text(f"---\nthumbnail: {url}\n---\n![l]({url})\n", encoding="utf-8")
    settings = settings_for(
        image_server, out=tmp_path / "assets", manifest=tmp_path / "manifest.json", workers=1
    )

    refused = run([post], settings)
    assert refused.failures_by_reason == {"svg-refused": 1}

    allowed = run([post], dataclasses.replace(settings, allow_svg=True))
    assert (allowed.fetched, allowed.failed, allowed.articles_rewritten) == (1, 0, 1)
    manifest = json.loads((tmp_path / "manifest.json").read_text(encoding="utf-8"))
    ((sha, asset),) = manifest["assets"].items()
    assert (asset["format"], asset["status"], asset["thumbnails"]) == ("SVG", "ok", [])
    assert (tmp_path / asset["path"]).read_bytes() == svg
    text = post.read_text(encoding="utf-8")
    assert text.count(f"assets/{sha[:2]}/{sha[2:4]}/{sha}.svg") == 2  # the thumbnail key too
    assert not verify(tmp_path / "manifest.json").problems
    write_report(tmp_path / "manifest.json", tmp_path / "report.html")
    assert f"{sha}.svg" in (tmp_path / "report.html").read_text(encoding="utf-8")


def test_a_new_edit_that_collides_with_an_earlier_rewrite_costs_that_article_only(
    tmp_path, image_server
):
    """A hand edit puts our local path inside a new remote URL (a site's own CDN in front of
    it). Composing the new edit with the recorded one would overlap: that article keeps its
    text and its earlier record, with a warning; the next post is still rewritten, and the
    run after goes through the same way instead of crashing each time."""
    from harvester.pipeline import run

    image_server.route("/a.png", image_reply(encoded_image("PNG", (40, 30), seed=21), "image/png"))
    image_server.route("/b.png", image_reply(encoded_image("PNG", (40, 30), seed=22), "image/png"))
    first, second = tmp_path / "a.md", tmp_path / "b.md"
    first.write_text(f"![a]({image_server.url('/a.png')})\n", encoding="utf-8")
    original = first.read_bytes()
    settings = settings_for(
        image_server, out=tmp_path / "assets", manifest=tmp_path / "manifest.json", workers=1
    )
    run([tmp_path], settings)
    local = first.read_text(encoding="utf-8")[5:-2]
    cdn = image_server.url(f"/cdn/{local}")
    image_server.route(f"/cdn/{local}", image_reply(encoded_image("PNG", (40, 30), seed=23)))
    first.write_text(f"![a]({cdn})\n", encoding="utf-8")
    second.write_text(f"![b]({image_server.url('/b.png')})\n", encoding="utf-8")

    for _ in range(2):
        summary = run([tmp_path], settings)
        assert summary.articles_skipped == 1 and "overlaps" in summary.warnings[0]
        assert first.read_text(encoding="utf-8") == f"![a]({cdn})\n"
    assert second.read_text(encoding="utf-8").startswith("![b](assets/")
    manifest = json.loads((tmp_path / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["articles"]["a.md"]["state"] == "rewritten"  # the earlier record stays
    assert manifest["articles"]["a.md"]["original_sha256"] == hashlib.sha256(original).hexdigest()


def test_svgs_take_no_thumbnail_reserve_and_an_older_failed_record_heals(tmp_path, image_server):
    """A small SVG fits a budget its size fits (no thumbnail space is reserved for it), and
    an SVG an older harvester recorded as a failed image (its imaging refused SVG) becomes a
    good asset when --retry-failed fetches the same bytes again."""
    import dataclasses

    from harvester.maintenance import restore
    from harvester.pipeline import run

    svg = b'<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"><rect/></svg>'
    image_server.route("/a.svg", image_reply(svg, "image/svg+xml"))
    url = image_server.url("/a.svg")
    post = tmp_path / "post.md"
    post.write_text(f"![a]({url})\n", encoding="utf-8")
    settings = settings_for(
        image_server,
        out=tmp_path / "assets",
        manifest=tmp_path / "manifest.json",
        workers=1,
        allow_svg=True,
        max_store_bytes=2 * len(svg),  # the thumbnail reserve alone would be 4 × its size
    )
    assert run([post], settings).articles_rewritten == 1

    # what a harvester before the SVG fix left: the asset failed, the URL backing off
    restore(tmp_path / "manifest.json")
    path = tmp_path / "manifest.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    ((sha, asset),) = data["assets"].items()
    asset.update(status="failed", format=None, media_type=None, reason="unsupported-format")
    asset["message"] = "not a JPEG, PNG, GIF, WebP, BMP, ICO or AVIF file"
    data["urls"][url].update(status="failed", reason="unsupported-format")
    data["urls"][url]["next_retry_at"] = "2099-01-01T00:00:00Z"
    data["articles"] = {}
    path.write_text(json.dumps(data), encoding="utf-8")

    healed = run([post], dataclasses.replace(settings, retry_failed=True))

    assert (healed.fetched, healed.failed, healed.articles_rewritten) == (1, 0, 1)
    asset = json.loads(path.read_text(encoding="utf-8"))["assets"][sha]
    assert (asset["status"], asset["format"]) == ("ok", "SVG")
    assert post.read_text(encoding="utf-8").startswith("![a](assets/")


def test_an_address_no_setting_allows_keeps_backing_off(tmp_path):
    """0.0.0.0 is refused whatever allow_private_addresses says: with the setting on, a
    later run does not try it again before its back-off (nor count another failure)."""
    from harvester.pipeline import run

    post = tmp_path / "post.md"
    post.write_text("![a](http://0.0.0.0:8080/a.png)\n", encoding="utf-8")
    settings = Settings(
        out=tmp_path / "assets",
        manifest=tmp_path / "manifest.json",
        workers=1,
        retries=0,
        allow_private_addresses=True,
    )
    assert run([post], settings).failures_by_reason == {"blocked-address": 1}
    again = run([post], settings)
    assert (again.failed, again.waiting) == (0, 1)
    record = json.loads((tmp_path / "manifest.json").read_text(encoding="utf-8"))
    assert record["urls"]["http://0.0.0.0:8080/a.png"]["failures"] == 1
