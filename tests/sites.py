"""Helpers for the `harvester run` tests that drive the real CLI in a subprocess.

In: a folder to fill, a running `TestServer` (HTTPS, trusted through a CA bundle). Out: posts
written in the style of an RSS-to-Hexo generator (front-matter cover, `<img referrerpolicy>`,
Markdown images), the matching image routes on the server (real encoded JPEG/PNG files), the
command line that reaches the server through `--resolve`, and checks a user cares about
(which articles changed, temp files left behind, remote references still in an article).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from tests.servers import NAMES, TestServer, encoded_image, image_reply

WORKTREE = Path(__file__).resolve().parents[1]

# Fail fast in the subprocess: the test servers answer at once or not at all.
FAST_CONFIG = """\
retries = 1
backoff_base = 0.01
backoff_max = 0.05
connect_timeout = 5.0
read_timeout = 10.0
total_timeout = 20.0
"""

POST = """\
---
title: '{title}'
date: 2026-11-{day:02d} 08:00:00
headimg: 'https://{host}/img/{first}'
tags:
  - feed
---

<div>
<p align="center"><img src="https://{host}/img/{first}" width="530"
   referrerpolicy="no-referrer"></p>
<p>Post number {n}. {filler}</p>
<p><img src="https://{host}/img/{second}" referrerpolicy="no-referrer"><br></p>
</div>

A Markdown picture too: ![shared](https://{host}/img/{shared} "shared")
"""

FILLER = "Some words the generator copied from the feed, kept as they are. " * 4


def image_names(count: int) -> list[str]:
    return [f"p{i:03d}.{'png' if i % 5 == 0 else 'jpg'}" for i in range(count)]


def serve_images(server: TestServer, names: Iterable[str], seed: int = 100) -> dict[str, bytes]:
    """Route `/img/<name>` to a real, distinct image for each name; return name → bytes."""
    served = {}
    for i, name in enumerate(names):
        if name.endswith(".png"):
            data = encoded_image("PNG", (96 + i % 7, 64), seed=seed + i)
            server.route(f"/img/{name}", image_reply(data, "image/png"))
        else:
            data = encoded_image("JPEG", (120 + i % 11, 90), seed=seed + i)
            server.route(f"/img/{name}", image_reply(data))
        served[name] = data
    return served


def write_posts(
    folder: Path, host: str, names: Sequence[str], count: int, *, prefix: str = "post"
) -> dict[Path, bytes]:
    """`count` posts in `folder/<category>/`, each using two of `names` plus a shared one.

    Posts cycle through the images, so with count = len(names) / 2 every image is used once
    as a lead or second picture; more posts reuse them (more articles to rewrite, no more
    downloads). Returns path → original bytes.
    """
    written = {}
    for n in range(count):
        first = names[(2 * n) % len(names)]
        second = names[(2 * n + 1) % len(names)]
        path = folder / f"cat{n % 3}" / f"{prefix}-{n:04d}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        text = POST.format(
            title=f"{prefix} {n}",
            day=1 + n % 28,
            host=host,
            first=first,
            second=second,
            shared=names[0],
            n=n,
            filler=FILLER,
        )
        path.write_text(text, encoding="utf-8")
        written[path] = path.read_bytes()
    return written


def snapshot(paths: Iterable[Path]) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in paths}


def network_args(server: TestServer, ca_bundle: Path) -> list[str]:
    args = []
    for entry in server.resolve_entries(NAMES):
        args += ["--resolve", entry]
    return [*args, "--allow-private-addresses", "--ca-bundle", str(ca_bundle)]


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(WORKTREE) + os.pathsep + env.get("PYTHONPATH", "")
    env["NO_COLOR"] = "1"
    env["COLUMNS"] = "200"
    return env


def harvester(*args: str) -> list[str]:
    return [sys.executable, "-m", "harvester", *args]


def run_cli(
    args: Sequence[str], cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run `python -m harvester ARGS` to the end in `cwd`; output captured as text."""
    return subprocess.run(
        harvester(*args),
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_cli(args: Sequence[str], cwd: Path) -> subprocess.Popen[bytes]:
    """Start `python -m harvester ARGS` in its own process group (to find stray workers)."""
    return subprocess.Popen(
        harvester(*args),
        cwd=cwd,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.01) -> bool:
    """Poll `condition` until true or `timeout` seconds pass (a guard against hangs only)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(interval)
    return condition()


def wait_for_change(proc: subprocess.Popen, path: Path, before: bytes, timeout: float = 60):
    """Wait until `path` no longer holds `before` (or the process ended)."""
    return wait_until(
        lambda: proc.poll() is not None or path.read_bytes() != before, timeout, interval=0.002
    )


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - a reused id owned by someone else
        return False
    return True


def temp_leftovers(root: Path) -> list[Path]:
    """Files a crashed write could leave: store temp files (`<store>/.tmp/*`) and the
    atomic-write temp files beside articles and the manifest (`.<name>.harvester-tmp-*`)."""
    from mirror.rewrite import TEMP_MARKER

    found = []
    for path in root.rglob("*"):
        if path.is_file() and (TEMP_MARKER in path.name or ".tmp" in path.parts):
            found.append(path)
    return sorted(found)


def load_manifest(path: Path) -> dict:
    """Parse and schema-validate a manifest file (raises if either fails)."""
    from mirror.manifest import validate

    data = json.loads(path.read_text(encoding="utf-8"))
    validate(data)
    return data


def remote_urls(paths: Iterable[Path]) -> list[str]:
    """Remote image URLs the scanner still finds in `paths` (what is not mirrored)."""
    from harvester.extract import scan_paths
    from harvester.settings import Settings

    return [ref.url for r in scan_paths(list(paths), Settings()) for ref in r.refs]


def local_targets_exist(manifest_path: Path) -> list[str]:
    """Rewritten references whose local file is missing (should be none)."""
    data = json.loads(manifest_path.read_text(encoding="utf-8"))
    folder = manifest_path.parent
    missing = []
    for rel, article in data["articles"].items():
        for ref in article["refs"]:
            local = ref.get("local")
            relative = local and not local.startswith("/")
            if relative and not ((folder / rel).parent / local).is_file():
                missing.append(f"{rel}: {local}")
    return missing
