"""Benchmark load + scan: generate N articles of about S bytes in a temp folder, scan them all.

Run from the project root:

    /work/venv/bin/python bench/scan_bench.py            # 10,000 articles of ~10 KB
    /work/venv/bin/python bench/scan_bench.py --count 2000 --size 20000

Prints the generation time, then the scan time (load + scan of every file, as `harvester scan`
does without printing), articles per second and references found. The articles mix what real
posts have: front matter with image keys, prose, Markdown and reference images, raw HTML with
srcset and lazy attributes, fenced code with images in it, code spans and HTML comments.
"""

from __future__ import annotations

import argparse
import random
import shlex
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harvester.extract import scan_paths
from harvester.settings import Settings

_PROSE = (
    "the image mirror keeps every picture local so articles never lose their figures when a "
    "remote host goes away and readers still see what the author meant 图片 镜像 文章"
)
WORDS = _PROSE.split(" ")


def _prose(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def _block(rng: random.Random, n: int) -> str:
    host = f"https://img{rng.randrange(20)}.example.com"
    kind = rng.randrange(8)
    if kind == 0:
        return f'![figure {n}]({host}/{n}.png "title {n}")'
    if kind == 1:
        return f"![ref {n}][r{n}]\n\n[r{n}]: {host}/ref/{n}.jpg"
    if kind == 2:
        return (
            f'<p><img src="{host}/{n}.jpg" srcset="{host}/{n}-1x.jpg 1x, {host}/{n}-2x.jpg 2x" '
            f'referrerpolicy="no-referrer"></p>'
        )
    if kind == 3:
        return f'```html\n<img src="{host}/code/{n}.png">\n![x]({host}/code/{n}.png)\n```'
    if kind == 4:
        return f"Use `![alt]({host}/span/{n}.png)` in text, {_prose(rng, 8)}."
    if kind == 5:
        return f"<!-- ![old]({host}/old/{n}.png) -->"
    if kind == 6:
        return f'<img data-src="{host}/lazy/{n}.webp" src="data:image/gif;base64,R0lGOD">'
    return f"## Heading {n}\n\n> {_prose(rng, 15)}"


def make_article(rng: random.Random, index: int, size: int) -> str:
    parts = [
        "---",
        f"title: Article {index}",
        f"permalink: /posts/{index}/",
        f"headimg: https://cdn.example.com/head/{index}.jpg",
        "cover:",
        f"  image: https://cdn.example.com/cover/{index}.jpg",
        "---",
        "",
    ]
    length = sum(len(p) + 1 for p in parts)
    n = 0
    while length < size:
        piece = _prose(rng, rng.randrange(30, 90)) if n % 2 == 0 else _block(rng, n)
        parts.append(piece + "\n")
        length += len(piece.encode()) + 2
        n += 1
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=10_000, help="bytes per article, about")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1, help="processes (as scan_paths)")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="harvester-scan-bench-") as folder:
        root = Path(folder)
        started = time.perf_counter()
        total_bytes = 0
        for i in range(args.count):
            sub = root / f"{i // 1000:03d}"
            sub.mkdir(exist_ok=True)
            data = make_article(rng, i, args.size).encode()
            total_bytes += len(data)
            (sub / f"post-{i:05d}.md").write_bytes(data)
        generated = time.perf_counter() - started

        settings = Settings(site_url="https://blog.example.org/")
        started = time.perf_counter()
        cpu_started = time.process_time()
        articles = refs = warnings = 0
        for result in scan_paths([root], settings, workers=args.workers):
            articles += 1
            refs += len(result.refs)
            warnings += len(result.warnings)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_started

    print(f"generated {args.count} articles, {total_bytes / 1e6:.1f} MB, in {generated:.1f} s")
    print(
        f"scanned {articles} articles in {elapsed:.2f} s: {articles / elapsed:,.0f} articles/s, "
        f"{total_bytes / 1e6 / elapsed:.1f} MB/s; {refs} references, {warnings} warnings"
    )
    if args.workers <= 1:  # on a shared machine wall time hides the work; CPU time does not
        print(f"CPU time of the scan: {cpu:.2f} s ({cpu / articles * 1000:.2f} ms per article)")
    print("reproduce: /work/venv/bin/python " + shlex.join(["bench/scan_bench.py", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
