"""The mirror report: manifest.json + the store → static HTML pages a person can look at.

Input: a manifest file (read as plain JSON, following the version-1 outline in
`harvester/architecture.md`) and the thumbnail files it names. Output: `report.html` (summary,
decisions and the first page of every section) plus, for large sites, further pages in
`<stem>.files/` beside it. Pages are self-contained: inline CSS and a small optional script,
thumbnails referenced by relative path (or embedded as `data:` URIs), no network fetches.

Everything in a manifest is untrusted article content (URLs, paths, messages), so the template
autoescapes, only http(s) URLs ever become links, and thumbnail paths that leave the manifest's
folder are ignored (a hostile manifest must not make the report read or show arbitrary files).

Public API:
    load_manifest_data(path) -> dict
    build_report(data, manifest_dir) -> Report          (pure; no file writes)
    render_pages(report, out, page_size=..., embed_thumbnails=False) -> dict[Path, str]
    write_report(manifest_path, out, page_size=..., embed_thumbnails=False) -> ReportResult
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2

from harvester import __version__
from harvester.errors import ManifestError, UsageError

DEFAULT_PAGE_SIZE = 100
THUMB_DISPLAY = 160  # px: the box a thumbnail is shown in
# Browsers show these directly; anything else (TIFF, HEIC, ...) needs a thumbnail.
_BROWSER_FORMATS = {"JPEG", "PNG", "GIF", "WEBP", "BMP", "ICO", "AVIF"}
_MEDIA_BY_EXT = {
    ".webp": "image/webp",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".gif": "image/gif",
    ".avif": "image/avif",
}
# Only picture files are ever shown or embedded, whatever a manifest names as a thumbnail.
_IMAGE_SUFFIXES = {".webp", ".jpg", ".jpeg", ".png", ".gif", ".avif", ".bmp", ".ico"}
SECTIONS = ("duplicates", "similar", "failures", "articles")


# ---------------------------------------------------------------------------------------------
# The view model (built once from the manifest, rendered into one or more pages)


@dataclass(frozen=True)
class Picture:
    """One stored asset as the report shows it."""

    sha256: str
    width: int | None
    height: int | None
    bytes: int | None
    format: str | None
    status: str
    thumb_file: Path | None  # absolute path of the file to show, None → placeholder
    urls: tuple[str, ...]  # original URLs that resolved to these bytes
    rescued: bool  # at least one of `urls` came from a web archive
    article_count: int

    @property
    def short(self) -> str:
        return self.sha256[:12]


@dataclass(frozen=True)
class Member:
    picture: Picture
    distance: int | None
    decision: str | None  # "same" | "different" | None (a person's recorded verdict)


@dataclass(frozen=True)
class DuplicateGroup:
    canonical: Picture
    members: tuple[Member, ...]


@dataclass(frozen=True)
class SimilarPair:
    a: Picture
    b: Picture
    distance: int | None
    decision: str | None


@dataclass(frozen=True)
class Failure:
    url: str
    reason: str
    status: str  # "failed" | "deferred" | "image-failed"
    message: str | None
    http_status: int | None
    attempts: int | None
    next_retry_at: str | None
    articles: tuple[str, ...]
    archive: ArchiveInfo | None
    kept_copy: bool  # an earlier download of this URL is still in the mirror and in use


@dataclass(frozen=True)
class ArchiveInfo:
    snapshot_url: str | None
    timestamp: str | None
    answer: str | None  # what the archive said when a rescue failed


@dataclass(frozen=True)
class Rescue:
    url: str
    sha256: str | None
    archive: ArchiveInfo
    articles: tuple[str, ...]


@dataclass(frozen=True)
class RefView:
    kind: str
    field: str | None
    line: int | None
    url: str
    local: str | None
    status: str
    reason: str | None
    rescued: bool


@dataclass(frozen=True)
class ArticleView:
    path: str
    state: str
    refs: tuple[RefView, ...]

    @property
    def remote_count(self) -> int:
        return sum(1 for r in self.refs if not r.local)


@dataclass(frozen=True)
class Decision:
    verdict: str  # "same" | "different"
    a: Picture | None
    b: Picture | None
    sha_a: str
    sha_b: str


@dataclass(frozen=True)
class Summary:
    articles: int
    articles_with_remote: int
    references: int
    ref_status: dict[str, int]
    urls: int
    unique_images: int  # distinct stored pictures articles now point at (after dedupe)
    assets_ok: int
    duplicates_merged: int
    similar_pairs: int
    bytes_referenced: int  # Σ over references of the size of the bytes each URL returned
    bytes_needed: int  # Σ over distinct canonical assets the articles now point at
    bytes_in_store: int  # Σ over all stored assets (merged copies stay until `gc`)
    failures: int
    failures_by_reason: list[tuple[str, int]]
    hosts_by_failures: list[tuple[str, int]]
    rescued: int


@dataclass(frozen=True)
class Report:
    manifest_path: str
    generated_at: str
    manifest_updated_at: str | None
    summary: Summary
    duplicates: tuple[DuplicateGroup, ...]
    similar: tuple[SimilarPair, ...]
    failures: tuple[Failure, ...]  # sorted by reason, then URL
    rescues: tuple[Rescue, ...]
    articles: tuple[ArticleView, ...]
    decisions: tuple[Decision, ...]
    warnings: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class ReportResult:
    out: Path
    pages: tuple[Path, ...]
    total_bytes: int
    summary: Summary


# ---------------------------------------------------------------------------------------------
# Reading


def load_manifest_data(path: Path) -> dict[str, Any]:
    """Read a manifest as plain JSON; a missing or unreadable one is a ManifestError (exit 2).

    The report only reads, so unlike a run it never moves a corrupt manifest aside.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        from harvester.maintenance import missing_manifest_hint

        raise ManifestError(f"no manifest at {path}: {missing_manifest_hint()}") from None
    except OSError as exc:
        raise ManifestError(f"cannot read manifest {path}: {exc.strerror}") from exc
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{path}: not a valid manifest (bad JSON: {exc})") from exc
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: not a valid manifest (top level is not an object)")
    version = data.get("manifest_version")
    if version not in (None, 1):
        raise ManifestError(f"{path}: manifest_version {version!r} is not supported (only 1)")
    return data


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


