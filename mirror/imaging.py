"""Process one stored image: safe decode, facts, perceptual hashes, thumbnails.

Input: a stored image file (path + its sha256), the store root, `ImagingOptions`.
Output: `ImageInfo` (format, size after EXIF orientation, frames, alpha, phash/dhash/colour
signature, flatness, JPEG quality estimate, thumbnails written under
`<store_root>/thumbs/<size>/<aa>/<sha256>.<ext>`) or `ImageFailure` with a stable reason:

    too-many-pixels     the header declares more pixels than `options.max_pixels` (checked
                        before any pixel is decoded; Pillow's bomb guard is set to the same cap)
    corrupt-image       truncated data, bad PNG CRC, broken stream: Pillow could not load it
    unsupported-format  not one of `ALLOWED_FORMATS` (TIFF, SVG, PSD, ... are refused)
    decoder-crashed     the decoder ran out of memory or failed in an unexpected way (in the
                        pool, also: the worker process died while decoding this image)
    unreadable          the file itself could not be read (missing, permissions)

`process_image` is a plain top-level function so a process pool (see `mirror.pool`) or a
cluster engine can pickle and call it. Writing a thumbnail that fails with an OSError (disk
full) is not a bad image: that error propagates to the caller.

Hashes are computed from the decoded picture after EXIF orientation, with alpha composited
on white, reduced to at most `HASH_BASE` px (box, then BICUBIC). The same picture therefore
hashes the same (or within a few bits: 0–2 on ordinary shapes, up to 4 on a 4:1 panorama)
whether it was decoded fully or in JPEG draft mode, whatever thumbnail sizes are configured.
"""

from __future__ import annotations

import base64
import functools
import io
import math
import stat
import struct
import warnings
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError, features

from mirror.records import ImageFailure, ImageInfo, ImagingOptions, Thumbnail
from mirror.store import Store

# What we decode. Every format a browser shows in an <img>, and nothing else: TIFF (libtiff's
# many codecs), PSD, EPS (Ghostscript!) and the long tail add attack surface and no browser
# displays them, so such files are `unsupported-format`. AVIF only when Pillow has the codec.
ALLOWED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "ICO") + (
    ("AVIF",) if features.check("avif") else ()
)

MEDIA_TYPES = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "GIF": "image/gif",
    "WEBP": "image/webp",
    "BMP": "image/bmp",
    "ICO": "image/vnd.microsoft.icon",
    "AVIF": "image/avif",
}

# Magic bytes of the allowed formats: a file that starts like one of them but that Pillow
# cannot identify is corrupt, not of an unsupported format.
_MAGIC = (
    b"\xff\xd8\xff",
    b"\x89PNG\r\n\x1a\n",
    b"GIF87a",
    b"GIF89a",
    b"BM",
    b"\x00\x00\x01\x00",
)

# The hash input: the picture reduced to fit this many px (an integer box reduction, then
# BICUBIC). 128 px is 4× the 32×32 phash input. Measured with bench/dedupe_eval.py against the
# previous 256 px / BOX input: duplicate tier precision 0.9984 either way, recall 0.8523 →
# 0.8551, flagged recall 0.9288 → 0.9335; and ≈ 0.65 ms less per image (fewer pixels in every
# signature's resize). BOX alone at 128 lost recall (0.8412): at non-integer factors its
# area weights move with sub-pixel shifts, which crops and CDN resizes are made of.
HASH_BASE = 128
# reducing_gap of the hash input's resize: box-reduce to within 1× of the target first
HASH_REDUCING_GAP = 1.0
# Side of the tiny RGB thumbnail kept as the colour/brightness signature (8×8×3 bytes).
COLOR_GRID = 8
# Side of the grey structure signature that dedupe aligns to tell crops from stereo pairs.
STRUCTURE_GRID = 32
# Standard deviation (0–255 grey levels) of the structure signature below which a picture counts
# as flat: its phash bits are then decided by noise, so it must never merge perceptually.
FLAT_STDDEV = 2.5

THUMB_EXT = {"webp": "webp", "jpeg": "jpg", "jpg": "jpg", "png": "png", "avif": "avif"}
_PIL_FORMAT = {"webp": "WEBP", "jpeg": "JPEG", "jpg": "JPEG", "png": "PNG", "avif": "AVIF"}

# EXIF orientation tag (0x0112) → the transpose that displays the picture upright.
_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

