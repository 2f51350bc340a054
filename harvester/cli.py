"""The command line: a thin typer layer over the library.

Each command parses its options, builds a `Settings`, calls one library function and prints.
Library modules are imported inside the commands so `harvester --help` stays fast. Errors are
`HarvesterError`s carrying their exit code; `main()` maps them in one place.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from harvester import __version__
from harvester.errors import HarvesterError

app = typer.Typer(
    name="harvester",
    help=(
        "Make a folder of articles own its pictures: find every remote image, mirror it "
        "locally, make thumbnails, fold duplicates, rewrite the articles (reversibly) and "
        "write manifest.json."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"harvester {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """harvester — mirror the images your articles hotlink."""


# Common option types, shared by the commands so they read and behave the same everywhere.
PathsArg = Annotated[
    list[Path] | None,
    typer.Argument(help="Article files or folders (searched recursively). Default: '.'"),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", help="Config file (TOML). Default: ./harvester.toml if present."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print only errors (for cron).")]


def main() -> None:
    """Console-script entry point: run the app, mapping HarvesterError to its exit code.

    Click handles its own usage errors (exit 2) in standalone mode; our errors pass through it.
    """
    try:
        app()
    except HarvesterError as exc:
        typer.echo(f"harvester: error: {exc}", err=True)
        sys.exit(exc.exit_code)


# --------------------------------------------------------------------------- maintenance
# restore / verify / gc: thin wrappers over harvester.maintenance (which takes the lock).

ManifestOpt = Annotated[
    Path | None,
    typer.Option("--manifest", help="The manifest file. Default: ./manifest.json."),
]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Show what would change; change nothing.")
]


def _manifest_path(manifest: Path | None, config: Path | None) -> Path:
    """--manifest wins over the config file's `manifest`, which wins over ./manifest.json."""
    if manifest is not None:
        return manifest
    from harvester.settings import Settings, load_config

    if config is None and Path("harvester.toml").is_file():
        config = Path("harvester.toml")
    values = load_config(config) if config is not None else {}
    return Path(values.get("manifest", Settings().manifest))


def _emit_json(data: object) -> None:
    import json

    typer.echo(json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True))


RestorePathsArg = Annotated[
    list[Path] | None,
    typer.Argument(
        help="Restore only articles under these files or folders. Default: every article "
        "the manifest rewrote."
    ),
]


@app.command(
    help="Put the original image URLs back into rewritten articles, byte for byte. "
    "Articles edited by hand since the rewrite are restored as far as unambiguous; "
    "what is left is listed."
)
def restore(
    paths: RestorePathsArg = None,
    manifest: ManifestOpt = None,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    dry_run: DryRunOpt = False,
) -> None:
    from harvester import maintenance

    report = maintenance.restore(_manifest_path(manifest, config), paths or None, dry_run=dry_run)
    if json_out:
        _emit_json(report.to_dict())
        return
    verb = "would restore" if dry_run else "restored"
    for item in report.articles:
        if item.status in ("restored", "already-original"):
            if not quiet:
                typer.echo(f"{verb}: {item.path}")
        elif item.status == "partial":
            typer.echo(
                f"partly {verb}: {item.path} ({item.restored} spans; "
                f"{len(item.unrestored)} could not be located, left as they are)",
                err=True,
            )
            for u in item.unrestored:
                typer.echo(f"    {u['reason']}: {u['local']} (was {u['original']})", err=True)
        else:
            typer.echo(f"{item.status}: {item.path}: {item.message}", err=True)
    if not quiet:
        done = report.count("restored") + report.count("already-original")
        typer.echo(
            f"{done} article(s) {verb}, {report.count('partial')} partly, "
            f"{report.count('skipped') + report.count('missing') + report.count('error')} not."
        )


@app.command(
    help="Check the store against the manifest: every asset exists and has its sha256, "
    "every thumbnail exists. Exit 1 with a list otherwise."
)
def verify(
    manifest: ManifestOpt = None,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    from harvester import maintenance
    from harvester.errors import VerifyFailed

    report = maintenance.verify(_manifest_path(manifest, config))
    if json_out:
        _emit_json(report.to_dict())
    else:
        for p in report.problems:
            typer.echo(
                f"{p.problem}: {p.path} (asset {p.sha256[:12]}) {p.detail}".rstrip(), err=True
            )
        if not quiet:
            typer.echo(
                f"checked {report.assets} asset(s) ({report.bytes} bytes) and "
                f"{report.thumbnails} thumbnail(s): "
                + ("all good." if report.ok else f"{len(report.problems)} problem(s).")
            )
    if not report.ok:
        error = VerifyFailed(f"{len(report.problems)} store file(s) missing or damaged")
        error.problems = report.problems  # type: ignore[attr-defined]
        raise error


@app.command(
    help="Remove store files (assets, thumbnails) that no article references. --dry-run lists them."
)
def gc(
    manifest: ManifestOpt = None,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    dry_run: DryRunOpt = False,
    grace: Annotated[
        str,
        typer.Option(
            "--grace",
            help="Keep unreferenced assets last referenced within this long (30d, 12h, 90m).",
        ),
    ] = "0",
) -> None:
    from harvester import maintenance

    report = maintenance.gc(
        _manifest_path(manifest, config),
        dry_run=dry_run,
        grace=maintenance.parse_duration(grace),
    )
    if json_out:
        _emit_json(report.to_dict())
        return
    verb = "would remove" if dry_run else "removed"
    if not quiet:
        for path in report.removed:
            typer.echo(f"{verb}: {path}")
        typer.echo(
            f"{len(report.removed)} file(s) {verb} ({report.bytes} bytes); "
            f"{len(report.kept_by_grace)} unreferenced asset(s) kept by --grace."
        )