_SNAPSHOT_TIME = re.compile(r"/web/(\d{4,14})")


def _archive_info(record: dict[str, Any]) -> ArchiveInfo | None:
    """Archive provenance of a URL record (issue 8).

    The manifest keeps `source: "archive"` and `archive`: the snapshot URL for a rescue, or the
    archive's answer for a failed one. A nested object is accepted too, for older writers.
    """
    raw = record.get("archive")
    nested = _dict(raw)
    snapshot = _str(nested.get("snapshot_url")) or _str(nested.get("url"))
    answer = _str(nested.get("reason")) or _str(nested.get("message"))
    timestamp = _str(nested.get("timestamp"))
    if isinstance(raw, str) and raw:
        if _safe_link(raw):
            snapshot = raw
        else:
            answer = raw
    if snapshot and not timestamp:
        found = _SNAPSHOT_TIME.search(snapshot)
        timestamp = found.group(1) if found else None
    if record.get("source") == "archive" or snapshot or answer:
        return ArchiveInfo(snapshot, _readable_timestamp(timestamp), answer)
    return None


def _readable_timestamp(value: str | None) -> str | None:
    """ "20140301123000" (the archive's form) → "2014-03-01 12:30:00"; anything else as is."""
    if value and value.isdigit() and len(value) == 14:
        v = value
        return f"{v[:4]}-{v[4:6]}-{v[6:8]} {v[8:10]}:{v[10:12]}:{v[12:14]}"
    return value


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


