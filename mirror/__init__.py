"""mirror: the local side of harvester — store, imaging, dedupe, rewrite, manifest.

Nothing here speaks HTTP or imports `harvester`; every function takes explicit options so
the stages can be mapped over a cluster or pointed at another store later.
"""
