"""Span rewriting: replace only the URL characters of an article, atomically, and undo it.

Input: an article's decoded text plus `Edit`s (span, old text, new text) from the pipeline, or
the `RecordedEdit`s the manifest kept. Output: the new text (`apply_edits`), the offsets to
record (`recorded_edits`), the original text back (`restore_text`), a target string made safe for
the syntax it lands in (`escape_for`), and an atomic file replace (`write_bytes_atomic`).

Nothing here parses or re-serializes Markdown, HTML, YAML, TOML or JSON: every character outside
an edit's span is copied through untouched. That is the whole safety argument of the rewrite,
and the property tests check it.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import json
import os
import re
import secrets
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from mirror._fsync import fsync_dir
from mirror.records import Edit, RecordedEdit

# Temp files of an in-flight atomic write live beside their target with this marker, so a
# crashed run's leftovers can be found (and swept under the lock) without guessing.
TEMP_MARKER = ".harvester-tmp-"


# --------------------------------------------------------------------------- errors


class RewriteError(Exception):
    """A rewrite that must not happen; `reason` is a stable code for logs and the manifest."""

    reason = "rewrite-error"


class EditOutOfRange(RewriteError):
    reason = "edit-out-of-range"


class EditMismatch(RewriteError):
    """`text[start:end]` is not the text the edit expected: the article changed under us."""

    reason = "edit-mismatch"


class EditOverlap(RewriteError):
    reason = "edit-overlap"


class EscapeError(RewriteError):
    """The target cannot be written in this syntax without touching text outside the span."""

    reason = "cannot-escape"


class UnsafeArticle(RewriteError):
    """The file must not be replaced (symlink, read-only, not a regular file).

    The caller skips the article with a warning; `reason` is one of "symlink", "read-only",
    "not-a-file".
    """

    def __init__(self, path: Path, reason: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.reason = reason


# --------------------------------------------------------------------------- applying edits


def _checked_order(text: str, edits: Sequence[Edit]) -> list[Edit]:
    ordered = sorted(edits, key=lambda e: (e.start, e.end))
    previous_end = -1
    for edit in ordered:
        if not 0 <= edit.start <= edit.end <= len(text):
            raise EditOutOfRange(
                f"edit [{edit.start}, {edit.end}) is outside the text (length {len(text)})"
            )
        if edit.start < previous_end or (edit.start == previous_end and edit.start == edit.end):
            raise EditOverlap(f"edit [{edit.start}, {edit.end}) overlaps the previous edit")
        actual = text[edit.start : edit.end]
        if actual != edit.old:
            raise EditMismatch(
                f"expected {edit.old!r} at [{edit.start}, {edit.end}), found {actual!r}"
            )
        previous_end = edit.end
    return ordered


def apply_edits(text: str, edits: Sequence[Edit]) -> str:
    """Return `text` with each edit's span replaced by its `new` text; nothing else changes.

    Every edit is checked first (in range, `text[start:end] == old`, no overlaps), so either all
    edits apply or a `RewriteError` is raised and nothing is returned.
    """
    ordered = _checked_order(text, edits)
    pieces: list[str] = []
    cursor = 0
    for edit in ordered:
        pieces.append(text[cursor : edit.start])
        pieces.append(edit.new)
        cursor = edit.end
    pieces.append(text[cursor:])
    return "".join(pieces)


def recorded_edits(text: str, edits: Sequence[Edit]) -> list[RecordedEdit]:
    """The edits as the manifest records them: offsets in the rewritten text, in order.

    `text` is the text the edits apply to (checked like `apply_edits`).
    """
    ordered = _checked_order(text, edits)
    shift = 0
    out: list[RecordedEdit] = []
    for edit in ordered:
        start = edit.start + shift
        out.append(RecordedEdit(start, start + len(edit.new), edit.old, edit.new))
        shift += len(edit.new) - (edit.end - edit.start)
    return out


def edits_from_recorded(recorded: Sequence[RecordedEdit]) -> list[Edit]:
    """The `Edit`s (offsets in the text before the rewrite) that produced `recorded`."""
    shift = 0
    out: list[Edit] = []
    for r in sorted(recorded, key=lambda e: (e.start, e.end)):
        start = r.start - shift
        out.append(Edit(start, start + len(r.original), r.original, r.local))
        shift += len(r.local) - len(r.original)
    return out


def compose_edits(
    earlier: Sequence[RecordedEdit], text: str | None, edits: Sequence[Edit]
) -> list[RecordedEdit]:
    """Record a second rewrite on top of an earlier one, so one restore undoes both.

    `earlier` are recorded edits whose offsets are valid in `text` (the file as our last write
    left it); `edits` apply to `text` (checked against it when given). An edit that replaces
    exactly an earlier local target keeps the earlier `original`; any other overlap is refused.
    """
    if text is None:
        ordered = sorted(edits, key=lambda e: (e.start, e.end))
        for a, b in itertools.pairwise(ordered):
            if b.start < a.end:
                raise EditOverlap(f"edit [{b.start}, {b.end}) overlaps the previous edit")
    else:
        ordered = _checked_order(text, edits)
    starts = [e.start for e in ordered]
    # cumulative length change of the new edits before index i
    deltas = [0]
    for e in ordered:
        deltas.append(deltas[-1] + len(e.new) - (e.end - e.start))
    covered: dict[int, RecordedEdit] = {}
    out: list[RecordedEdit] = []
    for old in earlier:
        i = bisect.bisect_right(starts, old.start) - 1
        if i >= 0 and ordered[i].start == old.start and ordered[i].end == old.end:
            covered[i] = old
            continue
        if i >= 0 and ordered[i].end > old.start:
            raise EditOverlap(f"new edit at {ordered[i].start} overlaps recorded edit {old}")
        j = i + 1
        if j < len(ordered) and ordered[j].start < old.end:
            raise EditOverlap(f"new edit at {ordered[j].start} overlaps recorded edit {old}")
        shift = deltas[i + 1]
        out.append(RecordedEdit(old.start + shift, old.end + shift, old.original, old.local))
    for i, edit in enumerate(ordered):
        start = edit.start + deltas[i]
        original = covered[i].original if i in covered else edit.old
        out.append(RecordedEdit(start, start + len(edit.new), original, edit.new))
    out.sort(key=lambda r: (r.start, r.end))
    return out


# --------------------------------------------------------------------------- restoring


@dataclass(frozen=True)
class Unrestored:
    """A recorded edit that could not be put back without guessing."""

    edit: RecordedEdit
    reason: str  # "not-found" | "ambiguous"
    candidates: int  # how many places the local text was found


@dataclass(frozen=True)
class RestoreResult:
    text: str
    restored: tuple[RecordedEdit, ...]  # with the offsets where each was found
    unrestored: tuple[Unrestored, ...]

    @property
    def complete(self) -> bool:
        return not self.unrestored


def _occurrences(text: str, needle: str) -> list[int]:
    found: list[int] = []
    if not needle:
        return found
    at = text.find(needle)
    while at != -1:
        found.append(at)
        at = text.find(needle, at + 1)
    return found


def locate_edits(
    text: str, edits: Sequence[RecordedEdit]
) -> tuple[list[RecordedEdit], list[Unrestored]]:
    """Find where each recorded edit's `local` text stands in `text`, without guessing.

    In order of preference: at its recorded offset; at its offset moved by the shift of the
    previous located edit (text inserted or removed above it); the only occurrence of its local
    text between its located neighbours that no edit with a different original could own;
    all occurrences of a local text, when exactly as many edits with that same original and
    local are left. Anything else is reported, not guessed.
    """
    ordered = sorted(edits, key=lambda e: (e.start, e.end))
    n = len(ordered)
    found: list[int | None] = [None] * n
    taken: list[tuple[int, int]] = []  # sorted claimed spans

    def free(start: int, end: int) -> bool:
        i = bisect.bisect_left(taken, (start, end))
        if i < len(taken) and taken[i][0] < end:
            return False
        return not (i > 0 and taken[i - 1][1] > start)

    def claim(k: int, start: int) -> None:
        found[k] = start
        bisect.insort(taken, (start, start + len(ordered[k].local)))

    # 1-2: recorded offset, then the offset shifted like the previous located edit.
    shift = 0
    for k, edit in enumerate(ordered):
        for at in (edit.start, edit.start + shift) if shift else (edit.start,):
            end = at + len(edit.local)
            if at >= 0 and text[at:end] == edit.local and free(at, end):
                claim(k, at)
                shift = at - edit.start
                break

    # 3: an occurrence of the local text between the located neighbours that only one edit
    # can own — or whose possible owners would all put back the same original, so which of
    # them is the one missing cannot change the text. One claim per pass: each narrows the
    # windows of the others.
    cache: dict[str, list[int]] = {}

    def occurrences(local: str) -> list[int]:
        if local not in cache:
            cache[local] = _occurrences(text, local)
        return cache[local]

    while any(f is None for f in found):
        low = [0] * n  # end of the nearest located edit before k
        edge = 0
        for k in range(n):
            low[k] = edge
            if found[k] is not None:
                edge = found[k] + len(ordered[k].local)  # type: ignore[operator]
        high = [len(text)] * n  # start of the nearest located edit after k
        edge = len(text)
        for k in range(n - 1, -1, -1):
            high[k] = edge
            if found[k] is not None:
                edge = found[k]  # type: ignore[assignment]
        spots_of: dict[int, list[int]] = {}
        owners: dict[int, list[int]] = {}
        for k, edit in enumerate(ordered):
            if found[k] is not None:
                continue
            size = len(edit.local)
            spots = [
                at
                for at in occurrences(edit.local)
                if low[k] <= at and at + size <= high[k] and free(at, at + size)
            ]
            spots_of[k] = spots
            for at in spots:
                owners.setdefault(at, []).append(k)
        claimed = False
        for k, spots in spots_of.items():
            if len(spots) != 1:
                continue
            pair = (ordered[k].original, ordered[k].local)
            if all((ordered[j].original, ordered[j].local) == pair for j in owners[spots[0]]):
                claim(k, spots[0])
                claimed = True
                break
        if not claimed:
            break

    # 4: a local text left unresolved in m edits that all have the same original, found exactly
    # m free times: restore them all (the result does not depend on the pairing).
    groups: dict[str, list[int]] = {}
    for k, edit in enumerate(ordered):
        if found[k] is None:
            groups.setdefault(edit.local, []).append(k)
    for local, ks in groups.items():
        if len({ordered[k].original for k in ks}) != 1:
            continue
        spots = [at for at in occurrences(local) if free(at, at + len(local))]
        if len(spots) == len(ks):
            for k, at in zip(ks, spots, strict=True):
                claim(k, at)

    located: list[RecordedEdit] = []
    missing: list[Unrestored] = []
    for k, edit in enumerate(ordered):
        at = found[k]
        if at is None:
            size = len(edit.local)
            count = sum(1 for at in occurrences(edit.local) if free(at, at + size))
            missing.append(Unrestored(edit, "ambiguous" if count else "not-found", count))
        else:
            located.append(RecordedEdit(at, at + len(edit.local), edit.original, edit.local))
    return located, missing


def restore_text(text: str, edits: Sequence[RecordedEdit]) -> RestoreResult:
    """Put each recorded edit's `original` back where its `local` text stands.

    On an untouched rewritten text this is the exact inverse of `apply_edits`. After hand
    edits, every edit that can be located unambiguously (see `locate_edits`) is restored and
    the rest are returned in `unrestored`, their text left as it is.
    """
    located, missing = locate_edits(text, edits)
    pieces: list[str] = []
    cursor = len(text)
    for edit in reversed(located):  # right to left: earlier offsets stay valid
        pieces.append(text[edit.end : cursor])
        pieces.append(edit.original)
        cursor = edit.start
    pieces.append(text[:cursor])
    return RestoreResult("".join(reversed(pieces)), tuple(located), tuple(missing))


# --------------------------------------------------------------------------- targets


def relative_target(article_path: Path, store_file: Path | str) -> str:
    """The store file as a posix path relative to the article's folder (`../../assets/…`)."""
    base = os.path.abspath(os.path.dirname(os.fspath(article_path)))
    target = os.path.abspath(os.fspath(store_file))
    rel = os.path.relpath(target, base)
    return rel if os.sep == "/" else PurePosixPath(*Path(rel).parts).as_posix()


