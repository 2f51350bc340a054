"""The manifest: what was mirrored, where it lives, and how to undo every rewrite.

Input: records from the stages (`ImageInfo`, fetch facts, `DuplicateLink`, recorded edits),
given through typed `record_*` methods. Output: `manifest.json` beside the site — sorted keys,
posix paths relative to the manifest's folder, written atomically and validated against the
JSON Schema shipped beside this module (`manifest.schema.json`). Field-by-field documentation
for the tools that read it: docs/manifest.md.

Write-ahead protocol for one article (see docs/manifest.md): `plan_article` + `save()` before
the article is replaced, `mark_rewritten` after. An article left "planned" by a crash is
resolved by hashing the file (`resolve_planned`).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Any

from mirror.records import DuplicateLink, Edit, ImageInfo, RecordedEdit
from mirror.rewrite import (
    compose_edits,
    edits_from_recorded,
    locate_edits,
    recorded_edits,
    write_bytes_atomic,
)

MANIFEST_VERSION = 1
GENERATOR_NAME = "harvester"
# Above this many records (assets + urls + refs) `save()` skips the schema check: jsonschema
# walks every node in Python and would dominate a no-op run over a big site. The writer is the
# only producer and the tests validate what it writes at every size that matters. The check
# costs ~0.1 ms per record (0.65 s of a 0.69 s save at 6,000 records) and a run saves several
# times (checkpoints, write-ahead batches): at 5,000 it was 0.64 s of the main process's 9 s in
# a 2,000-image run, half of the rewrite stage. Up to 1,000 records it stays under 0.1 s a save.
# `harvester verify` always checks the whole schema.
DEFAULT_VALIDATE_LIMIT = 1_000

URL_STATES = ("ok", "failed", "skipped", "deferred")
ARTICLE_STATES = ("planned", "rewritten", "unchanged", "restored")
REF_KEYS = (
    "kind",
    "syntax",
    "field",
    "line",
    "url",
    "original",
    "local",
    "sha256",
    "status",
    "reason",
)


class ManifestCorrupt(Exception):
    """The manifest could not be read; it was moved aside to `moved_to` (never overwritten)."""

    def __init__(self, path: Path, moved_to: Path | None, problem: str) -> None:
        where = f"; moved aside to {moved_to}" if moved_to else ""
        super().__init__(f"manifest {path} is unreadable ({problem}){where}")
        self.path = path
        self.moved_to = moved_to
        self.problem = problem


class ManifestVersionError(Exception):
    """The manifest was written by a newer harvester; it is left exactly as it is."""


class ManifestSaveError(Exception):
    """The manifest could not be written (folder missing or not writable, disk full...)."""


class UnknownArticle(KeyError):
    pass


# --------------------------------------------------------------------------- helpers


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def iso(moment: datetime | str | None) -> str | None:
    """UTC ISO-8601 with a 'Z' and whole seconds; strings pass through unchanged."""
    if moment is None or isinstance(moment, str):
        return moment
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(value: str) -> datetime:
    return datetime.strptime(value[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@lru_cache(maxsize=1)
def load_schema() -> dict[str, Any]:
    text = (Path(__file__).with_name("manifest.schema.json")).read_text(encoding="utf-8")
    return json.loads(text)


@lru_cache(maxsize=1)
def _validator() -> Any:
    import jsonschema  # imported lazily: only saving/loading needs it

    schema = load_schema()
    cls = jsonschema.validators.validator_for(schema)
    return cls(_inline_refs(schema))


def _inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with each `#/$defs/...` reference replaced by the definition itself.

    Same verdicts and messages, half the time: jsonschema resolves a `$ref` through its
    registry on every node it validates (measured 1.25 s → 0.62 s for a 6,000-record
    manifest). Recursive references (an article's `previous`) stay references; `$defs`
    stays in place for them.
    """
    defs = schema.get("$defs", {})

    def walk(node: Any, inside: frozenset[str]) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/") and ref[8:] in defs:
                name = ref[8:]
                if name in inside:
                    return node
                target = walk(defs[name], inside | {name})
                rest = {k: walk(v, inside) for k, v in node.items() if k != "$ref"}
                return {**rest, "allOf": [target]} if rest else target
            return {k: v if k == "$defs" else walk(v, inside) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, inside) for v in node]
        return node

    return walk(schema, frozenset())


def validation_errors(data: Any, limit: int = 10) -> list[str]:
    """Up to `limit` schema violations of `data`, as 'where: what' lines (empty if valid)."""
    problems: list[str] = []
    for error in _validator().iter_errors(data):
        where = "/".join(str(p) for p in error.absolute_path) or "(top)"
        problems.append(f"{where}: {error.message}")
        if len(problems) >= limit:
            break
    return problems


def validate(data: Any) -> None:
    """Raise `ValueError` listing the problems if `data` is not a valid version-1 manifest."""
    problems = validation_errors(data)
    if problems:
        raise ValueError("manifest does not match its schema: " + "; ".join(problems))


