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


OutOpt = Annotated[
    Path | None, typer.Option("--out", help="Store folder for mirrored images. Default: ./assets")
]
ManifestOpt = Annotated[
    Path | None, typer.Option("--manifest", help="Manifest file. Default: ./manifest.json")
]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Show what would happen; write nothing.")
]


@app.command()
def run(
    paths: PathsArg = None,
    out: OutOpt = None,
    manifest: ManifestOpt = None,
    config: ConfigOpt = None,
    json_output: JsonOpt = False,
    quiet: QuietOpt = False,
    dry_run: DryRunOpt = False,
    no_rewrite: Annotated[
        bool, typer.Option("--no-rewrite", help="Mirror and record, but leave articles alone.")
    ] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 when any image failed.")] = False,
    refresh: Annotated[
        bool,
        typer.Option("--refresh", help="Revalidate mirrored URLs (conditional requests)."),
    ] = False,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Retry failed URLs now, ignoring back-off.")
    ] = False,
    site_url: Annotated[
        str | None,
        typer.Option("--site-url", help="The site's own URL: the Referer source for its pages."),
    ] = None,
    page_url_key: Annotated[
        list[str] | None,
        typer.Option("--page-url-key", help="Front-matter key holding the page URL (repeatable)."),
    ] = None,
    url_prefix: Annotated[
        str | None,
        typer.Option(
            "--url-prefix",
            help="Rewrite to site-root URLs PREFIX/aa/bb/<sha>.<ext>, not relative paths.",
        ),
    ] = None,
    default_policy: Annotated[
        str | None,
        typer.Option("--default-policy", help="Referrer policy when an article sets none."),
    ] = None,
    resolve: Annotated[
        list[str] | None,
        typer.Option("--resolve", help="HOST:PORT:ADDR, as curl (repeatable; '*' for any host)."),
    ] = None,
    allow_private_addresses: Annotated[
        bool | None,
        typer.Option(
            "--allow-private-addresses",
            help="Allow loopback/private/link-local targets (refused by default: SSRF).",
        ),
    ] = None,
    ca_bundle: Annotated[
        Path | None, typer.Option("--ca-bundle", help="Extra CA certificates (PEM).")
    ] = None,
    user_agent: Annotated[str | None, typer.Option("--user-agent", help="User-Agent.")] = None,
    concurrency: Annotated[
        int | None, typer.Option("--concurrency", help="Downloads at once (all hosts).")
    ] = None,
    per_host: Annotated[
        int | None, typer.Option("--per-host", help="Downloads at once per host.")
    ] = None,
    thumbnail_size: Annotated[
        list[int] | None,
        typer.Option("--thumbnail-size", help="Thumbnail longest side in px (repeatable)."),
    ] = None,
    thumbnail_format: Annotated[
        str | None, typer.Option("--thumbnail-format", help="webp, jpeg or png.")
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", help="Image worker processes (0 = cores).")
    ] = None,
) -> None:
    """Scan, fetch, process, dedupe, rewrite and write the manifest."""
    from harvester.pipeline import run as run_pipeline
    from harvester.settings import build_settings

    settings = build_settings(
        config,
        out=out,
        manifest=manifest,
        dry_run=dry_run or None,
        rewrite=False if no_rewrite else None,
        strict=strict or None,
        refresh=refresh or None,
        retry_failed=retry_failed or None,
        site_url=site_url,
        page_url_keys=tuple(page_url_key) if page_url_key else None,
        url_prefix=url_prefix,
        default_policy=default_policy,
        resolve=tuple(resolve) if resolve else None,
        allow_private_addresses=allow_private_addresses,
        ca_bundle=ca_bundle,
        user_agent=user_agent,
        concurrency=concurrency,
        per_host=per_host,
        thumbnail_sizes=tuple(thumbnail_size) if thumbnail_size else None,
        thumbnail_format=thumbnail_format,
        workers=workers,
    )
    progress = None
    if not quiet and not json_output and sys.stderr.isatty():
        from harvester.progress import RichProgress

        progress = RichProgress()
    summary = run_pipeline(paths or [Path(".")], settings, progress=progress)
    _print_summary(summary, json_output=json_output, quiet=quiet)


def _print_summary(summary, *, json_output: bool, quiet: bool) -> None:
    if json_output:
        import json

        typer.echo(json.dumps(summary.to_json(), indent=2, sort_keys=True))
    elif not quiet:
        typer.echo(summary.paragraph())
    for warning in summary.warnings:
        if not quiet or json_output:
            typer.echo(f"harvester: warning: {warning}", err=True)


def main() -> None:
    """Console-script entry point: run the app, mapping HarvesterError to its exit code.

    Click handles its own usage errors (exit 2) in standalone mode; our errors pass through it.
    """
    try:
        app()
    except HarvesterError as exc:
        typer.echo(f"harvester: error: {exc}", err=True)
        sys.exit(exc.exit_code)
