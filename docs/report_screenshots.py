"""Regenerate the report screenshots in docs/ from a real run of the pipeline.

Makes ~20 photo-like pictures (Pillow and numpy: landscapes, a city at night, the sea, dunes,
a forest, lanterns) and their variants (resized and re-encoded copies, a darker edition, a
recoloured one), serves them from real HTTPS test servers on 127.0.0.1 (`tests/servers.py`,
plus the stand-in web archive of `tests/test_fallback.py`) with some realistic failures (404,
410, an HTML page served as 200, a truncated JPEG, a host that never answers, one dead image
rescued from the archive), writes six articles of the kinds the tool meets (an RSS-generated
Hexo post, a Hugo post with a cover and srcset, a Jekyll post with reference images and code,
a WeChat repost, an HTML page) into a temporary site, runs `harvester.pipeline.run`, renders
the report with `harvester.report.write_report`, opens it in headless Chromium and saves:

    docs/report-overview.png   summary and duplicate groups
    docs/report-similar.png    similar pairs and failures
    docs/report-articles.png   one article opened: each reference and where it points now

    /work/venv/bin/python docs/report_screenshots.py [--keep DIR]

Needs Chromium and the playwright package (`.ci/browser-setup`). Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harvester.pipeline import run  # noqa: E402
from harvester.report import write_report  # noqa: E402
from tests.servers import (  # noqa: E402
    NAMES,
    Reply,
    TestServer,
    image_reply,
    make_ca,
    server_ssl_context,
    settings_for,
    status_reply,
)
from tests.test_fallback import ARCHIVE_NAMES, WaybackStandIn  # noqa: E402
from tests.test_report_browser import CHROMIUM_FLAGS, chromium_path  # noqa: E402

W, H = 1600, 1067


def _noise(img: Image.Image, amount: float, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    arr = np.asarray(img, dtype=np.float32)
    arr += rng.normal(0, amount, arr.shape[:2])[..., None]
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _sky(top, bottom, size=(W, H)) -> Image.Image:
    t = np.linspace(0, 1, size[1])[:, None, None]
    arr = np.array(top, np.float32) * (1 - t) + np.array(bottom, np.float32) * t
    return Image.fromarray(np.repeat(arr, size[0], axis=1).astype(np.uint8))


def mountains(seed: int, palette=((70, 110, 170), (230, 200, 170))) -> Image.Image:
    rng = np.random.default_rng(seed)
    img = _sky(*palette)
    draw = ImageDraw.Draw(img)
    for layer in range(5):
        base = H * (0.35 + 0.11 * layer)
        xs = np.arange(0, W + 20, 20)
        ys = base - np.cumsum(rng.normal(0, 14, len(xs)))
        ys = ys - (ys.mean() - base)
        shade = 150 - layer * 28
        colour = (int(shade * 0.55), int(shade * 0.7), int(shade * 0.9 - layer * 6))
        draw.polygon([(0, H), *zip(xs.tolist(), ys.tolist(), strict=True), (W, H)], fill=colour)
    return _noise(img.filter(ImageFilter.GaussianBlur(1.2)), 5, seed)


def skyline(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    img = _sky((8, 12, 40), (60, 40, 90))
    draw = ImageDraw.Draw(img)
    x = 0
    while x < W:
        bw, bh = int(rng.integers(60, 160)), int(rng.integers(200, 800))
        top = H - bh
        draw.rectangle([x, top, x + bw, H], fill=(18, 20, 32))
        for wy in range(top + 12, H - 10, 22):
            for wx in range(x + 8, x + bw - 10, 18):
                if rng.random() < 0.45:
                    draw.rectangle([wx, wy, wx + 8, wy + 10], fill=(255, 214, 120))
        x += bw + int(rng.integers(4, 20))
    draw.ellipse([1250, 120, 1350, 220], fill=(250, 245, 220))
    return _noise(img.filter(ImageFilter.GaussianBlur(0.8)), 4, seed)


def sea(seed: int) -> Image.Image:
    img = _sky((250, 150, 80), (255, 210, 150))
    arr = np.asarray(img, np.float32).copy()
    horizon = int(H * 0.55)
    ys, xs = np.mgrid[horizon:H, 0:W]
    wave = np.sin(xs / (18 + seed) + ys / 7.0) * 18 * (ys - horizon) / (H - horizon)
    water = np.stack([30 + wave + 60, 60 + wave + 40, 110 + wave + 30], axis=-1)
    arr[horizon:] = water
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    draw.ellipse([700, horizon - 140, 900, horizon + 60], fill=(255, 235, 180))
    draw.rectangle([0, horizon, W, horizon + 2], fill=(200, 120, 80))
    return _noise(img.filter(ImageFilter.GaussianBlur(1.5)), 5, seed)


def dunes(seed: int) -> Image.Image:
    img = _sky((120, 170, 220), (230, 220, 200))
    draw = ImageDraw.Draw(img)
    xs = np.arange(0, W + 10, 10)
    for layer in range(4):
        ys = H * (0.5 + 0.13 * layer) + np.sin(xs / (120 + 40 * layer) + seed) * 60
        tone = 200 - layer * 25
        draw.polygon(
            [(0, H), *zip(xs.tolist(), ys.tolist(), strict=True), (W, H)],
            fill=(tone, int(tone * 0.72), int(tone * 0.45)),
        )
    return _noise(img.filter(ImageFilter.GaussianBlur(1.0)), 6, seed)


def forest(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    img = _sky((180, 200, 190), (90, 120, 90))
    draw = ImageDraw.Draw(img)
    for _ in range(140):
        x = int(rng.integers(0, W))
        h = int(rng.integers(300, 900))
        w = h // 5
        g = int(rng.integers(40, 110))
        draw.polygon([(x, H - h), (x - w, H), (x + w, H)], fill=(20, g, 30 + g // 3))
    return _noise(img.filter(ImageFilter.GaussianBlur(1.0)), 7, seed)


def bokeh(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    img = _sky((30, 20, 40), (60, 30, 50))
    overlay = Image.new("RGB", (W, H))
    draw = ImageDraw.Draw(overlay)
    for _ in range(60):
        x, y, r = int(rng.integers(0, W)), int(rng.integers(0, H)), int(rng.integers(20, 90))
        c = tuple(int(v) for v in rng.integers(90, 255, 3))
        draw.ellipse([x - r, y - r, x + r, y + r], fill=c)
    img = Image.blend(img, overlay.filter(ImageFilter.GaussianBlur(12)), 0.55)
    return _noise(img, 4, seed)


def _encode(img: Image.Image, fmt: str = "JPEG", **save) -> bytes:
    buffer = io.BytesIO()
    if fmt == "JPEG":
        save = {"quality": 88} | save
    img.save(buffer, fmt, **save)
    return buffer.getvalue()


# The articles, written the way the generators write them; {IMG} etc. become host:port.
HEXO_RSS_POST = """\
---
title: 'Harbour lights'
date: 2017-08-19 21:40:00
headimg: 'https://{IMG}/2017/08/harbour-night.jpg'
thumbnail: 'https://{IMG}/2017/08/harbour-night.jpg'
tags: [city, night]
---

