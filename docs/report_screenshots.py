"""Regenerate the report screenshots in docs/ from a realistic mirror built on the spot.

Builds a site of ~20 photo-like pictures (made here with Pillow and numpy: landscapes, a city
at night, the sea, dunes, a forest), stores them with thumbnails, writes a manifest with
duplicate groups, similar pairs, failures, archive rescues and six articles, renders
`harvester report`, opens it in headless Chromium and saves:

    docs/report-overview.png   summary and duplicate groups
    docs/report-similar.png    similar pairs and failures
    docs/report-articles.png   one article opened: each reference and where it points now

    /work/venv/bin/python docs/report_screenshots.py [--keep DIR]

Needs Chromium and the playwright package (`.ci/browser-setup`). When the real pipeline can
build a mirror, prefer a screenshot of a real run.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harvester.report import write_report  # noqa: E402
from tests.test_report_browser import CHROMIUM_FLAGS, chromium_path  # noqa: E402
from tests.test_report_support import MirrorBuilder  # noqa: E402

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


def build(root: Path) -> Path:
    b = MirrorBuilder(root)
    shas: dict[str, str] = {}

    def add(label: str, img: Image.Image, fmt: str = "JPEG", **p) -> str:
        shas[label] = b.add_image(label, img, fmt, **({"quality": 88} | p) if fmt == "JPEG" else p)
        return shas[label]

    city = skyline(3)
    add("city", city)
    add("city_small", city.resize((800, 533)), quality=72)
    add("city_webp", city.resize((1200, 800)), "WEBP", quality=80)
    b.merge(shas["city_small"], shas["city"])
    b.merge(shas["city_webp"], shas["city"])
    sunset = sea(2)
    add("sea", sunset, "PNG")
    add("sea_jpg", sunset, quality=65)
    b.merge(shas["sea_jpg"], shas["sea"])
    woods = forest(5)
    add("forest", woods)
    add("forest_wechat", woods.resize((1080, 720)), quality=60)
    add("forest_thumb", woods.resize((640, 427)), quality=75)
    b.merge(shas["forest_wechat"], shas["forest"])
    b.merge(shas["forest_thumb"], shas["forest"])

    alps = mountains(11)
    add("alps", alps)
    add("alps_crop", alps.crop((75, 49, W - 75, H - 49)).resize((W, H)))  # a tighter crop
    b.similar(shas["alps"], shas["alps_crop"])
    sand = dunes(4)
    add("dunes", sand)
    add("dunes_dark", ImageEnhance.Brightness(sand).enhance(0.55))
    b.similar(shas["dunes"], shas["dunes_dark"])

    add("alps_2", mountains(23, ((150, 120, 170), (250, 190, 140))))
    add("alps_3", mountains(31))
    add("lights", bokeh(8))
    add("harbour_old", sea(9).resize((1024, 683)))
    add("dunes_2", dunes(13))
    add("forest_2", forest(17))
    add("city_2", skyline(19))
    broken = b.add_broken(
        "broken",
        b"\xff\xd8\xff\xe0\x00\x10JFIF truncated",
        "corrupt-image",
        "image file is truncated (12 bytes not processed)",
    )

    wb = "https://web.archive.org/web/{}id_/{}"
    cdn = "https://images.photoblog.example"
    urls = {
        "city": f"{cdn}/2017/08/harbour-night.jpg",
        "city_small": "https://i0.wp.example.com/photoblog/harbour-night.jpg?w=800",
        "city_webp": "https://cdn.statically.example/img/harbour-night.webp",
        "sea": f"{cdn}/2017/08/sunset.png",
        "sea_jpg": "https://pbs.twimg.example/media/sunset.jpg",
        "forest": f"{cdn}/2019/10/forest.jpg",
        "forest_wechat": "https://mmbiz.qpic.example/mmbiz_jpg/Xr3l9/640?wx_fmt=jpeg",
        "forest_thumb": f"{cdn}/2019/10/forest-640x427.jpg",
        "alps": f"{cdn}/2016/04/col-du-lautaret.jpg",
        "alps_crop": "https://farm4.staticflickr.example/3921/col-du-lautaret_b.jpg",
        "dunes": f"{cdn}/2018/01/erg-chebbi.jpg",
        "dunes_dark": f"{cdn}/2018/01/erg-chebbi-dusk.jpg",
        "alps_2": f"{cdn}/2016/04/galibier.jpg",
        "alps_3": f"{cdn}/2016/04/valloire.jpg",
        "lights": f"{cdn}/2021/05/lanterns.jpg",
        "dunes_2": f"{cdn}/2018/01/merzouga.jpg",
        "forest_2": f"{cdn}/2019/10/beech-path.jpg",
        "city_2": f"{cdn}/2017/08/quayside.jpg",
    }
    for label, url in urls.items():
        b.url_ok(url, shas[label])
    for label, url, ts in [
        ("harbour_old", "http://photos.oldhost.example/harbour/IMG_2231.jpg", "20131104093012"),
        ("alps_3", f"{cdn}/2016/04/valloire.jpg", "20160612080000"),
    ]:
        b.url_ok(url, shas[label], source="archive", archive=wb.format(ts, url))
    b.url_ok(f"{cdn}/2019/10/leaf-macro.jpg", broken)
    fails = [
        ("http://photos.oldhost.example/harbour/IMG_2240.jpg", "http-404", "404 Not Found", 404),
        ("http://photos.oldhost.example/harbour/IMG_2241.jpg", "http-404", "404 Not Found", 404),
        ("https://img.blogspot.example/b/R29vZ2xl/s1600/ferry.jpg", "http-410", "410 Gone", 410),
        (
            "https://pic.yupoo.example/photog/4b1c/medium.jpg",
            "hotlink-placeholder",
            "the host served its 'hotlinking forbidden' placeholder",
            200,
        ),
        (
            "https://files.defunct-gallery.example/dunes/03.jpg",
            "dns-failure",
            "name does not resolve",
            None,
        ),
        (
            "https://mmbiz.qpic.example/mmbiz_png/Q2x9/0?wx_fmt=png",
            "not-an-image",
            "served text/html (a login page)",
            200,
        ),
        (
            "https://slow.imagehost.example/lanterns-full.jpg",
            "timeout",
            "no answer within 60 s (3 tries)",
            None,
        ),
    ]
    for url, reason, message, status in fails:
        extra = {"http_status": status, "attempts": 3 if reason == "timeout" else 1}
        if reason == "timeout":
            extra["next_retry_at"] = "2026-11-29T03:00:00Z"
        if reason == "http-404":
            extra["archive"] = "no capture in the web archive"
        b.url_failed(url, reason, message, **extra)

    fail = [u for u, *_ in fails]
    b.article(
        "source/_posts/2016-04-02-alps-traverse.md",
        [urls["alps"], urls["alps_crop"], urls["alps_2"], f"{cdn}/2016/04/valloire.jpg", fail[4]],
    )
    b.article(
        "source/_posts/2017-08-19-harbour-lights.md",
        [
            urls["city"],
            urls["city_2"],
            urls["sea"],
            fail[0],
            fail[1],
            "http://photos.oldhost.example/harbour/IMG_2231.jpg",
            fail[2],
        ],
    )
    b.article(
        "source/_posts/2018-01-07-desert-notes.md",
        [urls["dunes"], urls["dunes_dark"], urls["dunes_2"], fail[3]],
    )
    b.article(
        "source/_posts/2019-10-30-autumn-forest.md",
        [urls["forest"], urls["forest_thumb"], urls["forest_2"], f"{cdn}/2019/10/leaf-macro.jpg"],
    )
    b.article(
        "source/_posts/2021-05-15-wechat-repost.md",
        [urls["forest_wechat"], fail[5], urls["lights"], fail[6], urls["sea_jpg"]],
    )
    b.article("source/about/index.html", [urls["city_small"], urls["city_webp"]])
    b.decisions["different"].append(sorted([shas["dunes"], shas["dunes_dark"]]))
    return b.write().manifest


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
        top = page.evaluate("document.querySelector('#similar').offsetTop") - 10
        page.screenshot(
            path=str(docs / "report-similar.png"), full_page=True, clip=_clip(page, top)
        )
        page.locator("details.article").nth(1).evaluate("d => d.open = true")
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
