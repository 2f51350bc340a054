"""ms per image for decode + thumbnail + hashes (`process_image`), one core, draft on/off.

Reproduce (from the repository root):
    /work/venv/bin/pip install -r bench/requirements.txt
    /work/venv/bin/python bench/imaging_speed.py [--repeat 3]

Inputs are built from the photos that ship with scikit-image: "news JPEGs" (500–1200 px,
quality 75–85, 50–300 KB, the typical article picture) and "large photos" (upscaled to
4000–6000 px, quality 90). Each file is processed `--repeat` times in this process (one
core); thumbnails are re-encoded every time (a fresh store per run). The machine is shared,
so CPU time (time.process_time: what this process itself used, on one core) is the figure
to read; wall-clock best and median are shown beside it.

`--corpus DIR` (default: the end-to-end benchmark's corpus, `bench/.cache/corpus/v1-s1`,
when `bench/make_corpus.py` has built it) adds its first `--corpus-count` files: news-like
JPEGs with grain, a quarter of them progressive, whose decode costs about twice as much.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# as the `harvester` command sets them (harvester.cli._single_threaded_math), before numpy
# loads: otherwise OpenBLAS threads busy-wait beside the measured process and count in its CPU
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

from harvester.settings import Settings  # noqa: E402
from mirror.imaging import process_image  # noqa: E402
from mirror.records import ImageInfo  # noqa: E402

CACHE = ROOT / "bench" / ".cache" / "imaging_speed"
HARNESS_CORPUS = ROOT / "bench" / ".cache" / "corpus" / "v1-s1"


def sources() -> list[Image.Image]:
    import skimage.data as data

    names = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "retina")
    return [Image.fromarray(getattr(data, n)()).convert("RGB") for n in names]


def build(folder: Path) -> dict[str, list[Path]]:
    folder.mkdir(parents=True, exist_ok=True)
    sets: dict[str, list[Path]] = {"news": [], "large": []}
    for k, src in enumerate(sources()):
        for side, quality in ((520, 85), (800, 80), (1000, 80), (1200, 75)):
            path = folder / f"news_{k}_{side}.jpg"
            if not path.exists():
                scale = side / max(src.size)
                im = src.resize((round(src.width * scale), round(src.height * scale)))
                im.save(path, quality=quality)
            sets["news"].append(path)
        if k < 3:
            side = (4000, 5000, 6000)[k]
            path = folder / f"large_{k}_{side}.jpg"
            if not path.exists():
                scale = side / max(src.size)
                src.resize(
                    (round(src.width * scale), round(src.height * scale)), Image.Resampling.BICUBIC
                ).save(path, quality=90)
            sets["large"].append(path)
    return sets


def measure(
    paths: list[Path], draft: bool, repeat: int, scratch: Path
) -> tuple[float, float, float]:
    options = Settings(draft=draft).imaging_options()
    shas = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}
    runs, cpu = [], []
    for _ in range(repeat):
        # a fresh store each time (no thumbnail is already there), deleted only at the end:
        # see main() for why nothing is deleted between measurements
        store = Path(tempfile.mkdtemp(prefix="store-", dir=scratch))
        start, start_cpu = time.perf_counter(), time.process_time()
        for p in paths:
            result = process_image(p, shas[p], store, options)
            assert isinstance(result, ImageInfo), result
        runs.append((time.perf_counter() - start) / len(paths) * 1000)
        cpu.append((time.process_time() - start_cpu) / len(paths) * 1000)
    return min(cpu), min(runs), statistics.median(runs)


def agreement(paths: list[Path], scratch: Path) -> dict[int, int]:
    """Hamming distance between the draft-decoded and the fully decoded phash, per file."""
    distances = []
    for p in paths:
        a, b = (
            process_image(
                p,
                "0" * 64,
                Path(tempfile.mkdtemp(dir=scratch)),
                Settings(draft=d).imaging_options(),
            )
            for d in (True, False)
        )
        assert isinstance(a, ImageInfo) and isinstance(b, ImageInfo)
        distances.append((int(a.phash, 16) ^ int(b.phash, 16)).bit_count())
    return {k: distances.count(k) for k in sorted(set(distances))}


def steps(paths: list[Path], size: int, repeat: int) -> dict[str, float]:
    """Median CPU ms per image of each step `process_image` takes for one `size` thumbnail
    (the same calls, timed one by one), and of the WebP efforts and JPEG for comparison."""
    import base64
    import contextlib
    import math

    import numpy as np

    from mirror import imaging

    times: dict[str, list[float]] = {}

    @contextlib.contextmanager
    def timed(name: str) -> Iterator[None]:
        start = time.process_time()
        yield
        times.setdefault(name, []).append((time.process_time() - start) * 1000)

    box = Image.Resampling.BOX
    webp0 = "  WebP q80 method 0"
    for _ in range(repeat):
        for p in paths:
            data = p.read_bytes()
            with timed("open + EXIF + quality"):
                im = imaging._open_checked(data, 64_000_000)
                imaging.estimate_jpeg_quality(im)
                imaging._orientation(im)
            scale = min(1.0, max(size, imaging.HASH_BASE) / max(im.size))
            with timed("draft decode"):
                im.draft("RGB", (math.ceil(im.size[0] * scale), math.ceil(im.size[1] * scale)))
                im.load()
            with timed("hash input (128 px)"):
                hashed = imaging._fit(im, imaging.HASH_BASE, reducing_gap=1.0)
            with timed("phash, dhash, structure, colour"):
                grey = hashed.convert("L")
                imaging.phash_hex(grey), imaging.dhash_hex(grey)
                small = grey.resize((imaging.STRUCTURE_GRID,) * 2, box).tobytes()
                base64.b64encode(small)
                float(np.frombuffer(small, np.uint8).std())
                hashed.resize((imaging.COLOR_GRID,) * 2, box).tobytes().hex()
            with timed(f"thumbnail resize ({size} px)"):
                thumb = imaging._fit(im, size)
            for method in (0, 2, 4):
                with timed(f"  WebP q80 method {method}"):
                    imaging._encode(thumb, "webp", 80, method)
            with timed("  JPEG q80"):
                imaging._encode(thumb, "jpeg", 80)
    medians = {name: statistics.median(values) for name, values in times.items()}
    # what no code of ours can take away at these settings: the three library calls alone
    steps3 = (times["draft decode"], times[f"thumbnail resize ({size} px)"], times[webp0])
    floor = zip(*steps3, strict=True)
    medians["= decode + resize + WebP m0 alone"] = statistics.median(map(sum, floor))
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--steps", action="store_true", help="also time each step on the news set (median ms)"
    )
    parser.add_argument(
        "--scratch",
        type=Path,
        help="where the thumbnails are written (default: a new folder in the system temp dir)",
    )
    parser.add_argument(
        "--corpus",
        type=Path,
        default=HARNESS_CORPUS,
        help="a folder of JPEGs to time as well (default: the end-to-end benchmark's corpus)",
    )
    parser.add_argument("--corpus-count", type=int, default=200)
    args = parser.parse_args()
    flags = (" --steps" if args.steps else "") + (
        f" --scratch {args.scratch}" if args.scratch else ""
    )
    if args.corpus != HARNESS_CORPUS or args.corpus_count != 200:
        flags += f" --corpus {args.corpus} --corpus-count {args.corpus_count}"
    print(f"reproduce: /work/venv/bin/python bench/imaging_speed.py --repeat {args.repeat}{flags}")
    # Thumbnails are deleted once, at the end: on a journal-less ext4 (this VM's disk) every
    # file created within minutes of a deletion scans past the deleted inodes, which made
    # each thumbnail write cost ≈ 0.5 ms instead of ≈ 0.1 (see bench/README.md, session 4).
    with tempfile.TemporaryDirectory(prefix="imaging-speed-", dir=args.scratch) as tmp:
        run(args, Path(tmp))


def run(args: argparse.Namespace, scratch: Path) -> None:
    sets = build(CACHE)
    corpus = sorted(args.corpus.glob("*.jpg"))[: args.corpus_count]
    if corpus:
        sets["corpus"] = corpus
    else:
        print(f"(no JPEGs in {args.corpus}: bench/make_corpus.py builds the corpus set)")
    # warm up imports outside the timings
    process_image(
        sets["news"][0], "0" * 64, Path(tempfile.mkdtemp(dir=scratch)), Settings().imaging_options()
    )
    for name, paths in sets.items():
        sizes = [p.stat().st_size // 1024 for p in paths]
        dims, progressive = [], 0
        for p in paths:
            with Image.open(p) as im:
                dims.append(max(im.size))
                progressive += bool(im.info.get("progressive"))
        print(
            f"\n{name}: {len(paths)} JPEGs ({progressive} progressive), "
            f"{min(dims)}–{max(dims)} px, {min(sizes)}–{max(sizes)} KB; "
            f"thumbnail {Settings().thumbnail_sizes} {Settings().thumbnail_format}"
        )
        drafted = agreement(paths, scratch)
        print(f"  phash draft vs full decode, {{bits differing: files}}: {drafted}")
        for draft in (True, False):
            cpu, best, median = measure(paths, draft, args.repeat, scratch)
            print(
                f"  draft={'on ' if draft else 'off'}  {cpu:6.1f} ms CPU/image   "
                f"wall: best {best:.1f}, median {median:.1f} ms"
            )
    if args.steps:
        size = Settings().thumbnail_sizes[0]
        print(f"\nnews, step by step (median CPU ms per image, {size} px thumbnail):")
        for name, ms in steps(sets["news"], size, args.repeat).items():
            print(f"  {name:34s} {ms:6.2f}")


if __name__ == "__main__":
    main()
