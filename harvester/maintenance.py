"""Maintenance over an existing manifest: restore articles, verify the store, collect garbage.

Input: the manifest path (and, for `restore`, the article paths to consider). Output: report
records (`RestoreReport`, `VerifyReport`, `GcReport`) the CLI prints as text or JSON. Every
function takes the run lock beside the manifest, so none of them runs alongside `run` or each
other, and each saves the manifest atomically when it changed anything.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from harvester.articles import decode_text, encode_text
from harvester.errors import ManifestError, UsageError
from harvester.locking import run_lock
from mirror.manifest import (
    Manifest,
    ManifestCorrupt,
    ManifestSaveError,
    ManifestVersionError,
    parse_iso,
    sha256_file,
)
from mirror.records import RecordedEdit
from mirror.rewrite import (
    UnsafeArticle,
    check_replaceable,
    remove_stale_temps,
    restore_text,
    write_bytes_atomic,
)

# --------------------------------------------------------------------------- shared


def missing_manifest_hint() -> str:
    """What to do about a missing manifest; a site run with a preset keeps it elsewhere."""
    from harvester.presets import MANIFEST_RELPATH

    if MANIFEST_RELPATH.is_file():
        return (
            f"this site's is {MANIFEST_RELPATH}, where --preset keeps it: add --preset auto "
            f"(or --manifest {MANIFEST_RELPATH})"
        )
    return "run `harvester run` first, or pass --manifest FILE"


def open_manifest(path: Path, *, must_exist: bool = True, read_only: bool = False) -> Manifest:
    """Load the manifest, turning its problems into `ManifestError`s that say what to do.

    `read_only` commands (verify, dry runs) report a corrupt manifest but leave it in place;
    commands that will write a new one move it aside first, so it is never overwritten.
    """
    path = Path(path)
    if must_exist and not path.is_file():
        raise UsageError(f"no manifest at {path}: {missing_manifest_hint()}")
    try:
        return Manifest.load(path, move_aside=not read_only)
    except ManifestCorrupt as exc:
        moved = f" It was moved aside to {exc.moved_to}." if exc.moved_to else ""
        raise ManifestError(
            f"the manifest {path} is corrupt ({exc.problem}).{moved} Restore it from a backup, "
            "or run `harvester run` to build a new one (rewritten articles then cannot be "
            "restored from it)."
        ) from exc
    except ManifestVersionError as exc:
        raise ManifestError(str(exc)) from exc


def save_manifest(manifest: Manifest) -> None:
    try:
        manifest.save()
    except ManifestSaveError as exc:
        raise UsageError(str(exc)) from exc


def parse_duration(text: str) -> timedelta:
    """`30d`, `12h`, `90m`, `1h30m`, `0` → timedelta (see `harvester.units.parse_duration`)."""
    from harvester.units import parse_duration as seconds_of

    return timedelta(seconds=seconds_of(text, name="--grace"))


# --------------------------------------------------------------------------- encoding

# --------------------------------------------------------------------------- restore


@dataclass(frozen=True)
class ArticleRestore:
    path: str  # as recorded in the manifest
    status: str  # "restored" | "partial" | "already-original" | "missing" | "skipped" | "error"
    restored: int = 0
    unrestored: tuple[dict[str, Any], ...] = ()
    message: str = ""


@dataclass
class RestoreReport:
    articles: list[ArticleRestore] = field(default_factory=list)
    dry_run: bool = False
    planned_resolved: dict[str, str] = field(default_factory=dict)

    def count(self, status: str) -> int:
        return sum(1 for a in self.articles if a.status == status)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "restored": self.count("restored"),
            "partial": self.count("partial"),
            "already_original": self.count("already-original"),
            "missing": self.count("missing"),
            "skipped": self.count("skipped"),
            "errors": self.count("error"),
            "planned_resolved": self.planned_resolved,
            "articles": [
                {
                    "path": a.path,
                    "status": a.status,
                    "restored_spans": a.restored,
                    "unrestored": list(a.unrestored),
                    "message": a.message,
                }
                for a in self.articles
            ],
        }


def _under(path: Path, roots: Sequence[Path]) -> bool:
    text = os.path.abspath(path)
    for root in roots:
        base = os.path.abspath(root)
        if text == base or text.startswith(base.rstrip(os.sep) + os.sep):
            return True
    return False


def _restore_one(
    manifest: Manifest, rel: str, entry: dict[str, Any], dry_run: bool
) -> ArticleRestore:
    file = manifest.resolve(rel)
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        return ArticleRestore(rel, "missing", message="the article no longer exists")
    except OSError as exc:
        return ArticleRestore(rel, "error", message=f"cannot read: {exc.strerror}")
    current = hashlib.sha256(data).hexdigest()
    if current == entry["original_sha256"]:
        if not dry_run:
            manifest.mark_restored(rel)
        return ArticleRestore(rel, "already-original")
    try:
        text = decode_text(data, entry["encoding"], entry["bom"])
    except (LookupError, UnicodeError) as exc:
        return ArticleRestore(rel, "error", message=f"cannot decode as {entry['encoding']}: {exc}")
    edits = [RecordedEdit(e["start"], e["end"], e["original"], e["local"]) for e in entry["edits"]]
    result = restore_text(text, edits)
    restored_bytes = encode_text(result.text, entry["encoding"], entry["bom"])
    untouched = current == entry["rewritten_sha256"] and not entry.get("hand_edited")
    if untouched and hashlib.sha256(restored_bytes).hexdigest() != entry["original_sha256"]:
        # Should not happen; refuse rather than write bytes we cannot vouch for.
        return ArticleRestore(
            rel, "error", message="restored bytes do not match the recorded original; not written"
        )
    unrestored = tuple(entry.get("unrestored") or ()) + tuple(
        {"original": u.edit.original, "local": u.edit.local, "reason": u.reason}
        for u in result.unrestored
    )
    status = "restored" if not unrestored else "partial"
    message = "" if untouched else "the article was edited after the rewrite"
    if result.restored and not dry_run:
        try:
            write_bytes_atomic(file, restored_bytes)
        except UnsafeArticle as exc:
            return ArticleRestore(rel, "skipped", message=str(exc))
        except OSError as exc:
            return ArticleRestore(rel, "error", message=f"cannot write: {exc.strerror}")
    elif not dry_run:
        try:
            check_replaceable(file)
        except UnsafeArticle as exc:
            return ArticleRestore(rel, "skipped", message=str(exc))
    if not dry_run:
        manifest.mark_restored(rel, unrestored)
    return ArticleRestore(rel, status, len(result.restored), unrestored, message)


def restore(
    manifest_path: Path, paths: Sequence[Path] | None = None, *, dry_run: bool = False
) -> RestoreReport:
    """Put the original text back into every rewritten article under `paths` (all if None).

    Untouched articles get their exact original bytes back (checked against the recorded
    sha256). Articles edited by hand since are restored as far as unambiguous; the rest is
    reported and kept in the manifest (`unrestored`).
    """
    report = RestoreReport(dry_run=dry_run)
    with run_lock(manifest_path):
        manifest = open_manifest(manifest_path)
        report.planned_resolved = manifest.resolve_planned()
        if not dry_run:
            remove_stale_temps(manifest.folder)  # a manifest save killed half-way
        for path in paths or ():
            if not os.path.exists(path):
                raise UsageError(f"{path}: no such file or folder")
        swept: set[Path] = set()
        for rel, entry in sorted(manifest.iter_articles()):
            if entry["state"] != "rewritten":
                continue
            if paths and not _under(manifest.resolve(rel), paths):
                continue
            folder = manifest.resolve(rel).parent
            if not dry_run and folder not in swept:  # temp files of a restore killed mid-write
                swept.add(folder)
                remove_stale_temps(folder)
            report.articles.append(_restore_one(manifest, rel, entry, dry_run))
        if not dry_run:
            save_manifest(manifest)
    return report


# --------------------------------------------------------------------------- verify


@dataclass(frozen=True)
class Problem:
    path: str
    # "missing" | "sha256-mismatch" | "thumbnail-missing" | "unreadable" | "schema"
    problem: str
    sha256: str
    detail: str = ""


@dataclass
class VerifyReport:
    assets: int = 0
    thumbnails: int = 0
    bytes: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "assets": self.assets,
            "thumbnails": self.thumbnails,
            "bytes": self.bytes,
            "problems": [
                {"path": p.path, "problem": p.problem, "sha256": p.sha256, "detail": p.detail}
                for p in self.problems
            ],
        }


def verify(manifest_path: Path) -> VerifyReport:
    """Check the manifest against its schema (whatever its size: runs check only small ones
    when saving), that every asset exists with its sha256, and every thumbnail exists.
    Returns the report; the CLI turns problems into exit 1."""
    from mirror.manifest import validation_errors

    report = VerifyReport()
    with run_lock(manifest_path):
        manifest = open_manifest(manifest_path, read_only=True)
        for message in validation_errors(manifest.data, limit=20):
            report.problems.append(Problem(manifest.path.name, "schema", "", message))
        for sha, asset in sorted(manifest.iter_assets()):
            report.assets += 1
            file = manifest.resolve(asset["path"])
            try:
                actual = sha256_file(file)
            except FileNotFoundError:
                report.problems.append(Problem(asset["path"], "missing", sha))
            except OSError as exc:
                report.problems.append(Problem(asset["path"], "unreadable", sha, str(exc)))
            else:
                report.bytes += file.stat().st_size
                if actual != sha:
                    report.problems.append(
                        Problem(asset["path"], "sha256-mismatch", sha, f"found {actual}")
                    )
            for thumb in asset.get("thumbnails") or ():
                report.thumbnails += 1
                if not manifest.resolve(thumb["path"]).is_file():
                    report.problems.append(Problem(thumb["path"], "thumbnail-missing", sha))
    return report


# --------------------------------------------------------------------------- gc


@dataclass
class GcReport:
    dry_run: bool
    removed: list[str] = field(default_factory=list)  # store files, relative to the manifest
    bytes: int = 0
    forgotten_assets: list[str] = field(default_factory=list)
    forgotten_urls: list[str] = field(default_factory=list)
    kept_by_grace: list[str] = field(default_factory=list)
    # store-root-relative paths gc never considers: not harvester's content-address shape
    ignored: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "removed": self.removed,
            "bytes": self.bytes,
            "forgotten_assets": self.forgotten_assets,
            "forgotten_urls": self.forgotten_urls,
            "kept_by_grace": self.kept_by_grace,
            "ignored": self.ignored,
        }


_HEX2 = re.compile(r"[0-9a-f]{2}")
_DIGITS = re.compile(r"[0-9]+")
_EXT = r"\.[0-9a-z]{1,8}"


def _asset_file_name(name: str, folders: tuple[str, ...]) -> bool:
    """`<sha256>.<ext>` whose sha256 starts with the folder names it sits in."""
    match = re.fullmatch(r"([0-9a-f]{64})" + _EXT, name)
    return bool(match) and match.group(1).startswith("".join(folders))


def _shaped_folder(parts: tuple[str, ...]) -> bool:
    """A folder harvester's store layout can contain: `<aa>`, `<aa>/<bb>`, `thumbs`,
    `thumbs/<size>`, `thumbs/<size>/<aa>` (relative to the store root)."""
    if not parts:
        return True
    if parts[0] == "thumbs":
        rest = parts[1:]
        return len(rest) == 0 or (
            _DIGITS.fullmatch(rest[0]) is not None
            and (len(rest) == 1 or (len(rest) == 2 and _HEX2.fullmatch(rest[1]) is not None))
        )
    return len(parts) <= 2 and all(_HEX2.fullmatch(part) for part in parts)


def _shaped_file(parts: tuple[str, ...]) -> bool:
    """A content-addressed store file: `<aa>/<bb>/<sha256>.<ext>` or
    `thumbs/<size>/<aa>/<sha256>.<fmt>`, with aa/bb the sha256's first hex digits."""
    if len(parts) == 3 and _shaped_folder(parts[:2]) and parts[0] != "thumbs":
        return _asset_file_name(parts[2], parts[:2])
    if len(parts) == 4 and parts[0] == "thumbs" and _shaped_folder(parts[:3]):
        return _asset_file_name(parts[3], parts[2:3])
    return False


