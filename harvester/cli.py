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


@app.command()
def scan(
    paths: PathsArg = None,
    json_output: JsonOpt = False,
    site_url: Annotated[
        str | None,
        typer.Option(
            "--site-url",
            metavar="URL",
            help="Your site's URL: the page URL (Referer source) when an article names none. "
            "Never used to resolve relative image paths.",
        ),
    ] = None,
    page_url_keys: Annotated[
        list[str] | None,
        typer.Option(
            "--page-url-key",
            metavar="KEY",
            help="Front-matter key holding the article's own URL (repeatable; replaces the "
            "defaults: permalink, url, link, canonical_url, canonical).",
        ),
    ] = None,
    default_policy: Annotated[
        str | None,
        typer.Option(
            "--default-policy",
            metavar="POLICY",
            help="Referrer policy when neither <img referrerpolicy> nor <meta name=referrer> "
            "sets one. Default: strict-origin-when-cross-origin.",
        ),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """List the remote images each article references, with the referrer policy and the
    Referer header they would be fetched with. Fetches nothing, changes nothing.

    Per-file problems (binary or undecodable files, broken front matter, unclosed code) are
    reported on stderr and the scan goes on.
    """
    from harvester.extract.report import run_scan

    run_scan(
        paths=paths or [Path(".")],
        json_output=json_output,
        site_url=site_url,
        page_url_keys=page_url_keys,
        default_policy=default_policy,
        config=config,
    )