def _edit_dict(edit: RecordedEdit) -> dict[str, Any]:
    return {"start": edit.start, "end": edit.end, "original": edit.original, "local": edit.local}


def _edit_record(item: Mapping[str, Any]) -> RecordedEdit:
    return RecordedEdit(item["start"], item["end"], item["original"], item["local"])


def _ref_dict(ref: Any) -> dict[str, Any]:
    """A ref as the manifest keeps it, from a mapping or any object with the same attributes."""
    if isinstance(ref, Mapping):
        get = ref.get
    else:

        def get(key: str, default: Any = None) -> Any:
            return getattr(ref, key, default)

    out: dict[str, Any] = {}
    for key in REF_KEYS:
        value = get(key, None)
        if key == "original" and value is None:
            value = get("raw", None)  # an ImageRef carries the written text as `raw`
        if value is not None or key in ("local",):
            out[key] = value
    out.setdefault("status", "ok" if out.get("local") else "failed")
    return out


def _empty(now: str, store: str) -> dict[str, Any]:
    return {
        "manifest_version": MANIFEST_VERSION,
        "generator": {"name": GENERATOR_NAME, "version": _generator_version()},
        "created_at": now,
        "updated_at": now,
        "store": store,
        "hashing": {},
        "assets": {},
        "urls": {},
        "articles": {},
        "decisions": {"same": [], "different": []},
    }


def _generator_version() -> str:
    try:
        from importlib.metadata import version

        return version("harvester")
    except Exception:  # not installed (running from a checkout)
        return "0.1.0"


# --------------------------------------------------------------------------- the manifest


