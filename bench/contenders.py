"""The contenders the harness times, each as: prepare inputs → a command → verify the outputs.

Input: a scratch folder, the server's port and per-path stats, the corpus entries.
Output: `Prepared` (the command line, its cwd) and, after the run, a `Verification` that says how
many images were stored correctly — the throughput the harness reports counts only those.

- `Img2Dataset`: img2dataset on the plain URL list (`http://127.0.0.1:PORT/img/NNNNN.jpg`),
  download + resize to 256 px, 2 processes x 64 threads, files output. It records the sha256 of
  the bytes it received per sample; we check that against what the server sent and that the
  resized file exists.
- `Harvester`: `harvester run` end to end on generated articles that reference the same paths
  through several CDN host names mapped to 127.0.0.1 with `--resolve`. Verified from its
  manifest: every URL ok, its sha256 equal to what the server sent for that path, the stored
  file's bytes hashing to it, and a thumbnail file present. The flags are taken from
  `harvester run --help`, so the harness works with whatever the command offers today and
  reports harvester as "not available" while `run` does not exist.
- the CPU floor is `cpu_floor.py`, run as a command too.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from make_articles import write_large_set, write_main_set

BENCH = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Prepared:
    cmd: list[str]
    cwd: Path
    expected: int  # images the run should store
    info: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Verification:
    ok: int  # images stored and verified
    expected: int
    problems: list[str]  # the first few, for humans
    problem_count: int
    details: dict = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return self.ok == self.expected and self.problem_count == 0


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class _Problems:
    def __init__(self, keep: int = 8) -> None:
        self.keep = keep
        self.items: list[str] = []
        self.count = 0

    def add(self, text: str) -> None:
        self.count += 1
        if len(self.items) < self.keep:
            self.items.append(text)


# --------------------------------------------------------------------------- img2dataset


class Img2Dataset:
    name = "img2dataset"

    def __init__(self, venv_bin: Path, processes: int = 2, threads: int = 64, size: int = 256):
        self.exe = venv_bin / "img2dataset"
        self.processes = processes
        self.threads = threads
        self.size = size

    def available(self) -> str | None:
        return None if self.exe.exists() else f"{self.exe} not installed"

    def prepare(self, scratch: Path, port: int, names: list[str]) -> Prepared:
        scratch.mkdir(parents=True, exist_ok=True)
        urls = scratch / "urls.txt"
        urls.write_text("".join(f"http://127.0.0.1:{port}/img/{n}\n" for n in names))
        # Several shards per process, or one process idles (its default shard is 10,000 URLs).
        shard = max(50, len(names) // (self.processes * 4))
        cmd = [
            str(self.exe),
            "--url_list", str(urls),
            "--output_folder", str(scratch / "out"),
            "--processes_count", str(self.processes),
            "--thread_count", str(self.threads),
            "--image_size", str(self.size),
            "--resize_mode", "border",
            "--output_format", "files",
            "--input_format", "txt",
            "--number_sample_per_shard", str(shard),
            "--timeout", "20",
            "--retries", "0",
            "--enable_wandb", "False",
        ]  # fmt: skip
        return Prepared(cmd, scratch, len(names), {"shard_size": shard})

    def verify(self, prep: Prepared, served: dict) -> Verification:
        out = prep.cwd / "out"
        problems = _Problems()
        ok = 0
        own_rate = []
        for stats_file in sorted(out.glob("*_stats.json")):
            stats = json.loads(stats_file.read_text())
            if stats.get("duration"):
                own_rate.append((stats["successes"], stats["duration"]))
        for meta in sorted(out.glob("*/*.json")):
            sample = json.loads(meta.read_text())
            if sample.get("status") != "success":
                problems.add(f"{sample.get('url')}: {sample.get('error_message')}")
                continue
            path = urlsplit(sample["url"]).path
            sent = served.get(path, {}).get("sha256")
            if sent is None or sample.get("sha256") != sent:
                problems.add(f"{sample['url']}: sha256 {sample.get('sha256')} != served {sent}")
                continue
            if not meta.with_suffix(".jpg").is_file():
                problems.add(f"{sample['url']}: resized file missing")
                continue
            ok += 1
        if ok < prep.expected and problems.count == 0:
            problems.add(f"only {ok} of {prep.expected} samples written")
        return Verification(ok, prep.expected, problems.items, problems.count, {})


# --------------------------------------------------------------------------- harvester


@dataclass(frozen=True)
class HarvesterCli:
    """What `harvester run --help` offers, so the command line follows the code."""

    available: bool
    why: str | None
    options: frozenset[str]


def probe_harvester(exe: Path) -> HarvesterCli:
    if not exe.exists():
        return HarvesterCli(False, f"{exe} not installed", frozenset())
    try:
        env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}  # no wrapped option names
        proc = subprocess.run(
            [str(exe), "run", "--help"], capture_output=True, text=True, timeout=60, env=env
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return HarvesterCli(False, f"harvester run --help failed: {exc}", frozenset())
    if proc.returncode != 0:
        # typer draws its usage errors in a box; keep the words ("No such command 'run'.")
        words = [line.strip(" │╭╮╰╯─\t") for line in (proc.stderr + proc.stdout).splitlines()]
        message = next(
            (w for w in reversed(words) if w and not w.startswith(("Try", "Usage"))),
            f"exit {proc.returncode}",
        )
        return HarvesterCli(False, f"`harvester run` not available yet ({message})", frozenset())
    return HarvesterCli(True, None, parse_help_options(proc.stdout))


def parse_help_options(text: str) -> frozenset[str]:
    """Long options in a click/typer help text ("--json/--no-json" gives both names)."""
    names = set()
    for word in text.replace("│", " ").replace(",", " ").split():
        for part in word.split("/"):
            part = part.split("=")[0].rstrip(".:;)")
            if part.startswith("--") and len(part) > 2:
                names.add(part)
    return frozenset(names)


class Harvester:
    def __init__(
        self,
        venv_bin: Path,
        size: int = 256,
        hosts: int | None = 8,
        extra_args: tuple[str, ...] = (),
        exe: Path | None = None,
        name: str = "harvester",
    ) -> None:
        self.name = name
        self.exe = exe or venv_bin / "harvester"
        self.size = size
        self.hosts = hosts
        self.extra_args = extra_args
        self.cli = probe_harvester(self.exe)
        self.missing_flags: list[str] = []

    def available(self) -> str | None:
        return None if self.cli.available else self.cli.why

    def _command(self, articles: Path, scratch: Path, port: int) -> list[str]:
        cmd = [
            str(self.exe), "run", str(articles),
            "--out", str(scratch / "assets"),
            "--manifest", str(scratch / "manifest.json"),
        ]  # fmt: skip
        wanted: list[tuple[str, list[str]]] = [
            ("--resolve", ["--resolve", f"*:{port}:127.0.0.1"]),
            ("--allow-private-addresses", ["--allow-private-addresses"]),
            ("--thumbnail-size", ["--thumbnail-size", str(self.size)]),
            ("--quiet", ["--quiet"]),
            ("--json", ["--json"]),
        ]
        missing = []
        for flag, args in wanted:
            if flag in self.cli.options:
                cmd += args
            elif flag == "--thumbnail-size" and "--thumbnail-sizes" in self.cli.options:
                cmd += ["--thumbnail-sizes", str(self.size)]
            else:
                missing.append(flag)
        self.missing_flags = missing
        return cmd + list(self.extra_args)

    def prepare(self, scratch: Path, port: int, names: list[str]) -> Prepared:
        articles = scratch / "articles"
        stats = write_main_set(articles, names, port, self.hosts)
        urls = stats.pop("urls")
        (scratch / "urls.json").write_text(json.dumps(urls))
        cmd = self._command(articles, scratch, port)
        return Prepared(cmd, scratch, len(urls), {**stats, "missing_flags": self.missing_flags})

    def prepare_large(
        self, scratch: Path, port: int, articles: int, refs: int, unique: int
    ) -> Prepared:
        folder = scratch / "articles"
        stats = write_large_set(folder, port, articles, refs, unique, hosts=self.hosts)
        cmd = self._command(folder, scratch, port)
        return Prepared(
            cmd, scratch, stats["unique_urls"], {**stats, "missing_flags": self.missing_flags}
        )

    def verify(self, prep: Prepared, served: dict, urls: list[str] | None = None) -> Verification:
        """Check the manifest against the server's record and the files on disk."""
        problems = _Problems()
        manifest_path = prep.cwd / "manifest.json"
        if not manifest_path.is_file():
            problems.add("no manifest.json written")
            return Verification(0, prep.expected, problems.items, problems.count)
        manifest = json.loads(manifest_path.read_text())
        base = manifest_path.parent
        url_records = manifest.get("urls", {})
        assets = manifest.get("assets", {})
        if urls is None:
            urls = json.loads((prep.cwd / "urls.json").read_text())
        ok = 0
        thumbs_checked = 0
        for url in urls:
            rec = url_records.get(url)
            if rec is None:
                problems.add(f"{url}: not in manifest")
                continue
            if rec.get("status") != "ok":
                problems.add(f"{url}: status {rec.get('status')} {rec.get('reason')}")
                continue
            sha = rec.get("sha256")
            sent = served.get(urlsplit(url).path, {}).get("sha256")
            if sha != sent:
                problems.add(f"{url}: manifest sha256 {sha} != served {sent}")
                continue
            asset = assets.get(sha)
            if asset is None or not asset.get("path"):
                problems.add(f"{url}: no asset record for {sha}")
                continue
            stored = base / asset["path"]
            if not stored.is_file() or _sha256_file(stored) != sha:
                problems.add(f"{url}: stored file {asset['path']} missing or wrong bytes")
                continue
            if not self._thumbnail_exists(asset, assets, base):
                problems.add(f"{url}: no {self.size}px thumbnail file on disk")
                continue
            thumbs_checked += 1
            ok += 1
        return Verification(
            ok, len(urls), problems.items, problems.count, {"thumbnails_verified": thumbs_checked}
        )

    def _thumbnail_exists(self, asset: dict, assets: dict, base: Path) -> bool:
        # Without a thumbnail-size flag harvester makes its default size: accept any size then.
        any_size = "--thumbnail-size" in self.missing_flags
        # A merged near-duplicate may rely on its canonical's thumbnail.
        for candidate in (asset, assets.get(asset.get("duplicate_of") or "", {})):
            for thumb in candidate.get("thumbnails") or []:
                size_ok = any_size or thumb.get("size") == self.size
                if size_ok and thumb.get("path") and (base / thumb["path"]).is_file():
                    return True
        return False


def find_number(summary: dict | None, paths: list[tuple[str, ...]]) -> float | None:
    """The first numeric value found at one of `paths` in harvester's --json summary."""
    if not isinstance(summary, dict):
        return None
    for path in paths:
        node: object = summary
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, (int, float)) and not isinstance(node, bool):
            return float(node)
    return None


# Where the harness looks in `harvester run --json` output (first match wins).
FETCH_CPU_PATHS = [
    ("stages", "fetch", "cpu_seconds"),
    ("fetch", "cpu_seconds"),
    ("timings", "fetch_cpu_seconds"),
    ("fetch_cpu_seconds",),
]
CONNECTIONS_PATHS = [
    ("stages", "fetch", "connections"),
    ("fetch", "connections"),
    ("connections",),
]
PROCESS_WALL_PATHS = [
    ("stages", "process", "wall_seconds"),
    ("process", "wall_seconds"),
    ("timings", "process_seconds"),
]


def parse_json_summary(stdout: str) -> dict | None:
    """The last JSON object printed on stdout (harvester --json), if any."""
    text = stdout.strip()
    if not text:
        return None
    try:
        value = json.loads(text)
        return value if isinstance(value, dict) else None
    except json.JSONDecodeError:
        pass
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                return value
    return None
