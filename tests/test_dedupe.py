"""mirror.dedupe: the tiers, the canonical rule, no chaining, flat images, decisions, the index."""

from __future__ import annotations

import base64
import hashlib
import random
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

import mirror.dedupe as dedupe
from harvester.settings import Settings
from mirror.dedupe import (
    Decisions,
    HashIndex,
    canonical_order,
    choose_canonical,
    find_duplicates,
    structure_residual,
)
from mirror.imaging import process_image
from mirror.records import DuplicateLink, ImageInfo, ImagingOptions, ThumbnailSpec

THRESHOLDS = Settings().dedupe_thresholds()


def _pattern(shift_fg: int = 0) -> np.ndarray:
    """A 32×32 grey scene: a background gradient and a bright 'foreground' square that can
    move on its own (as in a stereo pair or a burst shot)."""
    y, x = np.mgrid[0:32, 0:32]
    img = 40 + 3 * x + 2 * y
    img[10:22, 8 + shift_fg : 20 + shift_fg] = 230
    img[4:8, 24:30] = 10
    return img.astype(np.uint8)


STRUCTURE = base64.b64encode(_pattern().tobytes()).decode()
GREY = "80" * (8 * 8 * 3)


def flip(value: int, bits: list[int]) -> int:
    for b in bits:
        value ^= 1 << b
    return value


def info(
    sha: str,
    phash: int,
    *,
    size: tuple[int, int] = (100, 100),
    fmt: str = "JPEG",
    quality: int | None = None,
    dhash: int | None = None,
    color: str = GREY,
    structure: str = STRUCTURE,
    flat: bool = False,
    frames: int = 1,
    alpha: bool = False,
) -> ImageInfo:
    return ImageInfo(
        sha256=sha,
        format=fmt,
        media_type="image/jpeg",
        width=size[0],
        height=size[1],
        frames=frames,
        has_alpha=alpha,
        bytes=1000,
        phash=f"{phash:016x}",
        dhash=f"{(phash if dhash is None else dhash):016x}",
        color=color,
        flat=flat,
        quality=quality,
        thumbnails=(),
        structure=structure,
    )


BASE = 0x9F3A_5C71_0E2D_B468


def links_by_sha(links: list[DuplicateLink]) -> dict[tuple[str, str], DuplicateLink]:
    return {(link.sha256, link.canonical): link for link in links}


def test_two_tiers() -> None:
    a = info("a", BASE, size=(200, 200))
    b = info("b", flip(BASE, [1, 9, 30]))  # 3 bits: same picture
    c = info("c", flip(BASE, list(range(40, 51))))  # 11 bits: looks alike
    d = info("d", ~BASE & (2**64 - 1))  # far
    links = find_duplicates([a, b, c, d], THRESHOLDS)
    assert links[0] == DuplicateLink("b", "a", "duplicate", 3)  # duplicates come first
    got = links_by_sha(links)
    assert got[("b", "a")].tier == "duplicate"
    assert got[("c", "a")].tier == "similar" and got[("c", "a")].distance == 11
    assert not any("d" in pair for pair in got)


def test_colour_check_keeps_dark_edition_apart() -> None:
    dark = "40" * (8 * 8 * 3)
    links = find_duplicates([info("a", BASE), info("b", BASE, color=dark)], THRESHOLDS)
    assert links == [DuplicateLink("b", "a", "similar", 0)]


def test_structure_check_keeps_stereo_pair_apart() -> None:
    moved = base64.b64encode(_pattern(shift_fg=4).tobytes()).decode()
    assert structure_residual(STRUCTURE, moved) > THRESHOLDS.structure_distance
    links = find_duplicates([info("a", BASE), info("b", BASE, structure=moved)], THRESHOLDS)
    assert links == [DuplicateLink("b", "a", "similar", 0)]
    # Without a structure signature nothing is merged perceptually.
    unverified = find_duplicates([info("a", BASE), info("b", BASE, structure="")], THRESHOLDS)
    assert [link.tier for link in unverified] == ["similar"]


def test_structure_alignment_accepts_a_crop() -> None:
    big = np.asarray(
        Image.fromarray(_pattern()).resize((320, 320), Image.Resampling.BICUBIC), np.uint8
    )
    cropped = Image.fromarray(big[0:304, 10:320])  # ~5% off the top-right... and left
    small = np.asarray(cropped.resize((32, 32), Image.Resampling.BOX), np.uint8)
    sig = base64.b64encode(small.tobytes()).decode()
    assert structure_residual(STRUCTURE, sig) <= THRESHOLDS.structure_distance


