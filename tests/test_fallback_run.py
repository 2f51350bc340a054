"""Round 3 of a real run: the acquirer's fetch rounds, then the archive round, into a real manifest.

Needs the run's stage drivers (`harvester.acquire`, `mirror.manifest`, `mirror.imaging`);
skipped on a branch that does not have them yet.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Iterator

import pytest

from harvester.records import FetchRequest
from tests.servers import (
    TestServer,
    encoded_image,
    image_reply,
    server_ssl_context,
    settings_for,
    status_reply,
)
from tests.test_fallback import ARCHIVE_NAMES, WaybackStandIn

acquire = pytest.importorskip("harvester.acquire")
manifest_module = pytest.importorskip("mirror.manifest")
pytest.importorskip("mirror.imaging")


@pytest.fixture
def archive(test_ca) -> Iterator[WaybackStandIn]:
    with TestServer(ssl_context=server_ssl_context(test_ca, ARCHIVE_NAMES)) as server:
        yield WaybackStandIn(server)


@pytest.fixture
def run_settings(tls_server, archive, ca_bundle, tmp_path):
    return settings_for(
        tls_server,
        ca_bundle=ca_bundle,
        resolve=(*tls_server.resolve_entries(), *archive.server.resolve_entries(ARCHIVE_NAMES)),
        archive=("wayback",),
        archive_api=archive.api_base,
        out=tmp_path / "assets",
        manifest=tmp_path / "manifest.json",
    )


def run_acquirer(settings, requests, *, article_dates=None):
    from harvester.progress import NullProgress
    from harvester.summary import RunSummary
    from mirror.store import Store

    manifest = manifest_module.Manifest.new(settings.manifest)
    store = Store(settings.out)
    summary = RunSummary()

    async def go():
        acquirer = acquire.Acquirer(
            manifest,
            store,
            settings,
            summary,
            NullProgress(),
            stop_event=asyncio.Event(),
            started=time.monotonic(),
        )
        if article_dates is not None:
            acquirer.article_dates = article_dates
        await acquirer.run(requests)

    asyncio.run(go())
    manifest.save()
    return manifest, store, summary


def test_a_run_records_a_rescued_image_with_its_provenance(tls_server, archive, run_settings):
    tls_server.route("/gone.jpg", status_reply(404))
    tls_server.route("/never.jpg", status_reply(410))
    dead, lost = tls_server.url("/gone.jpg"), tls_server.url("/never.jpg")
    old, new = encoded_image("JPEG", seed=1), encoded_image("JPEG", seed=2)
    archive.add(dead, "20150101000000", image_reply(old))
    archive.add(dead, "20220101000000", image_reply(new))
    requests = [FetchRequest(url=u, policy="no-referrer") for u in (dead, lost)]
    dates = {dead: dt.datetime(2015, 3, 1, tzinfo=dt.timezone.utc)}

    manifest, _, summary = run_acquirer(run_settings, requests, article_dates=dates)

    record = manifest.url(dead)
    assert record["status"] == "ok"
    assert record["source"] == "archive"
    assert record["archive"].endswith(f"/web/20150101000000/{dead}")
    assert "id_/" in record["final_url"]
    asset = manifest.asset(record["sha256"])
    assert asset is not None and asset["status"] == "ok"  # processed like any image
    assert manifest.resolve(asset["path"]).read_bytes() == old
    failed = manifest.url(lost)
    assert failed["status"] == "failed" and failed["reason"] == "http-410"
    assert "wayback: no-snapshot" in failed["message"]
    assert failed["failures"] == 1  # the rescue attempt did not count as a second failure
    assert {q["url"]: q.get("timestamp") for q in archive.lookups()}[
        dead.removeprefix("https://")
    ] == "20150301000000"
    assert summary.failed == 1
