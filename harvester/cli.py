"""The command line: a thin typer layer over the library.

Each command parses its options, builds a `Settings`, calls one library function and prints.
Library modules are imported inside the commands so `harvester --help` stays fast. Errors are
`HarvesterError`s carrying their exit code; `main()` maps them in one place.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from harvester import __version__
from harvester.errors import HarvesterError, require_paths

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
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},
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


PresetOpt = Annotated[
    str | None,
    typer.Option(
        "--preset",
        help="Site generator defaults: hexo, hugo, jekyll or auto (detect from the site "
        "config in the current folder). Explicit options and the config file win.",
    ),
]
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
            help="Rewrite to site-root URLs PREFIX/aa/bb/SHA256.EXT, not relative paths.",
        ),
    ] = None,
    default_policy: Annotated[
        str | None,
        typer.Option(
            "--default-policy",
            metavar="POLICY",
            help="Referrer policy when an article sets none: no-referrer, "
            "no-referrer-when-downgrade, same-origin, origin, strict-origin, "
            "origin-when-cross-origin, strict-origin-when-cross-origin or unsafe-url. "
            "Default: strict-origin-when-cross-origin.",
        ),
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
        int | None,
        typer.Option("--concurrency", help="Downloads at once (all hosts). Default: 32."),
    ] = None,
    per_host: Annotated[
        int | None, typer.Option("--per-host", help="Downloads at once per host. Default: 4.")
    ] = None,
    thumbnail_size: Annotated[
        list[int] | None,
        typer.Option(
            "--thumbnail-size",
            help="Thumbnail longest side in px (repeatable). Default: 320.",
        ),
    ] = None,
    thumbnail_format: Annotated[
        str | None,
        typer.Option("--thumbnail-format", help="webp, jpeg or png. Default: webp."),
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", help="Image worker processes (0 = cores).")
    ] = None,
    preset: PresetOpt = None,
    deadline: Annotated[
        str | None,
        typer.Option(
            "--deadline",
            help="Stop starting downloads after this long (90s, 15m, 2h); the rest is "
            "deferred to the next run, exit 0.",
        ),
    ] = None,
    max_store_bytes: Annotated[
        str | None,
        typer.Option(
            "--max-store-bytes",
            help="Never grow the store past this size (900M, 1G); the rest is deferred.",
        ),
    ] = None,
    archive: Annotated[
        list[str] | None,
        typer.Option(
            "--archive",
            help="Rescue dead images from a web archive ('wayback'; repeatable). Off by "
            "default: it tells the archive which URLs you look up.",
        ),
    ] = None,
) -> None:
    """Scan, fetch, process, dedupe, rewrite and write the manifest."""
    from harvester.pipeline import run as run_pipeline
    from harvester.settings import build_settings

    settings, chosen = build_settings(
        config,
        preset=preset,
        deadline=deadline,
        max_store_bytes=max_store_bytes,
        archive=tuple(archive) if archive else None,
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
    if chosen is not None and not quiet:
        for note in chosen.notes:
            typer.echo(f"harvester: note: {note}", err=True)
    default_paths = list(chosen.article_paths) if chosen is not None else [Path(".")]
    summary = run_pipeline(paths or default_paths, settings, progress=progress)
    _print_summary(summary, json_output=json_output, quiet=quiet)


def _print_summary(summary, *, json_output: bool, quiet: bool) -> None:
    if json_output:
        import json

        typer.echo(json.dumps(summary.to_json(), indent=2, sort_keys=True))
    elif not quiet:
        # a dry run lists what it would do, one line each, as `gc` and `restore` do
        for url in summary.would_fetch:
            typer.echo(f"would fetch: {url}")
        for refusal in summary.would_refuse:
            typer.echo(f"would refuse: {refusal}")
        for path in summary.would_rewrite:
            typer.echo(f"would rewrite: {path}")
        typer.echo(summary.paragraph())
    for warning in summary.warnings:
        if not quiet or json_output:
            typer.echo(f"harvester: warning: {warning}", err=True)


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
            help="Referrer policy when neither `<img referrerpolicy>` nor `<meta name=referrer>` "
            "sets one. Default: strict-origin-when-cross-origin.",
        ),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """List the remote images each article references, with referrer policy and Referer.

    Fetches nothing, changes nothing.

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


def _single_threaded_math() -> None:
    """One BLAS/OpenMP thread per process, unless the user chose otherwise.

    numpy's OpenBLAS otherwise starts a thread per core that busy-waits between the tiny
    products dedupe and hashing do: measured 4.7x the CPU time for the same dedupe (6.3 s vs
    1.3 s over 2,000 images), stolen from the image workers. Must run before numpy loads;
    the pool's worker processes inherit it.
    """
    import os

    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")


def main() -> None:
    """Console-script entry point: run the app, mapping HarvesterError to its exit code.

    Click handles its own usage errors (exit 2) in standalone mode; our errors pass through it.
    """
    _single_threaded_math()
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


