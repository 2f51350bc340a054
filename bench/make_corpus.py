"""Generate the benchmark's image corpus: news-like JPEGs made from real photos found offline.

Input: the photos bundled inside scikit-image (`skimage/data/*.png|jpg`) and, when installed,
matplotlib's `mpl-data/sample_data` (both live in the bench venv, never in the package).
Output: `<cache>/corpus/v<VERSION>-s<seed>/NNNNN.jpg` plus `index.json` listing, per file, its
name, bytes, sha256, width and height.

Each image `i` is derived from `numpy.random.default_rng([seed, i])` only, so the corpus is
deterministic and can be grown: asking for 2,000 after 300 generates just the missing 1,700.
Every file is distinct (random crop, size, tone, grain, quality, progressive or baseline) and is
400–1200 px on its long side and 30–300 KB — the shape of a typical news photo.

Usage: python bench/make_corpus.py [--count 2000] [--seed 1] [--cache bench/.cache]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

VERSION = 1  # bump when the recipe changes: a new folder, the old one is left alone
MIN_BYTES = 30 * 1024
MAX_BYTES = 300 * 1024
MIN_SIDE = 400
MAX_SIDE = 1200
DEFAULT_CACHE = Path(__file__).resolve().parent / ".cache"

# Real photographs only: textures, line art, chessboards and tiny icons are not news pictures.
SKIMAGE_PHOTOS = (
    "astronaut.png",
    "camera.png",
    "chelsea.png",
    "coffee.png",
    "coins.png",
    "hubble_deep_field.jpg",
    "ihc.png",
    "moon.png",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "retina.jpg",
    "rocket.jpg",
    "brick.png",
    "grass.png",
    "gravel.png",
    "clock_motion.png",
    "color.png",
)
MATPLOTLIB_PHOTOS = ("grace_hopper.jpg",)


def source_photos() -> list[Path]:
    """The offline photos available in this environment, in a fixed order."""
    found: list[Path] = []
    try:
        import skimage.data

        skdir = Path(skimage.data.__file__).parent
        found += [skdir / name for name in SKIMAGE_PHOTOS if (skdir / name).is_file()]
    except ImportError:
        pass
    try:
        import matplotlib

        mpl = Path(matplotlib.get_data_path()) / "sample_data"
        found += [mpl / name for name in MATPLOTLIB_PHOTOS if (mpl / name).is_file()]
    except ImportError:
        pass
    if not found:
        raise SystemExit(
            "make_corpus: no source photos found; install scikit-image (and optionally "
            "matplotlib) into the bench venv: python3 bench/harness.py --setup-only"
        )
    return found


def corpus_dir(cache: Path, seed: int) -> Path:
    return cache / "corpus" / f"v{VERSION}-s{seed}"


def _encode(img: Image.Image, quality: int, progressive: bool, subsampling: int) -> bytes:
    buf = io.BytesIO()
    img.save(
        buf,
        "JPEG",
        quality=quality,
        progressive=progressive,
        optimize=True,
        subsampling=subsampling,
    )
    return buf.getvalue()


def make_image(sources: list[str], seed: int, index: int) -> bytes:
    """One news-like JPEG, a pure function of (sources, seed, index)."""
    rng = np.random.default_rng([seed, index])
    src = Image.open(sources[int(rng.integers(len(sources)))])
    src.load()
    # Most news photos are colour; keep a few grey ones (as in real archives).
    mode = "L" if (src.mode == "L" and rng.random() < 0.3) else "RGB"
    img = src.convert(mode)

    # Crop 55–100 % of each side at a random position, sometimes mirrored.
    w, h = img.size
    cw = max(64, int(w * rng.uniform(0.55, 1.0)))
    ch = max(64, int(h * rng.uniform(0.55, 1.0)))
    x0 = int(rng.integers(0, w - cw + 1))
    y0 = int(rng.integers(0, h - ch + 1))
    img = img.crop((x0, y0, x0 + cw, y0 + ch))
    if rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)

    # News aspect ratios: mostly landscape 3:2 / 4:3 / 16:9, some portrait and square.
    aspect = float(
        rng.choice([1.5, 1.333, 1.778, 1.0, 0.75, 0.667], p=[0.3, 0.2, 0.2, 0.1, 0.1, 0.1])
    )
    long_side = int(rng.integers(MIN_SIDE, MAX_SIDE + 1))
    if aspect >= 1:
        size = (long_side, max(1, round(long_side / aspect)))
    else:
        size = (max(1, round(long_side * aspect)), long_side)
    img = img.resize(size, Image.Resampling.LANCZOS)

    # Tone and colour as an editor's export would vary them.
    img = ImageEnhance.Brightness(img).enhance(rng.uniform(0.85, 1.15))
    img = ImageEnhance.Contrast(img).enhance(rng.uniform(0.85, 1.2))
    if mode == "RGB":
        img = ImageEnhance.Color(img).enhance(rng.uniform(0.7, 1.3))

    # Sensor grain: upscaled sources are too smooth to reach news file sizes without it.
    sigma = rng.uniform(2.0, 8.0)
    progressive = bool(rng.random() < 0.25)
    subsampling = 2 if rng.random() < 0.85 else 0  # 4:2:0 mostly, some 4:4:4
    quality = int(rng.integers(70, 94))
    arr = np.asarray(img, dtype=np.float32)
    for _ in range(8):
        noisy = np.clip(arr + rng.normal(0.0, sigma, arr.shape), 0, 255).astype(np.uint8)
        data = _encode(Image.fromarray(noisy, mode), quality, progressive, subsampling)
        if len(data) > MAX_BYTES:
            if quality > 50:
                quality -= 8
            else:
                sigma *= 0.6
        elif len(data) < MIN_BYTES:
            if quality < 92:
                quality = min(95, quality + 6)
            else:
                sigma *= 1.6
        else:
            return data
    return data  # after 8 tries the last attempt stands; check_corpus() reports outliers


def _make_one(args: tuple[list[str], int, int, str]) -> dict:
    sources, seed, index, out_dir = args
    data = make_image(sources, seed, index)
    name = f"{index:05d}.jpg"
    path = Path(out_dir) / name
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    with Image.open(io.BytesIO(data)) as im:
        width, height = im.size
    return {
        "name": name,
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "width": width,
        "height": height,
    }


def ensure_corpus(count: int, seed: int = 1, cache: Path = DEFAULT_CACHE, workers: int = 0) -> Path:
    """Make sure images 0..count-1 exist; return the corpus folder (with index.json)."""
    out = corpus_dir(cache, seed)
    out.mkdir(parents=True, exist_ok=True)
    index_path = out / "index.json"
    entries: dict[str, dict] = {}
    if index_path.is_file():
        for entry in json.loads(index_path.read_text())["images"]:
            if (out / entry["name"]).is_file():
                entries[entry["name"]] = entry
    missing = [i for i in range(count) if f"{i:05d}.jpg" not in entries]
    if missing:
        sources = [str(p) for p in source_photos()]
        jobs = [(sources, seed, i, str(out)) for i in missing]
        workers = workers or os.cpu_count() or 1
        print(f"make_corpus: generating {len(missing)} images in {out} ...", file=sys.stderr)
        with ProcessPoolExecutor(workers) as pool:
            for entry in pool.map(_make_one, jobs, chunksize=16):
                entries[entry["name"]] = entry
        ordered = [entries[k] for k in sorted(entries)]
        tmp = index_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"version": VERSION, "seed": seed, "images": ordered}, indent=1))
        os.replace(tmp, index_path)
    return out


def load_index(corpus: Path, count: int) -> list[dict]:
    """The first `count` entries of a corpus's index (by index order)."""
    images = json.loads((corpus / "index.json").read_text())["images"]
    if len(images) < count:
        raise SystemExit(f"corpus {corpus} has {len(images)} images, {count} needed")
    return images[:count]


def describe(entries: list[dict]) -> dict:
    """Size statistics, and how many files fall outside the news-photo envelope."""
    sizes = np.array([e["bytes"] for e in entries])
    sides = np.array([max(e["width"], e["height"]) for e in entries])
    return {
        "count": len(entries),
        "distinct_sha256": len({e["sha256"] for e in entries}),
        "bytes_median": int(np.median(sizes)),
        "bytes_min": int(sizes.min()),
        "bytes_max": int(sizes.max()),
        "bytes_total": int(sizes.sum()),
        "long_side_min": int(sides.min()),
        "long_side_max": int(sides.max()),
        "outside_byte_range": int(((sizes < MIN_BYTES) | (sizes > MAX_BYTES)).sum()),
        "outside_side_range": int(((sides < MIN_SIDE) | (sides > MAX_SIDE)).sum()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args(argv)
    out = ensure_corpus(args.count, args.seed, args.cache, args.workers)
    print(json.dumps({"corpus": str(out), **describe(load_index(out, args.count))}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
