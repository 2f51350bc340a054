"""mirror.pool.ImagePool: real worker processes, real crashes, a real memory ceiling."""

from __future__ import annotations

import asyncio
import ctypes
import hashlib
import os
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from mirror.imaging import ImagePool as ReExported
from mirror.imaging import process_batch, process_image
from mirror.pool import ImagePool
from mirror.records import ImageFailure, ImageInfo, ImagingOptions, ThumbnailSpec

OPTIONS = ImagingOptions(
    max_pixels=64_000_000, thumbnails=ThumbnailSpec((64,), "webp", 80), draft=True
)


def crashing_processor(path: Path, sha256: str, root: Path, options: ImagingOptions):
    """Stands in for a C decoder that dies on some inputs: a file named crash-* kills the
    worker (os.abort, or a NULL dereference through ctypes), anything else decodes normally."""
    if path.name.startswith("crash-abort"):
        os.abort()
    if path.name.startswith("crash-segv"):
        ctypes.string_at(0)
    return process_image(path, sha256, root, options)


def make_images(folder: Path, count: int) -> list[tuple[Path, str]]:
    items = []
    for i in range(count):
        im = Image.new("RGB", (80 + i, 60), ((i * 37) % 256, (i * 91) % 256, 128))
        im.paste((255, 255, 255), (i % 40, 10, i % 40 + 20, 30))
        path = folder / f"img{i:03d}.png"
        im.save(path)
        items.append((path, hashlib.sha256(path.read_bytes()).hexdigest()))
    return items


def test_pool_processes_everything_and_matches_in_process(tmp_path: Path) -> None:
    items = make_images(tmp_path, 12)
    assert ReExported is ImagePool
    with ImagePool(2, tmp_path / "store", OPTIONS) as pool:
        futures = [pool.submit(path, sha) for path, sha in items]
        results = [f.result(timeout=120) for f in futures]
    assert results == process_batch(items, tmp_path / "store", OPTIONS)
    assert all(isinstance(r, ImageInfo) for r in results)
    assert [r.sha256 for r in results] == [sha for _, sha in items]


def test_pool_futures_work_with_asyncio(tmp_path: Path) -> None:
    items = make_images(tmp_path, 4)

    async def main() -> list[ImageInfo | ImageFailure]:
        with ImagePool(1, tmp_path / "store", OPTIONS) as pool:
            return await asyncio.gather(*(asyncio.wrap_future(pool.submit(p, s)) for p, s in items))

    results = asyncio.run(main())
    assert [r.sha256 for r in results] == [s for _, s in items]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["abort", "segv"])
def test_crashing_decoder_fails_only_its_image(tmp_path: Path, kind: str) -> None:
    items = make_images(tmp_path, 10)
    culprit = tmp_path / f"crash-{kind}.png"
    culprit.write_bytes(items[0][0].read_bytes())
    items.insert(4, (culprit, "c" * 64))
    with ImagePool(2, tmp_path / "store", OPTIONS, processor=crashing_processor) as pool:
        futures = [pool.submit(path, sha) for path, sha in items]
        results = [f.result(timeout=180) for f in futures]
        # The pool goes on working after the crash.
        later = pool.submit(*items[1]).result(timeout=120)
    assert isinstance(later, ImageInfo)
    failures = [r for r in results if isinstance(r, ImageFailure)]
    assert [(f.sha256, f.reason) for f in failures] == [("c" * 64, "decoder-crashed")]
    assert sum(isinstance(r, ImageInfo) for r in results) == 10
    assert pool.crashes >= 2  # it broke the shared pool, then its isolation worker


def big_png(path: Path, side: int) -> str:
    """A side×side RGB PNG of zeros (small on disk, side²×3 bytes decoded)."""
    row = b"\x00" * (side * 3 + 1)
    comp = zlib.compressobj(6)
    idat = comp.compress(row * side) + comp.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


@pytest.mark.slow
def test_memory_ceiling_fails_the_greedy_image_only(tmp_path: Path) -> None:
    # 6000×6000 RGB needs 108 MB to decode (more to convert); the ceiling allows 48 MB.
    big = tmp_path / "big.png"
    big_sha = big_png(big, 6000)
    items = make_images(tmp_path, 3)
    tight = ImagingOptions(
        max_pixels=100_000_000, thumbnails=OPTIONS.thumbnails, draft=True, worker_memory_mb=48
    )
    with ImagePool(1, tmp_path / "store", tight) as pool:
        results = [pool.submit(p, s).result(timeout=180) for p, s in [(big, big_sha), *items]]
    assert isinstance(results[0], ImageFailure) and results[0].reason == "decoder-crashed"
    assert all(isinstance(r, ImageInfo) for r in results[1:])
    # Without the ceiling the same picture decodes fine.
    assert isinstance(process_image(big, big_sha, tmp_path / "store", tight), ImageInfo)


def test_closed_pool_refuses_work(tmp_path: Path) -> None:
    pool = ImagePool(1, tmp_path, OPTIONS)
    pool.close()
    with pytest.raises(RuntimeError):
        pool.submit(tmp_path / "x.png", "x")


def test_the_fork_server_starts_with_sigint_blocked() -> None:
    """Ctrl-C reaches the whole process group: a fork server still importing its preloads
    must not die of it (the run's next submission then failed with EOFError)."""
    import subprocess
    import sys

    probe = (
        "import multiprocessing.forkserver as fs\n"
        "from mirror.pool import _mp_context\n"
        "_mp_context()\n"
        "pid = fs._forkserver._forkserver_pid\n"
        "status = open(f'/proc/{pid}/status').read()\n"
        "print(next(l.split()[1] for l in status.splitlines() if l.startswith('SigBlk:')))\n"
    )
    if not Path("/proc/self/status").exists():
        pytest.skip("needs /proc")
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=root, capture_output=True, text=True, check=True
    )
    blocked = int(out.stdout.strip(), 16)
    assert blocked & (1 << (2 - 1)), f"SIGINT not blocked in the fork server: {out.stdout}"


def test_a_run_starts_the_fork_server_before_it_scans(tmp_path: Path) -> None:
    """The server's imports (Pillow, numpy) then run on another core during the scan, and the
    first downloaded image finds a worker ready instead of waiting ~0.3 s for them. A dry
    run, which processes no image, starts no server."""
    import subprocess
    import sys

    (tmp_path / "post.md").write_text("# A post\n\nNo pictures yet.\n")
    probe = (
        "import multiprocessing.forkserver as fs, pathlib, sys\n"
        "import harvester.extract as extract\n"
        "from harvester import Settings, run\n"
        "seen = []\n"
        "scan_one = extract.scan_one\n"
        "def spy(*args, **kwargs):\n"
        "    seen.append(fs._forkserver._forkserver_pid is not None)\n"
        "    return scan_one(*args, **kwargs)\n"
        "extract.scan_one = spy\n"
        "site = pathlib.Path(sys.argv[1])\n"
        "paths = dict(out=site / 'assets', manifest=site / 'manifest.json')\n"
        "run([site], Settings(dry_run=True, **paths))\n"
        "seen.append(fs._forkserver._forkserver_pid is not None)  # a dry run starts none\n"
        "run([site], Settings(**paths))\n"
        "print(seen)\n"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    # the dry run's scan, no server after it; then the real run's scan, the server already up
    assert out.stdout.strip() == "[False, False, True]", out.stdout
