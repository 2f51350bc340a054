"""Benchmark: save/load a manifest of 10,000 articles with 100,000 references.

Run from the worktree root:  /work/venv/bin/python bench/manifest_save.py [--articles N]
Prints the size and the time of serialize (stdlib json, and orjson when installed), the
atomic save without and with schema validation, and load. Numbers only; no assertions.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mirror.manifest import Manifest, validation_errors
from mirror.records import ImageInfo, RecordedEdit, Thumbnail


def build(path: Path, articles: int, refs_per_article: int) -> Manifest:
    m = Manifest.load(path)
    n_images = articles * refs_per_article // 2  # every image used twice on average
    for i in range(n_images):
        sha = hashlib.sha256(str(i).encode()).hexdigest()
        url = f"https://img{i % 50}.example.com/uploads/2021/{i:07d}.jpg"
        m.record_url_ok(
            url,
            sha256=sha,
            http_status=200,
            final_url=url,
            etag=f'"{i:x}"',
            last_modified="Tue, 08 Jun 2021 09:48:47 GMT",
            attempts=1,
            policy="no-referrer",
            referer=None,
        )
        thumb = Thumbnail(320, "webp", 320, 240, f"thumbs/320/{sha[:2]}/{sha}.webp")
        info = ImageInfo(
            sha,
            "JPEG",
            "image/jpeg",
            800,
            600,
            1,
            False,
            123456,
            "8f3c0e1a2b4d6f70",
            "0f0f0f0f0f0f0f0f",
            "c81e1e" * 4,
            False,
            85,
            (thumb,),
        )
        m.record_asset(info, f"assets/{sha[:2]}/{sha[2:4]}/{sha}.jpg")
    for a in range(articles):
        refs, edits = [], []
        pos = 100
        for r in range(refs_per_article):
            i = (a * refs_per_article + r) % n_images
            sha = hashlib.sha256(str(i).encode()).hexdigest()
            url = f"https://img{i % 50}.example.com/uploads/2021/{i:07d}.jpg"
            local = f"../../assets/{sha[:2]}/{sha[2:4]}/{sha}.jpg"
            refs.append(
                {
                    "kind": "html-img",
                    "field": "src",
                    "line": 10 + r,
                    "url": url,
                    "original": url,
                    "local": local,
                    "status": "ok",
                }
            )
            edits.append(RecordedEdit(pos, pos + len(local), url, local))
            pos += len(local) + 200
        m.plan_article(
            f"source/_posts/2021/post-{a:05d}.md",
            encoding="utf-8",
            bom=False,
            newline="\n",
            original_sha256="a" * 64,
            rewritten_sha256="b" * 64,
            refs=refs,
            edits=edits,
        )
        m.mark_rewritten(f"source/_posts/2021/post-{a:05d}.md")
    return m


def timed(label: str, fn, repeat: int = 3) -> float:
    best = min(_once(fn) for _ in range(repeat))
    print(f"{label:<48} {best * 1000:9.0f} ms")
    return best


def _once(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--articles", type=int, default=10_000)
    parser.add_argument("--refs", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="skip the schema-validation runs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "manifest.json"
        t0 = time.perf_counter()
        m = build(path, args.articles, args.refs)
        print(
            f"built {args.articles} articles, {m.ref_count()} refs, "
            f"{len(m.data['assets'])} assets in {time.perf_counter() - t0:.1f} s"
        )
        payload = m.serialize()
        print(f"manifest size: {len(payload) / 1e6:.1f} MB")
        timed("serialize: Manifest.serialize (line per record)", m.serialize)
        timed(
            "serialize: json.dumps(sort_keys, indent=1)",
            lambda: json.dumps(m.data, sort_keys=True, ensure_ascii=False, indent=1),
            repeat=1,
        )
        timed(
            "serialize: json.dumps(sort_keys, compact)",
            lambda: json.dumps(m.data, sort_keys=True, ensure_ascii=False, separators=(",", ":")),
        )
        try:
            import orjson  # type: ignore[import-not-found]
        except ImportError:
            print("serialize: orjson                                 not installed")
        else:
            timed(
                "serialize: orjson (OPT_SORT_KEYS|OPT_INDENT_2)",
                lambda: orjson.dumps(m.data, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2),
            )
        timed("save() without validation (atomic, fsync)", lambda: m.save(validate_schema=False))
        if not args.quick:
            timed("save() with schema validation", lambda: m.save(validate_schema=True), repeat=1)
        timed("load() (parse + structural checks)", lambda: Manifest.load(path), repeat=3)
        if not args.quick:
            timed("full schema validation alone", lambda: validation_errors(m.data), repeat=1)


if __name__ == "__main__":
    main()
