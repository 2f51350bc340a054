import subprocess
import sys

from harvester import __version__


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