def prefixed_target(prefix: str, store_rel: str) -> str:
    """A site-root URL: `prefix` joined to the store-relative posix path with one slash."""
    rel = store_rel.replace("\\", "/").lstrip("/")
    return f"{prefix.rstrip('/')}/{rel}"


# --------------------------------------------------------------------------- escaping


@dataclass(frozen=True)
class EscapeContext:
    """What surrounds the span, as far as escaping cares.

    `quote`: the quote that encloses the span (`"`, `'`, `\"\"\"`, `'''`) or None for a bare or
    plain value. `flow`: a YAML value inside `[...]`/`{...}`. `srcset`: an HTML `srcset`
    candidate URL, which must not contain whitespace or commas.
    """

    quote: str | None = None
    flow: bool = False
    srcset: bool = False


def _percent_encode(target: str, unsafe: str) -> str:
    """Percent-encode ASCII controls, space, DEL, `%` and the `unsafe` characters; non-ASCII
    stays as written (IRIs are fine in every syntax here, and renderers encode them).

    The target is text (a path), so a `%` in it is a literal percent sign: a folder named
    `50%20off` must not turn into `50 off`. Give `--url-prefix` unencoded for the same reason.
    """
    out: list[str] = []
    for ch in target:
        code = ord(ch)
        if code <= 0x20 or code == 0x7F or ch == "%" or ch in unsafe:
            out.append(f"%{code:02X}")
        else:
            out.append(ch)
    return "".join(out)


