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
