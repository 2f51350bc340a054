"""Imported once by the image pool's fork server, so every worker forks warm.

Besides the imaging stack, `Image.init()` imports all of Pillow's format plugins (~40 ms):
done here once instead of in each worker as it starts (when the first images are waiting).
"""

from PIL import Image

import mirror.imaging  # noqa: F401

Image.init()