def iter_store_files(root: Path, ignored: list[str] | None = None) -> Iterator[Path]:
    """Regular files under the store root that have harvester's content-address shape. Hidden
    entries (`.tmp/` belongs to the store's own sweep) are skipped silently, symlinks are never
    followed, and anything else — a user's own `logo.png` or `blog/` folder in a shared images
    folder — is never yielded: its root-relative path (folders with a trailing `/`) goes to
    `ignored`."""
    for folder, dirs, files in os.walk(root, followlinks=False):
        here = Path(folder).relative_to(root).parts
        visible = sorted(d for d in dirs if not d.startswith("."))
        dirs[:] = [d for d in visible if _shaped_folder((*here, d))]
        if ignored is not None:
            ignored.extend("/".join((*here, d)) + "/" for d in visible if d not in dirs)
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = Path(folder) / name
            if not stat.S_ISREG(os.lstat(path).st_mode):
                continue
            if _shaped_file((*here, name)):
                yield path
            elif ignored is not None:
                ignored.append("/".join((*here, name)))


def referenced_assets(manifest: Manifest) -> set[str]:
    """sha256s that articles (not restored ones) still point at, with their canonical copies."""
    urls = manifest.data["urls"]
    assets = manifest.data["assets"]
    needed: set[str] = set()
    for _, article in manifest.iter_articles():
        if article["state"] == "restored":
            continue
        for ref in article["refs"]:
            sha = ref.get("sha256") or (urls.get(ref.get("url") or "") or {}).get("sha256")
            while sha and sha not in needed:
                needed.add(sha)
                sha = (assets.get(sha) or {}).get("duplicate_of")
    return needed


