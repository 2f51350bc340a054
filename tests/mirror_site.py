"""A small realistic mirrored site for manifest and maintenance tests.

Builds what a finished `harvester run` leaves behind, using only the real mirror APIs:
Hexo/Hugo/Jekyll posts (YAML, TOML and front-matter-less HTML; BOM and CRLF included), real
JPEG/PNG images in a content-addressed store with real WebP thumbnails, and a manifest written
through `Manifest` with the write-ahead protocol (plan → save → atomic write → mark).
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from PIL import Image

from mirror.manifest import Manifest
from mirror.records import Edit, ImageInfo, Thumbnail
from mirror.rewrite import (
    apply_edits,
    context_around,
    escape_for,
    relative_target,
    write_bytes_atomic,
)

HEXO = (
    "---\n"
    "title: '社区要搞好'\n"
    "headimg: 'https://img.example.cn/2021/06/cover.jpg'\n"
    "thumbnail: 'https://img.example.cn/2021/06/cover.jpg'\n"
    "---\n\n"
    '<p align="center">\n'
    '<img src="https://img.example.cn/2021/06/a.jpg" title="点击查看大图" width="530" '
    'referrerpolicy="no-referrer">\n'
    "</p>\n\n"
    '```html\n<img src="https://img.example.cn/in-code.jpg">\n```\n'
)
HUGO = (
    "+++\r\n"
    'title = "Walking in Kyoto"\r\n'
    'cover = "https://photos.example.org/kyoto/gate.png"\r\n'
    "+++\r\n\r\n"
    '![The gate](https://photos.example.org/kyoto/gate.png "gate")\r\n'
    "![Broken](https://photos.example.org/kyoto/gone.jpg)\r\n"
)
JEKYLL = (
    "\ufeff---\n"
    "layout: post\n"
    "image: https://cdn.example.net/a.jpg\n"
    "---\n"
    '<picture><source srcset="https://cdn.example.net/a.jpg 1x, '
    'https://cdn.example.net/b.jpg 2x"></picture>\n'
)

# url → (format, size, colour); "gone.jpg" is a failed download: it keeps its URL
IMAGES = {
    "https://img.example.cn/2021/06/cover.jpg": ("JPEG", (64, 48), (200, 30, 30)),
    "https://img.example.cn/2021/06/a.jpg": ("JPEG", (40, 40), (30, 200, 30)),
    "https://photos.example.org/kyoto/gate.png": ("PNG", (32, 20), (30, 30, 200)),
    "https://cdn.example.net/a.jpg": ("JPEG", (50, 30), (120, 120, 0)),
    "https://cdn.example.net/b.jpg": ("JPEG", (100, 60), (0, 120, 120)),
}
FAILED = {"https://photos.example.org/kyoto/gone.jpg"}


def encode_image(fmt: str, size: tuple[int, int], colour: tuple[int, int, int]) -> bytes:
    img = Image.new("RGB", size, colour)
    for x in range(0, size[0], 4):  # a little structure, so it is a real picture
        img.putpixel((x, x % size[1]), (255, 255, 255))
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


@dataclass
class Site:
    root: Path
    manifest_path: Path
    articles: dict[str, bytes] = field(default_factory=dict)  # path rel → original bytes
    shas: dict[str, str] = field(default_factory=dict)  # url → sha256

    def manifest(self) -> Manifest:
        return Manifest.load(self.manifest_path)

    def path(self, rel: str) -> Path:
        return self.root / rel


def store_image(manifest: Manifest, store: Path, data: bytes, fmt: str) -> tuple[str, Path]:
    sha = hashlib.sha256(data).hexdigest()
    ext = {"JPEG": "jpg", "PNG": "png"}[fmt]
    path = store / sha[:2] / sha[2:4] / f"{sha}.{ext}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    with Image.open(io.BytesIO(data)) as img:
        width, height = img.size
        thumb_rel = f"thumbs/320/{sha[:2]}/{sha}.webp"
        (store / thumb_rel).parent.mkdir(parents=True, exist_ok=True)
        img.convert("RGB").save(store / thumb_rel, "WEBP")
    info = ImageInfo(
        sha256=sha,
        format=fmt,
        media_type=f"image/{ext if ext != 'jpg' else 'jpeg'}",
        width=width,
        height=height,
        frames=1,
        has_alpha=False,
        bytes=len(data),
        phash="8f3c0e1a2b4d6f70",
        dhash="0f0f0f0f0f0f0f0f",
        color="c81e1e" * 4,
        flat=False,
        quality=75 if fmt == "JPEG" else None,
        thumbnails=(Thumbnail(320, "webp", width, height, thumb_rel),),
    )
    manifest.record_asset(info, manifest.rel(path))
    return sha, path


def rewrite_article(manifest: Manifest, article: Path, shas: dict[str, str]) -> bytes:
    """What the pipeline does for one article, through the public APIs."""
    data = article.read_bytes()
    bom = data.startswith(b"\xef\xbb\xbf")
    text = data[3:].decode("utf-8") if bom else data.decode("utf-8")
    edits: list[Edit] = []
    refs = []
    code_start = text.find("```")
    for url in list(IMAGES) + sorted(FAILED):
        at = text.find(url)
        while at != -1:
            if code_start != -1 and at > code_start:
                break  # inside the code block: never touched
            line = text.count("\n", 0, at) + 1
            syntax = _syntax_at(text, at)
            ok = url in shas
            local = None
            if ok:
                store_file = manifest.resolve(manifest.asset(shas[url])["path"])
                target = relative_target(article, store_file)
                ctx = context_around(text, at, at + len(url), syntax, "srcset")
                local = escape_for(syntax, target, ctx)
                edits.append(Edit(at, at + len(url), url, local))
            refs.append(
                {
                    "kind": "front-matter" if syntax in ("yaml", "toml") else "html-img",
                    "syntax": syntax,
                    "field": "src",
                    "line": line,
                    "url": url,
                    "original": url,
                    "local": local,
                    "status": "ok" if ok else "failed",
                    "reason": None if ok else "http-404",
                }
            )
            at = text.find(url, at + 1)
    new_text = apply_edits(text, edits)
    new_bytes = (b"\xef\xbb\xbf" if bom else b"") + new_text.encode("utf-8")
    rel = manifest.rel(article)
    manifest.plan_article(
        rel,
        encoding="utf-8",
        bom=bom,
        newline="\r\n" if "\r\n" in text else "\n",
        original_sha256=hashlib.sha256(data).hexdigest(),
        rewritten_sha256=hashlib.sha256(new_bytes).hexdigest(),
        refs=sorted(refs, key=lambda r: r["line"]),
        edits=edits,
        text=text,
    )
    manifest.save()  # write-ahead: the plan is on disk before the article changes
    write_bytes_atomic(article, new_bytes)
    manifest.mark_rewritten(rel)
    return data


def _syntax_at(text: str, at: int) -> str:
    line_start = text.rfind("\n", 0, at) + 1
    line = text[line_start:at]
    if text.startswith("+++") and text.find("+++", 3) > at:
        return "toml"
    if text.lstrip("\ufeff").startswith("---") and text.find("---", 4) > at:
        return "yaml"
    if "<" in line:
        return "html"
    return "markdown"


def build_site(root: Path, *, clock=None) -> Site:
    """Write three posts and mirror them; returns the site with the original bytes."""
    root.mkdir(parents=True, exist_ok=True)
    posts = root / "source" / "_posts"
    posts.mkdir(parents=True)
    (root / "content" / "posts").mkdir(parents=True)
    files = {
        posts / "社区.md": HEXO,
        root / "content" / "posts" / "kyoto walk.md": HUGO,
        posts / "jekyll-post.html": JEKYLL,
    }
    for path, text in files.items():
        path.write_bytes(text.encode("utf-8"))
    manifest_path = root / "manifest.json"
    kwargs = {"clock": clock} if clock else {}
    manifest = Manifest.load(manifest_path, **kwargs)
    store = root / "assets"
    manifest.set_store(store)
    manifest.set_hashing({"phash": {"algorithm": "phash", "bits": 64}})
    site = Site(root, manifest_path)
    for url, (fmt, size, colour) in IMAGES.items():
        sha, _ = store_image(manifest, store, encode_image(fmt, size, colour), fmt)
        manifest.record_url_ok(
            url,
            sha256=sha,
            http_status=200,
            final_url=url,
            etag=f'"{sha[:8]}"',
            last_modified="Tue, 08 Jun 2021 09:48:47 GMT",
            attempts=1,
            policy="no-referrer",
            referer=None,
        )
        site.shas[url] = sha
    for url in FAILED:
        manifest.record_url_failed(
            url,
            reason="http-404",
            message="404 Not Found",
            http_status=404,
            attempts=1,
            policy="strict-origin-when-cross-origin",
            referer="https://blog.example.com/",
            next_retry_at=datetime(2026, 12, 1, tzinfo=timezone.utc),
        )
    for path in files:
        site.articles[manifest.rel(path)] = rewrite_article(manifest, path, site.shas)
    manifest.save()
    return site
