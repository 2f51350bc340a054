"""`time_limit(seconds)`: an async context manager raising TimeoutError when time runs out.

`asyncio.timeout` on Python 3.11+, a small equivalent on 3.10. Shared by the fetcher (a total
deadline per download) and the archive fallback (a deadline per lookup).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator

if sys.version_info >= (3, 11):

    @contextlib.asynccontextmanager
    async def time_limit(seconds: float) -> AsyncIterator[None]:
        async with asyncio.timeout(seconds):
            yield

else:  # pragma: no cover - Python 3.10

    @contextlib.asynccontextmanager
    async def time_limit(seconds: float) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        expired = False

        def expire() -> None:
            nonlocal expired
            expired = True
            task.cancel()

        handle = loop.call_later(seconds, expire)
        try:
            yield
        except asyncio.CancelledError:
            if expired:
                raise TimeoutError from None
            raise
        finally:
            handle.cancel()
