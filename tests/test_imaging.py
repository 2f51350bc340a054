"""mirror.imaging: real encoded images made here → the right facts, failures and thumbnails."""

from __future__ import annotations

import hashlib
import io
import resource
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import imagehash
import numpy as np
import pytest
from PIL import Image

from mirror import imaging
from mirror.imaging import estimate_jpeg_quality, process_image, thumbnail_path
from mirror.records import ImageFailure, ImageInfo, ImagingOptions, ThumbnailSpec

OPTIONS = ImagingOptions(
    max_pixels=64_000_000, thumbnails=ThumbnailSpec((320,), "webp", 80), draft=True
)


def photo(width: int, height: int, seed: int = 1) -> Image.Image:
    """A smooth, photo-like RGB picture (coloured blobs on a gradient), deterministic."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    x /= width
    y /= height
    img = np.stack([x * 120 + 40, y * 120 + 40, (1 - x) * 100 + 60], axis=-1)
    for _ in range(12):
        cx, cy, r = rng.random(), rng.random(), 0.05 + rng.random() * 0.2
        colour = rng.random(3) * 200 - 100
        blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))
        img += blob[..., None] * colour
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def save(path: Path, im: Image.Image, fmt: str, **params: object) -> tuple[Path, str]:
    im.save(path, fmt, **params)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def run(path: Path, sha: str, root: Path, options: ImagingOptions = OPTIONS):
    return process_image(path, sha, root, options)


def ok(result: ImageInfo | ImageFailure) -> ImageInfo:
    assert isinstance(result, ImageInfo), result
    return result


def thumb(root: Path, info: ImageInfo, index: int = 0) -> Image.Image:
    t = info.thumbnails[index]
    im = Image.open(root / t.path)
    im.load()
    return im


def test_plain_jpeg_facts_hashes_and_thumbnail(tmp_path: Path) -> None:
    path, sha = save(tmp_path / "a.jpg", photo(800, 600), "JPEG", quality=82)
    info = ok(run(path, sha, tmp_path / "store"))
    assert (info.format, info.media_type, info.width, info.height) == (
        "JPEG",
        "image/jpeg",
        800,
        600,
    )
    assert (info.frames, info.has_alpha, info.flat) == (1, False, False)
    assert info.bytes == path.stat().st_size
    assert abs(info.quality - 82) <= 2
    assert len(info.phash) == 16 and int(info.phash, 16) >= 0
    assert len(info.dhash) == 16
    assert len(bytes.fromhex(info.color)) == 8 * 8 * 3
    (t,) = info.thumbnails
    assert t.path == f"thumbs/320/{sha[:2]}/{sha}.webp" == thumbnail_path(sha, 320, "webp")
    assert (t.size, t.format, t.width, t.height) == (320, "webp", 320, 240)
    written = thumb(tmp_path / "store", info)
    assert written.format == "WEBP" and written.size == (320, 240)
    assert not list((tmp_path / "store" / ".tmp").iterdir()), "temp files left behind"


def test_jpeg_quality_estimate_tracks_encoder_setting(tmp_path: Path) -> None:
    for q in (30, 50, 75, 90, 97):
        buf = io.BytesIO()
        photo(64, 64).save(buf, "JPEG", quality=q)
        assert abs(estimate_jpeg_quality(Image.open(buf)) - q) <= 1, q


def test_small_image_is_never_upscaled(tmp_path: Path) -> None:
    path, sha = save(tmp_path / "s.png", photo(120, 80), "PNG")
    info = ok(run(path, sha, tmp_path))
    assert (info.thumbnails[0].width, info.thumbnails[0].height) == (120, 80)


def test_several_sizes_and_jpeg_thumbnails(tmp_path: Path) -> None:
    opts = ImagingOptions(64_000_000, ThumbnailSpec((100, 400), "jpeg", 70), draft=True)
    path, sha = save(tmp_path / "a.jpg", photo(1000, 500), "JPEG")
    info = ok(run(path, sha, tmp_path, opts))
    assert [(t.size, t.width, t.height) for t in info.thumbnails] == [
        (100, 100, 50),
        (400, 400, 200),
    ]
    assert info.thumbnails[1].path.endswith(f"/{sha}.jpg")
    assert thumb(tmp_path, info, 1).format == "JPEG"


def test_exif_rotated_jpeg_is_upright(tmp_path: Path) -> None:
    # Stored 400×200 with a red block at the stored top-left; orientation 6 means "rotate 90°
    # clockwise to display": the reader sees 200×400 with red at the top-right.
    im = Image.new("RGB", (400, 200), (0, 0, 255))
    im.paste((255, 0, 0), (0, 0, 80, 80))
    exif = Image.Exif()
    exif[0x0112] = 6
    path, sha = save(tmp_path / "r.jpg", im, "JPEG", exif=exif.tobytes(), quality=95)
    info = ok(run(path, sha, tmp_path))
    assert (info.width, info.height) == (200, 400)
    t = thumb(tmp_path, info).convert("RGB")
    assert t.size == (160, 320)
    r, g, b = t.getpixel((t.width - 10, 10))
    assert r > 200 and b < 60, (r, g, b)
    r, g, b = t.getpixel((10, 10))
    assert b > 200 and r < 60, (r, g, b)
    # The hash is of the upright picture: same as hashing an upright copy.
    upright = im.transpose(Image.Transpose.ROTATE_270)
    up_path, up_sha = save(tmp_path / "u.jpg", upright, "JPEG", quality=95)
    assert (
        imagehash.hex_to_hash(info.phash)
        - imagehash.hex_to_hash(ok(run(up_path, up_sha, tmp_path)).phash)
        <= 2
    )


def test_cmyk_jpeg_keeps_its_colours(tmp_path: Path) -> None:
    im = Image.new("CMYK", (300, 200), (0, 255, 255, 0))  # pure red in CMYK
    path, sha = save(tmp_path / "c.jpg", im, "JPEG", quality=90)
    assert Image.open(path).mode == "CMYK"
    info = ok(run(path, sha, tmp_path))
    r, g, b = thumb(tmp_path, info).convert("RGB").getpixel((150, 100))
    assert r > 200 and g < 60 and b < 60, (r, g, b)


def test_16_bit_png_is_not_white(tmp_path: Path) -> None:
    ramp = (np.tile(np.linspace(0, 65535, 256), (128, 1))).astype(np.uint16)
    path, sha = save(tmp_path / "g16.png", Image.fromarray(ramp), "PNG")
    assert Image.open(path).mode.startswith("I")
    info = ok(run(path, sha, tmp_path))
    t = np.asarray(thumb(tmp_path, info).convert("L"), dtype=np.float64)
    assert t[:, :20].mean() < 30  # the dark end stays dark
    assert t[:, -20:].mean() > 220
    assert 100 < t.mean() < 160
    assert not info.flat


def test_palette_png_with_transparency(tmp_path: Path) -> None:
    im = Image.new("P", (200, 200), 0)
    im.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    im.paste(1, (50, 50, 150, 150))  # a red square on a transparent background
    path, sha = save(tmp_path / "p.png", im, "PNG", transparency=0)
    info = ok(run(path, sha, tmp_path))
    assert info.has_alpha
    t = thumb(tmp_path, info)
    assert t.mode == "RGBA"  # the thumbnail keeps its transparency
    assert t.getpixel((10, 10))[3] == 0
    r, g, b, a = t.getpixel((100, 100))
    assert a == 255 and r > 240 and g < 15 and b < 15
    # Hashing sees the picture composited on white: the corners are white, not black.
    corner = bytes.fromhex(info.color)[:3]
    assert min(corner) > 240, corner


def test_rgba_png_composited_before_hashing(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (256, 256), (0, 0, 0, 0))
    rgba.paste((0, 128, 0, 255), (64, 64, 192, 192))
    path, sha = save(tmp_path / "a.png", rgba, "PNG")
    on_white = Image.new("RGB", (256, 256), (255, 255, 255))
    on_white.paste((0, 128, 0), (64, 64, 192, 192))
    w_path, w_sha = save(tmp_path / "w.png", on_white, "PNG")
    a, w = ok(run(path, sha, tmp_path)), ok(run(w_path, w_sha, tmp_path))
    assert a.has_alpha and not w.has_alpha
    assert a.phash == w.phash and a.color == w.color


def test_opaque_alpha_channel_is_not_alpha(tmp_path: Path) -> None:
    path, sha = save(tmp_path / "o.png", photo(100, 100).convert("RGBA"), "PNG")
    info = ok(run(path, sha, tmp_path))
    assert not info.has_alpha


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animated_first_frame_and_frame_count(tmp_path: Path, fmt: str) -> None:
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)]
    frames = [Image.new("RGB", (120, 90), c) for c in colours]
    for i, f in enumerate(frames):
        f.paste((255, 255, 255), (i * 10, 20, i * 10 + 30, 50))
    path, sha = save(
        tmp_path / f"anim.{fmt.lower()}",
        frames[0],
        fmt,
        save_all=True,
        append_images=frames[1:],
        duration=100,
        loop=0,
    )
    info = ok(run(path, sha, tmp_path))
    assert (info.format, info.frames, info.width, info.height) == (fmt, 5, 120, 90)
    r, g, b = thumb(tmp_path, info).convert("RGB").getpixel((100, 80))
    assert r > 200 and g < 60 and b < 60, "thumbnail must show the first frame"


def test_grayscale_jpeg(tmp_path: Path) -> None:
    path, sha = save(tmp_path / "g.jpg", photo(400, 300).convert("L"), "JPEG")
    info = ok(run(path, sha, tmp_path))
    colour = np.frombuffer(bytes.fromhex(info.color), np.uint8).reshape(-1, 3)
    assert (colour[:, 0] == colour[:, 1]).all() and (colour[:, 1] == colour[:, 2]).all()
    assert thumb(tmp_path, info).size == (320, 240)


def test_truncated_jpeg_is_corrupt(tmp_path: Path) -> None:
    path, _ = save(tmp_path / "full.jpg", photo(600, 400), "JPEG")
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    result = run(cut, "cut", tmp_path)
    assert isinstance(result, ImageFailure) and result.reason == "corrupt-image"
    assert not (tmp_path / "thumbs").exists()


def test_png_with_bad_crc_is_corrupt(tmp_path: Path) -> None:
    path, _ = save(tmp_path / "ok.png", photo(64, 64), "PNG")
    data = bytearray(path.read_bytes())
    idat = data.index(b"IDAT")
    data[idat + 10] ^= 0xFF  # flip a byte inside the IDAT payload: its CRC no longer matches
    bad = tmp_path / "bad.png"
    bad.write_bytes(bytes(data))
    result = run(bad, "bad", tmp_path)
    assert isinstance(result, ImageFailure) and result.reason == "corrupt-image"
    assert "CRC" in result.message


def test_unsupported_and_unreadable(tmp_path: Path) -> None:
    tiff, _ = save(tmp_path / "x.tif", photo(32, 32), "TIFF")
    assert run(tiff, "t", tmp_path).reason == "unsupported-format"
    html = tmp_path / "page.jpg"
    html.write_text("<html><body>not found</body></html>")
    assert run(html, "h", tmp_path).reason == "unsupported-format"
    assert run(tmp_path / "missing.png", "m", tmp_path).reason == "unreadable"
    garbled = tmp_path / "garbled.png"
    garbled.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    assert run(garbled, "g", tmp_path).reason == "corrupt-image"


def png_bomb(path: Path, side: int = 20000) -> None:
    """A side×side 8-bit grey PNG of zeros: 400 MB of pixels in a few hundred KB."""
    row = b"\x00" * (side + 1)  # filter byte + pixels
    comp = zlib.compressobj(9)
    chunks = [comp.compress(row * 500) for _ in range(side // 500)] + [comp.flush()]
    idat = b"".join(chunks)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def test_png_bomb_fails_too_many_pixels_without_decoding(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.png"
    png_bomb(bomb)
    assert bomb.stat().st_size < 1_000_000
    # Run in a fresh interpreter and measure its peak memory: decoding would need 400 MB.
    # VmHWM is this process's own high-water mark; ru_maxrss would also count the pytest
    # process it was forked from (Linux carries it across fork and exec).
    code = (
        "import sys; from pathlib import Path;"
        "from mirror.imaging import process_image;"
        "from mirror.records import ImagingOptions, ThumbnailSpec;"
        "o = ImagingOptions(64_000_000, ThumbnailSpec((320,), 'webp', 80), True);"
        f"r = process_image(Path({str(bomb)!r}), 'b', Path({str(tmp_path)!r}), o);"
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0];"
        "print(r.reason, hwm.split()[1])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    ).stdout.split()
    assert out[0] == "too-many-pixels"
    assert int(out[1]) < 200_000, f"peak RSS {out[1]} KiB: the pixels were allocated"
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss < 2_000_000


def test_pixel_cap_is_the_configured_one(tmp_path: Path) -> None:
    path, sha = save(tmp_path / "a.png", photo(300, 200), "PNG")
    tight = ImagingOptions(50_000, ThumbnailSpec((320,), "webp", 80), draft=True)
    result = run(path, sha, tmp_path, tight)
    assert isinstance(result, ImageFailure) and result.reason == "too-many-pixels"
    assert isinstance(run(path, sha, tmp_path), ImageInfo)


def test_draft_decoding_keeps_the_hash(tmp_path: Path) -> None:
    for seed, (w, h) in enumerate([(3000, 2000), (2400, 2400), (1600, 900), (4000, 1000)]):
        path, sha = save(tmp_path / f"big{seed}.jpg", photo(w, h, seed), "JPEG", quality=88)
        with_draft = ok(run(path, sha, tmp_path / "d", OPTIONS))
        no_draft = ok(
            run(path, sha, tmp_path / "n", ImagingOptions(64_000_000, OPTIONS.thumbnails, False))
        )
        distance = imagehash.hex_to_hash(with_draft.phash) - imagehash.hex_to_hash(no_draft.phash)
        # Measured: 0–2 bits, 4 on the 4:1 panorama (its 128×32 hash input comes from a
        # 1/8-scale decode and a 3× box reduction, or from a 31× box reduction of the full
        # decode): far inside the duplicate distance (10), so a drafted JPEG and a PNG copy
        # of one picture still merge.
        assert distance <= 4, (w, h, distance)
        assert imagehash.hex_to_hash(with_draft.dhash) - imagehash.hex_to_hash(no_draft.dhash) <= 3
        assert (with_draft.width, with_draft.height) == (no_draft.width, no_draft.height) == (w, h)
        assert with_draft.thumbnails == no_draft.thumbnails  # same sizes either way


def test_flat_images_are_flagged(tmp_path: Path) -> None:
    blank, blank_sha = save(tmp_path / "blank.png", Image.new("RGB", (300, 200), "white"), "PNG")
    grey, grey_sha = save(tmp_path / "grey.jpg", Image.new("RGB", (300, 200), (90, 90, 90)), "JPEG")
    assert ok(run(blank, blank_sha, tmp_path)).flat
    assert ok(run(grey, grey_sha, tmp_path)).flat
    pic, pic_sha = save(tmp_path / "pic.jpg", photo(300, 200), "JPEG")
    assert not ok(run(pic, pic_sha, tmp_path)).flat


def test_existing_thumbnail_is_reused_and_rerun_is_identical(tmp_path: Path) -> None:
    path, sha = save(tmp_path / "a.jpg", photo(500, 400), "JPEG")
    first = ok(run(path, sha, tmp_path))
    written = tmp_path / first.thumbnails[0].path
    mtime = written.stat().st_mtime_ns
    assert ok(run(path, sha, tmp_path)) == first
    assert written.stat().st_mtime_ns == mtime


def _pictures() -> list[Image.Image]:
    """Photo-like pictures (`photo`) at several sizes and crops, random noise, a gradient."""
    rng = np.random.default_rng(7)
    pictures = [photo(w, h) for w, h in ((256, 171), (200, 256), (97, 64), (256, 256))]
    pictures += [photo(800, 533).crop((k * 40, k * 20, 600 + k * 30, 500)) for k in range(4)]
    pictures += [
        Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8), "L")
        for w, h in ((256, 200), (64, 64), (33, 250))
    ]
    ramp = np.add.outer(np.arange(120), np.arange(180)).astype(np.uint8)
    pictures.append(Image.fromarray(ramp, "L"))
    return pictures


def test_phash_and_dhash_bits_equal_imagehash() -> None:
    # The signatures are computed without scipy, but must stay imagehash's phash/dhash bit for
    # bit: manifests record imagehash as the definition, and other tools recompute them.
    for picture in _pictures():
        grey = picture.convert("L")
        assert imaging.phash_hex(grey) == str(imagehash.phash(grey)), picture.size
        assert imaging.dhash_hex(grey) == str(imagehash.dhash(grey)), picture.size


def test_a_flat_picture_hashes_the_same_everywhere() -> None:
    # Every AC coefficient of a flat picture is 0: ties are decided exactly, not by FFT noise.
    grey = Image.new("L", (200, 150), 128)
    assert imaging.phash_hex(grey) == "8000000000000000"
    assert imaging.dhash_hex(grey) == "0000000000000000"