<div>
<p align="center">
<img src="https://{IMG}/2017/08/harbour-night.jpg" title="The harbour at night" width="530" \
referrerpolicy="no-referrer">
</p>
<p>The fair on the quay, from the ferry:</p>
<p><img src="https://{IMG}/2017/08/fairground.jpg" referrerpolicy="no-referrer"><br></p>
<p><img src="https://{IMG}/2017/08/sunset.png" referrerpolicy="no-referrer"></p>
<p>Two more from the old gallery:</p>
<p><img src="https://{PICS}/harbour/IMG_2240.jpg" referrerpolicy="no-referrer">
<img src="https://{PICS}/harbour/IMG_2241.jpg" referrerpolicy="no-referrer"></p>
<p><img src="https://{PICS}/harbour/IMG_2231.jpg" referrerpolicy="no-referrer"></p>
<p><img src="https://{CDN}/b/R29vZ2xl/s1600/ferry.jpg" referrerpolicy="no-referrer"></p>
</div>
"""

HUGO_POST = """\
+++
title = "Alps traverse, day 3"
date = 2016-04-02T18:00:00Z
[cover]
image = "https://{CDN}/2016/04/col-du-lautaret.jpg"
alt = "Col du Lautaret"
+++

Up at five. The col, then the same view from the other side of the road, a tighter frame:

![the col](https://{CDN}/2016/04/col-du-lautaret-crop.jpg "A tighter crop")

<picture>
  <source srcset="https://{CDN}/2016/04/galibier.webp 1x, https://{CDN}/2016/04/galibier-2x.jpg 2x">
  <img src="https://{CDN}/2016/04/galibier.jpg" alt="Galibier">
</picture>

Valloire in the evening light: ![Valloire](https://{CDN}/2016/04/valloire.jpg)
And the same valley an hour later, with the colours gone violet:
![dusk](https://{CDN}/2016/04/valloire-dusk.jpg)
"""

JEKYLL_POST = """\
---
layout: post
title: Desert notes
date: 2018-01-07
image: https://{STATIC}/2018/01/erg-chebbi.jpg
---

The erg at noon ![Erg Chebbi][noon] and at dusk ![Erg Chebbi at dusk][dusk].
Merzouga from the dune: ![Merzouga][merzouga]

How I resized them for the blog:

```sh
convert erg.jpg -resize 1600x erg-1600.jpg
# ![never fetched](https://{STATIC}/2018/01/not-an-image-ref.jpg)
```

    ![indented code](https://{STATIC}/2018/01/never-fetch.jpg)

[noon]: https://{STATIC}/2018/01/erg-chebbi.jpg "Noon"
[dusk]: https://{STATIC}/2018/01/erg-chebbi-dusk.jpg "Dusk"
[merzouga]: https://{STATIC}/2018/01/merzouga.jpg
"""

FOREST_POST = """\
---
title: Autumn forest
date: 2019-10-30 10:00:00
photos:
  - https://{IMG}/2019/10/forest.jpg
---

![the beeches](https://{IMG}/2019/10/forest.jpg)

A smaller copy the theme used for the index page:
![thumb](https://{IMG}/2019/10/forest-640x427.jpg)

![the path](https://{IMG}/2019/10/beech-path.jpg)
![a leaf, close up](https://{IMG}/2019/10/leaf-macro.jpg)
"""

WECHAT_POST = """\
---
title: "转载：灯笼节"
date: 2021-05-15
original_url: https://mp.weixin.example/s/Xr3l9
---

<section><img data-src="https://{PICS}/mmbiz_jpg/Xr3l9/640?wx_fmt=jpeg" \
src="data:image/gif;base64,R0lGODlhAQABAAAAACw="></section>
<section><img src="https://{PICS}/mmbiz_png/Q2x9/0?wx_fmt=png"></section>

灯笼 ![lanterns](https://{IMG}/2021/05/lanterns.jpg)

![full size](https://{STATIC}/slow/lanterns-full.jpg)

![sunset](https://{PICS}/media/sunset.jpg)
"""

ABOUT_PAGE = """\
<!DOCTYPE html>
<html><head><title>About</title></head>
<body>
<h1>About this blog</h1>
<img src="https://{CDN}/photoblog/harbour-night.jpg?w=800" alt="me, on the ferry">
<img src="https://{STATIC}/img/harbour-night.webp" alt="the same, as webp" loading="lazy">
</body></html>
"""

ARTICLES = {
    "source/_posts/2017-08-19-harbour-lights.md": HEXO_RSS_POST,
    "content/posts/2016-04-02-alps-traverse.md": HUGO_POST,
    "_posts/2018-01-07-desert-notes.md": JEKYLL_POST,
    "source/_posts/2019-10-30-autumn-forest.md": FOREST_POST,
    "source/_posts/2021-05-15-wechat-repost.md": WECHAT_POST,
    "source/about/index.html": ABOUT_PAGE,
}


def pictures() -> dict[str, tuple[bytes, str]]:
    """path → (bytes, content type) for every image the server answers with."""
    jpeg, png, webp = "image/jpeg", "image/png", "image/webp"
    city, sunset, woods, alps, sand = skyline(3), sea(2), forest(5), mountains(11), dunes(4)
    lanterns = bokeh(8)
    truncated = _encode(forest(29))
    return {
        # duplicates: the same picture resized and re-encoded
        "/2017/08/harbour-night.jpg": (_encode(city), jpeg),
        "/photoblog/harbour-night.jpg?w=800": (_encode(city.resize((800, 533)), quality=72), jpeg),
        "/img/harbour-night.webp": (_encode(city.resize((1200, 800)), "WEBP", quality=80), webp),
        # PNG kept small: bodies over ~1.2 MB stall over TLS in harvester/_stream.py (a known bug)
        "/2017/08/sunset.png": (_encode(sunset.resize((1024, 683)), "PNG"), png),
        "/media/sunset.jpg": (_encode(sunset, quality=65), jpeg),
        "/2019/10/forest.jpg": (_encode(woods), jpeg),
        "/mmbiz_jpg/Xr3l9/640?wx_fmt=jpeg": (_encode(woods.resize((1080, 720)), quality=60), jpeg),
        "/2019/10/forest-640x427.jpg": (_encode(woods.resize((640, 427)), quality=75), jpeg),
        "/2016/04/galibier.jpg": (
            _encode(g := mountains(23, ((150, 120, 170), (250, 190, 140)))),
            jpeg,
        ),
        "/2016/04/galibier.webp": (_encode(g.resize((800, 533)), "WEBP", quality=75), webp),
        "/2016/04/galibier-2x.jpg": (_encode(g, quality=92), jpeg),
        # similar: a tighter crop, a darker edition, a recolouring
        "/2016/04/col-du-lautaret.jpg": (_encode(alps), jpeg),
        "/2016/04/col-du-lautaret-crop.jpg": (
            _encode(alps.crop((75, 49, W - 75, H - 49)).resize((W, H))),
            jpeg,
        ),
        "/2018/01/erg-chebbi.jpg": (_encode(sand), jpeg),
        "/2018/01/erg-chebbi-dusk.jpg": (
            _encode(ImageEnhance.Brightness(sand).enhance(0.55)),
            jpeg,
        ),
        "/2016/04/valloire.jpg": (_encode(v := mountains(31)), jpeg),
        "/2016/04/valloire-dusk.jpg": (_encode(_recolour(v)), jpeg),
        # different pictures
        "/2017/08/fairground.jpg": (_encode(bokeh(21)), jpeg),
        "/2018/01/merzouga.jpg": (_encode(dunes(13)), jpeg),
        "/2019/10/beech-path.jpg": (_encode(forest(17)), jpeg),
        "/2021/05/lanterns.jpg": (_encode(lanterns), jpeg),
        # a JPEG cut off half-way: downloads fine, fails to decode
        "/2019/10/leaf-macro.jpg": (truncated[: len(truncated) // 3], jpeg),
    }


def _recolour(img: Image.Image) -> Image.Image:
    """The same scene with the colours shifted towards violet (a different edit)."""
    r, g, b = img.split()
    return Image.merge(
        "RGB", (r.point(lambda v: min(255, v * 1.15)), g.point(lambda v: v * 0.8), b)
    )


def serve(server: TestServer, archive: WaybackStandIn, hosts: dict[str, str]) -> None:
    for path, (data, content_type) in pictures().items():
        server.route(path, image_reply(data, content_type))
    server.route("/harbour/IMG_2240.jpg", status_reply(404, body=b"Not Found"))
    server.route("/harbour/IMG_2241.jpg", status_reply(404, body=b"Not Found"))
    server.route("/b/R29vZ2xl/s1600/ferry.jpg", status_reply(410, body=b"Gone"))
    login = b"<!DOCTYPE html><html><head><title>Log in</title></head><body>...</body></html>"
    server.route(
        "/mmbiz_png/Q2x9/0?wx_fmt=png", Reply(body=login, content_type="text/html; charset=utf-8")
    )
    # a host that accepts the connection and never answers: read timeout, every attempt
    server.route("/slow/lanterns-full.jpg", Reply(stall_before_headers=30.0))
    # dead on the live host, rescued from a 2017 capture in the (stand-in) web archive
    server.route("/harbour/IMG_2231.jpg", status_reply(404, body=b"Not Found"))
    old = sea(9).resize((1024, 683))
    archive.add(
        f"https://{hosts['PICS']}/harbour/IMG_2231.jpg", "20170820093012", image_reply(_encode(old))
    )


def build(root: Path) -> Path:
    """Serve the pictures, write the site, run the pipeline on it; the manifest's path."""
    ca = make_ca()
    ca_file = root / "test-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    site = root / "site"
    with (
        TestServer(ssl_context=server_ssl_context(ca)) as server,
        TestServer(ssl_context=server_ssl_context(ca, ARCHIVE_NAMES)) as archive_server,
    ):
        archive = WaybackStandIn(archive_server)
        names = dict(zip(("IMG", "CDN", "STATIC", "PICS"), NAMES, strict=True))
        hosts = {key: f"{name}:{server.port}" for key, name in names.items()}
        serve(server, archive, hosts)
        for rel, text in ARTICLES.items():
            path = site / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text.format(**hosts), encoding="utf-8")
        settings = settings_for(
            server,
            ca_bundle=ca_file,
            resolve=(*server.resolve_entries(), *archive_server.resolve_entries(ARCHIVE_NAMES)),
            archive=("wayback",),
            archive_api=archive.api_base,
            out=site / "assets",
            manifest=site / "manifest.json",
            read_timeout=2.0,
            total_timeout=10.0,
            retries=1,
            workers=1,
        )
        summary = run([site], settings)
        print(
            f"run: {summary.articles} articles, {summary.failed} failed "
            f"{dict(summary.failures_by_reason)}"
        )
        hosts_contacted = {r.headers.get("host") for r in server.requests}
        print(f"hosts contacted on 127.0.0.1: {sorted(h for h in hosts_contacted if h)}")
    return settings.manifest


def shoot(report: Path, docs: Path) -> None:
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    if executable is None:
        raise SystemExit("Chromium is not installed (run .ci/browser-setup)")
    with sync_playwright() as pw, tempfile.TemporaryDirectory() as profile:
        context = pw.chromium.launch_persistent_context(
            profile,
            executable_path=executable,
            args=CHROMIUM_FLAGS,
            headless=True,
            viewport={"width": 1280, "height": 1000},
        )
        page = context.new_page()
        page.goto(report.as_uri())
        page.wait_for_load_state("load")

        def settle() -> None:
            page.wait_for_function(
                "() => Array.from(document.images).filter(i => i.getBoundingClientRect().top"
                " < innerHeight).every(i => i.complete)"
            )

        settle()
        page.screenshot(path=str(docs / "report-overview.png"), full_page=True, clip=_clip(page, 0))
        # scroll through once so every lazy thumbnail has loaded before the full-page shots
        height = page.evaluate("document.documentElement.scrollHeight")
        for y in range(0, height, 800):
            page.evaluate(f"window.scrollTo(0, {y})")
            settle()
        # back at the top, the sticky header sits above the clip instead of across the table
        page.evaluate("window.scrollTo(0, 0)")
        top = page.evaluate("document.querySelector('#similar').offsetTop") - 10
        # down to the end of the failures table, however many similar pairs come first
        bottom = page.evaluate(
            "(() => { const f = document.querySelector('#failures');"
            " return f.offsetTop + f.offsetHeight; })()"
        )
        page.screenshot(
            path=str(docs / "report-similar.png"),
            full_page=True,
            clip=_clip(page, top, bottom + 10 - top),
        )
        article = page.locator('details.article[data-path$="harbour-lights.md"]')
        article.evaluate("d => d.open = true")
        page.locator("#articles").screenshot(path=str(docs / "report-articles.png"))
        context.close()


def _clip(page, top: int, height: int = 1500) -> dict:
    total = page.evaluate("document.documentElement.scrollHeight")
    return {"x": 0, "y": top, "width": 1280, "height": min(height, total - top)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="build the mirror here and keep it")
    args = parser.parse_args()
    docs = ROOT / "docs"
    tmp = None
    if args.keep:
        root = args.keep
        if root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True)
    else:
        tmp = tempfile.TemporaryDirectory()
        root = Path(tmp.name)
    manifest = build(root)
    result = write_report(manifest, root / "report.html")
    shoot(result.out, docs)
    print(f"report {result.out} ({result.total_bytes} bytes); screenshots in {docs}")
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