# Characters a URL may carry in each URL-bearing syntax without ending or changing the span.
_MARKDOWN_UNSAFE = "()<>\\`&"  # `&` would start an entity, `` ` `` a code span
_HTML_UNSAFE_UNQUOTED = "\"'=<>`&"
_SRCSET_UNSAFE = ","
_CSS_UNSAFE = "\"'()\\<>&`{};"
# A template-tag parameter (Hugo `"…"`/`` `…` ``, Liquid `"…"`/`'…'`, or a bare word): no
# quote, escape, brace, tag delimiter or `=` (a bare `a=b` is a named parameter) may appear.
_TEMPLATE_UNSAFE = "\"'`\\{}<>%&="

_YAML_INDICATORS = set("-?:,[]{}#&*!|>'\"%@`")
_YAML_FLOW = set(",[]{}")


# A path-like target PyYAML reads back as itself as a plain scalar, in block and flow context:
# no indicator, space, quote, `:`, `#` or flow character, and a `/` (so it cannot resolve to
# a number, boolean, null or date). Checked without a parse: a YAML load per front-matter
# reference was ~15 % of the rewrite stage.
_YAML_SAFE_PATH = re.compile(r"[A-Za-z0-9_./~][A-Za-z0-9_./~+-]*\Z")


def _yaml_plain_ok(target: str, flow: bool) -> bool:
    import yaml  # only needed for YAML; keeps import time low elsewhere

    if "/" in target and _YAML_SAFE_PATH.match(target):
        return True
    if not target or target != target.strip() or any(ord(c) < 0x20 for c in target):
        return False
    if target[0] in _YAML_INDICATORS and not (
        target[0] in "-?:" and len(target) > 1 and target[1] not in " \t"
    ):
        return False
    if ": " in target or " #" in target or target.endswith(":"):
        return False
    if flow and (set(target) & _YAML_FLOW):
        return False
    # The rules above are the spec; PyYAML (what Hexo/Jekyll tooling in Python reads with, and
    # stricter than the spec in flow context) has the last word.
    doc = f"k: [{target}]\n" if flow else f"k: {target}\n"
    try:
        parsed = yaml.safe_load(doc)["k"]
    except yaml.YAMLError:
        return False
    if flow:
        return isinstance(parsed, list) and parsed == [target]
    return parsed == target


