import os
import subprocess
import sys
from pathlib import Path

import pytest

from harvester import __version__

ROOT = Path(__file__).resolve().parent.parent


def test_version_flag_prints_the_package_version():
    out = subprocess.run(
        [sys.executable, "-m", "harvester", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0
    assert out.stdout.strip() == f"harvester {__version__}"


def test_unknown_command_is_a_usage_error_with_exit_2():
    out = subprocess.run(
        [sys.executable, "-m", "harvester", "no-such-command"], capture_output=True, text=True
    )
    assert out.returncode == 2
    assert "no-such-command" in out.stderr


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("concurrency = 0", "concurrency must be at least 1"),
        ("thumbnail_sizes = [320, -5]", "thumbnail sizes must be"),
        ('thumbnail_format = "gif"', "thumbnail_format must be one of"),
        ('site_url = "not a url"', "site_url must be an absolute http(s) URL"),
        ('deadline = "20 minutes"', "unknown unit 'minutes'"),
        ("out = 5", "'out' must be a path"),
        ("workers = -3", "workers must be 0"),
        ("per_host = -1", "per_host must be at least 1"),
        ("no_such_setting = 1", "unknown setting 'no_such_setting'"),
    ],
)
def test_bad_config_values_are_refused_before_anything_runs(tmp_path, line, message):
    config = tmp_path / "harvester.toml"
    config.write_text(line + "\n", encoding="utf-8")
    (tmp_path / "post.md").write_text("![a](https://img.example.com/a.jpg)\n", encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-m", "harvester", "run", "post.md"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 2, out.stderr
    assert message in out.stderr
    assert not (tmp_path / "manifest.json").exists() and not (tmp_path / "assets").exists()


def _help(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS="400", TERM="dumb", NO_COLOR="1")
    return subprocess.run(
        [sys.executable, "-m", "harvester", *args, "-h"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def _flat(text: str) -> str:
    """Help text without the table borders and line wrapping, for phrase checks."""
    return " ".join(text.replace("│", " ").split())


def test_dash_h_is_help_for_the_app_and_every_command():
    import typer.main

    from harvester.cli import app

    top = _help()
    assert top.returncode == 0, top.stderr
    assert "Usage:" in top.stdout
    for name in sorted(typer.main.get_command(app).commands):  # type: ignore[attr-defined]
        out = _help(name)
        assert out.returncode == 0, (name, out.stderr)
        assert f"harvester {name} [OPTIONS]" in out.stdout, name


def test_help_names_decide_arguments_dedupe_config_keys_and_run_defaults():
    from harvester.referrer import POLICIES
    from harvester.settings import Settings

    decide = _flat(_help("decide").stdout)
    assert "{SHA_A} {SHA_B}" in decide and "first" not in decide.split("Record")[0]

    dedupe = _flat(_help("dedupe").stdout)
    assert "harvester.toml" in dedupe
    for key in ("duplicate_distance", "similar_distance", "dhash_distance"):
        assert key in dedupe and hasattr(Settings(), key)
    for key in ("color_distance", "structure_distance"):
        assert key in dedupe and hasattr(Settings(), key)

    run = _flat(_help("run").stdout)
    defaults = Settings()
    assert f"(all hosts). Default: {defaults.concurrency}." in run
    assert f"per host. Default: {defaults.per_host}." in run
    assert f"(repeatable). Default: {defaults.thumbnail_sizes[0]}." in run
    assert f"webp, jpeg or png. Default: {defaults.thumbnail_format}." in run
    for policy in POLICIES:
        assert policy in run.split("--default-policy")[1].split("--")[0], policy
    assert "Default: strict-origin-when-cross-origin." in run
