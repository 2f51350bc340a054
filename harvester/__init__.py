"""harvester: make a folder of articles own its pictures.

The library API is what the CLI calls; tests and other tools can call it directly:

    from harvester import Settings, run
    summary = run([Path("posts")], Settings(out=Path("assets"), site_url="https://example.org/"))

Names are imported on first use, so `import harvester` (and `harvester --help`) stays fast.
"""

import importlib as _importlib

__version__ = "0.1.0"

# public name → module that defines it
_EXPORTS = {
    "run": "harvester.pipeline",
    "RunSummary": "harvester.summary",
    "Settings": "harvester.settings",
    "build_settings": "harvester.settings",
    "scan_paths": "harvester.extract",
    "scan_article": "harvester.extract",
    "load_article": "harvester.articles",
    "referrer_for": "harvester.referrer",
    "fetch_all": "harvester.fetch",
    "fetch_batch": "harvester.fetch",
    "restore": "harvester.maintenance",
    "verify": "harvester.maintenance",
    "gc": "harvester.maintenance",
    "ImageRef": "harvester.records",
    "FetchRequest": "harvester.records",
    "Fetched": "harvester.records",
    "FetchFailure": "harvester.records",
    "HarvesterError": "harvester.errors",
    "UsageError": "harvester.errors",
    "ConfigError": "harvester.errors",
    "ManifestError": "harvester.errors",
    "LockHeld": "harvester.errors",
    "Interrupted": "harvester.errors",
    "VerifyFailed": "harvester.errors",
    "StrictFailure": "harvester.errors",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'harvester' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
