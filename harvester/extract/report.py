"""The `harvester scan` command's work: paths + options → a table or JSON on stdout.

Input: the command's arguments. Output: refs printed as a rich table (terminal) or a JSON
array streamed one object at a time (so memory does not grow with the number of articles);
per-file warnings on stderr. Settings come from defaults ← config file ← flags.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from harvester.errors import require_paths
from harvester.records import ImageRef
from harvester.settings import build_settings

JSON_FIELDS = (
    "article", "line", "kind", "url", "raw", "policy", "referer",
    "field", "syntax", "start", "end", "page_url",
)  # fmt: skip


def run_scan(
    *,
    paths: list[Path],
    json_output: bool,
    site_url: str | None,
    page_url_keys: list[str] | None,
    default_policy: str | None,
    config: Path | None,
) -> int:
    from harvester.extract import scan_paths

    require_paths(paths)
    settings, _ = build_settings(
        config,
        site_url=site_url,
        page_url_keys=tuple(page_url_keys) if page_url_keys else None,
        default_policy=default_policy,
    )
    # One process: on a busy machine worker processes measured slower (see docs/scanning.md).
    results = scan_paths(paths, settings)
    if json_output:
        return _print_json(results)
    return _print_table(results)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _printable(text: str) -> str:
    """File names that are not UTF-8 carry surrogate escapes; show them as U+FFFD."""
    return _SURROGATE.sub("\ufffd", text)


def _warn(result) -> None:
    for warning in result.warnings:
        sys.stderr.write(_printable(f"harvester: warning: {result.path}: {warning}\n"))


def ref_as_dict(ref: ImageRef) -> dict[str, Any]:
    return {name: getattr(ref, name) for name in JSON_FIELDS}


def _print_json(results) -> int:
    out = sys.stdout
    count = 0
    out.write("[")
    for result in results:
        _warn(result)
        for ref in result.refs:
            out.write(",\n  " if count else "\n  ")
            line = json.dumps(ref_as_dict(ref), ensure_ascii=False)
            if _SURROGATE.search(line):  # a file name that is not UTF-8: escape it in JSON
                line = json.dumps(ref_as_dict(ref))
            out.write(line)
            count += 1
    out.write("\n]\n" if count else "]\n")
    out.flush()
    return count


def _print_table(results) -> int:
    """One table per article on a terminal; plain tab-separated lines when piped."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    count = files = 0
    for result in results:
        _warn(result)
        files += 1
        if not result.refs:
            continue
        if not console.is_terminal:
            for ref in result.refs:
                fields = (f"{ref.article}:{ref.line}", ref.kind, ref.policy, ref.referer or "-")
                sys.stdout.write(_printable("\t".join((*fields, ref.url))) + "\n")
            count += len(result.refs)
            continue
        table = Table(title=_printable(str(result.path)), title_justify="left", expand=False)
        table.add_column("line", justify="right", no_wrap=True)
        table.add_column("kind", no_wrap=True)
        table.add_column("policy")
        table.add_column("referer", overflow="fold")
        table.add_column("url", overflow="fold")
        for ref in result.refs:
            table.add_row(str(ref.line), ref.kind, ref.policy, ref.referer or "—", ref.url)
            count += 1
        console.print(table)
    message = f"{count} remote image reference(s) in {files} file(s)."
    if console.is_terminal:
        console.print(message)
    else:
        sys.stderr.write(message + "\n")
    return count
