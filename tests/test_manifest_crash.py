"""Write-ahead under SIGKILL: a rewriter killed at random instants never leaves a half-written
article, a manifest that cannot explain a rewritten file, or a manifest that does not parse; a
final run completes the job and `restore` still gives back every original byte.

The rewriter here is the write-ahead protocol exactly as docs/manifest.md prescribes it
(plan a batch → save → replace each article atomically → mark), over the real mirror APIs.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harvester import maintenance
from mirror.manifest import Manifest, validate
from mirror.rewrite import TEMP_MARKER

ROOT = Path(__file__).resolve().parents[1]
N_ARTICLES = 24

REWRITER = r"""
import hashlib, sys
from pathlib import Path
from mirror.manifest import Manifest
from mirror.records import Edit
from mirror.rewrite import apply_edits, remove_stale_temps, write_bytes_atomic

site = Path(sys.argv[1])
# validated saves (as before the default limit dropped to 5,000) keep the job long enough
# for the random kills below to land inside it
m = Manifest.load(site / "manifest.json", validate_limit=20_000)
m.resolve_planned()                      # settle what a killed run left behind
remove_stale_temps(site / "posts")
print("ready", flush=True)
posts = sorted((site / "posts").glob("*.md"))
todo = [p for p in posts if (m.article(m.rel(p)) or {}).get("state") != "rewritten"]
for i in range(0, len(todo), 4):         # batches of 4 articles per manifest save
    batch = []
    for path in todo[i : i + 4]:
        data = path.read_bytes()
        text = data.decode("utf-8")
        edits, at = [], text.find("https://img.example.com/")
        while at != -1:
            end = text.index(")", at)
            url = text[at:end]
            local = "../assets/" + hashlib.sha256(url.encode()).hexdigest() + ".jpg"
            edits.append(Edit(at, end, url, local))
            at = text.find("https://img.example.com/", end)
        new = apply_edits(text, edits).encode("utf-8")
        m.plan_article(m.rel(path), encoding="utf-8", bom=False, newline="\n",
                       original_sha256=hashlib.sha256(data).hexdigest(),
                       rewritten_sha256=hashlib.sha256(new).hexdigest(),
                       refs=[{"kind": "markdown-inline", "url": e.old, "original": e.old,
                              "local": e.new, "status": "ok", "line": 1} for e in edits],
                       edits=edits, text=text)
        batch.append((path, new))
    m.save()                             # the plans are on disk before any file changes
    for path, new in batch:
        write_bytes_atomic(path, new)
        m.mark_rewritten(m.rel(path))
m.save()
print("done", flush=True)
"""


def _article(n: int) -> str:
    # big enough that a kill often lands inside a write
    body = "".join(
        f"Paragraph {k} of post {n}: 中文 text and more text.\n\n"
        f"![figure {k}](https://img.example.com/{n}/{k}.jpg)\n\n"
        for k in range(400)
    )
    return f"---\ntitle: Post {n}\n---\n{body}"


def _expected_rewrite(text: str) -> str:
    out, at = [], 0
    while (start := text.find("https://img.example.com/", at)) != -1:
        end = text.index(")", start)
        url = text[start:end]
        out.append(text[at:start])
        out.append("../assets/" + hashlib.sha256(url.encode()).hexdigest() + ".jpg")
        at = end
    out.append(text[at:])
    return "".join(out)


def _start(site: Path) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-c", REWRITER, str(site)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _check_consistent(site: Path, originals: dict[str, bytes], rewritten: dict[str, bytes]):
    raw = (site / "manifest.json").read_bytes() if (site / "manifest.json").exists() else None
    data = json.loads(raw) if raw else {"articles": {}}
    for rel, original in originals.items():
        current = (site / rel).read_bytes()
        assert current in (original, rewritten[rel]), f"{rel} is half-written"
        if current == rewritten[rel]:
            # write-ahead: a replaced file is always explained by the manifest on disk
            entry = data["articles"].get(rel)
            assert entry is not None and entry["state"] in ("planned", "rewritten"), rel
            assert entry["rewritten_sha256"] == hashlib.sha256(current).hexdigest()


@pytest.mark.slow
def test_sigkill_at_random_instants_never_loses_or_half_writes(tmp_path):
    site = tmp_path / "site"
    (site / "posts").mkdir(parents=True)
    originals: dict[str, bytes] = {}
    rewritten: dict[str, bytes] = {}
    for n in range(N_ARTICLES):
        text = _article(n)
        rel = f"posts/post-{n:02d}.md"
        (site / rel).write_bytes(text.encode())
        originals[rel] = text.encode()
        rewritten[rel] = _expected_rewrite(text).encode()

    rng = random.Random(20261128)
    kills = 0
    for _ in range(12):
        proc = _start(site)
        line = proc.stdout.readline().strip()
        assert line == "ready", proc.stderr.read()
        time.sleep(rng.uniform(0.0, 0.6))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        _check_consistent(site, originals, rewritten)
        Manifest.load(site / "manifest.json")  # always parseable, never moved aside
    assert kills >= 6  # most runs really were killed mid-job

    proc = _start(site)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert out.split() == ["ready", "done"]
    for rel in originals:
        assert (site / rel).read_bytes() == rewritten[rel]
    assert not [p for p in (site / "posts").iterdir() if TEMP_MARKER in p.name]
    data = json.loads((site / "manifest.json").read_text())
    validate(data)
    assert {e["state"] for e in data["articles"].values()} == {"rewritten"}

    report = maintenance.restore(site / "manifest.json")
    assert report.count("restored") == N_ARTICLES
    for rel, original in originals.items():
        assert (site / rel).read_bytes() == original