class _ThumbFinder:
    """Finds the picture file to show for an asset, only ever inside the manifest's folder."""

    def __init__(self, manifest_dir: Path, store: str | None) -> None:
        self.root = Path(os.path.abspath(manifest_dir))
        self.store_root = Path(os.path.abspath(self.root / store)) if store else None

    def _resolve(self, rel: Any) -> Path | None:
        if not isinstance(rel, str) or not rel or "\x00" in rel:
            return None
        if rel.startswith("/") or "\\" in rel or ":" in rel:  # absolute, Windows or URL-ish
            return None
        if os.path.splitext(rel)[1].lower() not in _IMAGE_SUFFIXES:
            return None
        for base in (self.root, self.store_root):
            if base is None:
                continue
            candidate = Path(os.path.normpath(base / rel))
            if _inside(candidate, self.root) and candidate.is_file():
                return candidate
        return None

    def find(self, asset: dict[str, Any]) -> Path | None:
        thumbs = [t for t in _list(asset.get("thumbnails")) if isinstance(t, dict)]

        # Prefer the smallest thumbnail that still fills the display box at 2x, else the largest.
        def preference(thumb: dict[str, Any]) -> tuple[bool, int]:
            size = _int(thumb.get("size")) or 0
            return (size < THUMB_DISPLAY * 2, size if size >= THUMB_DISPLAY * 2 else -size)

        thumbs.sort(key=preference)
        for thumb in thumbs:
            found = self._resolve(thumb.get("path"))
            if found:
                return found
        if _str(asset.get("format")) in _BROWSER_FORMATS:
            return self._resolve(asset.get("path"))
        return None


def _asset_ok(assets: dict[str, Any], sha: str | None) -> bool:
    return (
        bool(sha) and (_str(_dict(assets.get(sha)).get("status")) or "ok") == "ok" and sha in assets
    )


def _canonical_of(assets: dict[str, Any], sha: str) -> str:
    """Follow duplicate_of (one hop by design; a loop or dangling link stops where it is)."""
    seen = {sha}
    while True:
        nxt = _str(_dict(assets.get(sha)).get("duplicate_of"))
        if not nxt or nxt in seen or nxt not in assets:
            return sha
        seen.add(nxt)
        sha = nxt


def _host(url: str) -> str:
    try:
        return urlsplit(url).hostname or "(no host)"
    except ValueError:
        return "(bad url)"


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)