def _yaml_double(target: str) -> str:
    out: list[str] = []
    for ch in target:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif (
            code < 0x20 or code == 0x7F or 0x80 <= code <= 0x9F or code in (0x2028, 0x2029, 0xFEFF)
        ):
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


def _toml_basic(target: str) -> str:
    out: list[str] = []
    for ch in target:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04X}")
        else:
            out.append(ch)
    return "".join(out)


def escape_for(syntax: str, target: str, context: EscapeContext | None = None) -> str:
    """Return `target` written so it parses back as itself where it lands.

    URL-bearing syntaxes (`markdown`, `markdown-angle`, `html`, `css`, `template`) get a valid URL
    reference: characters that would end or change the span are percent-encoded (the decoded
    URL is the target), then HTML escapes `&`, `<`, `>` and the enclosing quote as entities.
    Data syntaxes (`yaml`, `toml`, `json`) get the target string escaped for the quoting seen
    around the span; a YAML plain scalar that cannot hold the target becomes a quoted scalar
    *inside the span*. Raises `EscapeError` when the target cannot be written without touching
    text outside the span (e.g. a `'` inside a TOML literal string).
    """
    ctx = context or EscapeContext()
    if syntax == "markdown":
        return _percent_encode(target, _MARKDOWN_UNSAFE)
    if syntax == "markdown-angle":
        return _percent_encode(target, _MARKDOWN_UNSAFE)
    if syntax == "html":
        if ctx.quote is None:
            unsafe = _HTML_UNSAFE_UNQUOTED + (_SRCSET_UNSAFE if ctx.srcset else "")
            return _percent_encode(target, unsafe)
        url = _percent_encode(target, _SRCSET_UNSAFE if ctx.srcset else "")
        url = url.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        if ctx.quote == '"':
            return url.replace('"', "&quot;")
        if ctx.quote == "'":
            return url.replace("'", "&#39;")
        raise EscapeError(f"unknown HTML attribute quote {ctx.quote!r}")
    if syntax == "css":
        return _percent_encode(target, _CSS_UNSAFE)
    if syntax == "template":
        return _percent_encode(target, _TEMPLATE_UNSAFE)
    if syntax == "json":
        return json.dumps(target, ensure_ascii=False)[1:-1]
    if syntax == "yaml":
        if ctx.quote == "'":
            if any(ord(c) < 0x20 and c != "\t" for c in target):
                raise EscapeError("a single-quoted YAML scalar cannot hold control characters")
            return target.replace("'", "''")
        if ctx.quote == '"':
            return _yaml_double(target)
        if ctx.quote is None:
            if _yaml_plain_ok(target, ctx.flow):
                return target
            if any(ord(c) < 0x20 for c in target):
                return '"' + _yaml_double(target) + '"'
            return "'" + target.replace("'", "''") + "'"
        raise EscapeError(f"unknown YAML quote {ctx.quote!r}")
    if syntax == "toml":
        if ctx.quote in ('"', '"""'):
            return _toml_basic(target)
        if ctx.quote in ("'", "'''"):
            bad = "'" if ctx.quote == "'" else "'''"
            if bad in target or any(ord(c) < 0x20 and c != "\t" for c in target):
                raise EscapeError(f"a TOML literal string cannot hold {target!r}")
            return target
        raise EscapeError("a TOML value outside quotes is not a string")
    raise EscapeError(f"unknown syntax {syntax!r}")


