"""Speed-related settings and trade-offs keep their promises (no timing is asserted here).

- `thumbnail_webp_method` reaches the WebP encoder and is checked on load;
- a manifest is judged "large" the same way on load as on save (references count), so a big
  site's no-op run does not walk every ref through jsonschema;
- dedupe's alignment search gives the verdicts its definition describes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harvester.errors import ConfigError
from harvester.settings import Settings, load_config
from mirror.dedupe import _IDENTITY, _INSIDE, _SIDE, _W, _aligned, structure_residual
from mirror.imaging import process_image
from mirror.manifest import Manifest
from tests.mirror_site import build_site


def _photo(width: int, height: int, seed: int = 3) -> Image.Image:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.stack([x / width * 160 + 40, y / height * 160 + 40, 120 + 0 * x], axis=-1)
    img += rng.normal(0, 12, img.shape)  # grain: gives the encoder something to work on
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def test_webp_method_is_a_setting_that_reaches_the_encoder(tmp_path: Path) -> None:
    path = tmp_path / "a.jpg"
    _photo(900, 600).save(path, "JPEG", quality=90)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    sizes = {}
    for method in (0, 6):
        config = tmp_path / f"m{method}.toml"
        config.write_text(f"thumbnail_webp_method = {method}\nthumbnail_sizes = [256]\n")
        settings = Settings(**load_config(config))
        assert settings.thumbnail_webp_method == method
        info = process_image(path, sha, tmp_path / f"store{method}", settings.imaging_options())
        (thumb,) = info.thumbnails
        written = tmp_path / f"store{method}" / thumb.path
        with Image.open(written) as im:
            assert im.format == "WEBP" and im.size == (256, 171)
        sizes[method] = written.stat().st_size
    assert sizes[0] != sizes[6]  # a different effort gives a different encoding
    assert Settings().thumbnail_webp_method == 0  # the fastest; docs/performance.md says why


@pytest.mark.parametrize("bad", [-1, 7])
def test_webp_method_out_of_range_is_a_config_error(tmp_path: Path, bad: int) -> None:
    config = tmp_path / "h.toml"
    config.write_text(f"thumbnail_webp_method = {bad}\n")
    with pytest.raises(ConfigError, match="thumbnail_webp_method"):
        Settings(**load_config(config))


def test_load_counts_references_like_save_when_deciding_to_validate(tmp_path: Path) -> None:
    site = build_site(tmp_path / "blog")
    data = json.loads(site.manifest_path.read_text())
    records = len(data["assets"]) + len(data["urls"])
    refs = sum(len(a["refs"]) for a in data["articles"].values())
    assert refs > len(data["articles"])  # the site has articles with several refs
    next(iter(data["urls"].values()))["status"] = "fine"  # a deep problem
    site.manifest_path.write_text(json.dumps(data))
    # limit between "articles" and "refs": counted by refs, the document is large
    limit = records + refs - 1
    assert records + len(data["articles"]) <= limit
    m = Manifest.load(site.manifest_path, validate_limit=limit)
    assert m.data["urls"]  # loaded with the structural checks only, like save() would skip
    m.save(validate_schema=False)
    # at or under the limit the deep check still runs and moves the bad file aside
    site.manifest_path.write_text(json.dumps(data))
    with pytest.raises(Exception, match="fine"):
        Manifest.load(site.manifest_path, validate_limit=records + refs)


def _reference_aligned(src: np.ndarray, target: np.ndarray, rounds: int = 2) -> float:
    """The search written out: every alignment's full (K, 32, 32) candidate and mask."""

    def pick(cand: np.ndarray, mask: np.ndarray) -> tuple[int, float]:
        count = mask.sum(axis=(1, 2))
        score = (np.abs(cand - target[None]) * mask).sum(axis=(1, 2)) / np.maximum(count, 1)
        score[count < 0.7 * _SIDE * _SIDE] = np.inf
        k = int(np.argmin(score))
        return k, float(score[k])

    iy = ix = _IDENTITY
    best = float("inf")
    for _ in range(rounds):
        cand = np.einsum("ij,kuj->kiu", _W[iy] @ src, _W)
        ix, best = pick(cand, _INSIDE[iy][None, :, None] & _INSIDE[:, None, :])
        cand = np.einsum("kvi,ij->kvj", _W, src @ _W[ix].T)
        iy, best = pick(cand, _INSIDE[:, :, None] & _INSIDE[ix][None, None, :])
    return best


def test_alignment_search_matches_its_definition() -> None:
    """The GEMM form equals the masked mean over every alignment, computed naively."""
    rng = np.random.default_rng(5)
    base = rng.random((40, 40)) * 255
    src = base[2:34, 3:35].copy()
    target = base[4:36, 1:33].copy()  # shifted: aligns much better than it matches directly
    assert _aligned(src, target) == pytest.approx(_reference_aligned(src, target), abs=1e-9)
    assert _aligned(src, target) < float(np.abs(src - target).mean())
    assert _W.shape[0] == _INSIDE.shape[0]


def test_structure_residual_separates_a_shift_from_a_different_picture() -> None:
    import base64

    rng = np.random.default_rng(9)
    smooth = np.cumsum(np.cumsum(rng.normal(0, 1, (40, 40)), 0), 1)
    smooth = (smooth - smooth.min()) / np.ptp(smooth) * 255
    other = np.cumsum(np.cumsum(rng.normal(0, 1, (40, 40)), 0), 1)
    other = (other - other.min()) / np.ptp(other) * 255

    def sig(a: np.ndarray) -> str:
        return base64.b64encode(a.astype(np.uint8).tobytes()).decode()

    a, b, c = sig(smooth[4:36, 4:36]), sig(smooth[5:37, 3:35]), sig(other[4:36, 4:36])
    assert structure_residual(a, b) < 4.0
    assert structure_residual(a, c) > 10.0


def test_the_faster_schema_check_reports_what_plain_jsonschema_reports(tmp_path: Path) -> None:
    import jsonschema

    from mirror.manifest import load_schema, validation_errors

    site = build_site(tmp_path / "blog")
    data = json.loads(site.manifest_path.read_text())
    url = next(iter(data["urls"]))
    data["urls"][url]["status"] = "fine"
    del data["urls"][url]["attempts"]
    data["assets"][next(iter(data["assets"]))]["width"] = "wide"
    article = next(iter(data["articles"].values()))
    article["refs"][0]["line"] = -3
    article["previous"] = {"state": "nope"}  # the recursive definition is still checked
    schema = load_schema()
    plain = jsonschema.validators.validator_for(schema)(schema)
    expected = sorted(
        f"{'/'.join(str(p) for p in e.absolute_path) or '(top)'}: {e.message}"
        for e in plain.iter_errors(data)
    )
    assert len(expected) >= 5
    assert sorted(validation_errors(data, limit=100)) == expected
    assert validation_errors(json.loads(site.manifest_path.read_text())) == []