def build_report(
    data: dict[str, Any], manifest_dir: Path, manifest_name: str = "manifest.json"
) -> Report:
    """Turn manifest data into the report's view model. Pure apart from looking for files."""
    assets = {k: v for k, v in _dict(data.get("assets")).items() if isinstance(v, dict)}
    urls = {k: v for k, v in _dict(data.get("urls")).items() if isinstance(v, dict)}
    articles = {k: v for k, v in _dict(data.get("articles")).items() if isinstance(v, dict)}
    finder = _ThumbFinder(manifest_dir, _str(data.get("store")))
    warnings: list[str] = []

    # Which articles use which URL, and which URLs point at which asset.
    url_articles: dict[str, list[str]] = defaultdict(list)
    for path, art in articles.items():
        for ref in _list(art.get("refs")):
            url = _str(_dict(ref).get("url"))
            if url and (not url_articles[url] or url_articles[url][-1] != path):
                url_articles[url].append(path)
    sha_urls: dict[str, list[str]] = defaultdict(list)
    for url, rec in urls.items():
        sha = _str(rec.get("sha256"))
        if sha:
            sha_urls[sha].append(url)

    decisions_raw = _dict(data.get("decisions"))
    verdicts: dict[tuple[str, str], str] = {}
    for verdict in ("same", "different"):
        for pair in _list(decisions_raw.get(verdict)):
            if isinstance(pair, list) and len(pair) == 2 and all(isinstance(s, str) for s in pair):
                verdicts[_pair(pair[0], pair[1])] = verdict

    pictures: dict[str, Picture] = {}

    def picture(sha: str) -> Picture:
        if sha in pictures:
            return pictures[sha]
        asset = _dict(assets.get(sha))
        its_urls = tuple(sorted(sha_urls.get(sha, ())))
        arts = {a for u in its_urls for a in url_articles.get(u, ())}
        pic = Picture(
            sha256=sha,
            width=_int(asset.get("width")),
            height=_int(asset.get("height")),
            bytes=_int(asset.get("bytes")),
            format=_str(asset.get("format")),
            status=_str(asset.get("status")) or "ok",
            thumb_file=finder.find(asset) if asset else None,
            urls=its_urls,
            rescued=any(_str(urls[u].get("source")) == "archive" for u in its_urls),
            article_count=len(arts),
        )
        pictures[sha] = pic
        return pic

    # Duplicate groups: every asset whose duplicate_of names another.
    members: dict[str, list[tuple[str, int | None]]] = defaultdict(list)
    for sha, asset in assets.items():
        target = _str(asset.get("duplicate_of"))
        if target and target != sha:
            if target not in assets:
                warnings.append(f"asset {sha[:12]} is a duplicate of unknown asset {target[:12]}")
            members[_canonical_of(assets, target)].append((sha, _int(asset.get("distance"))))
    duplicates = tuple(
        DuplicateGroup(
            canonical=picture(canon),
            members=tuple(
                Member(picture(s), d, verdicts.get(_pair(canon, s)))
                for s, d in sorted(group, key=lambda m: (m[1] if m[1] is not None else 99, m[0]))
            ),
        )
        for canon, group in sorted(members.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    )

    # Similar pairs, each once, closest first. A merged copy stands for its group: the pair
    # is shown between the canonical copies, once, however many copies of a group matched.
    seen_pairs: dict[tuple[str, str], int | None] = {}
    for sha, asset in assets.items():
        for entry in _list(asset.get("similar_to")):
            other = _str(_dict(entry).get("sha256"))
            if not other:
                continue
            left, right = _canonical_of(assets, sha), _canonical_of(assets, other)
            if left != right:
                key = _pair(left, right)
                distance = _int(_dict(entry).get("distance"))
                known = seen_pairs.get(key)
                if (
                    key not in seen_pairs
                    or known is None
                    or (distance is not None and distance < known)
                ):
                    seen_pairs[key] = distance
    similar = tuple(
        SimilarPair(picture(a), picture(b), dist, verdicts.get((a, b)))
        for (a, b), dist in sorted(
            seen_pairs.items(), key=lambda kv: (kv[1] if kv[1] is not None else 99, kv[0])
        )
    )

    # Failures: URLs that failed or were deferred, and URLs whose bytes could not be decoded.
    failures: list[Failure] = []
    rescues: list[Rescue] = []
    for url, rec in urls.items():
        status = _str(rec.get("status")) or "ok"
        archive = _archive_info(rec)
        sha = _str(rec.get("sha256"))
        if status == "ok" and _str(rec.get("source")) == "archive" and archive:
            rescues.append(Rescue(url, sha, archive, tuple(url_articles.get(url, ()))))
        reason = _str(rec.get("reason"))
        if status in ("failed", "deferred"):
            kind = status
        elif status == "ok" and sha and _dict(assets.get(sha)).get("status") == "failed":
            kind, reason = "image-failed", _str(assets[sha].get("reason"))
            rec = {**rec, "message": assets[sha].get("message") or rec.get("message")}
        else:
            continue
        failures.append(
            Failure(
                url=url,
                reason=reason or ("deferred" if kind == "deferred" else "unknown"),
                status=kind,
                message=_str(rec.get("message")),
                http_status=_int(rec.get("http_status")),
                attempts=_int(rec.get("attempts")),
                next_retry_at=_str(rec.get("next_retry_at")),
                articles=tuple(url_articles.get(url, ())),
                archive=archive,
                kept_copy=kind != "image-failed" and _asset_ok(assets, sha),
            )
        )
    failures.sort(key=lambda f: (f.reason, f.url))
    rescues.sort(key=lambda r: r.url)

    # Per-article view.
    article_views: list[ArticleView] = []
    ref_status: Counter[str] = Counter()
    bytes_referenced = 0
    needed: set[str] = set()
    for path in sorted(articles):
        art = articles[path]
        refs: list[RefView] = []
        for ref in _list(art.get("refs")):
            ref = _dict(ref)
            url = _str(ref.get("url")) or ""
            rec = _dict(urls.get(url))
            status = _str(ref.get("status")) or _str(rec.get("status")) or "unknown"
            ref_status[status] += 1
            # The bytes this URL gave (before dedupe), for references that use the mirror.
            sha = _str(rec.get("sha256")) or _str(ref.get("sha256"))
            if sha and (ref.get("local") or status == "ok") and _asset_ok(assets, sha):
                bytes_referenced += _int(assets[sha].get("bytes")) or 0
                needed.add(_canonical_of(assets, sha))
            refs.append(
                RefView(
                    kind=_str(ref.get("kind")) or "?",
                    field=_str(ref.get("field")),
                    line=_int(ref.get("line")),
                    url=url,
                    local=_str(ref.get("local")),
                    status=status,
                    reason=_str(ref.get("reason")) or _str(rec.get("reason")),
                    rescued=_str(rec.get("source")) == "archive",
                )
            )
        article_views.append(ArticleView(path, _str(art.get("state")) or "?", tuple(refs)))

    ok_assets = [a for a in assets.values() if (_str(a.get("status")) or "ok") == "ok"]
    fail_reasons = Counter(f.reason for f in failures)
    fail_hosts = Counter(_host(f.url) for f in failures)
    summary = Summary(
        articles=len(article_views),
        articles_with_remote=sum(1 for a in article_views if a.remote_count),
        references=sum(ref_status.values()),
        ref_status=dict(sorted(ref_status.items())),
        urls=len(urls),
        unique_images=len(needed),
        assets_ok=len(ok_assets),
        duplicates_merged=sum(len(g.members) for g in duplicates),
        similar_pairs=len(similar),
        bytes_referenced=bytes_referenced,
        bytes_needed=sum(_int(assets[s].get("bytes")) or 0 for s in needed),
        bytes_in_store=sum(_int(a.get("bytes")) or 0 for a in ok_assets),
        failures=len(failures),
        failures_by_reason=sorted(fail_reasons.items(), key=lambda kv: (-kv[1], kv[0])),
        hosts_by_failures=sorted(fail_hosts.items(), key=lambda kv: (-kv[1], kv[0]))[:10],
        rescued=len(rescues),
    )

    decisions = tuple(
        Decision(
            verdict,
            picture(a) if a in assets else None,
            picture(b) if b in assets else None,
            a,
            b,
        )
        for (a, b), verdict in sorted(verdicts.items(), key=lambda kv: (kv[1], kv[0]))
    )

    return Report(
        manifest_path=manifest_name,
        generated_at=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        manifest_updated_at=_str(data.get("updated_at")),
        summary=summary,
        duplicates=duplicates,
        similar=similar,
        failures=tuple(failures),
        rescues=tuple(rescues),
        articles=tuple(article_views),
        decisions=decisions,
        warnings=tuple(warnings),
    )


# ---------------------------------------------------------------------------------------------
# Rendering


def human_bytes(n: int | None) -> str:
    """Sizes as the CLI prints them (`units.format_size`); "?" when the manifest has none."""
    from harvester.units import format_size

    return "?" if n is None else format_size(n)


def _safe_link(url: str | None) -> str | None:
    """Only http(s) URLs become links: a `javascript:` URL in a manifest must stay text."""
    if not url:
        return None
    try:
        scheme = urlsplit(url.strip()).scheme.lower()
    except ValueError:
        return None
    return url if scheme in ("http", "https") else None


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,  # every string from a manifest is untrusted article content
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["bytes"] = human_bytes
    env.filters["safe_link"] = _safe_link
    env.filters["host"] = _host
    return env


@dataclass(frozen=True)
class _Page:
    """One output file: which section and which slice of it it shows."""

    section: str | None  # None → the index page (summary + first page of every section)
    number: int  # 1-based within the section


def _chunk_count(n: int, size: int) -> int:
    return max(1, math.ceil(n / size))


class _Linker:
    """Where every page lives and how one page refers to another and to thumbnails."""

    def __init__(self, out: Path, embed: bool) -> None:
        self.out = Path(os.path.abspath(out))
        self.files_dir_name = f"{self.out.stem}.files"
        self.embed = embed
        self._data_uris: dict[Path, str] = {}

    def path_of(self, section: str | None, number: int) -> Path:
        if section is None or number == 1:
            return self.out
        return self.out.parent / self.files_dir_name / f"{section}-{number}.html"

    def href(self, from_page: Path, section: str, number: int) -> str:
        target = self.path_of(section, number)
        rel = os.path.relpath(target, from_page.parent).replace(os.sep, "/")
        return f"{rel}#{section}"

    def img_src(self, from_page: Path, file: Path | None) -> str | None:
        if file is None:
            return None
        if self.embed:
            if file not in self._data_uris:
                media = _MEDIA_BY_EXT.get(file.suffix.lower(), "application/octet-stream")
                payload = base64.b64encode(file.read_bytes()).decode("ascii")
                self._data_uris[file] = f"data:{media};base64,{payload}"
            return self._data_uris[file]
        try:
            rel = os.path.relpath(file, from_page.parent)
        except ValueError:  # another drive on Windows
            return file.as_uri()
        # Percent-encode only what a relative URL cannot carry literally.
        return rel.replace(os.sep, "/").replace("%", "%25").replace("#", "%23").replace("?", "%3F")


def render_pages(
    report: Report,
    out: Path,
    *,
    page_size: int = DEFAULT_PAGE_SIZE,
    embed_thumbnails: bool = False,
) -> dict[Path, str]:
    """Render the report into {absolute file path: html}. Sections longer than `page_size`
    items continue on extra pages in `<stem>.files/`; page 1 of each is on the index page."""
    if page_size < 1:
        raise ValueError("page_size must be at least 1")
    items = {
        "duplicates": report.duplicates,
        "similar": report.similar,
        "failures": report.failures,
        "articles": report.articles,
    }
    counts = {name: _chunk_count(len(seq), page_size) for name, seq in items.items()}
    linker = _Linker(out, embed_thumbnails)
    template = _environment().get_template("report.html.j2")

    pages: list[_Page] = [_Page(None, 1)]
    pages += [_Page(name, n) for name in SECTIONS for n in range(2, counts[name] + 1)]
    rendered: dict[Path, str] = {}
    for page in pages:
        here = linker.path_of(page.section, page.number)

        def slice_of(name: str, page: _Page = page) -> Iterable[Any]:
            number = page.number if page.section == name else 1
            return items[name][(number - 1) * page_size : number * page_size]

        def pager(name: str, page: _Page = page, here: Path = here) -> list[dict[str, Any]]:
            current = page.number if page.section == name else 1
            return [
                {"number": n, "href": linker.href(here, name, n), "current": n == current}
                for n in range(1, counts[name] + 1)
            ]

        rendered[here] = template.render(
            report=report,
            summary=report.summary,
            page=page,
            sections=[page.section] if page.section else list(SECTIONS),
            slice_of=slice_of,
            pager=pager,
            page_size=page_size,
            counts=counts,
            index_href=os.path.relpath(linker.out, here.parent).replace(os.sep, "/"),
            img=lambda file, here=here: linker.img_src(here, file),
            version=__version__,
            failure_groups=_group_failures,
        )
    return rendered


def _group_failures(failures: Iterable[Failure]) -> Iterator[tuple[str, list[Failure]]]:
    """Consecutive failures with the same reason (the list is sorted by reason)."""
    current: str | None = None
    bucket: list[Failure] = []
    for failure in failures:
        if failure.reason != current and bucket:
            yield current or "", bucket
            bucket = []
        current = failure.reason
        bucket.append(failure)
    if bucket:
        yield current or "", bucket


def _write_atomic(path: Path, text: str) -> int:
    data = text.encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return len(data)


_OUR_PAGE = re.compile(r"^(?:" + "|".join(SECTIONS) + r")-\d+\.html$")


def write_report(
    manifest_path: Path,
    out: Path,
    *,
    page_size: int = DEFAULT_PAGE_SIZE,
    embed_thumbnails: bool = False,
) -> ReportResult:
    """Read the manifest, render every page and write them (each atomically).

    Extra pages from an earlier, longer report are removed, so no stale page stays linked.
    """
    if Path(out).is_dir():
        out = Path(out) / "report.html"
    data = load_manifest_data(manifest_path)
    manifest_dir = Path(os.path.abspath(manifest_path)).parent
    report = build_report(data, manifest_dir, manifest_name=manifest_path.name)
    pages = render_pages(report, out, page_size=page_size, embed_thumbnails=embed_thumbnails)
    try:
        total = sum(_write_atomic(path, html) for path, html in pages.items())
    except OSError as exc:
        raise UsageError(f"cannot write the report at {out}: {exc.strerror or exc}") from exc
    files_dir = Path(os.path.abspath(out)).parent / f"{Path(out).stem}.files"
    if files_dir.is_dir():
        for stale in files_dir.iterdir():
            if _OUR_PAGE.match(stale.name) and stale not in pages:
                stale.unlink()
    return ReportResult(
        out=Path(os.path.abspath(out)),
        pages=tuple(pages),
        total_bytes=total,
        summary=report.summary,
    )
