"""The run lock: one harvester at a time per manifest (cron-safe).

Input: the manifest path. Output: a context manager holding `<manifest>.lock` (filelock, an
OS-level lock released by the kernel if the process dies, so a killed run never leaves a stale
lock). Non-blocking: if another process holds it, `LockHeld` (exit 75, EX_TEMPFAIL) is raised
at once and nothing is changed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from harvester.errors import LockHeld, UsageError


def lock_path(manifest_path: Path) -> Path:
    manifest_path = Path(manifest_path)
    return manifest_path.with_name(manifest_path.name + ".lock")


@contextmanager
def run_lock(manifest_path: Path) -> Iterator[Path]:
    """Hold the lock beside `manifest_path` for the duration of the block; yield its path."""
    path = lock_path(manifest_path)
    if not path.parent.is_dir():
        raise UsageError(
            f"the manifest's folder {path.parent} does not exist; create it or pass --manifest"
        )
    lock = FileLock(str(path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise LockHeld(
            f"another harvester run holds the lock {path}; try again later "
            "(the lock is released automatically when that process ends)"
        ) from None
    except OSError as exc:  # read-only folder or file system, not ours to fix
        raise UsageError(f"cannot create the lock file {path}: {exc.strerror}") from exc
    try:
        yield path
    finally:
        lock.release()
