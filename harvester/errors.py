"""Errors the CLI and library callers can act on.

Every error that ends a command carries its exit code (as click's exceptions do), so the CLI
maps errors to exit codes in one place:

    HarvesterError            exit 2 unless a subclass says otherwise
    ├── UsageError            bad arguments or paths (2)
    ├── ConfigError           a bad `harvester.toml` value (2)
    ├── ManifestError         the manifest cannot be read; it was moved aside (2)
    ├── LockHeld              another run holds the lock beside the manifest (75, EX_TEMPFAIL)
    ├── Interrupted           SIGINT/SIGTERM/SIGHUP after the manifest was saved (130/143/129)
    ├── VerifyFailed          `verify` found missing or damaged files (1)
    ├── StrictFailure         `--strict` and at least one image failed (1)
    └── ArticleError          one article cannot be loaded (binary, unreadable, bad encoding);
                              batch callers record it for that file and go on

Per-image problems are not exceptions at the top level: a failed download becomes a
`FetchFailure` record with a stable reason code, and the run goes on.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


class HarvesterError(Exception):
    """Base class: a problem that ends the current command with `exit_code`."""

    exit_code = 2


class UsageError(HarvesterError):
    exit_code = 2


def require_paths(paths: Iterable[Path]) -> None:
    """UsageError naming every path given on the command line that does not exist: a typo
    is a usage error, never an empty result."""
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise UsageError(f"no such file or folder: {', '.join(missing)}")


class ConfigError(HarvesterError):
    exit_code = 2


class ManifestError(HarvesterError):
    exit_code = 2


class LockHeld(HarvesterError):
    exit_code = 75


class Interrupted(HarvesterError):
    """The run stopped on a signal after saving the manifest."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by signal {signum}; the manifest was saved")
        self.signum = signum
        self.exit_code = 128 + signum


class VerifyFailed(HarvesterError):
    exit_code = 1


class StrictFailure(HarvesterError):
    exit_code = 1


class ArticleError(HarvesterError):
    """One article cannot be read as text. `reason` is a stable code:
    "unreadable", "too-large", "binary", "bad-encoding", "unencodable"."""

    def __init__(self, path: object, reason: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.reason = reason
        self.message = message