def _check_store_is_separate(manifest: Manifest, root: Path) -> None:
    """Refuse to collect a store that holds the manifest or articles (e.g. `store: "."`)."""
    inside = [manifest.path] + [manifest.resolve(rel) for rel, _ in manifest.iter_articles()]
    for path in inside:
        if _under(path, [root]):
            raise UsageError(
                f"the store root {root} contains {path}; gc only works on a store folder of "
                "its own (check the manifest's `store` / --out)"
            )


def gc(
    manifest_path: Path,
    *,
    dry_run: bool = False,
    grace: timedelta = timedelta(0),
    now: datetime | None = None,
) -> GcReport:
    """Remove store files (assets and thumbnails) that no article references and the manifest
    does not need. Unreferenced assets seen within `grace` are kept; so are unknown files
    younger than `grace`. `dry_run` lists what would go and changes nothing."""
    report = GcReport(dry_run=dry_run)
    with run_lock(manifest_path):
        manifest = open_manifest(manifest_path)
        resolved = manifest.resolve_planned()
        root = manifest.store_root()
        if not root.is_dir():
            return report
        _check_store_is_separate(manifest, root)
        moment = now or datetime.now(timezone.utc)
        cutoff = moment - grace
        needed = referenced_assets(manifest)

        keep: set[str] = set()
        dropped_files: set[str] = set()
        drop: list[str] = []
        for sha, asset in manifest.iter_assets():
            files = [asset["path"]] + [t["path"] for t in asset.get("thumbnails") or ()]
            absolute = {os.path.abspath(manifest.resolve(p)) for p in files}
            if sha in needed:
                keep.update(absolute)
            elif parse_iso(asset["last_referenced"]) > cutoff:
                keep.update(absolute)
                report.kept_by_grace.append(sha)
            else:
                dropped_files.update(absolute)
                drop.append(sha)

        for file in iter_store_files(root, report.ignored):
            absolute = os.path.abspath(file)
            if absolute in keep:
                continue
            st = os.lstat(file)
            young = datetime.fromtimestamp(st.st_mtime, timezone.utc) > cutoff
            if absolute not in dropped_files and grace and young:
                continue  # a file the manifest does not know yet (a crashed run): leave it
            report.removed.append(manifest.rel(file))
            report.bytes += st.st_size
            if not dry_run:
                os.unlink(file)

        report.forgotten_assets = sorted(drop)
        if dry_run:
            gone = set(drop)
            report.forgotten_urls = [u for u, e in manifest.iter_urls() if e.get("sha256") in gone]
        else:
            report.forgotten_urls = manifest.forget_assets(drop)
        report.removed.sort()
        report.ignored.sort()
        report.forgotten_urls.sort()
        if not dry_run:
            _remove_empty_folders(root)
            if drop or resolved:
                save_manifest(manifest)
    return report


def _remove_empty_folders(root: Path) -> None:
    for folder, _dirs, _files in os.walk(root, topdown=False, followlinks=False):
        here = Path(folder)
        parts = here.relative_to(root).parts
        if here == root or not _shaped_folder(parts):
            continue  # hidden folders and the user's own folders are never removed
        if not os.listdir(here):
            with contextlib.suppress(OSError):
                os.rmdir(here)