def _html_attribute_quote(text: str, start: int) -> str | None:
    """The quote of the attribute value that contains `start` (None when unquoted)."""
    tag_open = text.rfind("<", 0, start)
    equals = text.rfind("=", max(tag_open, 0), start)
    if equals == -1:
        return None
    at = equals + 1
    while at < start and text[at] in " \t\r\n\f":
        at += 1
    if at < start and text[at] in ("'", '"') and text.find(text[at], at + 1, start) == -1:
        return text[at]
    return None


def context_around(text: str, start: int, end: int, syntax: str, field: str = "") -> EscapeContext:
    """Infer the `EscapeContext` of the span [start, end) from the characters next to it."""
    before = text[start - 1] if start > 0 else ""
    after = text[end] if end < len(text) else ""
    if syntax == "html":
        quote = _html_attribute_quote(text, start)
        return EscapeContext(quote=quote, srcset="srcset" in field.lower())
    if syntax == "css":
        quote = before if before in ("'", '"') and after == before else None
        return EscapeContext(quote=quote)
    if syntax == "toml":
        for q in ('"""', "'''", '"', "'"):
            if text[max(0, start - len(q)) : start] == q:
                return EscapeContext(quote=q)
        return EscapeContext()
    if syntax == "yaml":
        quote = before if before in ("'", '"') and after == before else None
        line_start = text.rfind("\n", 0, start) + 1
        depth = 0
        for ch in text[line_start:start]:
            if ch in "[{":
                depth += 1
            elif ch in "]}":
                depth -= 1
        return EscapeContext(quote=quote, flow=depth > 0)
    if syntax == "json":
        return EscapeContext(quote='"')
    return EscapeContext()