class Manifest:
    """An in-memory manifest bound to its file. Not thread-safe; one writer under the run lock."""

    def __init__(
        self,
        path: Path,
        data: dict[str, Any],
        *,
        clock: Callable[[], datetime] = utc_now,
        validate_limit: int = DEFAULT_VALIDATE_LIMIT,
    ) -> None:
        self.path = Path(path)
        self.data = data
        self.clock = clock
        self.validate_limit = validate_limit
        self.last_save_validated = False
        self.last_save_seconds = 0.0
        # Called first thing in every save(): a run sets it to its store's sync(), so a saved
        # manifest never names a stored file that is not yet durable.
        self.before_save: Callable[[], object] | None = None
        # sha256 of the file as loaded, until the first save writes it: a save that would
        # write those very bytes again (a no-op run) leaves the file, updated_at and all, alone
        self._unchanged_digest: bytes | None = None

    # ---- construction

    @classmethod
    def new(
        cls, path: Path, *, store: str = "assets", clock: Callable[[], datetime] = utc_now
    ) -> Manifest:
        return cls(path, _empty(iso(clock()) or "", store), clock=clock)

    @classmethod
    def load(
        cls,
        path: Path,
        *,
        store: str = "assets",
        clock: Callable[[], datetime] = utc_now,
        validate_limit: int = DEFAULT_VALIDATE_LIMIT,
        move_aside: bool = True,
    ) -> Manifest:
        """Read `path`; a missing file gives a new empty manifest (with `store`).

        Unparseable or schema-invalid content is moved aside to `<name>.corrupt-<timestamp>`
        (unless `move_aside` is False: read-only commands leave it where it is) and
        `ManifestCorrupt` is raised. A newer `manifest_version` raises `ManifestVersionError`
        and leaves the file alone.
        """
        corrupt = cls._move_aside if move_aside else _refuse_corrupt
        return cls._load(Path(path), store, clock, validate_limit, corrupt)

    @classmethod
    def _load(
        cls,
        path: Path,
        store: str,
        clock: Callable[[], datetime],
        validate_limit: int,
        corrupt: Callable[[Path, Callable[[], datetime], str], Any],
    ) -> Manifest:
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            manifest = cls.new(path, store=store, clock=clock)
            manifest.validate_limit = validate_limit
            return manifest
        except IsADirectoryError:
            raise ManifestCorrupt(path, None, "it is a folder, not a file") from None
        digest = hashlib.sha256(raw).digest()
        try:
            # drop each copy as soon as the next exists: a 100,000-ref manifest is ~60 MB of
            # bytes, as much again as text, and ~160 MB parsed; peak RSS counts them all
            text = raw.decode("utf-8")
            del raw
            data = json.loads(text)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            corrupt(path, clock, f"not valid JSON: {exc}")
        finally:
            text = None
        version = data.get("manifest_version") if isinstance(data, dict) else None
        if isinstance(version, int) and version > MANIFEST_VERSION:
            raise ManifestVersionError(
                f"manifest {path} has version {data['manifest_version']}; this harvester "
                f"reads version {MANIFEST_VERSION}. Upgrade harvester; the file is untouched."
            )
        if not isinstance(data, dict):
            corrupt(path, clock, "not a JSON object")
        problems = _shallow_problems(data)
        if not problems:
            # counted as save() counts (refs, not articles): a 10,000-article manifest with
            # 100,000 refs took ~15 s of jsonschema on every load before
            size = len(data["assets"]) + len(data["urls"]) + _ref_total(data["articles"])
            if size <= validate_limit:
                problems = validation_errors(data)
        if problems:
            corrupt(path, clock, "; ".join(problems[:3]))
        manifest = cls(path, data, clock=clock, validate_limit=validate_limit)
        manifest._unchanged_digest = digest
        return manifest

    @staticmethod
    def _move_aside(path: Path, clock: Callable[[], datetime], problem: str) -> Any:
        stamp = clock().astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        target = path.with_name(f"{path.name}.corrupt-{stamp}")
        n = 1
        while target.exists():
            n += 1
            target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
        os.replace(path, target)
        raise ManifestCorrupt(path, target, problem)

    # ---- basics

    @property
    def folder(self) -> Path:
        return self.path.parent

    def _now(self) -> str:
        return iso(self.clock()) or ""

    def rel(self, path: Path | str) -> str:
        """`path` as the manifest stores it: posix, relative to the manifest's folder."""
        rel = os.path.relpath(os.path.abspath(path), os.path.abspath(self.folder))
        return PurePosixPath(*Path(rel).parts).as_posix()

    def resolve(self, rel: str) -> Path:
        """A manifest path back to a filesystem path."""
        return self.folder / Path(*PurePosixPath(rel).parts)

    @property
    def store(self) -> str:
        return self.data["store"]

    def set_store(self, store_root: Path) -> None:
        self.data["store"] = self.rel(store_root)

    def store_root(self) -> Path:
        return self.resolve(self.data["store"])

    def set_hashing(self, hashing: Mapping[str, Mapping[str, Any]]) -> None:
        self.data["hashing"] = {k: dict(v) for k, v in hashing.items()}

    def to_dict(self) -> dict[str, Any]:
        return self.data

    # ---- urls

    def url(self, url: str) -> dict[str, Any] | None:
        entry = self.data["urls"].get(url)
        return dict(entry) if entry is not None else None

    def iter_urls(self) -> Iterator[tuple[str, dict[str, Any]]]:
        yield from self.data["urls"].items()

    def record_url_ok(
        self,
        url: str,
        *,
        sha256: str,
        http_status: int | None,
        final_url: str | None,
        etag: str | None,
        last_modified: str | None,
        attempts: int,
        policy: str | None,
        referer: str | None,
        source: str = "origin",
        archive: str | None = None,
        unwrapped_url: str | None = None,
    ) -> None:
        """`unwrapped_url`: the original fetched instead of `url` when `url` is an image-proxy
        wrapper (images.weserv.nl & co.); None when `url` itself was fetched."""
        now = self._now()
        self.data["urls"][url] = {
            "status": "ok",
            "sha256": sha256,
            "reason": None,
            "message": None,
            "http_status": http_status,
            "final_url": final_url,
            "etag": etag,
            "last_modified": last_modified,
            "attempts": attempts,
            "failures": 0,
            "fetched_at": now,
            "checked_at": now,
            "next_retry_at": None,
            "policy": policy,
            "referer": referer,
            "source": source,
            "archive": archive,
            "unwrapped_url": unwrapped_url,
        }
        self.touch_asset(sha256)

    def record_url_failed(
        self,
        url: str,
        *,
        reason: str,
        message: str,
        http_status: int | None,
        attempts: int,
        policy: str | None,
        referer: str | None,
        next_retry_at: datetime | str | None,
    ) -> None:
        """A failed attempt; `failures` counts consecutive failures, and the last good
        `sha256` (with its etag/last-modified for a conditional retry) is kept."""
        old = self.data["urls"].get(url) or {}
        self.data["urls"][url] = {
            "status": "failed",
            "sha256": old.get("sha256"),
            "reason": reason,
            "message": message,
            "http_status": http_status,
            "final_url": old.get("final_url"),
            "etag": old.get("etag"),
            "last_modified": old.get("last_modified"),
            "attempts": attempts,
            "failures": int(old.get("failures") or 0) + 1,
            "fetched_at": old.get("fetched_at"),
            "checked_at": self._now(),
            "next_retry_at": iso(next_retry_at),
            "policy": policy,
            "referer": referer,
            "source": old.get("source", "origin"),
            "archive": old.get("archive"),
        }

    def annotate_failure(self, url: str, message: str) -> None:
        """Replace a failed URL's message (e.g. with the web archives' answers too), keeping
        its reason, failure count and next retry."""
        entry = self.data["urls"].get(url)
        if entry is not None and entry.get("status") == "failed":
            entry["message"] = message

    def record_url_state(
        self,
        url: str,
        status: str,
        reason: str | None,
        message: str | None = None,
        *,
        policy: str | None = None,
        referer: str | None = None,
        next_retry_at: datetime | str | None = None,
    ) -> None:
        """`skipped` (e.g. blocked by policy, data: too large to try) or `deferred` (a server
        asked us to come back later); an earlier good `sha256` is kept."""
        if status not in ("skipped", "deferred"):
            raise ValueError(f"record_url_state is for skipped/deferred, not {status!r}")
        old = self.data["urls"].get(url) or {}
        entry = dict(old)
        entry.update(
            {
                "status": status,
                "sha256": old.get("sha256"),
                "reason": reason,
                "message": message,
                "attempts": int(old.get("attempts") or 0),
                "failures": int(old.get("failures") or 0),
                "checked_at": self._now(),
                "next_retry_at": iso(next_retry_at),
                "policy": policy if policy is not None else old.get("policy"),
                "referer": referer if referer is not None else old.get("referer"),
                "source": old.get("source", "origin"),
            }
        )
        self.data["urls"][url] = entry

    def retry_due(self, url: str, now: datetime | None = None) -> bool:
        """Whether a failed/deferred URL may be tried again (no entry → True)."""
        entry = self.data["urls"].get(url)
        if entry is None or entry["status"] == "ok":
            return entry is None
        when = entry.get("next_retry_at")
        return when is None or parse_iso(when) <= (now or self.clock())

    # ---- assets

    def asset(self, sha256: str) -> dict[str, Any] | None:
        entry = self.data["assets"].get(sha256)
        return dict(entry) if entry is not None else None

    def iter_assets(self) -> Iterator[tuple[str, dict[str, Any]]]:
        yield from self.data["assets"].items()

    def image_infos(self) -> list[ImageInfo]:
        """The decoded assets back as `ImageInfo`s (the inverse of `record_asset`, thumbnails
        left out: dedupe does not need them), in first-seen order, the canonical rule's
        tie-break."""
        records = sorted(
            self.data["assets"].items(), key=lambda i: (i[1].get("first_seen") or "", i[0])
        )
        return [
            ImageInfo(
                sha256=sha,
                format=a["format"],
                media_type=a["media_type"],
                width=a["width"],
                height=a["height"],
                frames=a["frames"],
                has_alpha=a["has_alpha"],
                bytes=a["bytes"],
                phash=a["phash"],
                dhash=a["dhash"],
                color=a["color"],
                flat=a["flat"],
                quality=a.get("quality"),
                thumbnails=(),
                structure=a.get("structure") or "",
            )
            for sha, a in records
            if a.get("status") == "ok" and a.get("phash")
        ]

    def in_store(self, rel_to_store: str) -> str:
        """A store-relative path (`Fetched.path`, `Thumbnail.path`) as the manifest keeps it."""
        store = self.store.rstrip("/")
        rel = rel_to_store.lstrip("/")
        return rel if store in ("", ".") else f"{store}/{rel}"

    def asset_file_for(self, url: str) -> Path | None:
        """The file an article should point at for `url`: the canonical copy of its asset, or
        None when the URL has no usable local copy (never fetched, or bytes not an image)."""
        entry = self.data["urls"].get(url)
        sha = entry.get("sha256") if entry else None
        if not sha:
            return None
        asset = self.data["assets"].get(self.canonical(sha))
        if asset is None or asset["status"] != "ok":
            return None
        return self.resolve(asset["path"])

    def thumbnail_file_for(self, url: str, size: int | None = None) -> Path | None:
        """The generated thumbnail (of the canonical copy) for `url`: the given size, or the
        smallest one; None when there is none."""
        entry = self.data["urls"].get(url)
        sha = entry.get("sha256") if entry else None
        asset = self.data["assets"].get(self.canonical(sha)) if sha else None
        thumbs = (asset or {}).get("thumbnails") or []
        if size is not None:
            thumbs = [t for t in thumbs if t["size"] == size]
        if not thumbs:
            return None
        return self.resolve(min(thumbs, key=lambda t: t["size"])["path"])

    def record_asset(self, info: ImageInfo, stored_path_rel_to_manifest: str) -> None:
        """An image that decoded: its facts and thumbnails (thumbnail paths given relative to
        the store root, as `Thumbnail.path` is, are stored relative to the manifest)."""
        now = self._now()
        old = self.data["assets"].get(info.sha256) or {}
        self.data["assets"][info.sha256] = {
            "path": stored_path_rel_to_manifest,
            "media_type": info.media_type,
            "bytes": info.bytes,
            "format": info.format,
            "width": info.width,
            "height": info.height,
            "frames": info.frames,
            "has_alpha": info.has_alpha,
            "phash": info.phash,
            "dhash": info.dhash,
            "color": info.color,
            "structure": info.structure or None,
            "flat": info.flat,
            "quality": info.quality,
            "thumbnails": [
                {
                    "size": t.size,
                    "format": t.format,
                    "width": t.width,
                    "height": t.height,
                    "path": self.in_store(t.path),
                }
                for t in info.thumbnails
            ],
            "duplicate_of": old.get("duplicate_of"),
            "distance": old.get("distance"),
            "similar_to": old.get("similar_to", []),
            "status": "ok",
            "reason": None,
            "message": None,
            "first_seen": old.get("first_seen", now),
            "last_referenced": now,
        }

    def update_signatures(self, sha256: str, info: ImageInfo | None) -> bool:
        """Replace a stored asset's perceptual signatures (phash, dhash, colour, structure,
        flatness) with `info`'s, leaving everything else; `None` clears them (the asset then
        takes no part in comparisons: its old signatures were made another way). False if the
        asset is unknown. For re-hashing after the hash definition changed
        (`mirror.imaging.hash_definition`)."""
        asset = self.data["assets"].get(sha256)
        if asset is None:
            return False
        asset.update(
            phash=info.phash if info else None,
            dhash=info.dhash if info else None,
            color=info.color if info else None,
            structure=(info.structure or None) if info else None,
            flat=info.flat if info else None,
        )
        return True

    def record_vector_asset(self, sha256: str, path: str, size: int, media_type: str) -> None:
        """An SVG stored as it is (`allow_svg`): no raster to measure, hash or thumbnail, so
        it takes part in dedupe by its exact bytes only."""
        self._record_without_raster(sha256, path, size, media_type, "SVG", "ok", None, None)

    def record_asset_failure(
        self, sha256: str, path: str, reason: str, message: str, size: int
    ) -> None:
        """Bytes we stored but could not use as an image (corrupt, too many pixels...)."""
        old_type = (self.data["assets"].get(sha256) or {}).get("media_type")
        self._record_without_raster(sha256, path, size, old_type, None, "failed", reason, message)

    def _record_without_raster(
        self,
        sha256: str,
        path: str,
        size: int,
        media_type: str | None,
        fmt: str | None,
        status: str,
        reason: str | None,
        message: str | None,
    ) -> None:
        """An asset with no decoded picture behind it: no facts, signatures or thumbnails."""
        now = self._now()
        old = self.data["assets"].get(sha256) or {}
        self.data["assets"][sha256] = {
            "path": path,
            "media_type": media_type,
            "bytes": size,
            "format": fmt,
            "width": None,
            "height": None,
            "frames": None,
            "has_alpha": None,
            "phash": None,
            "dhash": None,
            "color": None,
            "structure": None,
            "flat": None,
            "quality": None,
            "thumbnails": [],
            "duplicate_of": None,
            "distance": None,
            "similar_to": [],
            "status": status,
            "reason": reason,
            "message": message,
            "first_seen": old.get("first_seen", now),
            "last_referenced": now,
        }

    def touch_asset(self, sha256: str | None) -> None:
        """Mark an asset (and its canonical copy) as referenced now (gc's grace clock)."""
        now = None
        seen: set[str] = set()
        while sha256 and sha256 not in seen:
            seen.add(sha256)
            entry = self.data["assets"].get(sha256)
            if entry is None:
                return
            now = now or self._now()
            entry["last_referenced"] = now
            sha256 = entry.get("duplicate_of")

    def canonical(self, sha256: str) -> str:
        """The sha256 an article should point at: the canonical copy of a duplicate."""
        entry = self.data["assets"].get(sha256)
        if entry and entry.get("duplicate_of") and entry["duplicate_of"] in self.data["assets"]:
            return entry["duplicate_of"]
        return sha256

    def set_duplicates(self, links: Sequence[DuplicateLink], *, replace_all: bool = False) -> None:
        """Record dedupe links. Every asset named as `sha256` in `links` gets its duplicate /
        similar facts replaced by these links; others are left alone unless `replace_all`."""
        assets = self.data["assets"]
        mentioned = {link.sha256 for link in links}
        for sha, entry in assets.items():
            if replace_all or sha in mentioned:
                entry["duplicate_of"] = None
                entry["distance"] = None
                entry["similar_to"] = []
        for link in links:
            entry = assets.get(link.sha256)
            if entry is None:
                continue
            if link.tier == "duplicate":
                entry["duplicate_of"] = link.canonical
                entry["distance"] = link.distance
            elif link.tier == "similar":
                entry["similar_to"].append({"sha256": link.canonical, "distance": link.distance})
                entry["similar_to"].sort(key=lambda s: (s["distance"], s["sha256"]))
            else:
                raise ValueError(f"unknown duplicate tier {link.tier!r}")

    def forget_assets(self, shas: Iterable[str]) -> list[str]:
        """Drop asset entries and the URL entries that point at them (gc); returns those URLs.

        One pass over the URLs and assets however many are dropped."""
        gone = set(shas)
        if not gone:
            return []
        for sha in gone:
            self.data["assets"].pop(sha, None)
        urls = sorted(u for u, e in self.data["urls"].items() if e.get("sha256") in gone)
        for u in urls:
            del self.data["urls"][u]
        for entry in self.data["assets"].values():
            if entry.get("duplicate_of") in gone:
                entry["duplicate_of"] = None
                entry["distance"] = None
            if entry.get("similar_to"):
                entry["similar_to"] = [s for s in entry["similar_to"] if s["sha256"] not in gone]
        return urls

    # ---- decisions

    @property
    def decisions(self) -> dict[str, list[tuple[str, str]]]:
        """Human decisions about pairs: {"same": [(a, b)], "different": [(a, b)]}, a < b."""
        return {k: [tuple(p) for p in v] for k, v in self.data["decisions"].items()}  # type: ignore[misc]

    def add_decision(self, kind: str, a: str, b: str) -> None:
        if kind not in ("same", "different"):
            raise ValueError(f"decision must be 'same' or 'different', not {kind!r}")
        pair = sorted((a, b))
        other = "different" if kind == "same" else "same"
        self.data["decisions"][other] = [p for p in self.data["decisions"][other] if p != pair]
        if pair not in self.data["decisions"][kind]:
            self.data["decisions"][kind].append(pair)
            self.data["decisions"][kind].sort()

    # ---- articles

    def article(self, path_rel: str) -> dict[str, Any] | None:
        entry = self.data["articles"].get(path_rel)
        return dict(entry) if entry is not None else None

    def iter_articles(self) -> Iterator[tuple[str, dict[str, Any]]]:
        yield from self.data["articles"].items()

    def recorded_edits(self, path_rel: str) -> list[RecordedEdit]:
        entry = self.data["articles"].get(path_rel)
        if entry is None:
            raise UnknownArticle(path_rel)
        return [_edit_record(e) for e in entry["edits"]]

    def plan_article(
        self,
        path_rel: str,
        *,
        encoding: str,
        bom: bool,
        newline: str | None,
        original_sha256: str,
        rewritten_sha256: str,
        refs: Iterable[Any],
        edits: Sequence[RecordedEdit] | Sequence[Edit],
        text: str | None = None,
    ) -> str:
        """Record what is about to be written to an article (step 2 of the write-ahead).

        `original_sha256` is the hash of the file as read now, `rewritten_sha256` of the bytes
        about to be written, `edits` either `RecordedEdit`s (offsets in the rewritten text) or
        the `Edit`s applied to `text` (the text as read now; then `text` is required).
        Over an earlier rewrite of ours the new edits are composed with the earlier ones, so one
        `restore` gives the very first bytes; if the file was edited by hand since, the earlier
        spans are located in `text` first (pass `text` always). With no edits the article is
        recorded as "unchanged" — or, over an earlier rewrite, left as it is. Returns the
        state recorded.
        """
        now = self._now()
        ref_dicts = [_ref_dict(r) for r in refs]
        new_edits = list(edits)
        old = self.data["articles"].get(path_rel)
        if old is not None and old["state"] == "planned":
            self._resolve_planned_entry(path_rel, old, original_sha256)
            old = self.data["articles"].get(path_rel)

        earlier = old is not None and old["state"] == "rewritten"
        intact = earlier and old["rewritten_sha256"] == original_sha256  # type: ignore[index]
        for r in ref_dicts:
            self._touch_ref(r)
        if not new_edits:
            if earlier:
                assert old is not None
                # Our rewrite is still the record to restore from, hand edits or not: never
                # replace it with an "unchanged" record (that would lose the originals).
                for r in old["refs"]:
                    self._touch_ref(r)
                if not intact:
                    old["hand_edited"] = True
                return "rewritten"
            self.data["articles"][path_rel] = {
                "encoding": encoding,
                "bom": bom,
                "newline": newline,
                "state": "unchanged",
                "original_sha256": original_sha256,
                "rewritten_sha256": original_sha256,
                "refs": ref_dicts,
                "edits": [],
                "planned_at": now,
                "rewritten_at": None,
                "restored_at": None,
            }
            return "unchanged"

        if isinstance(new_edits[0], Edit):
            edit_list: list[Edit] = new_edits  # type: ignore[assignment]
            if text is None:
                raise ValueError("plan_article needs `text` when given Edit objects")
            recorded = recorded_edits(text, edit_list)
        else:
            recorded = sorted(new_edits, key=lambda e: (e.start, e.end))  # type: ignore[arg-type]
            edit_list = edits_from_recorded(recorded)

        entry: dict[str, Any] = {
            "encoding": encoding,
            "bom": bom,
            "newline": newline,
            "state": "planned",
            "original_sha256": original_sha256,
            "rewritten_sha256": rewritten_sha256,
            "refs": ref_dicts,
            "edits": [],
            "previous": old,
            "base_sha256": original_sha256,
            "planned_at": now,
            "rewritten_at": None,
            "restored_at": None,
        }
        if earlier:
            assert old is not None
            # A later run rewrites more spans of an article we rewrote before: compose, so one
            # restore undoes both and `original_sha256` stays the very first original.
            prior = [_edit_record(e) for e in old["edits"]]
            lost: list[dict[str, str]] = list(old.get("unrestored") or ())
            if not intact:
                # Edited by hand since our write: find our spans in the current text; those
                # that cannot be found without guessing are recorded as unrestorable.
                if text is not None:
                    prior, missing = locate_edits(text, prior)
                    lost += [
                        {"original": u.edit.original, "local": u.edit.local, "reason": u.reason}
                        for u in missing
                    ]
                else:
                    lost += [
                        {"original": e.original, "local": e.local, "reason": "not-found"}
                        for e in prior
                    ]
                    prior = []
                entry["hand_edited"] = True
            elif old.get("hand_edited"):
                entry["hand_edited"] = True
            recorded = compose_edits(prior, text, edit_list)
            entry["original_sha256"] = old["original_sha256"]
            kept = [r for r in old["refs"] if r.get("status") == "ok"]
            entry["refs"] = sorted(
                kept + ref_dicts, key=lambda r: (r.get("line") or 0, r.get("field") or "")
            )
            if lost:
                entry["unrestored"] = lost
        entry["edits"] = [_edit_dict(e) for e in recorded]
        self.data["articles"][path_rel] = entry
        return "planned"

    def _touch_ref(self, ref: Mapping[str, Any]) -> None:
        sha = ref.get("sha256")
        if not sha:
            entry = self.data["urls"].get(ref.get("url") or "")
            sha = entry.get("sha256") if entry else None
        self.touch_asset(sha)

    def mark_rewritten(self, path_rel: str) -> None:
        """Step 4: the article file now holds the planned bytes."""
        entry = self.data["articles"].get(path_rel)
        if entry is None:
            raise UnknownArticle(path_rel)
        if entry["state"] == "planned":
            entry["state"] = "rewritten"
            entry["rewritten_at"] = self._now()
            entry.pop("previous", None)
            entry.pop("base_sha256", None)

    def mark_not_replaced(self, path_rel: str) -> None:
        """The planned write did not happen (skipped, or a crash before the replace)."""
        entry = self.data["articles"].get(path_rel)
        if entry is None or entry["state"] != "planned":
            return
        previous = entry.get("previous")
        if previous is not None:
            self.data["articles"][path_rel] = previous
        else:
            base = entry["original_sha256"]
            entry.update(state="unchanged", rewritten_sha256=base, edits=[], rewritten_at=None)
            entry.pop("previous", None)
            entry.pop("base_sha256", None)
            # the file still holds the remote URLs: a later run must see them as remote
            for ref in entry["refs"]:
                if ref.get("local") is not None:
                    ref.update(local=None, status="skipped", reason="not-replaced")

    def _resolve_planned_entry(
        self, path_rel: str, entry: dict[str, Any], current: str | None
    ) -> str:
        previous = entry.get("previous")
        base = entry.get("base_sha256") or (
            previous["rewritten_sha256"] if previous else entry["original_sha256"]
        )
        if current == entry["rewritten_sha256"]:
            self.mark_rewritten(path_rel)
            return "rewritten"
        if current == base or (current is None and previous is None):
            self.mark_not_replaced(path_rel)
            return "not-replaced"
        # Edited by hand since (or missing): assume our write happened; restore locates what
        # is still there and reports the rest.
        self.mark_rewritten(path_rel)
        self.data["articles"][path_rel]["hand_edited"] = True
        return "edited"

    def resolve_planned(self) -> dict[str, str]:
        """Settle every article a crash left "planned" by hashing its file.

        Same bytes as planned → "rewritten"; same as before → "not-replaced" (the earlier
        record comes back); anything else → "edited" (kept as rewritten; restore is careful).
        """
        outcomes: dict[str, str] = {}
        for path_rel, entry in list(self.data["articles"].items()):
            if entry["state"] != "planned":
                continue
            file = self.resolve(path_rel)
            try:
                current = sha256_file(file)
            except OSError:
                current = None
            outcomes[path_rel] = self._resolve_planned_entry(path_rel, entry, current)
        return outcomes

    def mark_restored(self, path_rel: str, unrestored: Sequence[Mapping[str, str]] = ()) -> None:
        entry = self.data["articles"].get(path_rel)
        if entry is None:
            raise UnknownArticle(path_rel)
        entry["state"] = "restored"
        entry["edits"] = []
        entry["restored_at"] = self._now()
        entry.pop("previous", None)
        entry.pop("base_sha256", None)
        entry["rewritten_sha256"] = entry["original_sha256"]
        entry.pop("hand_edited", None)
        if unrestored:
            entry["unrestored"] = [dict(u) for u in unrestored]
        else:
            entry.pop("unrestored", None)

    def ref_count(self) -> int:
        return sum(len(a["refs"]) for a in self.data["articles"].values())

    # ---- saving

    def serialize(self) -> bytes:
        """The document as written: sorted keys, one line per asset / URL / article record.

        Each record is compact JSON from the C encoder (a pretty-printed 100,000-ref manifest
        takes 4x longer through the pure-Python indenting encoder), and one record per line
        keeps `git diff` and `grep` useful. Plain JSON: any parser reads it.
        """
        return b"".join(_serialized_chunks(self.data))

    def save(self, *, validate_schema: bool | None = None) -> None:
        """Write atomically (temp + fsync + os.replace) with sorted keys.

        Nothing is written when the document is byte for byte the file it was loaded from
        and no save has happened since: a run that changed nothing leaves the file as it was,
        so a manifest kept in git shows no diff. Otherwise `updated_at` is set and the
        document is checked against the schema unless it is larger than
        `validate_limit` records (or `validate_schema` says otherwise). The time it took is
        kept in `last_save_seconds`: a caller batching write-ahead saves can size its batches
        from it (a 100,000-ref manifest takes about 1.5 s to save here), so saving stays a
        small fraction of the run.
        """
        started = time.perf_counter()
        if self.before_save is not None:
            try:
                self.before_save()
            except OSError as exc:
                raise ManifestSaveError(
                    f"cannot save manifest {self.path}: the files it names could not be "
                    f"made durable ({exc.strerror or exc})"
                ) from exc
        if self._unchanged_digest is not None:
            digest = hashlib.sha256()
            for chunk in _serialized_chunks(self.data):
                digest.update(chunk)
            if digest.digest() == self._unchanged_digest:
                self.last_save_seconds = time.perf_counter() - started
                return
            self._unchanged_digest = None
        self.data["updated_at"] = self._now()
        if validate_schema is None:
            size = len(self.data["assets"]) + len(self.data["urls"]) + self.ref_count()
            validate_schema = size <= self.validate_limit
        if validate_schema:
            validate(self.data)
        self.last_save_validated = validate_schema
        # streamed record by record: the whole document never sits in memory as text
        payload = _serialized_chunks(self.data)
        try:
            write_bytes_atomic(self.path, payload)
        except OSError as exc:
            raise ManifestSaveError(
                f"cannot write manifest {self.path}: {exc.strerror or exc}"
            ) from exc
        except Exception as exc:  # UnsafeArticle: a symlinked or read-only manifest
            raise ManifestSaveError(f"cannot write manifest {self.path}: {exc}") from exc
        self.last_save_seconds = time.perf_counter() - started