@settings(max_examples=60, deadline=None)
@given(
    left=st.integers(0, 24),
    top=st.integers(0, 24),
    right=st.integers(0, 24),
    bottom=st.integers(0, 24),
    shift_fg=st.integers(0, 5),
    enough=st.floats(1.0, 30.0),
)
def test_the_early_stopping_search_gives_the_full_searchs_verdict(
    left: int, top: int, right: int, bottom: int, shift_fg: int, enough: float
) -> None:
    """Dedupe asks only "within `enough`?" and stops the alignment search once a step gets
    there: it must answer as the full search does, for crops, scenes that moved, and both."""
    big = Image.fromarray(_pattern(shift_fg)).resize((320, 320), Image.Resampling.BICUBIC)
    cropped = big.crop((left, top, 320 - right, 320 - bottom))
    small = np.asarray(cropped.resize((32, 32), Image.Resampling.BOX), np.uint8)
    sig = base64.b64encode(small.tobytes()).decode()
    full = structure_residual(STRUCTURE, sig)
    early = dedupe._residual(STRUCTURE, sig, enough)
    assert (early <= enough) == (full <= enough)
    assert early >= full - 1e-4  # stopping early never finds a better alignment


def test_structure_checks_on_threads_decide_as_one_thread_does(monkeypatch) -> None:
    """Past `_THREADED_CHECKS` pairs the structure checks run on threads: the links must be
    exactly those of the serial loop, crops merged and moved scenes kept apart alike."""
    infos = [info("base", BASE)]
    for k in range(24):
        cut = 4 + k  # crops of 1-9 % from the left
        big = Image.fromarray(_pattern()).resize((320, 320), Image.Resampling.BICUBIC)
        small = big.crop((cut, 0, 320, 320)).resize((32, 32), Image.Resampling.BOX)
        crop = base64.b64encode(np.asarray(small, np.uint8).tobytes()).decode()
        moved = base64.b64encode(_pattern(shift_fg=3 + k % 3).tobytes()).decode()
        infos.append(info(f"crop{k:02}", flip(BASE, [k % 64]), size=(90, 90), structure=crop))
        infos.append(info(f"moved{k:02}", flip(BASE, [(k + 7) % 64]), structure=moved))
    monkeypatch.setattr(dedupe, "_THREADED_CHECKS", 10**9)
    serial = find_duplicates(infos, THRESHOLDS)
    monkeypatch.setattr(dedupe, "_THREADED_CHECKS", 0)
    monkeypatch.setattr("mirror.pool.default_workers", lambda: 2)
    threaded = find_duplicates(infos, THRESHOLDS)
    assert threaded == serial
    tiers = {(link.sha256[:4], link.tier) for link in serial}
    assert ("crop", "duplicate") in tiers and ("move", "similar") in tiers


def test_dhash_route_must_agree() -> None:
    far_dhash = flip(BASE, list(range(0, 40)))
    links = find_duplicates([info("a", BASE), info("b", BASE, dhash=far_dhash)], THRESHOLDS)
    assert [link.tier for link in links] == ["similar"]


def test_flat_images_never_merge_perceptually() -> None:
    blank = [info(f"blank{i}", 0, flat=True) for i in range(3)]
    assert find_duplicates(blank, THRESHOLDS) == []


def test_animated_and_transparency_mismatch_are_only_similar() -> None:
    still, anim = info("still", BASE), info("anim", BASE, frames=12)
    assert [link.tier for link in find_duplicates([still, anim], THRESHOLDS)] == ["similar"]
    logo, on_white = info("logo", BASE, alpha=True), info("white", BASE)
    assert [link.tier for link in find_duplicates([logo, on_white], THRESHOLDS)] == ["similar"]


def test_canonical_rule_most_pixels_then_quality_then_first_seen() -> None:
    small = info("s", BASE, size=(100, 100), quality=95)
    big = info("b", BASE, size=(300, 200), quality=40)
    assert choose_canonical([small, big]).sha256 == "b"
    assert choose_canonical([big, small]).sha256 == "b"
    low = info("low", BASE, quality=60)
    high = info("high", BASE, quality=90)
    assert choose_canonical([low, high]).sha256 == "high"  # same format: quality decides
    webp = info("webp", BASE, fmt="WEBP")
    assert choose_canonical([webp, high]).sha256 == "webp"  # across formats: first seen
    assert choose_canonical([high, webp]).sha256 == "high"
    # Mixed formats never make the rule circular: the order is total.
    trio = [info("j80", BASE, quality=80), webp, info("j90", BASE, quality=90)]
    order = [trio[k].sha256 for k in canonical_order(trio)]
    assert order == ["j90", "j80", "webp"]  # JPEGs first seen, ranked by quality inside


