"""Rescue throughput against a local Wayback stand-in (HTTPS, trustme), printed, not asserted.

Input: --urls N dead images (each 404 at the origin, each with one capture), --per-host.
Output: wall time and rescues/second for `rescue()` alone (the fetch of the dead URLs is
done first and not counted), and the connections the archive saw.

    /work/venv/bin/python -m bench.fallback_rescue --urls 300 --per-host 2
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from harvester.fallback import Rescued, rescue, sources_from_settings
from harvester.fetch import fetch_all
from harvester.net import build_client
from harvester.records import FetchFailure, FetchRequest
from mirror.store import Store
from tests.servers import (
    TestServer,
    encoded_image,
    image_reply,
    make_ca,
    server_ssl_context,
    settings_for,
    status_reply,
)
from tests.test_fallback import ARCHIVE_NAMES, WaybackStandIn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--urls", type=int, default=300)
    parser.add_argument("--per-host", type=int, default=2)
    args = parser.parse_args()
    ca = make_ca()
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "ca.pem"
        ca.cert_pem.write_to_path(str(bundle))
        with (
            TestServer(ssl_context=server_ssl_context(ca), record=False) as origin,
            TestServer(ssl_context=server_ssl_context(ca, ARCHIVE_NAMES)) as archive,
        ):
            wayback = WaybackStandIn(archive)
            urls = []
            for i in range(args.urls):
                origin.route(f"/dead{i}.jpg", status_reply(404))
                url = origin.url(f"/dead{i}.jpg")
                urls.append(url)
                wayback.add(url, "20200101000000", image_reply(encoded_image(seed=i)))
            settings = settings_for(
                origin,
                ca_bundle=bundle,
                resolve=(*origin.resolve_entries(), *archive.resolve_entries(ARCHIVE_NAMES)),
                archive=("wayback",),
                archive_api=wayback.api_base,
                archive_per_host=args.per_host,
            )
            store = Store(Path(tmp) / "assets")

            async def scenario() -> tuple[float, int]:
                async with build_client(settings) as client:
                    requests = [FetchRequest(url=u, policy="no-referrer") for u in urls]
                    failures = [
                        r
                        async for r in fetch_all(
                            requests, store=store, settings=settings, client=client
                        )
                        if isinstance(r, FetchFailure)
                    ]
                    started = time.perf_counter()
                    rescued = 0
                    async for outcome in rescue(
                        failures,
                        sources=sources_from_settings(settings),
                        store=store,
                        settings=settings,
                        client=client,
                    ):
                        rescued += isinstance(outcome, Rescued)
                    return time.perf_counter() - started, rescued

            elapsed, rescued = asyncio.run(scenario())
            print(
                f"rescued {rescued}/{args.urls} in {elapsed:.2f} s "
                f"({rescued / elapsed:.0f}/s, archive_per_host={args.per_host}, "
                f"{len(archive.connections)} archive connections)"
            )


if __name__ == "__main__":
    main()
