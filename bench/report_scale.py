"""Benchmark: `harvester report` on a synthetic manifest of N images (default 100,000).

Writes a manifest shaped like a large site's (duplicate groups, similar pairs, failures of
several reasons, archive rescues, articles with ~5 references each) plus thumbnail files as
symlinks to one small WebP (so the store costs directory entries, not disk), then builds the
report and prints the time, the number of pages and their sizes. Prints numbers; asserts
nothing about time.

    /work/venv/bin/python bench/report_scale.py [--images 100000] [--page-size 200] [--dir D]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PIL import Image

from harvester.report import (
    build_report,
    load_manifest_data,
    render_pages,
    write_report,
)

REASONS = ["http-404", "http-410", "dns-failure", "connection-refused", "not-an-image", "timeout"]


def sha_of(i: int) -> str:
    return hashlib.sha256(f"image-{i}".encode()).hexdigest()


def make_site(root: Path, n_images: int, seed: int = 7) -> Path:
    rng = random.Random(seed)
    thumb_src = root / "one-thumb.webp"
    buf = io.BytesIO()
    Image.new("RGB", (320, 240), (120, 160, 200)).save(buf, "WEBP")
    thumb_src.write_bytes(buf.getvalue())
    assets: dict[str, dict] = {}
    urls: dict[str, dict] = {}
    shas = [sha_of(i) for i in range(n_images)]
    for i, sha in enumerate(shas):
        thumb_rel = f"assets/thumbs/320/{sha[:2]}/{sha}.webp"
        thumb = root / thumb_rel
        thumb.parent.mkdir(parents=True, exist_ok=True)
        thumb.symlink_to(thumb_src)
        size = rng.randint(20_000, 900_000)
        assets[sha] = {
            "path": f"assets/{sha[:2]}/{sha[2:4]}/{sha}.jpg",
            "media_type": "image/jpeg",
            "bytes": size,
            "format": "JPEG",
            "width": 1600,
            "height": 1200,
            "frames": 1,
            "has_alpha": False,
            "phash": f"{rng.getrandbits(64):016x}",
            "thumbnails": [
                {"size": 320, "format": "webp", "width": 320, "height": 240, "path": thumb_rel}
            ],
            "duplicate_of": None,
            "distance": None,
            "similar_to": [],
            "status": "ok",
        }
        host = f"img{i % 500}.example.com"
        record = {"status": "ok", "sha256": sha, "attempts": 1, "source": "origin"}
        if i % 100 == 0:
            record["source"] = "archive"
            record["archive"] = {
                "snapshot_url": f"https://web.archive.org/web/2015id_/https://{host}/p/{i}.jpg",
                "timestamp": "20150101000000",
            }
        urls[f"https://{host}/p/{i}.jpg"] = record
    # 8% of the images are merged copies, in groups of 1–3 members.
    i = 0
    while i < n_images * 0.12:
        canon = shas[i]
        for j in range(1, rng.randint(2, 4)):
            assets[shas[i + j]]["duplicate_of"] = canon
            assets[shas[i + j]]["distance"] = rng.randint(0, 6)
        i += 4
    # 3% in similar pairs.
    for k in range(int(n_images * 0.12), int(n_images * 0.15), 2):
        d = rng.randint(7, 12)
        assets[shas[k]]["similar_to"].append({"sha256": shas[k + 1], "distance": d})
        assets[shas[k + 1]]["similar_to"].append({"sha256": shas[k], "distance": d})
    # 5% of the URLs failed.
    failed = []
    for k in range(n_images // 20):
        url = f"https://dead{k % 300}.example.org/gone/{k}.jpg"
        urls[url] = {
            "status": "failed",
            "sha256": None,
            "reason": REASONS[k % len(REASONS)],
            "attempts": rng.randint(1, 5),
            "next_retry_at": "2026-12-01T00:00:00Z" if k % 3 else None,
        }
        failed.append(url)
    # Articles: ~5 references each; URLs reused across articles now and then.
    all_urls = list(urls)
    articles = {}
    for a in range(n_images // 5):
        refs = []
        for line in range(5):
            url = all_urls[(a * 5 + line) % len(all_urls)] if line else rng.choice(all_urls)
            rec = urls[url]
            local = None
            if rec["status"] == "ok":
                sha = rec["sha256"]
                sha = assets[sha]["duplicate_of"] or sha
                local = "../" + assets[sha]["path"]
            refs.append(
                {
                    "kind": "markdown-inline",
                    "line": 10 + line * 4,
                    "url": url,
                    "local": local,
                    "status": rec["status"],
                }
            )
        articles[f"posts/{a // 1000:03d}/post-{a}.md"] = {"state": "rewritten", "refs": refs}
    manifest = root / "manifest.json"
    data = {
        "manifest_version": 1,
        "store": "assets",
        "assets": assets,
        "urls": urls,
        "articles": articles,
        "decisions": {"same": [], "different": [sorted([shas[0], shas[1]])]},
    }
    manifest.write_text(json.dumps(data, sort_keys=True), "utf-8")
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        manifest = make_site(root, args.images)
        t1 = time.perf_counter()
        print(
            f"synthetic site: {args.images} images, manifest "
            f"{manifest.stat().st_size / 1e6:.1f} MB, made in {t1 - t0:.1f} s"
        )
        data = load_manifest_data(manifest)
        t2 = time.perf_counter()
        report = build_report(data, root)
        t3 = time.perf_counter()
        pages = render_pages(report, root / "report.html", page_size=args.page_size)
        t4 = time.perf_counter()
        sizes = sorted(len(html.encode()) for html in pages.values())
        index = len(pages[(root / "report.html").resolve()].encode())
        print(
            f"load JSON {t2 - t1:.2f} s, build model {t3 - t2:.2f} s, render {t4 - t3:.2f} s "
            f"(total {t4 - t1:.2f} s)"
        )
        print(
            f"pages: {len(pages)}; index {index / 1e6:.2f} MB; largest {sizes[-1] / 1e6:.2f} MB;"
            f" median {sizes[len(sizes) // 2] / 1e6:.2f} MB; all {sum(sizes) / 1e6:.1f} MB"
        )
        t5 = time.perf_counter()
        result = write_report(manifest, root / "out" / "report.html", page_size=args.page_size)
        t6 = time.perf_counter()
        print(
            f"end to end (write_report: read, build, render, write {len(result.pages)} files, "
            f"{result.total_bytes / 1e6:.1f} MB): {t6 - t5:.2f} s"
        )
        s = report.summary
        print(
            f"groups {len(report.duplicates)}, similar {len(report.similar)}, failures "
            f"{s.failures}, articles {s.articles}, references {s.references}"
        )


if __name__ == "__main__":
    main()
