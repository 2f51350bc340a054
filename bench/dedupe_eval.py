"""Pair precision/recall of the dedupe tiers on real photos and their variants.

Reproduce:
    /work/venv/bin/pip install -r bench/requirements.txt
    /work/venv/bin/python bench/dedupe_eval.py            # from the repository root

The evaluation set is built from the sample photos that ship inside scikit-image and
matplotlib (no download). For each photo:
  same picture (truth: duplicate)  the original, resized 50%/25%, JPEG q40/60/75/90, crops of
                                   2–5%, a text watermark, a small logo, PNG and WebP copies,
                                   and a CDN-like combination (resize + watermark + q70)
  look-alike (truth: not dup)      dark and light editions, hue shifts, channel swap,
                                   grayscale, horizontal/vertical flip, half crops;
                                   plus a real stereo pair (motorcycle left/right) and
                                   texture photos (brick/grass/gravel) that look alike.
A grayscale copy of a colour photo counts as a *different edition* (expected tier: similar,
never duplicate): merging would silently turn a reader's grey picture into a colour one or
the reverse. Grey sources get no grayscale or hue variants (they would be identical).

Pairs: a predicted duplicate pair = two files in the same duplicate group. "Flagged" = same
group or a direct similar link (what a person is shown). Truth for flagged = same source
photo (duplicate or look-alike edition).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import mirror.dedupe  # noqa: E402
from harvester.settings import Settings  # noqa: E402
from mirror.dedupe import find_duplicates  # noqa: E402
from mirror.imaging import process_image  # noqa: E402
from mirror.records import DedupeThresholds, ImageInfo, ImagingOptions, ThumbnailSpec  # noqa: E402

CACHE = ROOT / "bench" / ".cache" / "dedupe_eval"


@dataclass(frozen=True)
class Sample:
    path: Path
    source: str  # the source photo
    picture: str  # same picture ⇔ same value (source + "/orig" for the duplicate family)
    variant: str


def load_sources() -> dict[str, Image.Image]:
    import matplotlib
    import skimage.data as data

    out: dict[str, Image.Image] = {}
    for name in (
        "astronaut",
        "coffee",
        "chelsea",
        "rocket",
        "hubble_deep_field",
        "immunohistochemistry",
        "retina",
        "camera",
        "coins",
        "moon",
        "clock",
        "brick",
        "grass",
        "gravel",
    ):
        out[name] = Image.fromarray(getattr(data, name)())
    left, right, _disp = data.stereo_motorcycle()
    out["motorcycle_left"] = Image.fromarray(left)
    out["motorcycle_right"] = Image.fromarray(right)
    sample_dir = Path(matplotlib.get_data_path()) / "sample_data"
    out["grace_hopper"] = Image.open(sample_dir / "grace_hopper.jpg").convert("RGB")
    out["present"] = Image.open(sample_dir / "Minduka_Present_Blue_Pack.png").convert("RGB")
    return out


def is_grey(im: Image.Image) -> bool:
    """Grey or nearly colourless (mean |channel − grey| < 4): its grey copy, hue shifts and
    colourways are the same picture to a reader, so they are not generated as editions."""
    if im.mode == "L":
        return True
    a = np.asarray(im.convert("RGB"), np.int16)
    return float(np.abs(a - a.mean(axis=2, keepdims=True)).mean()) < 4.0


def watermark(im: Image.Image, text: str = "© news.example.com") -> Image.Image:
    im = im.convert("RGB").copy()
    draw = ImageDraw.Draw(im)
    font = ImageFont.load_default(size=max(10, im.width // 22))
    x, y = int(im.width * 0.04), int(im.height * 0.90)
    draw.text((x + 1, y + 1), text, fill=(0, 0, 0), font=font)
    draw.text((x, y), text, fill=(255, 255, 255), font=font)
    return im


def add_logo(im: Image.Image) -> Image.Image:
    import skimage.data as data

    logo = Image.fromarray(data.logo())  # RGBA
    side = max(16, im.width // 8)
    logo = logo.resize((side, side), Image.Resampling.LANCZOS)
    out = im.convert("RGB").copy()
    out.paste(logo, (im.width - side - im.width // 50, im.height // 50), logo)
    return out


def crop(im: Image.Image, left: float, top: float, right: float, bottom: float) -> Image.Image:
    w, h = im.size
    return im.crop((int(w * left), int(h * top), w - int(w * right), h - int(h * bottom)))


def scale(im: Image.Image, f: float) -> Image.Image:
    return im.resize(
        (max(8, round(im.width * f)), max(8, round(im.height * f))), Image.Resampling.LANCZOS
    )


def hue_shift(im: Image.Image, degrees: int) -> Image.Image:
    hsv = np.asarray(im.convert("RGB").convert("HSV")).copy()
    hsv[..., 0] = (hsv[..., 0].astype(np.int16) + round(degrees * 255 / 360)) % 256
    return Image.fromarray(hsv, "HSV").convert("RGB")


def brightness(im: Image.Image, factor: float) -> Image.Image:
    a = np.asarray(im.convert("RGB"), np.float32) * factor
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def gamma(im: Image.Image, g: float) -> Image.Image:
    a = (np.asarray(im.convert("RGB"), np.float32) / 255.0) ** g * 255.0
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def build_set(folder: Path) -> list[Sample]:
    folder.mkdir(parents=True, exist_ok=True)
    samples: list[Sample] = []

    def put(source: str, picture: str, variant: str, im: Image.Image, fmt: str, **kw) -> None:
        ext = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}[fmt]
        path = folder / f"{source}__{variant}.{ext}"
        if not path.exists():
            img = im.convert("RGB") if fmt == "JPEG" and im.mode not in ("RGB", "L") else im
            img.save(path, fmt, **kw)
        samples.append(Sample(path, source, picture, variant))

    for name, src in load_sources().items():
        grey = is_grey(src)
        src = src.convert("L") if src.mode == "L" else src.convert("RGB")
        same = f"{name}/orig"
        put(name, same, "orig", src, "JPEG", quality=92)
        put(name, same, "png", src, "PNG")
        put(name, same, "webp", src, "WEBP", quality=80)
        for q in (40, 60, 75, 90):
            put(name, same, f"q{q}", src, "JPEG", quality=q)
        put(name, same, "half", scale(src, 0.5), "JPEG", quality=85)
        put(name, same, "quarter", scale(src, 0.25), "JPEG", quality=85)
        put(name, same, "crop2", crop(src, 0.02, 0.02, 0.02, 0.02), "JPEG", quality=85)
        put(name, same, "crop3lt", crop(src, 0.03, 0.03, 0, 0), "JPEG", quality=85)
        put(name, same, "crop5rb", crop(src, 0, 0, 0.05, 0.05), "JPEG", quality=85)
        put(name, same, "watermark", watermark(src), "JPEG", quality=85)
        put(name, same, "logo", add_logo(src), "JPEG", quality=85)
        put(name, same, "cdn", watermark(scale(src, 0.6)), "JPEG", quality=70)
        put(name, same, "webp_half", scale(src, 0.5), "WEBP", quality=75)
        # look-alike editions: each is its own picture
        put(name, f"{name}/dark", "dark", brightness(src, 0.55), "JPEG", quality=85)
        put(name, f"{name}/light", "light", gamma(src, 0.5), "JPEG", quality=85)
        put(name, f"{name}/flipH", "flipH", src.transpose(Image.Transpose.FLIP_LEFT_RIGHT), "JPEG")
        put(name, f"{name}/flipV", "flipV", src.transpose(Image.Transpose.FLIP_TOP_BOTTOM), "JPEG")
        put(name, f"{name}/lefthalf", "lefthalf", crop(src, 0, 0, 0.5, 0), "JPEG", quality=85)
        put(name, f"{name}/righthalf", "righthalf", crop(src, 0.5, 0, 0, 0), "JPEG", quality=85)
        if not grey:
            put(name, f"{name}/gray", "gray", src.convert("L"), "JPEG", quality=85)
            for deg in (40, 120, 200):
                put(name, f"{name}/hue{deg}", f"hue{deg}", hue_shift(src, deg), "JPEG", quality=85)
            bgr = Image.merge("RGB", src.split()[::-1])
            put(name, f"{name}/bgr", "bgr", bgr, "JPEG", quality=85)
    return samples


def compute_infos(samples: list[Sample]) -> list[ImageInfo]:
    options = ImagingOptions(64_000_000, ThumbnailSpec((), "webp", 80), draft=True)
    infos = []
    for s in samples:
        sha = hashlib.sha256(s.path.read_bytes()).hexdigest()
        info = process_image(s.path, sha, CACHE / "store", options)
        assert isinstance(info, ImageInfo), (s.path, info)
        infos.append(info)
    return infos


def related(a: Sample, b: Sample) -> bool:
    if a.source == b.source:
        return True
    return {a.source, b.source} == {"motorcycle_left", "motorcycle_right"}


def evaluate(samples: list[Sample], infos: list[ImageInfo], t: DedupeThresholds) -> dict:
    links = find_duplicates(infos, t)
    by_sha = {info.sha256: k for k, info in enumerate(infos)}
    group = list(range(len(infos)))
    similar_pairs = set()
    for link in links:
        i, j = by_sha[link.sha256], by_sha[link.canonical]
        if link.tier == "duplicate":
            group[i] = j
        else:
            similar_pairs.add((min(i, j), max(i, j)))
    tp = fp = fn = 0
    ftp = ffp = ffn = 0
    false_merges = []
    for i, j in itertools.combinations(range(len(samples)), 2):
        a, b = samples[i], samples[j]
        truth_dup = a.picture == b.picture
        pred_dup = group[i] == group[j]
        tp += truth_dup and pred_dup
        fp += pred_dup and not truth_dup
        fn += truth_dup and not pred_dup
        if pred_dup and not truth_dup:
            false_merges.append(f"{a.path.name} ~ {b.path.name}")
        truth_rel = related(a, b)
        flagged = pred_dup or (i, j) in similar_pairs
        ftp += truth_rel and flagged
        ffp += flagged and not truth_rel
        ffn += truth_rel and not flagged and (truth_dup or _lookalike(a, b))
    return {
        "dup_p": tp / (tp + fp) if tp + fp else 1.0,
        "dup_r": tp / (tp + fn) if tp + fn else 1.0,
        "flag_p": ftp / (ftp + ffp) if ftp + ffp else 1.0,
        "flag_r": ftp / (ftp + ffn) if ftp + ffn else 1.0,
        "false_merges": false_merges,
        "dup_pairs": tp + fp,
        "missed": fn,
    }


def _lookalike(a: Sample, b: Sample) -> bool:
    """Pairs we want a person to see: editions that keep the layout (not flips or halves)."""
    structural = ("flip", "half")
    return not any(s in a.variant or s in b.variant for s in structural)


def _cache_structure_checks() -> None:
    """The sweep re-runs find_duplicates many times on the same pairs: remember alignments
    (`_residual` is what find_duplicates calls; its answer depends on the threshold too)."""
    import functools

    mirror.dedupe._residual = functools.lru_cache(maxsize=None)(mirror.dedupe._residual)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", action="store_true", help="print a wider threshold sweep")
    args = parser.parse_args()
    print("reproduce: /work/venv/bin/python bench/dedupe_eval.py [--sweep]")
    _cache_structure_checks()
    start = time.perf_counter()
    samples = build_set(CACHE / "images")
    infos = compute_infos(samples)
    pictures = len({s.picture for s in samples})
    print(
        f"{len(samples)} images, {pictures} distinct pictures, "
        f"{len({s.source for s in samples})} source photos; "
        f"hashed in {time.perf_counter() - start:.1f}s (cpu {os.cpu_count()})"
    )
    settings = Settings()
    chosen = settings.dedupe_thresholds()
    r = evaluate(samples, infos, chosen)
    print(
        f"\nchosen thresholds (Settings): duplicate≤{chosen.duplicate_distance} "
        f"dhash≤{chosen.dhash_distance} colour≤{chosen.color_distance} "
        f"structure≤{chosen.structure_distance} similar≤{chosen.similar_distance}"
    )
    print(
        f"  duplicate tier: precision {r['dup_p']:.4f}  recall {r['dup_r']:.4f}  "
        f"({r['dup_pairs']} merged pairs, {r['missed']} missed)"
    )
    print(f"  flagged (duplicate ∪ similar): precision {r['flag_p']:.4f}  recall {r['flag_r']:.4f}")
    for fm in r["false_merges"][:20]:
        print("  FALSE MERGE:", fm)

    print("\nsweep (duplicate tier)                            precision  recall")
    dups = (6, 10, 14, 18, 22) if args.sweep else (10, 14, 18)
    colours = (6.0, 8.0, 10.0, 12.0) if args.sweep else (8.0, 10.0)
    dhashes = (12, 16, 20, 64) if args.sweep else (16, 64)
    structures = (6.0, 8.0, 10.0, 12.0) if args.sweep else (8.0, 10.0)
    for d, c, h, st in itertools.product(dups, colours, dhashes, structures):
        t = DedupeThresholds(d, max(d, chosen.similar_distance), h, c, st)
        r = evaluate(samples, infos, t)
        dh = "off" if h >= 64 else str(h)
        print(
            f"  phash≤{d:<2} colour≤{c:<4g} dhash≤{dh:<3} structure≤{st:<4g}  "
            f"{r['dup_p']:.4f}     {r['dup_r']:.4f}"
        )


if __name__ == "__main__":
    main()
