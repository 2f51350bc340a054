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


# --- report and decide (issue 7) -------------------------------------------------------------

ManifestOpt = Annotated[
    Path,
    typer.Option("--manifest", help="The manifest to read. Default: ./manifest.json"),
]


@app.command()
def report(
    manifest: ManifestOpt = Path("manifest.json"),
    out: Annotated[
        Path, typer.Option("--out", "-o", help="The HTML file to write (extra pages go beside it).")
    ] = Path("report.html"),
    open_browser: Annotated[
        bool, typer.Option("--open", help="Open the report in the default browser.")
    ] = False,
    page_size: Annotated[
        int,
        typer.Option(
            "--page-size", min=1, help="Items per page for groups, failures and articles."
        ),
    ] = 100,
    embed: Annotated[
        bool,
        typer.Option(
            "--embed-thumbnails",
            help="Put thumbnails inside the HTML as data: URIs (one portable file, larger).",
        ),
    ] = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Write a static HTML report: duplicates side by side, similar pairs, failures, articles."""
    import json
    import webbrowser

    from harvester.report import write_report

    result = write_report(manifest, out, page_size=page_size, embed_thumbnails=embed)
    s = result.summary
    if json_out:
        payload = {
            "out": str(result.out),
            "pages": [str(p) for p in result.pages],
            "bytes": result.total_bytes,
            "articles": s.articles,
            "references": s.references,
            "unique_images": s.unique_images,
            "duplicates_merged": s.duplicates_merged,
            "similar_pairs": s.similar_pairs,
            "failures": s.failures,
        }
        typer.echo(json.dumps(payload, sort_keys=True))
    elif not quiet:
        extra = f" (+{len(result.pages) - 1} pages)" if len(result.pages) > 1 else ""
        typer.echo(
            f"report: {result.out}{extra} — {s.articles} articles, {s.unique_images} images, "
            f"{s.duplicates_merged} merged, {s.similar_pairs} similar, {s.failures} failed"
        )
    if open_browser:
        webbrowser.open(result.out.as_uri())


@app.command()
def decide(
    verdict: Annotated[
        str,
        typer.Argument(
            help="same (merge them next run), different (never merge them) or forget.",
            metavar="same|different|forget",
        ),
    ],
    first: Annotated[str, typer.Argument(help="sha256 of a picture, or a unique prefix.")],
    second: Annotated[str, typer.Argument(help="sha256 of the other picture, or a prefix.")],
    manifest: ManifestOpt = Path("manifest.json"),
    quiet: QuietOpt = False,
) -> None:
    """Record that two pictures are the same or different; later runs respect it."""
    from harvester.decide import record_decision

    result = record_decision(manifest, verdict.lower(), first, second)
    if quiet:
        return
    a, b = (s[:12] for s in result.pair)
    if not result.changed:
        typer.echo(f"{a} {b}: nothing to change (already {result.previous or 'undecided'})")
    elif result.verdict == "forget":
        typer.echo(f"{a} {b}: forgot '{result.previous}'; the next run decides by itself")
    else:
        was = f" (was '{result.previous}')" if result.previous else ""
        typer.echo(f"{a} {b}: recorded '{result.verdict}'{was}; the next run respects it")
