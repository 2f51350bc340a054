"""Print how fast `referrer_for` is: one page URL, many distinct image URLs (a scan's shape).

Run from the repository root: PYTHONPATH=. /work/venv/bin/python bench/bench_referrer.py
"""

from __future__ import annotations

import time

from harvester.referrer import referrer_for


def main(count: int = 200_000) -> None:
    pages = [f"https://blog.example/posts/{i // 20}/index.html?lang=en" for i in range(count)]
    images = [f"https://cdn{i % 500}.example.net/img/{i}/cat.png" for i in range(count)]
    start = time.perf_counter()
    sent = sum(
        referrer_for(None, page, image) is not None
        for page, image in zip(pages, images, strict=True)
    )
    elapsed = time.perf_counter() - start
    print(f"referrer_for: {count} calls in {elapsed:.2f}s = {count / elapsed:,.0f} calls/s")
    print(f"  (20 images per page URL, {sent} Referer headers)")


if __name__ == "__main__":
    main()