def test_canonical_does_not_depend_on_input_order_when_sizes_differ() -> None:
    group = [
        info("q", flip(BASE, [3]), size=(400, 300)),
        info("r", flip(BASE, [5]), size=(800, 600)),
        info("s", flip(BASE, [7]), size=(200, 150)),
    ]
    for _ in range(5):
        random.shuffle(group)
        links = find_duplicates(group, THRESHOLDS)
        assert {(link.sha256, link.canonical) for link in links} == {("q", "r"), ("s", "r")}


def test_no_chaining_and_nearest_canonical() -> None:
    a = info("a", BASE, size=(300, 300))
    b = info("b", flip(BASE, list(range(0, 6))), size=(200, 200))  # 6 from a
    c = info("c", flip(BASE, list(range(0, 12))), size=(100, 100))  # 6 from b, 12 from a
    links = links_by_sha(find_duplicates([a, b, c], THRESHOLDS))
    assert links[("b", "a")].tier == "duplicate"
    assert ("c", "a") not in links or links[("c", "a")].tier == "similar"
    assert links[("c", "b")].tier == "similar"  # recorded for review, not chained
    assert not any(link.tier == "duplicate" and link.sha256 == "c" for link in links.values())

    p = info("p", BASE, size=(400, 400))
    q = info("q", flip(BASE, list(range(20, 40))), size=(400, 400))  # far from p
    x = info("x", flip(BASE, list(range(20, 28))))  # 8 from p, 12 from q
    x2 = info("x2", flip(BASE, list(range(20, 38))))  # 18 from p, 2 from q
    got = links_by_sha(find_duplicates([p, q, x, x2], THRESHOLDS))
    assert got[("x", "p")].tier == "duplicate"
    assert got[("x2", "q")] == DuplicateLink("x2", "q", "duplicate", 2)


def test_decisions_force_same_and_different() -> None:
    a, b = info("a", BASE, size=(200, 200)), info("b", BASE)
    assert find_duplicates([a, b], THRESHOLDS, Decisions(different=frozenset({("b", "a")}))) == []
    far = info("far", ~BASE & (2**64 - 1))
    links = find_duplicates([a, far], THRESHOLDS, Decisions(same=frozenset({("a", "far")})))
    assert links == [DuplicateLink("far", "a", "duplicate", 64)]
    # "same" with a member joins its group's canonical (the person said it is that picture)
    links = find_duplicates([a, b, far], THRESHOLDS, Decisions(same=frozenset({("far", "b")})))
    assert {(x.sha256, x.canonical, x.tier) for x in links} == {
        ("b", "a", "duplicate"),
        ("far", "a", "duplicate"),
    }


def test_identical_sha_is_one_asset() -> None:
    a = info("a", BASE)
    assert find_duplicates([a, a], THRESHOLDS) == []


# -- real pictures ------------------------------------------------------------------------


def scene(width: int = 640, height: int = 480, near: int = 0, mid: int = 0) -> Image.Image:
    """A photo-like scene: sky gradient, ground, a house and a red car in front. `near` and
    `mid` shift the car and the house (a camera moved sideways: parallax)."""
    y, _x = np.mgrid[0:height, 0:width].astype(np.float32)
    sky = np.stack([90 + 60 * y / height, 140 + 50 * y / height, 230 - 40 * y / height], -1)
    img = Image.fromarray(sky.clip(0, 255).astype(np.uint8))
    d = ImageDraw.Draw(img)
    d.rectangle((0, height * 0.62, width, height), fill=(70, 120, 50))
    d.rectangle((60 + mid, 140, 300 + mid, 300), fill=(200, 180, 150))
    d.polygon([(40 + mid, 140), (180 + mid, 60), (320 + mid, 140)], fill=(140, 40, 30))
    d.rectangle((110 + mid, 200, 170 + mid, 300), fill=(80, 50, 30))
    d.ellipse((420, 60, 500, 140), fill=(250, 230, 120))
    car = 220 + near
    d.rectangle((car, 320, car + 220, 400), fill=(200, 20, 20))
    d.ellipse((car + 20, 380, car + 80, 440), fill=(20, 20, 20))
    d.ellipse((car + 140, 380, car + 200, 440), fill=(20, 20, 20))
    return img


def analyse(tmp_path: Path, name: str, im: Image.Image, fmt: str = "JPEG", **kw) -> ImageInfo:
    path = tmp_path / name
    im.save(path, fmt, **kw)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    opts = ImagingOptions(64_000_000, ThumbnailSpec((), "webp", 80), draft=True)
    result = process_image(path, sha, tmp_path, opts)
    assert isinstance(result, ImageInfo), result
    return result


