"""A small, fast HTTP/1.1 image server for the benchmark, bound to 127.0.0.1 only.

Input: a corpus folder made by `make_corpus.py` (its `index.json` and JPEG files), loaded into
memory once. Output: HTTP responses, and counters the harness reads to verify what was stored.

Routes (GET and HEAD, keep-alive by default as HTTP/1.1 says):
  /img/NNNNN.jpg    corpus image NNNNN
  /a/K.jpg          alias: corpus image K mod N (many distinct URLs, repeated content)
  /__stats          JSON: requests, bytes, connections opened, peak open connections, server
                    CPU seconds, and per path {count, bytes, sha256} of the bodies fully sent
  /__reset          zero the counters (between benchmark runs)
Anything else is a 404. Every image response is delayed by a per-request latency drawn
uniformly from --latency-ms (default 20-50), seeded, as a remote CDN would be.

It is raw asyncio (no framework): bodies are prebuilt bytes and headers are precomputed, so a
request costs well under a millisecond of CPU; `--selftest` measures that (see README).

Usage:
  python bench/image_server.py --corpus DIR [--port 0] [--latency-ms 20-50]
  python bench/image_server.py --corpus DIR --selftest [--connections 64] [--seconds 5]
The first stdout line is `listening on http://127.0.0.1:PORT`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import signal
import sys
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path

HOST = "127.0.0.1"  # never anything else: the benchmark talks to this machine only


@dataclass
class Stats:
    requests: int = 0
    image_responses: int = 0
    not_found: int = 0
    bytes_sent: int = 0
    connections_opened: int = 0
    open_connections: int = 0
    peak_open_connections: int = 0
    aborted_sends: int = 0
    per_path: dict[str, list] = field(default_factory=dict)  # path -> [count, bytes]
    started: float = field(default_factory=time.monotonic)
    cpu_at_reset: float = 0.0


def _cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


class Corpus:
    """The images in memory, with their precomputed response heads."""

    def __init__(self, folder: Path) -> None:
        index = json.loads((folder / "index.json").read_text())["images"]
        self.names = [e["name"] for e in index]
        self.sha256 = [e["sha256"] for e in index]
        self.bodies = [(folder / name).read_bytes() for name in self.names]
        self.by_name = {name: i for i, name in enumerate(self.names)}
        mtime = formatdate(1_700_000_000, usegmt=True)
        self.heads = [
            (
                "HTTP/1.1 200 OK\r\n"
                "Content-Type: image/jpeg\r\n"
                f"Content-Length: {len(body)}\r\n"
                f'ETag: "{sha[:16]}"\r\n'
                f"Last-Modified: {mtime}\r\n"
                "Cache-Control: max-age=86400\r\n"
            ).encode()
            for body, sha in zip(self.bodies, self.sha256, strict=True)
        ]

    def lookup(self, path: str) -> int | None:
        if path.startswith("/img/"):
            return self.by_name.get(path[5:])
        if path.startswith("/a/") and path.endswith(".jpg"):
            key = path[3:-4]
            if key.isdigit():
                return int(key) % len(self.names)
        return None


class ImageServer:
    def __init__(self, corpus: Corpus, latency_ms: tuple[float, float], seed: int = 7) -> None:
        self.corpus = corpus
        self.low = latency_ms[0] / 1000.0
        self.high = latency_ms[1] / 1000.0
        self.rng = random.Random(seed)
        self.stats = Stats(cpu_at_reset=_cpu_seconds())

    def snapshot(self) -> dict:
        s = self.stats
        corpus = self.corpus
        per_path = {}
        for path, (count, nbytes) in s.per_path.items():
            idx = corpus.lookup(path)
            per_path[path] = {
                "count": count,
                "bytes": nbytes,
                "sha256": corpus.sha256[idx] if idx is not None else None,
            }
        return {
            "requests": s.requests,
            "image_responses": s.image_responses,
            "not_found": s.not_found,
            "bytes_sent": s.bytes_sent,
            "connections_opened": s.connections_opened,
            "open_connections": s.open_connections,
            "peak_open_connections": s.peak_open_connections,
            "aborted_sends": s.aborted_sends,
            "seconds": time.monotonic() - s.started,
            "server_cpu_seconds": _cpu_seconds() - s.cpu_at_reset,
            "per_path": per_path,
        }

    def reset(self) -> None:
        # Keep-alive connections that outlive a reset are counted again when next used.
        self.stats = Stats(cpu_at_reset=_cpu_seconds())

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A connection counts once it asks for an image: the harness's own /__stats and
        # /__reset calls must not show up in a contender's connection count.
        conn = {"counted": False, "stats": None}
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
                    return
                keep_alive = await self._respond(head, reader, writer, conn)
                if not keep_alive:
                    return
        finally:
            if conn["counted"] and conn["stats"] is self.stats:
                self.stats.open_connections = max(0, self.stats.open_connections - 1)
            writer.close()

    def _count_connection(self, conn: dict) -> None:
        s = self.stats
        if conn["counted"] and conn["stats"] is s:
            return
        conn["counted"], conn["stats"] = True, s
        s.connections_opened += 1
        s.open_connections += 1
        s.peak_open_connections = max(s.peak_open_connections, s.open_connections)

    async def _respond(
        self,
        head: bytes,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        conn: dict,
    ) -> bool:
        stats = self.stats
        lines = head.decode("latin-1").split("\r\n")
        try:
            method, target, version = lines[0].split(" ", 2)
        except ValueError:
            writer.write(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            return False
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0") or 0)
        if length:
            await reader.readexactly(length)  # no route takes a body; discard it
        conn_header_in = headers.get("connection", "").lower()
        keep_alive = (version == "HTTP/1.1" and conn_header_in != "close") or (
            conn_header_in == "keep-alive"
        )
        conn_header = (
            b"Connection: keep-alive\r\n\r\n" if keep_alive else b"Connection: close\r\n\r\n"
        )
        path = target.split("?", 1)[0]
        if path == "/__stats" or path == "/__reset":
            if path == "/__reset":
                self.reset()
                body = b'{"reset": true}'
            else:
                body = json.dumps(self.snapshot()).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n".encode()
                + conn_header
                + body
            )
            await writer.drain()
            return keep_alive

        if self.high > 0:
            await asyncio.sleep(self.rng.uniform(self.low, self.high))
        stats = self.stats  # a /__reset may have happened while we slept
        self._count_connection(conn)
        stats.requests += 1
        idx = self.corpus.lookup(path) if method in ("GET", "HEAD") else None
        if idx is None:
            stats.not_found += 1
            writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n" + conn_header)
            await writer.drain()
            return keep_alive
        body = self.corpus.bodies[idx]
        writer.write(self.corpus.heads[idx] + conn_header)
        if method == "GET":
            writer.write(body)
        try:
            await writer.drain()
        except ConnectionError:
            stats.aborted_sends += 1
            return False
        sent = len(body) if method == "GET" else 0
        stats.image_responses += 1
        stats.bytes_sent += sent
        entry = stats.per_path.get(path)
        if entry is None:
            stats.per_path[path] = [1, sent]
        else:
            entry[0] += 1
            entry[1] += sent
        return keep_alive


def parse_latency(text: str) -> tuple[float, float]:
    low, _, high = text.partition("-")
    lo = float(low)
    hi = float(high) if high else lo
    if lo < 0 or hi < lo:
        raise argparse.ArgumentTypeError(f"bad latency range {text!r}: want LOW-HIGH in ms")
    return lo, hi


async def serve(args: argparse.Namespace) -> None:
    server_obj = ImageServer(Corpus(args.corpus), args.latency_ms, args.seed)
    server = await asyncio.start_server(
        server_obj.handle, HOST, args.port, backlog=1024, reuse_address=True
    )
    port = server.sockets[0].getsockname()[1]
    print(f"listening on http://{HOST}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()
    if args.stats_out:
        Path(args.stats_out).write_text(json.dumps(server_obj.snapshot()))


# ---------------------------------------------------------------- self-test (capacity check)


async def _client(port: int, paths: list[str], deadline: float, counts: list[int]) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    i = 0
    try:
        while time.monotonic() < deadline:
            path = paths[i % len(paths)]
            i += 1
            writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            counts[0] += 1
            counts[1] += length
    finally:
        writer.close()


async def _get_json(port: int, path: str) -> dict:
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode())
    data = await reader.read()
    writer.close()
    return json.loads(data.split(b"\r\n\r\n", 1)[1])


async def selftest(port: int, paths: list[str], connections: int, seconds: float) -> dict:
    await _get_json(port, "/__reset")
    counts = [0, 0]
    deadline = time.monotonic() + seconds
    start = time.monotonic()
    chunk = max(1, len(paths) // connections)
    await asyncio.gather(
        *(
            _client(port, paths[i * chunk :] + paths[: i * chunk], deadline, counts)
            for i in range(connections)
        )
    )
    wall = time.monotonic() - start
    stats = await _get_json(port, "/__stats")
    return {
        "connections": connections,
        "requests": counts[0],
        "requests_per_s": round(counts[0] / wall, 1),
        "megabytes_per_s": round(counts[1] / wall / 1e6, 1),
        "server_cpu_ms_per_request": round(
            1000 * stats["server_cpu_seconds"] / max(1, stats["image_responses"]), 3
        ),
    }


def run_selftest(args: argparse.Namespace) -> None:
    """Start a server process, load it from this process, report capacity per latency."""
    import subprocess

    corpus = Corpus(args.corpus)
    paths = [f"/img/{n}" for n in corpus.names]
    del corpus
    results = []
    for latency in ("0", "20-50"):
        proc = subprocess.Popen(
            [sys.executable, __file__, "--corpus", str(args.corpus), "--latency-ms", latency],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            port = int(proc.stdout.readline().rsplit(":", 1)[1])
            res = asyncio.run(selftest(port, paths, args.connections, args.seconds))
            results.append({"latency_ms": latency, **res})
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
    print(json.dumps({"selftest": results, "cores": os.cpu_count()}, indent=1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency-ms", type=parse_latency, default=(20.0, 50.0))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--stats-out", type=Path, help="write the final stats here on exit")
    parser.add_argument("--selftest", action="store_true", help="measure capacity and exit")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    if args.selftest:
        run_selftest(args)
    else:
        asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
