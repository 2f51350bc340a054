"""harvester: make a folder of articles own its pictures.

The library API is what the CLI calls; tests and other tools can call it directly.
Heavy modules are imported lazily so `harvester --help` stays fast.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
