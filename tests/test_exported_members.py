"""The package's `__all__` is the public API: every name in it exists, and it is complete."""

import subprocess
import sys

import harvester


def test_every_exported_name_resolves():
    for name in harvester.__all__:
        assert getattr(harvester, name) is not None, name


def test_all_is_exactly_the_public_names():
    import types

    public = {
        name
        for name in dir(harvester)
        if not name.startswith("_")
        # submodules loaded while resolving names are not API
        and not isinstance(getattr(harvester, name), types.ModuleType)
    }
    assert public == set(harvester.__all__) - {"__version__"}


def test_importing_the_package_does_not_import_the_heavy_stages():
    heavy = "('httpx', 'PIL', 'numpy', 'harvester.')"
    code = f"import sys, harvester; print(sorted(m for m in sys.modules if m.startswith({heavy})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