# DCT-II basis (scipy.fftpack.dct's unnormalised type II, 2·cos(πk(2n+1)/2N)) for the 8 lowest
# frequencies of 32 samples: phash needs no other coefficients.
_DCT_LOW = 2.0 * np.cos(np.pi * np.arange(8)[:, None] * (2 * np.arange(32)[None, :] + 1) / 64)

# libjpeg's reference luminance table (quality 50), for the quality estimate.
_IJG_LUMA = np.array(
    (
        (16, 11, 10, 16, 24, 40, 51, 61),
        (12, 12, 14, 19, 26, 58, 60, 55),
        (14, 13, 16, 24, 40, 57, 69, 56),
        (14, 17, 22, 29, 51, 87, 80, 62),
        (18, 22, 37, 56, 68, 109, 103, 77),
        (24, 35, 55, 64, 81, 104, 113, 92),
        (49, 64, 78, 87, 103, 121, 120, 101),
        (72, 92, 95, 98, 112, 100, 103, 99),
    ),
    dtype=np.float64,
)

_IJG_LUMA_SUM = float(_IJG_LUMA.sum())

# Exceptions Pillow's decoders raise for bad data (struct/zlib errors leak from some plugins).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, IndexError)


def __getattr__(name: str) -> object:
    # The pool lives in mirror.pool (it imports this module); re-exported for the contract
    # "mirror.imaging.ImagePool".
    if name == "ImagePool":
        from mirror.pool import ImagePool

        return ImagePool
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class ThumbnailWriteError(OSError):
    """A thumbnail could not be written (disk full, permissions): a store problem, not a bad
    image, so it propagates out of `process_image` instead of becoming an `ImageFailure`."""


class _Failed(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def process_image(
    path: Path, sha256: str, store_root: Path, options: ImagingOptions
) -> ImageInfo | ImageFailure:
    """Decode `path` safely, write its thumbnails, and return its facts or a failure."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return ImageFailure(sha256, "unreadable", f"cannot read {path}: {exc.strerror or exc}")
    try:
        return _process(data, sha256, Path(store_root), options)
    except _Failed as failed:
        return ImageFailure(sha256, failed.reason, failed.message)
    except MemoryError:
        return ImageFailure(sha256, "decoder-crashed", "out of memory while decoding")
    except ThumbnailWriteError:
        raise
    except Exception as exc:  # one odd file must not stop the run; keep what went wrong
        return ImageFailure(sha256, "decoder-crashed", f"{type(exc).__name__}: {exc}")


def process_batch(
    items: list[tuple[Path, str]], store_root: Path, options: ImagingOptions
) -> list[ImageInfo | ImageFailure]:
    """`process_image` over a list, in order: a plain function to ship to a cluster worker."""
    return [process_image(path, sha, store_root, options) for path, sha in items]


def hashing_versions() -> dict[str, dict[str, object]]:
    """How the signatures were made, for the manifest's "hashing" block: hashes change
    between library versions, so a reader can tell whether two manifests compare."""
    from importlib.metadata import version

    import PIL

    # phash/dhash are computed here, bit for bit as imagehash defines them (tests compare);
    # its version is recorded as the reference the bits follow
    libs = {"imagehash": version("imagehash"), "pillow": PIL.__version__}
    base_input = {"base_filter": f"bicubic, reducing_gap {HASH_REDUCING_GAP:g}"}
    return {
        "phash": {"algorithm": "phash", "bits": 64, "base": HASH_BASE, **base_input, **libs},
        "dhash": {"algorithm": "dhash", "bits": 64, "base": HASH_BASE, **base_input, **libs},
        "color": {
            "algorithm": "rgb-box",
            "grid": COLOR_GRID,
            "base": HASH_BASE,
            **base_input,
            **libs,
        },
        "structure": {
            "algorithm": "grey-box",
            "grid": STRUCTURE_GRID,
            "base": HASH_BASE,
            **base_input,
            **libs,
        },
    }


def hash_definition(hashing: Mapping[str, Mapping[str, object]] | None) -> dict:
    """What decides the signatures' bits in a manifest's "hashing" block, without the
    library versions: when it differs from `hashing_versions()`'s, stored assets must be
    hashed again before they are compared with new ones."""
    return {
        name: {k: v for k, v in dict(block).items() if k not in ("imagehash", "pillow")}
        for name, block in (hashing or {}).items()
    }


def thumbnail_path(sha256: str, size: int, fmt: str) -> str:
    """Where the `size` thumbnail of `sha256` lives, relative to the store root (posix)."""
    return f"thumbs/{size}/{sha256[:2]}/{sha256}.{THUMB_EXT[fmt.lower()]}"


def _process(data: bytes, sha256: str, store_root: Path, options: ImagingOptions) -> ImageInfo:
    im = _open_checked(data, options.max_pixels)
    fmt = "JPEG" if im.format == "MPO" else str(im.format)
    width, height = im.size
    frames = 1 if im.format == "MPO" else int(getattr(im, "n_frames", 1) or 1)
    if frames > 1:
        im.seek(0)
    quality = estimate_jpeg_quality(im) if fmt == "JPEG" else None
    orientation = _orientation(im)
    if orientation in (5, 6, 7, 8):
        width, height = height, width

    sizes = tuple(options.thumbnails.sizes)
    if fmt == "JPEG" and options.draft:
        # DCT-scaled decoding: libjpeg decodes at 1/2, 1/4 or 1/8 scale directly. Ask for
        # the picture fitted to the largest output: Pillow keeps both sides at least that.
        need = max((*sizes, HASH_BASE))
        scale = min(1.0, need / max(im.size))
        im.draft("RGB", (math.ceil(im.size[0] * scale), math.ceil(im.size[1] * scale)))
    _load(im, options.max_pixels)
    work, has_alpha = _normalize(im)

    # Transparency is composited before the resize: BICUBIC's negative lobes at a transparent
    # edge would otherwise leave a rim that the same picture on white does not have.
    base = _composite_rgb(work) if work.mode in ("LA", "RGBA") else work
    hash_img = _orient(_fit(base, HASH_BASE, reducing_gap=HASH_REDUCING_GAP), orientation)
    if hash_img.mode != "RGB":
        hash_img = hash_img.convert("RGB")
    grey = hash_img.convert("L")
    phash, dhash = phash_hex(grey), dhash_hex(grey)
    small = grey.resize((STRUCTURE_GRID, STRUCTURE_GRID), Image.Resampling.BOX).tobytes()
    structure = base64.b64encode(small).decode("ascii")
    flat = bool(np.frombuffer(small, np.uint8).std() < FLAT_STDDEV)
    color = hash_img.resize((COLOR_GRID, COLOR_GRID), Image.Resampling.BOX).tobytes().hex()

    thumbs = tuple(
        _write_thumbnail(work, orientation, sha256, size, store_root, options) for size in sizes
    )
    return ImageInfo(
        sha256=sha256,
        format=fmt,
        media_type=MEDIA_TYPES.get(fmt, "application/octet-stream"),
        width=width,
        height=height,
        frames=frames,
        has_alpha=has_alpha,
        bytes=len(data),
        phash=phash,
        dhash=dhash,
        color=color,
        flat=flat,
        quality=quality,
        thumbnails=thumbs,
        structure=structure,
    )


def phash_hex(grey: Image.Image) -> str:
    """`str(imagehash.phash(grey))`, without scipy (its import costs each worker ~0.2 s) and
    without imagehash's per-bit string building (0.1 ms an image).

    The same steps: LANCZOS to 32×32, a 2-D DCT-II, the 8×8 lowest frequencies against their
    median. Only the 8 low rows/columns of the DCT are needed: two small matrix products.
    Coefficients are rounded to 1e-6 before the comparison, so ties (a flat picture: every AC
    term 0) are decided the same way on every machine rather than by FFT rounding noise;
    tests check the bits equal imagehash's on real and random pictures.
    """
    pixels = np.asarray(grey.resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64)
    low = np.round(_DCT_LOW @ pixels @ _DCT_LOW.T, 6)
    # np.median's own arithmetic (the mean of the two middle values) without its generic
    # machinery, which cost more than the DCT itself
    ordered = np.sort(low, axis=None)
    return _bits_hex(low > (ordered[31] + ordered[32]) / 2)


def dhash_hex(grey: Image.Image) -> str:
    """`str(imagehash.dhash(grey))`: LANCZOS to 9×8, is each pixel darker than its right
    neighbour."""
    pixels = np.asarray(grey.resize((9, 8), Image.Resampling.LANCZOS), dtype=np.int16)
    return _bits_hex(pixels[:, 1:] > pixels[:, :-1])


def _bits_hex(bits: np.ndarray) -> str:
    # imagehash's string form: the bits row by row, most significant first, as hex
    return np.packbits(bits.ravel()).tobytes().hex()


def _open_checked(data: bytes, max_pixels: int) -> Image.Image:
    """Identify the file (header only) and refuse bombs before any pixel is decoded."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        problem = png_chunk_problem(data)
        if problem:
            raise _Failed("corrupt-image", problem)
    Image.MAX_IMAGE_PIXELS = max_pixels  # Pillow's own guard: 1× warns, 2× raises
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _Failed("too-many-pixels", str(exc)) from None
    except UnidentifiedImageError:
        if data.startswith(_MAGIC) or data[8:12] == b"WEBP":
            raise _Failed("corrupt-image", "image header cannot be parsed") from None
        raise _Failed(
            "unsupported-format", "not a JPEG, PNG, GIF, WebP, BMP, ICO or AVIF file"
        ) from None
    except _DECODE_ERRORS as exc:
        raise _Failed("corrupt-image", f"{type(exc).__name__}: {exc}") from None
    w, h = im.size
    if w <= 0 or h <= 0:
        raise _Failed("corrupt-image", f"impossible size {w}×{h}")
    if w * h > max_pixels:
        raise _Failed("too-many-pixels", f"{w}×{h} = {w * h} pixels > {max_pixels}")
    return im


def _load(im: Image.Image, max_pixels: int) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _Failed("too-many-pixels", str(exc)) from None
    except _DECODE_ERRORS as exc:
        raise _Failed("corrupt-image", f"{type(exc).__name__}: {exc}") from None
    if im.size[0] * im.size[1] > max_pixels:  # ICO/GIF frames can differ from the header
        raise _Failed("too-many-pixels", f"{im.size[0]}×{im.size[1]} pixels > {max_pixels}")


def png_chunk_problem(data: bytes) -> str | None:
    """Walk a PNG's chunks and verify each CRC (Pillow skips the IDAT ones). None if fine."""
    pos = 8
    while True:
        if pos + 8 > len(data):
            return "PNG is truncated (no IEND chunk)"
        length, ctype = struct.unpack(">I4s", data[pos : pos + 8])
        end = pos + 8 + length + 4
        if length > 0x7FFFFFFF or end > len(data):
            return f"PNG chunk {ctype!r} is truncated"
        crc = struct.unpack(">I", data[end - 4 : end])[0]
        if zlib.crc32(data[pos + 4 : end - 4]) != crc:
            return f"PNG chunk {ctype!r} has a bad CRC"
        if ctype == b"IEND":
            return None
        pos = end


def estimate_jpeg_quality(im: Image.Image) -> int | None:
    """libjpeg quality (1–100) that would produce this luminance table; None if unknown.

    Inverts libjpeg's scaling (q < 50: scale = 5000/q; else 200 − 2q) on the table's sum,
    which ignores coefficient order and is robust to the 1..255 clipping at the extremes.
    """
    tables = getattr(im, "quantization", None)
    if not tables or 0 not in tables or len(tables[0]) != 64:
        return None
    scale = 100.0 * sum(tables[0]) / _IJG_LUMA_SUM
    quality = (200.0 - scale) / 2.0 if scale <= 100.0 else 5000.0 / scale
    return max(1, min(100, round(quality)))


def _orientation(im: Image.Image) -> int:
    try:
        value = im.getexif().get(0x0112, 1)
    except Exception:  # a broken EXIF block must not lose the picture
        return 1
    return value if isinstance(value, int) and value in _ORIENTATION else 1


def _normalize(im: Image.Image) -> tuple[Image.Image, bool]:
    """Bring any decoded mode to L, LA, RGB or RGBA (8 bits); report real transparency.

    16-bit greys are scaled down (Pillow's plain convert clips them to white), palettes and
    transparency keys become alpha, CMYK/YCbCr/LAB become RGB. An alpha channel that is
    fully opaque is dropped, so `has_alpha` means "has transparent pixels".
    """
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        arr = np.asarray(im)
        if mode == "I" and arr.size and int(arr.max()) <= 255:
            arr8 = np.clip(arr, 0, 255).astype(np.uint8)  # an 8-bit image stored as I
        else:
            arr8 = (np.clip(arr.astype(np.int64), 0, 65535) >> 8).astype(np.uint8)
        im = Image.fromarray(arr8, "L")
    elif mode == "F":
        im = Image.fromarray(np.clip(np.asarray(im), 0, 255).astype(np.uint8), "L")
    elif mode == "1":
        im = im.convert("L")
    elif mode in ("P", "PA"):
        transparent = mode == "PA" or "transparency" in im.info or im.palette.mode == "RGBA"
        im = im.convert("RGBA" if transparent else "RGB")
    elif mode in ("L", "RGB") and im.info.get("transparency") is not None:
        im = im.convert("LA" if mode == "L" else "RGBA")
    elif mode == "La":
        im = im.convert("LA")
    elif mode == "RGBa":
        im = im.convert("RGBA")
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        im = im.convert("RGB")  # CMYK (Adobe inversion handled by the JPEG plugin), YCbCr, LAB

    if im.mode in ("LA", "RGBA"):
        low, _high = im.getchannel("A").getextrema()
        if low == 255:
            return im.convert("L" if im.mode == "LA" else "RGB"), False
        return im, True
    return im, False


def _fit(im: Image.Image, size: int, *, reducing_gap: float = 2.0) -> Image.Image:
    """Reduce so the longest side is at most `size` (never upscale).

    BICUBIC with a reducing gap, as Pillow's own `Image.thumbnail` does (half the cost of
    LANCZOS, no visible difference at these factors). Thumbnails use gap 2; the hash input
    gap 1 (most of the reduction by the cheap integer box step).
    """
    w, h = im.size
    if max(w, h) <= size:
        return im
    scale = size / max(w, h)
    target = (max(1, round(w * scale)), max(1, round(h * scale)))
    # reducing_gap: a cheap integer box reduction first, then the filter for the rest.
    return im.resize(target, Image.Resampling.BICUBIC, reducing_gap=reducing_gap)


def _orient(im: Image.Image, orientation: int) -> Image.Image:
    method = _ORIENTATION.get(orientation)
    return im.transpose(method) if method is not None else im


def _composite_rgb(im: Image.Image) -> Image.Image:
    """RGB with any transparency composited on white (what a reader sees on a light page)."""
    if im.mode in ("LA", "RGBA"):
        # one RGB canvas and the alpha plane (4 bytes a pixel): the hash input composites at
        # full size, where alpha_composite's RGBA copies cost 15 bytes a pixel
        canvas = Image.new("RGB", im.size, (255, 255, 255))
        canvas.paste(im.convert("RGB") if im.mode == "LA" else im, mask=im.getchannel("A"))
        return canvas
    return im.convert("RGB") if im.mode != "RGB" else im


def _write_thumbnail(
    work: Image.Image,
    orientation: int,
    sha256: str,
    size: int,
    store_root: Path,
    options: ImagingOptions,
) -> Thumbnail:
    spec = options.thumbnails
    fmt = spec.format.lower()
    thumb = _orient(_fit(work, size), orientation)
    rel = thumbnail_path(sha256, size, fmt)
    dest = store_root / rel
    # Same sha256, same options → same bytes: a thumbnail already there is not redone.
    try:
        info = dest.stat()
        written = info.st_size if stat.S_ISREG(info.st_mode) else 0
    except OSError:
        written = 0
    if not written:
        data = _encode(thumb, fmt, spec.quality, spec.webp_method)
        _write_atomic(store_root, rel, data)
        written = len(data)
    return Thumbnail(
        size=size, format=fmt, width=thumb.width, height=thumb.height, path=rel, bytes=written
    )


def _encode(im: Image.Image, fmt: str, quality: int, webp_method: int = 0) -> bytes:
    pil_format = _PIL_FORMAT[fmt]
    if pil_format == "JPEG":
        im = _composite_rgb(im) if im.mode in ("LA", "RGBA") else im
    elif pil_format in ("WEBP", "AVIF") and im.mode in ("L", "LA"):
        im = im.convert("RGBA" if im.mode == "LA" else "RGB")
    out = io.BytesIO()
    if pil_format == "PNG":
        im.save(out, "PNG", compress_level=6)
    elif pil_format == "WEBP":
        # Settings.thumbnail_webp_method (default 0: a third less time than method 2, under a
        # third of libwebp's default 4's, for 13-17% larger files of the same PSNR)
        im.save(out, "WEBP", quality=quality, method=webp_method)
    else:
        im.save(out, pil_format, quality=quality)
    return out.getvalue()


@functools.lru_cache(maxsize=4)
def _store(root: Path) -> Store:
    # one per root for the worker's life: a Store resolves its root once
    return Store(root)


def _write_atomic(store_root: Path, rel: str, data: bytes) -> None:
    """Write a thumbnail through the store (atomic, no fsync: it is derived data)."""
    try:
        _store(store_root).write_atomic(rel, data, durable=False)
    except OSError as exc:
        raise ThumbnailWriteError(exc.errno, f"cannot write thumbnail {rel}: {exc}") from exc
