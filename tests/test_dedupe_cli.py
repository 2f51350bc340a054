"""`harvester dedupe IMAGE_OR_DIR... [--json]` on real files made here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]


def picture(seed: int) -> Image.Image:
    im = Image.new("RGB", (480, 360), (30 + seed * 40, 90, 160))
    d = ImageDraw.Draw(im)
    for k in range(6):
        x = (k * 71 + seed * 37) % 400
        y = (k * 53 + seed * 91) % 280
        d.ellipse((x, y, x + 80, y + 80), fill=((k * 60) % 256, 200 - k * 20, 40 + k * 30))
    d.rectangle((20 + seed * 30, 250, 200 + seed * 30, 330), fill=(240, 240, 240))
    return im


def harvester(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harvester", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )


def test_dedupe_groups_local_files(tmp_path: Path) -> None:
    folder = tmp_path / "assets"
    (folder / "sub").mkdir(parents=True)
    photo = picture(1)
    photo.save(folder / "photo.png")
    photo.resize((240, 180)).save(folder / "sub" / "photo-small.jpg", quality=80)
    photo.save(folder / "photo.webp", quality=70)
    photo.point(lambda v: v // 2).save(folder / "photo-dark.jpg", quality=90)
    picture(4).save(folder / "other.jpg")
    (folder / "broken.jpg").write_bytes((folder / "other.jpg").read_bytes()[:300])
    (folder / "notes.txt").write_text("not an image, not a candidate")

    out = harvester("dedupe", str(folder), "--json")
    assert out.returncode == 0, out.stderr
    groups = json.loads(out.stdout)["groups"]
    for group in groups:
        group["duplicates"].sort()
    assert groups == [
        {
            "canonical": str(folder / "photo.png"),
            "duplicates": sorted(
                [str(folder / "photo.webp"), str(folder / "sub" / "photo-small.jpg")]
            ),
            "similar": [str(folder / "photo-dark.jpg")],
        }
    ]
    assert "broken.jpg: corrupt-image" in out.stderr
    assert "notes.txt" not in out.stderr

    text = harvester("dedupe", str(folder / "photo.png"), str(folder / "photo.webp"))
    assert text.returncode == 0
    assert f"group 1: {folder / 'photo.png'}" in text.stdout
    assert f"duplicate  {folder / 'photo.webp'}  (distance" in text.stdout


def test_dedupe_identical_bytes_and_undecodable_files(tmp_path: Path) -> None:
    picture(2).save(tmp_path / "a.jpg")
    (tmp_path / "copy.jpg").write_bytes((tmp_path / "a.jpg").read_bytes())
    (tmp_path / "notes.png").write_text("not a picture\n")
    out = harvester(
        "dedupe",
        str(tmp_path / "a.jpg"),
        str(tmp_path / "copy.jpg"),
        str(tmp_path / "notes.png"),
        "--json",
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {
        "groups": [
            {
                "canonical": str(tmp_path / "a.jpg"),
                "duplicates": [str(tmp_path / "copy.jpg")],
                "similar": [],
            }
        ]
    }
    assert "notes.png: unsupported-format" in out.stderr  # reported, skipped, not fatal
    lonely = harvester("dedupe", str(tmp_path / "a.jpg"))
    assert lonely.returncode == 0 and "no near-duplicates" in lonely.stdout


def test_dedupe_of_a_store_folder_skips_its_thumbnails_and_hidden_folders(tmp_path: Path) -> None:
    import hashlib

    store = tmp_path / "assets"
    stored = []
    for seed in (1, 4):
        image = picture(seed)
        data_path = tmp_path / f"p{seed}.png"
        image.save(data_path)
        sha = hashlib.sha256(data_path.read_bytes()).hexdigest()
        asset = store / sha[:2] / sha[2:4] / f"{sha}.png"
        asset.parent.mkdir(parents=True, exist_ok=True)
        data_path.replace(asset)
        stored.append(asset)
        thumb = store / "thumbs" / "320" / sha[:2] / f"{sha}.webp"
        thumb.parent.mkdir(parents=True, exist_ok=True)
        image.resize((320, 240)).save(thumb, quality=80)
    temp = store / ".tmp" / "partial.png"
    temp.parent.mkdir()
    picture(1).save(temp)
    # a copy of the first picture the user keeps beside the store is a real duplicate
    own = store / "blog" / "header.jpg"
    own.parent.mkdir()
    picture(1).save(own, quality=90)
    hidden = tmp_path / "site" / ".cache" / "copy.png"
    hidden.parent.mkdir(parents=True)
    picture(4).save(hidden)
    (tmp_path / "site" / "other.png").write_bytes(stored[1].read_bytes())

    out = harvester("dedupe", str(store), str(tmp_path / "site"), "--json")
    assert out.returncode == 0, out.stderr
    groups = json.loads(out.stdout)["groups"]
    assert sorted((g["canonical"], g["duplicates"]) for g in groups) == sorted(
        [
            (str(stored[0]), [str(own)]),
            (str(stored[1]), [str(tmp_path / "site" / "other.png")]),
        ]
    )
    assert "thumbs" not in out.stdout and ".tmp" not in out.stdout and ".cache" not in out.stdout


def test_dedupe_of_a_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    """A typo in a folder name must not read as "no near-duplicates found" (exit 0)."""
    picture(1).save(tmp_path / "photo.png")
    out = harvester("dedupe", str(tmp_path), str(tmp_path / "typo"))
    assert out.returncode == 2, out
    assert "no such file or folder" in out.stderr and "typo" in out.stderr
    assert out.stdout == ""
