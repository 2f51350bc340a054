"""Generate Hexo-like articles that hotlink the benchmark server's images.

Input: the server's base URL(s) and the corpus image names. Output: a folder of `.md` files and a
stats dict (articles, references, remote references, unique URLs).

Two sets:
- the *main* set: every corpus image referenced exactly once, 3–8 per article, through the forms
  a real blog uses: the front-matter `headimg`, Markdown `![alt](url "title")`, and raw
  `<img src=... referrerpolicy="no-referrer">`. Fetching it downloads exactly the corpus, the
  same work img2dataset is given.
- the *large* set (scan / memory / no-op re-run): 10,000 articles x 10 image references each,
  by default; remote references draw from a pool of distinct alias URLs (`/a/K.jpg`, content K
  mod N, so exact duplicates occur as they do on real sites), about 10 % are site-local paths
  (left alone by design), and every article also has a code fence with an image URL that must
  never be reported.

URLs use host names `cdnK.bench.test` (several CDNs, as news sites have) that the tool under test
maps to 127.0.0.1 with `--resolve '*:PORT:127.0.0.1'`; `hosts=None` uses 127.0.0.1 itself.
Deterministic for a given seed.

Usage: python bench/make_articles.py main|large OUT --port PORT [--hosts 8] [...]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

_PROSE = (
    "the city council said on monday that new rules would take effect after a long review of "
    "transport housing budget schools water energy local residents market prices officials "
    "reported higher costs while experts warned of delays in the region north south river "
    "bridge station summer winter festival team season players coach museum exhibition"
)
WORDS = tuple(_PROSE.split())


def host_names(count: int | None) -> list[str]:
    """`count` CDN host names, or just 127.0.0.1 when count is None/0."""
    if not count:
        return ["127.0.0.1"]
    return [f"cdn{k}.bench.test" for k in range(count)]


def image_url(hosts: list[str], port: int, path: str, key: int) -> str:
    return f"http://{hosts[key % len(hosts)]}:{port}{path}"


def _sentence(rng: random.Random, n: int) -> str:
    words = [rng.choice(WORDS) for _ in range(n)]
    return " ".join(words).capitalize() + "."


def _paragraph(rng: random.Random) -> str:
    return " ".join(_sentence(rng, rng.randint(8, 18)) for _ in range(rng.randint(2, 5)))


def _front_matter(index: int, title: str, headimg: str | None) -> str:
    lines = [
        "---",
        f"title: {title}",
        f"date: 2026-{1 + index % 12:02d}-{1 + index % 28:02d} 12:00:00",
        f"permalink: https://news.bench.test/{2026}/{index:05d}/",
        "tags: [bench, news]",
    ]
    if headimg:
        lines.append(f"headimg: {headimg}")
    lines.append("---")
    return "\n".join(lines) + "\n"


def _ref(rng: random.Random, url: str, n: int) -> str:
    """One image reference in the body, in Markdown or HTML form."""
    if rng.random() < 0.55:
        return f'![Photo {n}: {rng.choice(WORDS)}]({url} "{rng.choice(WORDS)}")'
    return f'<img src="{url}" alt="photo {n}" referrerpolicy="no-referrer" loading="lazy">'


def _write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8", newline="\n")


def write_main_set(
    out: Path, names: list[str], port: int, hosts: int | None = 8, seed: int = 11
) -> dict:
    """Articles referencing each image `/img/<name>` exactly once. Returns stats with `urls`."""
    rng = random.Random(seed)
    hostlist = host_names(hosts)
    out.mkdir(parents=True, exist_ok=True)
    urls: list[str] = []
    pos = 0
    article = 0
    while pos < len(names):
        take = min(rng.randint(3, 8), len(names) - pos)
        batch = [image_url(hostlist, port, f"/img/{names[pos + j]}", pos + j) for j in range(take)]
        pos += take
        urls += batch
        head, body_refs = batch[0], batch[1:]
        parts = [_front_matter(article, f"Bench story {article}", head), _paragraph(rng)]
        for n, url in enumerate(body_refs, 1):
            parts += ["", _ref(rng, url, n), "", _paragraph(rng)]
        _write(out / f"story-{article:05d}.md", "\n".join(parts) + "\n")
        article += 1
    return {
        "articles": article,
        "references": len(urls),
        "remote_references": len(urls),
        "unique_urls": len(set(urls)),
        "urls": urls,
    }


def write_large_set(
    out: Path,
    port: int,
    articles: int = 10_000,
    refs_per_article: int = 10,
    unique_urls: int = 5_000,
    local_share: float = 0.1,
    hosts: int | None = 8,
    seed: int = 13,
) -> dict:
    """The synthetic scale set; see the module docstring. Returns stats (no URL list)."""
    rng = random.Random(seed)
    hostlist = host_names(hosts)
    out.mkdir(parents=True, exist_ok=True)
    total = remote = 0
    used: set[int] = set()
    for a in range(articles):
        refs: list[str] = []
        for _ in range(refs_per_article):
            if rng.random() < local_share:
                refs.append(f"/images/local-{rng.randrange(1000)}.png")
            else:
                key = rng.randrange(unique_urls)
                used.add(key)
                refs.append(image_url(hostlist, port, f"/a/{key}.jpg", key))
                remote += 1
            total += 1
        parts = [_front_matter(a, f"Archive {a}", refs[0]), _paragraph(rng)]
        for n, url in enumerate(refs[1:], 1):
            parts += ["", _ref(rng, url, n)]
            if n % 3 == 0:
                parts += ["", _paragraph(rng)]
        parts += [
            "",
            "```markdown",
            f"![not an image to fetch]({image_url(hostlist, port, '/a/999999999.jpg', 0)})",
            "```",
        ]
        sub = out / f"{a // 1000:02d}"
        sub.mkdir(exist_ok=True)
        _write(sub / f"archive-{a:05d}.md", "\n".join(parts) + "\n")
    return {
        "articles": articles,
        "references": total,
        "remote_references": remote,
        "unique_urls": len(used),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("which", choices=["main", "large"])
    parser.add_argument("out", type=Path)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--hosts", type=int, default=8, help="0: use 127.0.0.1 in URLs")
    parser.add_argument("--corpus", type=Path, help="main set: corpus folder (index.json)")
    parser.add_argument("--count", type=int, default=2000, help="main set: images")
    parser.add_argument("--articles", type=int, default=10_000)
    parser.add_argument("--refs-per-article", type=int, default=10)
    parser.add_argument("--unique-urls", type=int, default=5_000)
    args = parser.parse_args(argv)
    if args.which == "main":
        if not args.corpus:
            parser.error("main needs --corpus")
        index = json.loads((args.corpus / "index.json").read_text())["images"][: args.count]
        stats = write_main_set(args.out, [e["name"] for e in index], args.port, args.hosts)
        stats.pop("urls")
    else:
        stats = write_large_set(
            args.out,
            args.port,
            args.articles,
            args.refs_per_article,
            args.unique_urls,
            hosts=args.hosts,
        )
    print(json.dumps(stats, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
