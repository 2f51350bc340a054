"""Fetch-stage benchmark: images/s and CPU seconds per image at several connection settings.

Input: nothing (it makes its own corpus of distinct JPEGs, 30–300 KB, 400–1200 px, cached in
bench/.cache/fetch-jpegs) and a local image server in a separate process (tests/servers.py)
answering each request after 20–50 ms. Output: one line per configuration, and a JSON file
with the same numbers (bench/results/fetch_bench.json).

Each configuration runs in a fresh child process, so CPU time (time.process_time: the event
loop plus the store's worker threads) and peak RSS belong to the fetch stage alone; the
server's CPU is in another process and not counted. Each configuration runs once per
transport under httpx (`--transports`, default both: aiohttp, then httpcore), taking turns
within every repetition so machine drift hits both.

    /work/venv/bin/python bench/fetch_bench.py                 # all configurations
    /work/venv/bin/python bench/fetch_bench.py --images 500 --configs 16x4x4
    /work/venv/bin/python bench/fetch_bench.py --configs 16x4x4 --repeat 5 --transports aiohttp
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CACHE = ROOT / "bench" / ".cache" / "fetch-jpegs"
RESULTS = ROOT / "bench" / "results" / "fetch_bench.json"
HOSTS = ("img.example.com", "cdn.example.net", "static.example.org", "pics.example.com")
# concurrency x per_host x hosts
DEFAULT_CONFIGS = ("4x4x1", "16x4x4", "16x16x1", "32x32x1", "64x64x1", "64x16x4")


def make_corpus(count: int) -> list[Path]:
    """`count` distinct news-like JPEGs: 40 base photos-ish images, each file made unique
    by a JPEG comment, so sizes and decode costs are realistic and every sha256 differs."""
    from PIL import Image, ImageFilter

    CACHE.mkdir(parents=True, exist_ok=True)
    files = sorted(CACHE.glob("*.jpg"))
    if len(files) >= count:
        return files[:count]
    rng = random.Random(7)
    bases: list[bytes] = []
    for _ in range(40):
        width = rng.randrange(400, 1201)
        height = int(width * rng.uniform(0.56, 0.8))
        noise = Image.effect_noise((width, height), rng.uniform(20, 70)).convert("L")
        colour = Image.merge(
            "RGB",
            [noise.point(lambda v, k=k: (v * (0.6 + 0.2 * k) + 40 * k) % 256) for k in range(3)],
        ).filter(ImageFilter.GaussianBlur(rng.uniform(0.6, 2.0)))
        buffer = io.BytesIO()
        colour.save(buffer, "JPEG", quality=rng.randrange(70, 92))
        bases.append(buffer.getvalue())
    for index in range(count):
        base = bases[index % len(bases)]
        comment = f"harvester bench image {index}".encode()
        segment = b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment
        (CACHE / f"{index:05d}.jpg").write_bytes(base[:2] + segment + base[2:])
    return sorted(CACHE.glob("*.jpg"))[:count]


def start_server(latency: tuple[float, float]) -> tuple[subprocess.Popen[bytes], int]:
    port_file = Path(tempfile.mkdtemp()) / "port"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.servers",
            "--dir",
            str(CACHE),
            "--latency-min",
            str(latency[0]),
            "--latency-max",
            str(latency[1]),
            "--port-file",
            str(port_file),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    for _ in range(200):
        if port_file.exists() and port_file.read_text():
            return server, int(port_file.read_text())
        time.sleep(0.05)
    server.kill()
    raise RuntimeError("image server did not start")


def run_one(
    config: str, port: int, images: int, transport: str, scratch: str | None
) -> dict[str, Any]:
    """Child process: fetch `images` URLs with one configuration into a new store under
    `scratch` (the parent deletes it at the end); print JSON numbers."""
    from harvester.fetch import fetch_all
    from harvester.net import backend_of, build_client
    from harvester.records import Fetched, FetchRequest
    from harvester.settings import Settings
    from mirror.store import Store

    if os.environ.get("BENCH_NO_FSYNC"):  # to see what durability costs (not a default)
        import mirror.store

        mirror.store._fsync_file = mirror.store._fsync_dir = lambda path: None
    concurrency, per_host, hosts = (int(x) for x in config.split("x"))
    names = HOSTS[:hosts]
    settings = Settings(
        concurrency=concurrency,
        per_host=per_host,
        allow_private_addresses=True,
        resolve=tuple(f"{name}:{port}:127.0.0.1" for name in names),
        http_transport=transport,
    )
    files = sorted(CACHE.glob("*.jpg"))[:images]
    requests = [
        FetchRequest(
            url=f"http://{names[i % hosts]}:{port}/{path.name}",
            policy="strict-origin-when-cross-origin",
        )
        for i, path in enumerate(files)
    ]

    out = tempfile.mkdtemp(prefix="store-", dir=scratch)

    async def go() -> tuple[int, int]:
        store = Store(Path(out))
        ok = 0
        dialer = None
        if os.environ.get("BENCH_DIALER") == "anyio":  # httpcore's own stream, to compare
            from harvester.net import anyio_dialer as dialer
        async with build_client(settings, dialer=dialer) as client:
            async for result in fetch_all(requests, store=store, settings=settings, client=client):
                ok += isinstance(result, Fetched)
            backend = backend_of(client)
            return ok, backend.connections if backend else -1

    cpu0, wall0 = time.process_time(), time.perf_counter()
    ok, connections = asyncio.run(go())
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "config": config,
        "transport": transport,
        "concurrency": concurrency,
        "per_host": per_host,
        "hosts": hosts,
        "images": images,
        "ok": ok,
        "wall_s": wall,
        "images_per_s": images / wall,
        "cpu_s": cpu,
        "cpu_ms_per_image": 1000 * cpu / images,
        "connections": connections,
        "peak_rss_mb": rss_mb,
    }


def _child(config: str, port: int, images: int, transport: str, scratch: str) -> dict[str, Any]:
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            config,
            "--port",
            str(port),
            "--images",
            str(images),
            "--transport",
            transport,
            "--scratch",
            scratch,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument(
        "--configs",
        nargs="*",
        default=list(DEFAULT_CONFIGS),
        help="CONCURRENCYxPER_HOSTxHOSTS, e.g. 16x4x4",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per config (median kept)")
    parser.add_argument("--latency", type=float, nargs=2, default=(0.02, 0.05))
    parser.add_argument(
        "--transports", nargs="*", default=["aiohttp", "httpcore"], help="http_transport values"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--transport", default="aiohttp", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--scratch", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        print(json.dumps(run_one(args.child, args.port, args.images, args.transport, args.scratch)))
        return

    files = make_corpus(args.images)
    sizes = [f.stat().st_size for f in files]
    print(
        f"corpus: {len(files)} distinct JPEGs, {min(sizes) // 1024}–{max(sizes) // 1024} KB "
        f"(median {statistics.median(sizes) // 1024} KB); server latency "
        f"{args.latency[0] * 1000:.0f}–{args.latency[1] * 1000:.0f} ms per request; "
        f"{os.cpu_count()} CPUs"
    )
    server, port = start_server(tuple(args.latency))
    # Every child's store is deleted once, at the end: on a journal-less ext4 each file a
    # child creates would otherwise scan past the inodes the previous child just deleted,
    # kernel CPU that is the file system's, not the fetcher's (see bench/harness.py, main()).
    scratch = tempfile.mkdtemp(prefix="fetch-bench-")
    rows = []
    try:
        for config in args.configs:
            runs: dict[str, list[dict[str, Any]]] = {t: [] for t in args.transports}
            for _ in range(args.repeat):
                for transport in args.transports:  # taking turns: drift hits each alike
                    runs[transport].append(_child(config, port, args.images, transport, scratch))
            for transport, results in runs.items():
                results.sort(key=lambda r: r["cpu_ms_per_image"])
                row = results[len(results) // 2]
                rows.append(row)
                print(
                    f"{transport:>8} conc {row['concurrency']:>3} per-host {row['per_host']:>3} "
                    f"hosts {row['hosts']}: {row['images_per_s']:7.1f} images/s  "
                    f"CPU {row['cpu_ms_per_image']:5.2f} ms/image  "
                    f"connections {row['connections']:>3}  ok {row['ok']}/{row['images']}  "
                    f"peak RSS {row['peak_rss_mb']:.0f} MB",
                    flush=True,
                )
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(scratch, ignore_errors=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"command": " ".join(sys.argv), "rows": rows}, indent=2))
    print(f"reproduce: /work/venv/bin/python bench/fetch_bench.py {' '.join(sys.argv[1:])}")
    print(f"results written to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