def test_real_variants_land_in_the_right_tier(tmp_path: Path) -> None:
    src = scene()
    w, h = src.size
    marked = src.copy()
    ImageDraw.Draw(marked).text((20, h - 30), "(c) news.example.com", fill=(255, 255, 255))
    infos = {
        "orig": analyse(tmp_path, "orig.png", src, "PNG"),
        "small": analyse(tmp_path, "small.jpg", src.resize((w // 2, h // 2)), quality=80),
        "q50": analyse(tmp_path, "q50.jpg", src, quality=50),
        "webp": analyse(tmp_path, "w.webp", src, "WEBP", quality=75),
        "crop": analyse(tmp_path, "crop.jpg", src.crop((int(w * 0.04), 0, w, h))),
        "trim": analyse(
            tmp_path, "trim.jpg", src.crop((w // 50, h // 50, w - w // 50, h - h // 50))
        ),
        "mark": analyse(tmp_path, "mark.jpg", marked, quality=85),
        "dark": analyse(tmp_path, "dark.jpg", src.point(lambda v: int(v * 0.5))),
        "grey": analyse(tmp_path, "grey.jpg", src.convert("L")),
        "moved": analyse(tmp_path, "moved.jpg", scene(near=60, mid=30), quality=90),
        "flipped": analyse(tmp_path, "flip.jpg", src.transpose(Image.Transpose.FLIP_LEFT_RIGHT)),
    }
    names = {i.sha256: n for n, i in infos.items()}
    links = find_duplicates(list(infos.values()), THRESHOLDS)
    dup = {names[x.sha256]: names[x.canonical] for x in links if x.tier == "duplicate"}
    similar = {(names[x.sha256], names[x.canonical]) for x in links if x.tier == "similar"}
    same = ("small", "q50", "webp", "crop", "trim", "mark")
    assert dup == dict.fromkeys(same, "orig")
    involved = {n for pair in similar for n in pair}
    assert {"dark", "grey"} <= involved  # recorded for a person, never merged
    assert "moved" not in dup and "flipped" not in dup and "flipped" not in involved


# -- the index ------------------------------------------------------------------------------


def brute(hashes: list[int], q: int, d: int) -> list[tuple[int, int]]:
    return sorted(
        ((q ^ h).bit_count(), i) for i, h in enumerate(hashes) if (q ^ h).bit_count() <= d
    )


hash_lists = st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=60)


@settings(max_examples=150, deadline=None)
@given(
    hashes=hash_lists,
    seeds=st.lists(st.integers(0, 2**64 - 1), max_size=5),
    d=st.integers(0, 16),
    data=st.data(),
)
def test_index_matches_brute_force(hashes, seeds, d, data) -> None:
    # plant near neighbours so queries find something
    planted = [s ^ (1 << data.draw(st.integers(0, 63))) for s in seeds] + seeds
    hashes = hashes + planted
    index = HashIndex()
    index.extend(hashes[:-1])
    index.add(f"{hashes[-1]:016x}")
    assert len(index) == len(hashes)
    q = data.draw(st.sampled_from(hashes))
    idx, dist = index.query(q, d)
    assert [(int(b), int(a)) for a, b in zip(idx, dist, strict=True)] == brute(hashes, q, d)
    want = {(qi, i, dd) for qi, qv in enumerate(hashes) for dd, i in brute(hashes, qv, d)}
    for m in (0, 3, 4, 5, 6, 8):
        index._choose_substrings = lambda _d, m=m: m  # force each search strategy
        qs, ix, ds = index.query_many(np.array(hashes, dtype=np.uint64), d)
        assert set(zip(qs.tolist(), ix.tolist(), ds.tolist(), strict=True)) == want, m
        pi, pj, pd = index.pairs_within(d)
        assert set(zip(pi.tolist(), pj.tolist(), pd.tolist(), strict=True)) == {
            (a, b, c) for a, b, c in want if a < b
        }, m


def test_index_grows_and_queries_a_large_batch() -> None:
    rng = np.random.default_rng(7)
    base = rng.integers(0, 2**63, 20_000, dtype=np.uint64)
    index = HashIndex(base)
    near = base[:100] ^ np.uint64(0b101)
    added = index.extend(near)
    assert added == range(20_000, 20_100)
    i, j, d = index.pairs_within(3)
    pairs = set(zip(i.tolist(), j.tolist(), strict=True))
    assert {(k, 20_000 + k) for k in range(100)} <= pairs
    assert set(d.tolist()) <= {0, 1, 2, 3}


@pytest.mark.parametrize("bad", ["", "zz", "AAAA"])
def test_structure_residual_of_missing_signature_is_infinite(bad: str) -> None:
    assert structure_residual(STRUCTURE, bad) == float("inf")
    assert dedupe.color_distance(GREY, bad) == float("inf")
