"""Helpers for the report tests: a small real mirror on disk and a tiny HTML tree.

`build_small_mirror(root)` writes real encoded images into a content-addressed store, real
thumbnails, and a manifest (plain JSON, following the version-1 outline in
harvester/architecture.md) with two duplicate groups, one similar pair, failures of several
reasons, an archive-rescued URL and three articles. Hamming distances are computed with
imagehash from the real pixels, not typed in.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import imagehash
from PIL import Image, ImageDraw, ImageFilter

EVIL_URL = 'https://evil.example/x.png"><script>alert("pwned")</script>'
RESCUED_URL = "https://dead.example.org/2014/harbour.jpg"
SNAPSHOT_URL = (
    "https://web.archive.org/web/20140301000000id_/https://dead.example.org/2014/harbour.jpg"
)


# --- images ------------------------------------------------------------------------------------


def scene(seed: int, size: tuple[int, int] = (800, 600)) -> Image.Image:
    """A photo-like picture: sky gradient, hills, a sun and some texture, distinct per seed."""
    w, h = size
    img = Image.new("RGB", size)
    draw = ImageDraw.Draw(img)
    top = ((seed * 53) % 120 + 60, (seed * 97) % 100 + 100, 200 + seed % 55)
    for y in range(h):
        t = y / h
        draw.line(
            [(0, y), (w, y)],
            fill=(int(top[0] * (1 - t) + 240 * t), int(top[1] * (1 - t) + 200 * t), top[2]),
        )
    for i in range(4):
        base = int(h * (0.45 + 0.12 * i))
        points = [(0, h)]
        for x in range(0, w + 40, 40):
            bump = ((x * (seed + 3) * (i + 1)) % 97) / 97 * h * 0.12
            points.append((x, base - bump))
        points.append((w, h))
        shade = 40 + 35 * i + seed * 7 % 30
        draw.polygon(points, fill=(shade // 2, shade, shade // 3 + 20))
    r = 30 + seed % 40
    cx, cy = (seed * 131) % (w - 2 * r) + r, int(h * 0.2)
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(255, 230 - seed % 60, 120))
    return img.filter(ImageFilter.SMOOTH)


def encode(img: Image.Image, fmt: str, **params: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


# --- a mirror on disk ----------------------------------------------------------------------------


@dataclass
class Mirror:
    root: Path
    manifest: Path
    data: dict[str, Any]
    sha: dict[str, str] = field(default_factory=dict)  # label → sha256
    images: dict[str, Image.Image] = field(default_factory=dict)


class MirrorBuilder:
    """Writes assets, thumbnails and a manifest the way a run lays them out."""

    def __init__(self, root: Path, store: str = "assets") -> None:
        self.root = root
        self.store = store
        self.mirror = Mirror(root, root / "manifest.json", {})
        self.assets: dict[str, Any] = {}
        self.urls: dict[str, Any] = {}
        self.articles: dict[str, Any] = {}
        self.decisions: dict[str, list[list[str]]] = {"same": [], "different": []}

    def add_image(self, label: str, img: Image.Image, fmt: str, **params: Any) -> str:
        data = encode(img, fmt, **params)
        sha = hashlib.sha256(data).hexdigest()
        ext = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif"}[fmt]
        rel = f"{self.store}/{sha[:2]}/{sha[2:4]}/{sha}.{ext}"
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        thumb = img.copy()
        thumb.thumbnail((320, 320))
        thumb_rel = f"{self.store}/thumbs/320/{sha[:2]}/{sha}.webp"
        (self.root / thumb_rel).parent.mkdir(parents=True, exist_ok=True)
        thumb.save(self.root / thumb_rel, "WEBP", quality=80)
        self.assets[sha] = {
            "path": rel,
            "media_type": Image.MIME[fmt],
            "bytes": len(data),
            "format": fmt,
            "width": img.width,
            "height": img.height,
            "frames": 1,
            "has_alpha": False,
            "phash": str(imagehash.phash(img)),
            "dhash": str(imagehash.dhash(img)),
            "color": "",
            "flat": False,
            "quality": params.get("quality"),
            "thumbnails": [
                {
                    "size": 320,
                    "format": "webp",
                    "width": thumb.width,
                    "height": thumb.height,
                    "path": thumb_rel,
                }
            ],
            "duplicate_of": None,
            "distance": None,
            "similar_to": [],
            "status": "ok",
            "reason": None,
            "message": None,
            "first_seen": "2026-11-28T18:00:00Z",
            "last_referenced": "2026-11-28T18:00:00Z",
        }
        self.mirror.sha[label] = sha
        self.mirror.images[label] = img
        return sha

    def add_broken(self, label: str, data: bytes, reason: str, message: str) -> str:
        sha = hashlib.sha256(data).hexdigest()
        rel = f"{self.store}/{sha[:2]}/{sha[2:4]}/{sha}.jpg"
        (self.root / rel).parent.mkdir(parents=True, exist_ok=True)
        (self.root / rel).write_bytes(data)
        self.assets[sha] = {
            "path": rel,
            "bytes": len(data),
            "status": "failed",
            "reason": reason,
            "message": message,
            "thumbnails": [],
            "first_seen": "2026-11-28T18:00:00Z",
            "last_referenced": "2026-11-28T18:00:00Z",
        }
        self.mirror.sha[label] = sha
        return sha

    def distance(self, a: str, b: str) -> int:
        return int(
            imagehash.hex_to_hash(self.assets[a]["phash"])
            - imagehash.hex_to_hash(self.assets[b]["phash"])
        )

    def merge(self, member: str, canonical: str) -> int:
        d = self.distance(member, canonical)
        self.assets[member]["duplicate_of"] = canonical
        self.assets[member]["distance"] = d
        return d

    def similar(self, a: str, b: str) -> int:
        d = self.distance(a, b)
        self.assets[a]["similar_to"].append({"sha256": b, "distance": d})
        self.assets[b]["similar_to"].append({"sha256": a, "distance": d})
        return d

    def url_ok(self, url: str, sha: str, **extra: Any) -> None:
        self.urls[url] = {
            "status": "ok",
            "sha256": sha,
            "reason": None,
            "message": None,
            "http_status": 200,
            "final_url": url,
            "attempts": 1,
            "failures": 0,
            "fetched_at": "2026-11-28T18:00:00Z",
            "next_retry_at": None,
            "policy": "no-referrer",
            "referer": None,
            "source": "origin",
            **extra,
        }

    def url_failed(self, url: str, reason: str, message: str, **extra: Any) -> None:
        self.urls[url] = {
            "status": "failed",
            "sha256": None,
            "reason": reason,
            "message": message,
            "http_status": None,
            "attempts": 1,
            "failures": 1,
            "fetched_at": "2026-11-28T18:00:00Z",
            "next_retry_at": None,
            "policy": "no-referrer",
            "referer": None,
            "source": "origin",
            **extra,
        }

    def local_for(self, article: str, url: str) -> str | None:
        rec = self.urls.get(url, {})
        sha = rec.get("sha256")
        if rec.get("status") != "ok" or not sha or self.assets[sha].get("status") != "ok":
            return None
        while self.assets[sha].get("duplicate_of"):
            sha = self.assets[sha]["duplicate_of"]
        depth = article.count("/")
        return "../" * depth + self.assets[sha]["path"]

    def article(self, path: str, urls: list[str]) -> None:
        refs = []
        for line, url in enumerate(urls, start=3):
            local = self.local_for(path, url)
            refs.append(
                {
                    "kind": "markdown-inline",
                    "line": line,
                    "url": url,
                    "original": f"![]({url})",
                    "local": local,
                    "status": self.urls[url]["status"] if local or url in self.urls else "failed",
                }
            )
        for ref in refs:
            if ref["local"] is None and ref["status"] == "ok":
                ref["status"] = "failed"
        self.articles[path] = {
            "original_sha256": hashlib.sha256(path.encode()).hexdigest(),
            "rewritten_sha256": hashlib.sha256(path.encode() + b"+").hexdigest(),
            "encoding": "utf-8",
            "bom": False,
            "newline": "\n",
            "state": "rewritten" if any(r["local"] for r in refs) else "unchanged",
            "refs": refs,
            "edits": [],
        }

    def write(self) -> Mirror:
        data = {
            "manifest_version": 1,
            "generator": {"name": "harvester", "version": "0.1.0"},
            "created_at": "2026-11-28T18:00:00Z",
            "updated_at": "2026-11-28T18:05:00Z",
            "store": self.store,
            "hashing": {"phash": {"algorithm": "phash", "bits": 64}},
            "assets": self.assets,
            "urls": self.urls,
            "articles": self.articles,
            "decisions": self.decisions,
        }
        self.mirror.manifest.write_text(json.dumps(data, sort_keys=True, indent=2), "utf-8")
        self.mirror.data = data
        return self.mirror


def build_small_mirror(root: Path) -> Mirror:
    b = MirrorBuilder(root)
    big = scene(1)
    a = b.add_image("A", big, "JPEG", quality=90)
    a_small = b.add_image("A_small", big.resize((400, 300)), "JPEG", quality=70)
    a_png = b.add_image("A_png", big.resize((640, 480)), "PNG")
    b.merge(a_small, a)
    b.merge(a_png, a)

    harbour = scene(2, (640, 480))
    bb = b.add_image("B", harbour, "PNG")
    bb_jpg = b.add_image("B_jpg", harbour, "JPEG", quality=60)
    b.merge(bb_jpg, bb)

    c1 = b.add_image("C1", scene(3), "JPEG", quality=85)
    c2 = b.add_image("C2", scene(3).crop((60, 40, 800, 600)).resize((800, 600)), "JPEG")
    b.similar(c1, c2)

    rescued = b.add_image("D", scene(4, (600, 400)), "JPEG", quality=80)
    broken = b.add_broken(
        "E", b"\xff\xd8\xff\xe0 truncated jpeg", "corrupt-image", "image file is truncated"
    )

    b.url_ok("https://img.example.com/photos/a.jpg", a)
    b.url_ok("https://cdn.example.net/a-small.jpg", a_small)
    b.url_ok("https://img.example.com/photos/a.png", a_png)
    b.url_ok("https://img.example.com/harbour.png", bb)
    b.url_ok("https://mirror.example.net/harbour.jpg", bb_jpg)
    b.url_ok("https://img.example.com/c1.jpg", c1)
    b.url_ok("https://img.example.com/c2.jpg", c2)
    b.url_ok(
        RESCUED_URL,
        rescued,
        source="archive",
        archive=SNAPSHOT_URL,
    )
    b.url_ok("https://img.example.com/broken.jpg", broken)
    b.url_failed("https://gone.example.com/old.jpg", "http-404", "404 Not Found", http_status=404)
    b.url_failed(EVIL_URL, "http-404", "404 Not Found", http_status=404, attempts=2)
    b.url_failed("https://nxdomain.example.invalid/p.png", "dns-failure", "name does not resolve")
    b.url_failed(
        "https://hotlink.example.com/p.jpg",
        "not-an-image",
        "served text/html",
        http_status=200,
        attempts=5,
        next_retry_at="2026-11-29T18:00:00Z",
    )

    b.article(
        "posts/2014-harbour.md",
        [
            "https://img.example.com/photos/a.jpg",
            "https://img.example.com/harbour.png",
            RESCUED_URL,
            "https://gone.example.com/old.jpg",
        ],
    )
    b.article(
        "posts/2015-hills.md",
        [
            "https://cdn.example.net/a-small.jpg",
            "https://mirror.example.net/harbour.jpg",
            "https://img.example.com/c1.jpg",
            EVIL_URL,
            "https://nxdomain.example.invalid/p.png",
        ],
    )
    b.article(
        "notes/sunsets.html",
        [
            "https://img.example.com/photos/a.png",
            "https://img.example.com/c2.jpg",
            "https://hotlink.example.com/p.jpg",
            "https://img.example.com/broken.jpg",
            "https://gone.example.com/old.jpg",
        ],
    )
    return b.write()


# --- a small HTML tree for structural assertions -------------------------------------------------

_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}


@dataclass
class Node:
    tag: str
    attrs: dict[str, str | None]
    children: list[Node] = field(default_factory=list)
    parent: Node | None = None
    texts: list[str] = field(default_factory=list)

    @property
    def classes(self) -> set[str]:
        return set((self.attrs.get("class") or "").split())

    def text(self) -> str:
        parts = list(self.texts)
        for child in self.children:
            parts.append(child.text())
        return " ".join(p for p in (s.strip() for s in parts) if p)

    def iter(self):
        yield self
        for child in self.children:
            yield from child.iter()

    def find_all(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> list[Node]:
        found = []
        for node in self.iter():
            if tag and node.tag != tag:
                continue
            if cls and cls not in node.classes:
                continue
            if any(node.attrs.get(k.replace("_", "-")) != v for k, v in attrs.items()):
                continue
            found.append(node)
        return found

    def find(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> Node:
        found = self.find_all(tag, cls, **attrs)
        assert found, f"no <{tag} class={cls} {attrs}> found"
        return found[0]


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", {})
        self.current = self.root

    def handle_starttag(self, tag, attrs):
        node = Node(tag, dict(attrs), parent=self.current)
        self.current.children.append(node)
        if tag not in _VOID:
            self.current = node

    def handle_startendtag(self, tag, attrs):
        self.current.children.append(Node(tag, dict(attrs), parent=self.current))

    def handle_endtag(self, tag):
        node = self.current
        while node is not self.root and node.tag != tag:
            node = node.parent  # tolerate implicit closes
        if node is not self.root:
            self.current = node.parent

    def handle_data(self, data):
        self.current.texts.append(data)


def parse_html(text: str) -> Node:
    builder = _TreeBuilder()
    builder.feed(text)
    builder.close()
    return builder.root
