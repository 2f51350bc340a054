"""A person's verdict on two pictures → the manifest's `decisions` key.

Input: a manifest path, a verdict ("same", "different" or "forget") and two sha256 values or
unambiguous prefixes of assets in the manifest. Output: the manifest rewritten atomically with
only `decisions` changed: `{"same": [[a, b], ...], "different": [[a, b], ...]}`, each pair
sorted and the lists sorted, so later runs (dedupe's `Decisions(same, different)`) respect it.

It does not need the run lock (a person may decide while a nightly run holds it): it re-reads
the manifest just before writing, replaces the file in one `os.replace`, and touches nothing
but `decisions`. It takes the lock when it is free, so no run starts halfway through; when a
run holds it, the result says so (`run_in_progress`), because that run's own save may still
write its older copy of the manifest over this one. A pair has at most one verdict; the newest
wins.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harvester.errors import LockHeld, ManifestError, UsageError
from harvester.locking import run_lock
from harvester.report import load_manifest_data

VERDICTS = ("same", "different", "forget")
MIN_PREFIX = 6


@dataclass(frozen=True)
class DecisionResult:
    verdict: str
    pair: tuple[str, str]
    previous: str | None  # the verdict this pair had before, if any
    changed: bool
    run_in_progress: bool = False  # a run held the lock: it may overwrite this when it saves


def resolve_sha(assets: dict[str, Any], value: str) -> str:
    """A full sha256 or an unambiguous prefix (≥ 6 hex digits) of an asset in the manifest."""
    needle = value.strip().lower()
    if len(needle) < MIN_PREFIX or any(c not in "0123456789abcdef" for c in needle):
        raise UsageError(
            f"{value!r} is not a sha256 or a prefix of at least {MIN_PREFIX} hex digits"
        )
    if needle in assets:
        return needle
    matches = sorted(sha for sha in assets if sha.startswith(needle))
    if not matches:
        raise UsageError(f"no asset in the manifest starts with {needle}")
    if len(matches) > 1:
        shown = ", ".join(m[:16] for m in matches[:5])
        raise UsageError(f"{needle} is ambiguous: {len(matches)} assets match ({shown}…)")
    return matches[0]


def _pairs(decisions: dict[str, Any], verdict: str) -> set[tuple[str, str]]:
    pairs: set[tuple[str, str]] = set()
    for item in decisions.get(verdict) or []:
        if isinstance(item, list) and len(item) == 2 and all(isinstance(s, str) for s in item):
            a, b = sorted(item)
            pairs.add((a, b))
    return pairs


def record_decision(manifest_path: Path, verdict: str, first: str, second: str) -> DecisionResult:
    """Record (or with "forget", remove) a verdict on two assets; see the module docstring."""
    if verdict not in VERDICTS:
        raise UsageError(f"verdict must be one of {', '.join(VERDICTS)}, not {verdict!r}")
    data = load_manifest_data(manifest_path)
    assets = data.get("assets") if isinstance(data.get("assets"), dict) else {}
    a = resolve_sha(assets, first)
    b = resolve_sha(assets, second)
    if a == b:
        raise UsageError(f"both arguments name the same asset {a[:16]}")
    pair = (a, b) if a < b else (b, a)

    raw = data.get("decisions")
    decisions: dict[str, Any] = raw if isinstance(raw, dict) else {}
    same, different = _pairs(decisions, "same"), _pairs(decisions, "different")
    previous = "same" if pair in same else "different" if pair in different else None
    same.discard(pair)
    different.discard(pair)
    if verdict == "same":
        same.add(pair)
    elif verdict == "different":
        different.add(pair)
    new_value = {
        **decisions,
        "same": [list(p) for p in sorted(same)],
        "different": [list(p) for p in sorted(different)],
    }
    changed = new_value != decisions or not isinstance(raw, dict)
    if verdict == "forget" and previous is None:
        changed = False
    busy = False
    if changed:
        try:
            with run_lock(manifest_path):
                _replace_key(manifest_path, "decisions", new_value)
        except LockHeld:
            busy = True
            _replace_key(manifest_path, "decisions", new_value)
    return DecisionResult(verdict, pair, previous, changed, busy)


def _replace_key(manifest_path: Path, key: str, value: Any) -> None:
    """Re-read the manifest, set one key, write it back atomically (same folder, same mode)."""
    from mirror.manifest import Manifest
    from mirror.rewrite import RewriteError, write_bytes_atomic

    data = load_manifest_data(manifest_path)  # the newest copy: a run may have saved meanwhile
    data[key] = value
    # Manifest.serialize: the layout every save writes, so the diff is only this key.
    try:
        write_bytes_atomic(manifest_path, Manifest(manifest_path, data).serialize())
    except (OSError, RewriteError) as exc:
        raise ManifestError(f"cannot write the manifest {manifest_path}: {exc}") from exc
