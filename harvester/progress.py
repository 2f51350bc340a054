"""Progress reporting for `harvester run`: a live rich display on a terminal, nothing in cron.

The pipeline only calls `Progress` methods; which implementation it gets is the CLI's choice
(`RichProgress` when stderr is a terminal and not `--quiet`, else `NullProgress`).
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def start(self, phase: str, total: int | None = None) -> None: ...

    def advance(self, phase: str, amount: int = 1, **counts: int) -> None: ...

    def stop(self) -> None: ...


class NullProgress:
    """For cron, pipes and tests: say nothing."""

    def start(self, phase: str, total: int | None = None) -> None:
        pass

    def advance(self, phase: str, amount: int = 1, **counts: int) -> None:
        pass

    def stop(self) -> None:
        pass


class RichProgress:
    """One bar per phase (scan, fetch, process, rewrite) with live counters."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]{task.description:<8}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[counts]}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._tasks: dict[str, int] = {}
        self._counts: dict[str, dict[str, int]] = {}
        self._progress.start()

    def start(self, phase: str, total: int | None = None) -> None:
        if phase not in self._tasks:
            self._tasks[phase] = self._progress.add_task(phase, total=total, counts="")
            self._counts[phase] = {}
        else:
            self._progress.update(self._tasks[phase], total=total)

    def advance(self, phase: str, amount: int = 1, **counts: int) -> None:
        if phase not in self._tasks:
            self.start(phase)
        tally = self._counts[phase]
        for key, value in counts.items():
            tally[key] = tally.get(key, 0) + value
        text = "  ".join(f"{k} {_human(k, v)}" for k, v in tally.items())
        self._progress.update(self._tasks[phase], advance=amount, counts=text)

    def stop(self) -> None:
        self._progress.stop()


def _human(key: str, value: int) -> str:
    if key == "bytes":
        from harvester.units import format_size

        return format_size(value)
    return str(value)