# --------------------------------------------------------------------------- atomic write


def check_replaceable(path: Path) -> os.stat_result | None:
    """Refuse articles we must not replace; return the current stat (None if missing)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        raise UnsafeArticle(path, "symlink", "is a symbolic link; not replaced")
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeArticle(path, "not-a-file", "is not a regular file; not replaced")
    # Mode bits, not os.access: root may write anything, but a file made read-only says
    # "leave me alone".
    if not st.st_mode & 0o222 or not os.access(path, os.W_OK):
        raise UnsafeArticle(path, "read-only", "is read-only; not replaced")
    return st


def _create_temp(folder: Path, name: str, mode: int) -> tuple[int, str]:
    for _ in range(100):
        tmp_name = os.path.join(folder, f".{name}{TEMP_MARKER}{secrets.token_hex(6)}")
        try:
            return os.open(tmp_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), tmp_name
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot create a temp file beside {name} in {folder}")


def write_bytes_atomic(
    path: Path, data: bytes | Iterable[bytes], *, sync_folder: bool = True
) -> None:
    """Replace `path` with `data` so a crash leaves either the old or the new bytes.

    `data` may be an iterable of byte chunks (streamed: a big manifest is never held whole).
    `sync_folder=False` leaves the folder's fsync to the caller, who then owes one
    `sync_folders()` over every folder it wrote to before relying on the new names.

    Temp file in the same folder → write → fsync → same mode (and owner, when allowed) →
    `os.replace` → fsync the folder. Symlinks, non-regular and read-only files raise
    `UnsafeArticle`; a new file gets the default mode (0o666 minus umask).
    """
    path = Path(path)
    st = check_replaceable(path)
    folder = path.parent if str(path.parent) else Path(".")
    # A new file is created 0o666 so the kernel applies the umask (changing the umask here
    # would race with other threads); a replaced file gets its old mode back below.
    fd, tmp_name = _create_temp(folder, path.name, 0o600 if st is not None else 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            if isinstance(data, (bytes, bytearray, memoryview)):
                fh.write(data)
            else:
                for chunk in data:
                    fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
            if st is not None:
                os.fchmod(fh.fileno(), stat.S_IMODE(st.st_mode))
                if hasattr(os, "fchown"):
                    with contextlib.suppress(PermissionError):
                        os.fchown(fh.fileno(), st.st_uid, st.st_gid)
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    if sync_folder:
        fsync_dir(folder)


def sync_folders(folders: Iterable[Path]) -> None:
    """fsync each folder once (after `write_bytes_atomic(..., sync_folder=False)` calls)."""
    for folder in dict.fromkeys(folders):
        fsync_dir(folder)


def remove_stale_temps(folder: Path) -> list[Path]:
    """Delete temp files a killed run left in `folder` (call under the run lock)."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if (
            entry.name.startswith(".")
            and TEMP_MARKER in entry.name
            and entry.is_file(follow_symlinks=False)
        ):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed
