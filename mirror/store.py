"""The content-addressed store: bytes in, `<root>/<aa>/<bb>/<sha256>.<ext>` out.

Input: temp files the fetcher filled (with the sha256 it computed while streaming), or whole
byte strings for derived files (thumbnails). Output: files under `root` only, written to
`<root>/.tmp/` first and then `os.replace`d into place with the file and its folder fsynced, so
a crash leaves either the old state or the new one, never half a file. The same bytes arriving
from two URLs are stored once.

Every method that takes a relative path refuses one that would leave the root: absolute paths,
`..` parts, backslashes, and paths whose real location (after symlinks) is outside the root.
Nothing here is thread-unsafe: the fetcher calls `temp_file`/`commit` from worker threads.

This module is plain filesystem code (no HTTP, no harvester imports) so another store, e.g. an
object store behind the same methods, can replace it later.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from mirror._fsync import fsync_dir, fsync_file
from mirror.records import StoredFile

TEMP_DIR = ".tmp"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_EXT = re.compile(r"^[a-z0-9]{1,8}$")


class StorePathError(ValueError):
    """A relative path that would leave the store root (or is not a valid store name)."""


class Store:
    """A folder of content-addressed files. See the module docstring."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._real_root: Path | None = None
        self._temp_ready = False
        # commit(durable=False) files (with the folders made for them) awaiting sync()
        self._unsynced: list[tuple[Path, list[Path]]] = []
        self._unsynced_lock = threading.Lock()
        # held for a whole sync(): a second caller (a manifest save) must wait for the files a
        # sync in flight took, not find the list empty and go on
        self._syncing = threading.Lock()

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    # -- paths ---------------------------------------------------------------------------

    @property
    def temp_dir(self) -> Path:
        return self.root / TEMP_DIR

    def _real(self) -> Path:
        # Resolved lazily: the root may not exist until the first write.
        if self._real_root is None or not self._real_root.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            self._real_root = self.root.resolve()
        return self._real_root

    def _checked(self, rel: str) -> Path:
        """The absolute path for `rel`, or StorePathError if it would leave the root."""
        if not isinstance(rel, str) or not rel or "\\" in rel or "\x00" in rel:
            raise StorePathError(f"not a store path: {rel!r}")
        parts = rel.split("/")  # canonical posix form only: no "", ".", ".." parts
        if any(part in ("", ".", "..") for part in parts):
            raise StorePathError(f"store path escapes the root or is not canonical: {rel!r}")
        if parts[0] == TEMP_DIR:
            raise StorePathError(f"store path points into the temp folder: {rel!r}")
        root = self._real()
        candidate = root.joinpath(*parts)
        if not has_link(str(root), parts):
            return candidate  # no link below the (resolved) root: it cannot lead outside
        # resolve() follows symlinks in existing parts; a link pointing outside is refused.
        real = candidate.resolve()
        if real != root and root not in real.parents:
            raise StorePathError(f"store path leaves the root through a symlink: {rel!r}")
        return candidate

    @staticmethod
    def path_for(sha256: str, ext: str) -> str:
        """The relative store path of a file with this hash and extension."""
        if not _SHA256.match(sha256):
            raise StorePathError(f"not a lowercase hex sha256: {sha256!r}")
        if not _EXT.match(ext):
            raise StorePathError(f"not a file extension: {ext!r}")
        return f"{sha256[:2]}/{sha256[2:4]}/{sha256}.{ext}"

    def abspath(self, rel: str) -> Path:
        return self._checked(rel)

    def exists(self, rel: str) -> bool:
        return self._checked(rel).is_file()

    # -- temp files ----------------------------------------------------------------------

    def sweep_temp(self) -> int:
        """Remove leftovers of interrupted writes; returns how many entries were removed.

        Call it at start, while holding the run lock, so no other writer is using them.
        """
        tmp = self.temp_dir
        self._temp_ready = False
        if not tmp.is_dir() or tmp.is_symlink():
            if tmp.is_symlink():  # never follow a link out of the root to delete things
                tmp.unlink()
                return 1
            return 0
        removed = 0
        for entry in os.scandir(tmp):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
            removed += 1
        return removed

    def temp_file(self) -> Path:
        """A new, empty, uniquely named file in `<root>/.tmp/`, ready to be written.

        Returned as a path (not an open handle) so the caller can fill it from a worker
        thread or with aiofiles; `commit` or `discard` it afterwards.
        """
        path, fd = self._open_temp()
        os.close(fd)
        return path

    def _open_temp(self) -> tuple[Path, int]:
        """`temp_file`'s new file, with its descriptor still open for writing."""
        self._real()
        if not self._temp_ready:
            self.temp_dir.mkdir(exist_ok=True)
            self._temp_ready = True
        # pid + counter names are unique across the run's processes without mkstemp's random
        # names (Python-level, a few % of a run's main process); a clash falls back to it
        path = self.temp_dir / f"part-{os.getpid()}-{next(_TEMP_COUNTER)}.tmp"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW, 0o600)
        except FileExistsError:
            fd, name = tempfile.mkstemp(dir=self.temp_dir, prefix="part-", suffix=".tmp")
            path = Path(name)
        return path, fd

    def discard(self, temp: Path) -> None:
        """Delete a temp file that will not be committed (missing is fine)."""
        self._check_temp(temp)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)

    def _check_temp(self, temp: Path) -> Path:
        temp = Path(temp)
        if temp.parent == self.temp_dir and not temp.is_symlink() and self._temp_ready:
            return temp  # one of ours (temp_file's own spelling), the folder checked
        if temp.resolve().parent != self.temp_dir.resolve():
            raise StorePathError(f"not a temp file of this store: {temp}")
        return temp

    # -- writes --------------------------------------------------------------------------

    def commit(self, temp: Path, sha256: str, ext: str, *, durable: bool = True) -> StoredFile:
        """Move a filled temp file to its content address; the same bytes are stored once.

        `sha256` is the caller's hash of the temp file's bytes (computed while streaming,
        so nothing is read twice). If a file with that hash is already stored the temp is
        discarded and the existing file is reported.

        `durable=False` skips the fsyncs and leaves them to the next `sync()`, which must run
        before anything durable (a saved manifest) names the file: a run commits thousands of
        files from its event loop and syncs them in one batch per checkpoint.
        """
        temp = self._check_temp(temp)
        rel = self.path_for(sha256, ext)
        dest = self._checked(rel)
        size = os.stat(temp).st_size
        if _same_size_file(dest, size):
            os.unlink(temp)
            return StoredFile(sha256=sha256, size=size, ext=ext, path=rel)
        # (a file there with another size is a copy a power cut cut short — files committed
        # with durable=False are synced later — so the new bytes replace it)
        if durable:
            fsync_file(temp)
        _publishable(temp)
        created = _make_dirs(dest.parent, stop=self._real())
        os.replace(temp, dest)
        if durable:
            _sync_folders(dest.parent, created)
        else:
            with self._unsynced_lock:
                self._unsynced.append((dest, created))
        return StoredFile(sha256=sha256, size=size, ext=ext, path=rel)

    def sync(self) -> int:
        """Make every `commit(durable=False)` so far durable (file, folder, new folders'
        parents); returns how many files. Thread-safe; files removed since are skipped."""
        with self._syncing:
            with self._unsynced_lock:
                pending, self._unsynced = self._unsynced, []
            try:
                for dest, _created in pending:
                    with contextlib.suppress(FileNotFoundError):
                        fsync_file(dest)
                folders = dict.fromkeys(
                    [dest.parent for dest, _ in pending]
                    + [folder.parent for _, created in pending for folder in created]
                )
                for folder in folders:
                    with contextlib.suppress(FileNotFoundError):
                        fsync_dir(folder)
            except BaseException:
                # nothing of this batch counts as durable: the next sync tries it all again
                # (and fails again, so no manifest naming these files is ever saved)
                with self._unsynced_lock:
                    self._unsynced[:0] = pending
                raise
            return len(pending)

    def write_atomic(self, rel: str, data: bytes, *, durable: bool = True) -> None:
        """Write `data` to `rel` (e.g. `thumbs/320/ab/<sha>.webp`) atomically, replacing it.

        `durable=False` skips the fsyncs: for derived files (thumbnails) that a later run
        remakes if a crash leaves them short, where an fsync costs more than making them.
        """
        dest = self._checked(rel)
        temp, fd = self._open_temp()
        try:
            # through the descriptor that made the file: reopening it with "wb" truncates it,
            # which on ext4 doubled the cost of writing a 10 KB thumbnail (≈ 120 → 60 µs)
            with open(fd, "wb", closefd=True) as fh:
                fh.write(data)
                fh.flush()
                os.fchmod(fd, _PUBLISHED_MODE)
                if durable:
                    os.fsync(fd)
            created = _make_dirs(dest.parent, stop=self._real())
            os.replace(temp, dest)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise
        if durable:
            _sync_folders(dest.parent, created)

    def remove(self, rel: str) -> None:
        """Delete a stored file and prune the folders it leaves empty (missing is fine)."""
        path = self._checked(rel)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        root = self._real()
        parent = path.parent
        while parent != root and root in parent.parents:
            try:
                parent.rmdir()
            except OSError:  # not empty (or gone): stop pruning
                break
            parent = parent.parent

    # -- reads ---------------------------------------------------------------------------

    def iter_files(self) -> Iterator[str]:
        """Relative posix paths of every stored file (thumbnails too), `.tmp` excluded.

        Sorted, so callers (gc, verify) are deterministic. Symlinks are not followed.
        """
        if not self.root.is_dir():
            return
        root = self.root

        def walk(folder: Path, prefix: str) -> Iterator[str]:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
            for entry in entries:
                if entry.is_symlink():
                    continue
                if entry.is_dir():
                    if not prefix and entry.name == TEMP_DIR:
                        continue
                    yield from walk(Path(entry.path), f"{prefix}{entry.name}/")
                elif entry.is_file():
                    yield f"{prefix}{entry.name}"

        yield from walk(root, "")


def _publishable(path: Path) -> None:
    """Temp files are created 0600; stored images are served by web servers: 0644 less umask."""
    os.chmod(path, _PUBLISHED_MODE)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()
_PUBLISHED_MODE = 0o666 & ~_UMASK


_TEMP_COUNTER = itertools.count()
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def _same_size_file(path: Path, size: int) -> bool:
    try:
        info = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    return stat.S_ISREG(info.st_mode) and info.st_size == size


def _sync_folders(folder: Path, created: list[Path]) -> None:
    fsync_dir(folder)
    for new in created:  # new folders must be durable in their parents too
        fsync_dir(new.parent)


def has_link(root: str, parts: list[str]) -> bool:
    """Whether any existing part of `root/parts...` (below root) is a symbolic link.

    One lstat per part: a full resolve() also walks the root's own parts and costs ~10x more,
    which was ~5 % of a run's main-process CPU (every stored file is checked a few times).
    """
    path = root
    for part in parts:
        path = f"{path}/{part}"
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return False  # what does not exist yet is made by us, as a folder or file
        except NotADirectoryError:
            return False
        if stat.S_ISLNK(mode):
            return True
    return False


def _make_dirs(folder: Path, stop: Path) -> list[Path]:
    """mkdir -p, returning the folders that were created (outermost first)."""
    missing: list[Path] = []
    current = folder
    while not current.exists() and current != stop:
        missing.append(current)
        current = current.parent
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another thread made it first
            path.mkdir()
    return list(reversed(missing))
