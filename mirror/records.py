"""The records the local stages exchange (store → process → dedupe → rewrite).

Options objects carry no defaults on purpose: every default lives in `harvester.settings`,
so there is exactly one place to read or change them.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class StoredFile:
    sha256: str
    size: int
    ext: str
    path: str  # relative to the store root, posix: "ab/cd/<sha256>.<ext>"


@dataclass(frozen=True)
class ThumbnailSpec:
    sizes: tuple[int, ...]  # longest side in px; never upscaled
    format: str  # "webp" | "jpeg" | "png" | "avif"
    quality: int
    # libwebp effort 0 (fastest) – 6; only for WebP. Defaulted so older callers keep working.
    webp_method: int = 0


@dataclass(frozen=True)
class ImagingOptions:
    max_pixels: int  # above this: failure "too-many-pixels"
    thumbnails: ThumbnailSpec
    draft: bool  # JPEG DCT-scaled decoding when only small outputs are needed
    # Address space a pool worker may use beyond its own size after start-up (RLIMIT_AS), in
    # MiB; None = no ceiling. Defaulted only so older callers keep working; Settings sets it.
    worker_memory_mb: int | None = None


@dataclass(frozen=True)
class Thumbnail:
    size: int
    format: str
    width: int
    height: int
    path: str  # relative to the store root, posix: "thumbs/<size>/<aa>/<sha256>.<fmt>"
    # the file's size as written (0: not known, e.g. read back from a manifest); not part of
    # equality: the same thumbnail is the same size, path and format whoever measured it
    bytes: int = field(default=0, compare=False)


@dataclass(frozen=True)
class ImageInfo:
    """Facts about one stored image, computed once in a worker process."""

    sha256: str
    format: str  # "JPEG", "PNG", ... (Pillow's name)
    media_type: str
    width: int  # after EXIF orientation
    height: int
    frames: int
    has_alpha: bool
    bytes: int
    phash: str  # 16 hex digits (64-bit imagehash.phash)
    dhash: str  # 16 hex digits, second route against false merges
    color: str  # hex of a tiny RGB thumbnail: the colour/brightness check
    flat: bool  # near-uniform image: only exact bytes may merge it
    quality: int | None  # estimated JPEG quality, when known
    thumbnails: tuple[Thumbnail, ...]
    # base64 of a 32×32 8-bit grey thumbnail: dedupe aligns two of them (shift + scale) to
    # tell a 2–5% crop (aligns) from a stereo pair or burst shot (does not). "" = unknown,
    # and an image without it is never merged perceptually.
    structure: str = ""


@dataclass(frozen=True)
class ImageFailure:
    sha256: str
    reason: str  # "too-many-pixels" | "corrupt-image" | "unsupported-format" | "decoder-crashed"
    message: str


@dataclass(frozen=True)
class DedupeThresholds:
    duplicate_distance: int  # phash Hamming distance ≤ this (and colour check) → merge
    similar_distance: int  # ≤ this → recorded for review, never merged
    dhash_distance: int  # second route must agree for a merge
    color_distance: float  # max brightness/colour difference of the tiny RGB thumbnails (0–255)
    # max mean abs grey difference (0–255) of the 32×32 structure signatures after the best
    # shift+scale alignment; defaulted only so older callers keep working (Settings sets it)
    structure_distance: float = 10.0


@dataclass(frozen=True)
class DuplicateLink:
    """`sha256` is the same picture as `canonical` (tier "duplicate") or looks alike ("similar")."""

    sha256: str
    canonical: str
    tier: str  # "duplicate" | "similar"
    distance: int  # phash Hamming distance


@dataclass(frozen=True)
class Edit:
    """Replace `old` at [start, end) of an article's text with `new`."""

    start: int
    end: int
    old: str
    new: str


@dataclass(frozen=True)
class RecordedEdit:
    """One applied edit as the manifest keeps it, so `restore` can undo it.

    `start`/`end` are character offsets in the *rewritten* text, where `local` now stands;
    `original` is the text it replaced (the remote URL exactly as written).
    """

    start: int
    end: int
    original: str
    local: str