_RECORD_TABLES = ("articles", "assets", "urls")


def _serialized_chunks(data: Mapping[str, Any]) -> Iterator[bytes]:
    """`Manifest.serialize()`'s bytes, a line (record) at a time, for streaming to a file."""
    encode = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode
    yield b"{\n"
    keys = sorted(data)
    for i, key in enumerate(keys):
        comma = "," if i < len(keys) - 1 else ""
        value = data[key]
        if key in _RECORD_TABLES and isinstance(value, dict) and value:
            yield f"{encode(key)}:{{\n".encode()
            records = sorted(value.items())
            last = len(records) - 1
            buffer: list[str] = []
            for j, (name, record) in enumerate(records):
                buffer.append(f"{encode(name)}:{encode(record)}{',' if j < last else ''}\n")
                if len(buffer) >= 256:  # a few hundred KB per write, not one per record
                    yield "".join(buffer).encode("utf-8")
                    buffer = []
            if buffer:
                yield "".join(buffer).encode("utf-8")
            yield ("}" + comma + "\n").encode()
        else:
            yield f"{encode(key)}:{encode(value)}{comma}\n".encode()
    yield b"}\n"


def _ref_total(articles: Mapping[str, Any]) -> int:
    """References over all article records (a malformed `refs` counts as none)."""
    total = 0
    for entry in articles.values():
        refs = entry.get("refs") if isinstance(entry, dict) else None
        total += len(refs) if isinstance(refs, list) else 0
    return total


def _refuse_corrupt(path: Path, clock: Callable[[], datetime], problem: str) -> Any:
    """For read-only commands: report a corrupt manifest, leave the file where it is."""
    raise ManifestCorrupt(path, None, problem)


def _shallow_problems(data: dict[str, Any]) -> list[str]:
    """Cheap structural checks for manifests too big to validate fully on every load."""
    problems = []
    if data.get("manifest_version") != MANIFEST_VERSION:
        problems.append(f"manifest_version: {data.get('manifest_version')!r} is not 1")
    for key in ("assets", "urls", "articles", "decisions", "generator", "hashing"):
        if not isinstance(data.get(key), dict):
            problems.append(f"{key}: missing or not an object")
    if not isinstance(data.get("store"), str):
        problems.append("store: missing or not a string")
    if not problems:
        for path, entry in data["articles"].items():
            if not isinstance(entry, dict) or not isinstance(entry.get("edits"), list):
                problems.append(f"articles/{path}: not an article record")
                break
    return problems
