"""The CPU floor: how fast this machine can decode, thumbnail and hash the corpus from disk.

Input: image files (a corpus folder or explicit paths). Output: JSON on stdout with images/s,
measured with every core busy (a process pool of `--workers`, default all cores), timing only
the work (the pool is started and warmed first, so interpreter start-up is not counted).

Per image, the `pillow` implementation does what a smart mirror must do at minimum: read the
bytes, sha256 them, JPEG draft-decode near the target size, thumbnail to 256 px, encode the
thumbnail (WebP q80, harvester's default format), and compute a 64-bit perceptual hash with
imagehash.phash. The `mirror` implementation calls `mirror.imaging.process_image` instead, once
it exists (then thumbnails are written into a temporary store, as in a real run).

Usage: python bench/cpu_floor.py CORPUS_DIR [--count 2000] [--impl pillow|mirror] [--size 256]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

_MIRROR_ARGS: tuple | None = None  # (store_root, options) per worker, for --impl mirror


def pillow_work(path: str, size: int = 256) -> tuple[str, float]:
    """Decode + thumbnail + encode + hash one file; returns (phash, CPU seconds it took)."""
    import imagehash
    from PIL import Image

    cpu0 = time.process_time()
    data = Path(path).read_bytes()
    hashlib.sha256(data).hexdigest()
    with Image.open(io.BytesIO(data)) as im:
        im.draft("RGB", (size, size))
        img = im.convert("RGB")
    img.thumbnail((size, size))
    out = io.BytesIO()
    img.save(out, "WEBP", quality=80)
    return str(imagehash.phash(img)), time.process_time() - cpu0


def _init_mirror(store_root: str, size: int) -> None:
    global _MIRROR_ARGS
    from dataclasses import replace

    from harvester.settings import Settings

    options = replace(Settings(), thumbnail_sizes=(size,)).imaging_options()
    _MIRROR_ARGS = (Path(store_root), options)


def mirror_work(path: str, size: int = 256) -> tuple[str, float]:
    from mirror.imaging import process_image

    cpu0 = time.process_time()
    data = Path(path).read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    assert _MIRROR_ARGS is not None
    store_root, options = _MIRROR_ARGS
    result = process_image(Path(path), sha, store_root, options)
    return type(result).__name__, time.process_time() - cpu0


def _noop(_: int) -> tuple[str, float]:
    return "", 0.0


def measure(paths: list[str], impl: str, workers: int, size: int) -> dict:
    work = pillow_work if impl == "pillow" else mirror_work
    with tempfile.TemporaryDirectory(prefix="floor-store-") as store:
        initializer, initargs = (None, ())
        if impl == "mirror":
            initializer, initargs = _init_mirror, (store, size)
        with ProcessPoolExecutor(workers, initializer=initializer, initargs=initargs) as pool:
            # Warm every worker (imports, first decode) before the clock starts.
            list(pool.map(work, paths[:workers], [size] * workers))
            list(pool.map(_noop, range(workers * 4)))
            t0 = time.perf_counter()
            results = list(pool.map(work, paths, [size] * len(paths), chunksize=8))
            wall = time.perf_counter() - t0
    failures = sum(1 for name, _ in results if name == "ImageFailure")
    cpu = sum(seconds for _, seconds in results)
    return {
        "impl": impl,
        "workers": workers,
        "images": len(paths),
        "failures": failures,
        "wall_seconds": round(wall, 3),
        "images_per_s": round(len(paths) / wall, 1),
        # CPU per image is steadier than images/s on a shared machine: other load steals
        # wall time from us but not (much) CPU time.
        "cpu_s_per_image": round(cpu / len(paths), 5),
    }


def mirror_available() -> str | None:
    """None if `mirror.imaging.process_image` can be imported, else why not."""
    try:
        from mirror.imaging import process_image  # noqa: F401
    except Exception as exc:  # the module may not exist yet, or fail to import
        return f"{type(exc).__name__}: {exc}"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--impl", choices=["pillow", "mirror"], default="pillow")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args(argv)
    index = json.loads((args.corpus / "index.json").read_text())["images"][: args.count]
    paths = [str(args.corpus / e["name"]) for e in index]
    if args.impl == "mirror" and (why := mirror_available()):
        print(json.dumps({"impl": "mirror", "available": False, "why": why}))
        return 3
    print(json.dumps(measure(paths, args.impl, args.workers, args.size)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