def _manifest_path(manifest: Path | None, config: Path | None, preset: str | None = None) -> Path:
    """--manifest > the config file's `manifest` > the preset's > ./manifest.json."""
    from harvester.settings import build_settings

    settings, _ = build_settings(config, preset=preset, manifest=manifest)
    return settings.manifest


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
    preset: PresetOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    dry_run: DryRunOpt = False,
) -> None:
    from harvester import maintenance

    manifest_path = _manifest_path(manifest, config, preset)
    report = maintenance.restore(manifest_path, paths or None, dry_run=dry_run)
    if json_out:
        _emit_json(report.to_dict())
        return

    def shown(recorded: str) -> str:
        # the manifest records paths from its own folder (.harvester/ under a preset):
        # people read them from where they ran the command
        return os.path.normpath(os.path.relpath(manifest_path.parent / recorded))

    verb = "would restore" if dry_run else "restored"
    for item in report.articles:
        if item.status in ("restored", "already-original"):
            if not quiet:
                typer.echo(f"{verb}: {shown(item.path)}")
        elif item.status == "partial":
            typer.echo(
                f"partly {verb}: {shown(item.path)} ({item.restored} spans; "
                f"{len(item.unrestored)} could not be located, left as they are)",
                err=True,
            )
            for u in item.unrestored:
                typer.echo(f"    {u['reason']}: {u['local']} (was {u['original']})", err=True)
        else:
            typer.echo(f"{item.status}: {shown(item.path)}: {item.message}", err=True)
    if not quiet:
        done = report.count("restored") + report.count("already-original")
        typer.echo(
            f"{done} article(s) {verb}, {report.count('partial')} partly, "
            f"{report.count('skipped') + report.count('missing') + report.count('error')} not."
        )


@app.command(
    help="Check the manifest against its schema and the store against the manifest: every "
    "asset exists and has its sha256, every thumbnail exists. Exit 1 with a list otherwise."
)
def verify(
    manifest: ManifestOpt = None,
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    from harvester import maintenance
    from harvester.errors import VerifyFailed

    report = maintenance.verify(_manifest_path(manifest, config, preset))
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


@app.command()
def dedupe(
    paths: Annotated[
        list[Path],
        typer.Argument(help="Image files or folders (searched recursively for image files)."),
    ],
    json_output: JsonOpt = False,
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=0, help="Decoder processes. Default: one per core."),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Group near-duplicate pictures among local image files (an existing asset folder, say).

    Each group shows the canonical copy (most pixels, then best quality within a format,
    then first seen), the files that are the same picture, and the files that only look
    alike (a darker edition, a recolouring, a neighbouring frame). Files that cannot be
    decoded are reported on stderr and skipped. Hidden folders, and a store's own `thumbs/`
    and `.tmp/`, are not searched.

    Thresholds come from the config file (`harvester.toml`, or `--config`):
    `duplicate_distance`, `similar_distance`, `dhash_distance`, `color_distance` and
    `structure_distance`.
    """
    from harvester.settings import build_settings
    from mirror.dedupe import group_image_files

    require_paths(paths)  # as `run` and `scan` do: not "no near-duplicates found"
    settings, _preset = build_settings(config, workers=workers)
    groups, problems = group_image_files(
        paths, settings.imaging_options(), settings.dedupe_thresholds(), settings.workers
    )
    for problem in problems:
        typer.echo(
            f"harvester: warning: {problem.path}: {problem.reason}: {problem.message}", err=True
        )
    if json_output:
        _emit_json(
            {
                "groups": [
                    {
                        "canonical": str(g.canonical),
                        "duplicates": [str(p) for p, _ in g.duplicates],
                        "similar": [str(p) for p, _ in g.similar],
                    }
                    for g in groups
                ]
            }
        )
        return
    if not groups:
        typer.echo("no near-duplicates found")
        return
    for number, group in enumerate(groups, 1):
        info = group.info
        typer.echo(f"group {number}: {group.canonical}  ({info.width}×{info.height} {info.format})")
        for path, distance in group.duplicates:
            typer.echo(f"  duplicate  {path}  (distance {distance})")
        for path, distance in group.similar:
            typer.echo(f"  similar    {path}  (distance {distance}; not merged)")


@app.command(
    help="Remove store files (assets, thumbnails) that no article references. --dry-run lists them."
)
def gc(
    manifest: ManifestOpt = None,
    config: ConfigOpt = None,
    preset: PresetOpt = None,
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
        _manifest_path(manifest, config, preset),
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
        summary = "would be removed" if dry_run else "removed"
        typer.echo(
            f"{len(report.removed)} file(s) {summary} ({report.bytes} bytes); "
            f"{len(report.kept_by_grace)} unreferenced asset(s) kept by --grace."
        )
        if report.ignored:
            # files and folders harvester never writes (a shared images folder): never touched
            typer.echo(
                f"left alone {len(report.ignored)} entr{'y' if len(report.ignored) == 1 else 'ies'}"
                " that are not harvester's (e.g. " + ", ".join(report.ignored[:3]) + ")."
            )


# --- report and decide (issue 7) -------------------------------------------------------------


@app.command()
def report(
    manifest: ManifestOpt = None,
    config: ConfigOpt = None,
    preset: PresetOpt = None,
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

    result = write_report(
        _manifest_path(manifest, config, preset), out, page_size=page_size, embed_thumbnails=embed
    )
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
            # the manifest records only articles that reference remote images: say so, as
            # `run` counts every article it scanned
            f"report: {result.out}{extra} — {s.articles} articles with images, "
            f"{s.unique_images} images, "
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
    first: Annotated[
        str, typer.Argument(help="sha256 of a picture, or a unique prefix.", metavar="SHA_A")
    ],
    second: Annotated[
        str, typer.Argument(help="sha256 of the other picture, or a prefix.", metavar="SHA_B")
    ],
    manifest: ManifestOpt = None,
    config: ConfigOpt = None,
    preset: PresetOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Record that two pictures are the same or different; later runs respect it."""
    from harvester.decide import record_decision

    result = record_decision(
        _manifest_path(manifest, config, preset), verdict.lower(), first, second
    )
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
    if result.run_in_progress:
        typer.echo(
            "harvester: warning: a run is in progress; if its final save does not keep this "
            "decision, run the same `decide` again after it finishes",
            err=True,
        )
