"""Rescuing dead images from a local stand-in for the Wayback Machine, over HTTPS.

The origin (`img.example.com`, ...) and the archive (`archive.org`, `web.archive.org`) are real
TLS servers on 127.0.0.1 with trustme certificates, reached by name through `--resolve`
entries. The stand-in implements the availability endpoint (closest capture to `timestamp`,
like the real API) and `id_` raw captures; its non-raw snapshot pages are HTML, as the real
ones are. Dead images are produced by the real fetcher (404, 410, refused, DNS).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import re
import socket
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest

from harvester.errors import ConfigError
from harvester.fallback import (
    MirrorBaseSource,
    Rescued,
    RescueFailed,
    WaybackCdxSource,
    WaybackSource,
    is_rescuable,
    parse_article_date,
    placeholder_failure,
    rescue,
    sources_from_settings,
)
from harvester.fetch import fetch_all
from harvester.net import build_client
from harvester.records import Fetched, FetchFailure, FetchRequest
from harvester.settings import Settings, load_config
from mirror.store import Store
from tests.servers import (
    RecordedRequest,
    Reply,
    TestServer,
    encoded_image,
    image_reply,
    redirect_reply,
    server_ssl_context,
    settings_for,
    status_reply,
)

ARCHIVE_NAMES = ("archive.org", "web.archive.org")
UTC = dt.timezone.utc


class WaybackStandIn:
    """The Wayback Machine on a TestServer: availability API, CDX index, `id_` captures."""

    def __init__(self, server: TestServer) -> None:
        self.server = server
        # url → [(timestamp, recorded status, recorded mimetype)]
        self.snapshots: dict[str, list[tuple[str, str, str]]] = {}
        server.route("/wayback/available", self._available)
        server.route("/cdx/search/cdx", self._cdx)

    @property
    def api_base(self) -> str:
        return f"https://archive.org:{self.server.port}"

    @property
    def cdx_base(self) -> str:
        return f"https://web.archive.org:{self.server.port}"

    def add(
        self,
        original: str,
        stamp: str,
        raw: Reply,
        status: str = "200",
        mimetype: str = "image/jpeg",
    ) -> None:
        """A capture of `original` taken at `stamp`; `raw` is what its `id_` form serves."""
        self.snapshots.setdefault(original, []).append((stamp, status, mimetype))
        self.server.route(f"/web/{stamp}id_/{original}", raw)
        page = b"<!DOCTYPE html><html><head><title>Wayback Machine</title></head><body>"
        self.server.route(
            f"/web/{stamp}/{original}",
            Reply(body=page + b"<img src='...'></body></html>", content_type="text/html"),
        )

    def lookups(self, path: str = "/wayback/available") -> list[dict[str, str]]:
        """The query of each lookup request (availability by default), in order."""
        found = []
        for request in self.server.requests:
            parts = urlsplit(request.path)
            if parts.path == path:
                found.append({k: ",".join(v) for k, v in parse_qs(parts.query).items()})
        return found

    def capture_requests(self) -> list[RecordedRequest]:
        return [r for r in self.server.requests if r.path.startswith("/web/")]

    def _find(self, key: str) -> tuple[str | None, list[tuple[str, str, str]]]:
        # like the real index, captures are keyed without the scheme
        for url, snapshots in self.snapshots.items():
            if _scheme_less(url) == key:
                return url, snapshots
        return None, []

    def _available(self, request: RecordedRequest) -> Reply:
        query = parse_qs(urlsplit(request.path).query)
        key = query["url"][0]
        wanted = query.get("timestamp", [None])[0]
        answer: dict = {"url": key, "archived_snapshots": {}}
        url, snapshots = self._find(key)
        if snapshots:
            if wanted is None:  # the real API answers the most recent capture
                stamp, status, _ = max(snapshots)
            else:
                target = _stamp_time(wanted)
                stamp, status, _ = min(snapshots, key=lambda s: abs(_stamp_time(s[0]) - target))
            answer["archived_snapshots"]["closest"] = {
                "status": status,
                "available": True,
                # the real API answers http:// URLs; the client must upgrade them
                "url": f"http://web.archive.org:{self.server.port}/web/{stamp}/{url}",
                "timestamp": stamp,
            }
        return Reply(body=json.dumps(answer).encode(), content_type="application/json")

    def _cdx(self, request: RecordedRequest) -> Reply:
        """The CDX server's JSON output: filters (`[!]field:regex`), closest sort, limit."""
        query = parse_qs(urlsplit(request.path).query)
        url, snapshots = self._find(query["url"][0])
        fields = query.get("fl", ["timestamp,original,statuscode,mimetype"])[0].split(",")
        rows = [
            {"timestamp": stamp, "original": url, "statuscode": status, "mimetype": mime}
            for stamp, status, mime in sorted(snapshots)
        ]
        for spec in query.get("filter", []):
            invert = spec.startswith("!")
            name, pattern = spec.lstrip("!").split(":", 1)
            rows = [r for r in rows if bool(re.fullmatch(pattern, r[name])) != invert]
        if "closest" in query:
            target = _stamp_time(query["closest"][0])
            rows.sort(key=lambda r: abs(_stamp_time(r["timestamp"]) - target))
        limit = int(query.get("limit", ["0"])[0])
        rows = rows[:limit] if limit > 0 else rows[limit:] if limit < 0 else rows
        table = [fields] + [[row[f] for f in fields] for row in rows] if rows else []
        return Reply(body=json.dumps(table).encode(), content_type="application/json")


def _scheme_less(url: str) -> str:
    return url.split("://", 1)[-1]


def _stamp_time(stamp: str) -> dt.datetime:
    padded = stamp + "0101000000"[len(stamp) - 4 :] if len(stamp) < 14 else stamp
    return dt.datetime.strptime(padded, "%Y%m%d%H%M%S")


@pytest.fixture
def archive_server(test_ca) -> Iterator[TestServer]:
    with TestServer(ssl_context=server_ssl_context(test_ca, ARCHIVE_NAMES)) as server:
        yield server


@pytest.fixture
def wayback(archive_server) -> WaybackStandIn:
    return WaybackStandIn(archive_server)


@pytest.fixture
def settings(tls_server, archive_server, wayback, ca_bundle) -> Settings:
    """Origin and archive reachable by name; the Wayback fallback switched on."""
    return settings_for(
        tls_server,
        ca_bundle=ca_bundle,
        resolve=(*tls_server.resolve_entries(), *archive_server.resolve_entries(ARCHIVE_NAMES)),
        archive=("wayback",),
        archive_api=wayback.api_base,
        archive_cdx_api=wayback.cdx_base,
    )


def run(coro):
    return asyncio.run(coro)


async def fetch_then_rescue(
    urls: list[str],
    settings: Settings,
    store: Store,
    *,
    dates: dict[str, dt.datetime | None] | None = None,
    sources=None,
    resolver=None,
) -> tuple[list[Fetched], dict[str, Rescued | RescueFailed]]:
    """The pipeline's order: fetch everything, then rescue the failures, one client."""
    sources = sources_from_settings(settings) if sources is None else sources
    async with build_client(settings, resolver=resolver) as client:
        fetched, failures = [], []
        requests = [FetchRequest(url=u, policy="no-referrer") for u in urls]
        async for result in fetch_all(requests, store=store, settings=settings, client=client):
            (fetched if isinstance(result, Fetched) else failures).append(result)
        outcomes = {}
        async for outcome in rescue(
            failures, dates=dates, sources=sources, store=store, settings=settings, client=client
        ):
            assert outcome.url not in outcomes, "one outcome per failure"
            outcomes[outcome.url] = outcome
        assert set(outcomes) == {f.url for f in failures}
        return fetched, outcomes


def stored_bytes(store: Store, rescued: Rescued) -> bytes:
    return store.abspath(rescued.fetched.path).read_bytes()


# --------------------------------------------------------------------------------------------
# Acceptance
# --------------------------------------------------------------------------------------------


def test_dead_image_with_a_snapshot_is_rescued_with_the_captures_bytes(
    tls_server, wayback, settings, tmp_path
):
    tls_server.route("/gone.jpg", status_reply(404))
    dead = tls_server.url("/gone.jpg")
    capture = encoded_image("JPEG", seed=7)
    wayback.add(dead, "20210608094847", image_reply(capture, content_type="image/jpeg"))
    store = Store(tmp_path / "assets")

    fetched, outcomes = run(fetch_then_rescue([dead], settings, store))

    assert fetched == []
    rescued = outcomes[dead]
    assert isinstance(rescued, Rescued)
    assert stored_bytes(store, rescued) == capture
    assert rescued.fetched.sha256 == hashlib.sha256(capture).hexdigest()
    assert rescued.fetched.url == dead  # recorded under the original URL
    assert rescued.fetched.ext == "jpg" and rescued.fetched.media_type == "image/jpeg"
    assert rescued.fetched.path.endswith(".jpg")
    # provenance: archive, the snapshot URL and its timestamp; the original reason kept
    port = wayback.server.port
    assert rescued.provenance() == {
        "source": "archive",
        "archive": "wayback",
        "snapshot_url": f"https://web.archive.org:{port}/web/20210608094847/{dead}",
        "capture_url": f"https://web.archive.org:{port}/web/20210608094847id_/{dead}",
        "snapshot_timestamp": "2021-06-08T09:48:47Z",
        "original_reason": "http-404",
    }
    assert rescued.snapshot_timestamp == dt.datetime(2021, 6, 8, 9, 48, 47, tzinfo=UTC)
    # the raw id_ capture was fetched (over TLS, by name), never the HTML snapshot page
    (capture_request,) = wayback.capture_requests()
    assert capture_request.path == f"/web/20210608094847id_/{dead}"
    assert capture_request.headers["host"] == f"web.archive.org:{port}"
    assert capture_request.referer is None  # the archive learns nothing about the article
    # the URL is looked up without its scheme; no date known: no timestamp sent
    assert wayback.lookups() == [{"url": dead.removeprefix("https://")}]


def test_dead_image_without_a_snapshot_stays_failed_with_both_reasons(
    tls_server, wayback, settings, tmp_path
):
    tls_server.route("/gone.png", status_reply(410))
    dead = tls_server.url("/gone.png")
    store = Store(tmp_path / "assets")

    _, outcomes = run(fetch_then_rescue([dead], settings, store))

    failed = outcomes[dead]
    assert isinstance(failed, RescueFailed)
    assert failed.reason == "http-410"  # the original reason is kept
    assert failed.archive_reason == "wayback: no-snapshot"
    failure = failed.as_failure()
    assert failure.reason == "http-410" and failure.http_status == 410
    assert "410" in failure.message and "wayback: no-snapshot" in failure.message
    assert wayback.lookups() == [{"url": dead.removeprefix("https://")}]
    assert wayback.capture_requests() == []  # nothing to fetch
    assert list(store.iter_files()) == []


@pytest.mark.parametrize(
    ("capture", "answer"),
    [
        # the archive's HTML page (or a soft-404 page) served where the raw bytes should be
        (
            Reply(
                body=b"<!DOCTYPE html><html><body>Wayback Machine: not archived</body></html>" * 20,
                content_type="image/jpeg",
            ),
            "not-an-image",
        ),
        (status_reply(404, body=b"<html>Hrm. The Wayback Machine has not archived"), "http-404"),
        (status_reply(502), "http-502"),  # retried, then given up
        (Reply(body=b"", content_type="image/jpeg"), "empty"),
    ],
    ids=["html", "404", "502", "empty"],
)
def test_a_snapshot_that_is_html_or_an_error_is_rejected(
    tls_server, wayback, settings, tmp_path, capture, answer
):
    tls_server.route("/dead.jpg", status_reply(404))
    dead = tls_server.url("/dead.jpg")
    wayback.add(dead, "20200101000000", capture)
    store = Store(tmp_path / "assets")

    _, outcomes = run(fetch_then_rescue([dead], settings, store))

    failed = outcomes[dead]
    assert isinstance(failed, RescueFailed)
    assert failed.reason == "http-404"
    assert failed.archive_reason == f"wayback: {answer}"
    (detail,) = failed.answers
    assert detail.snapshot_url.endswith(f"/web/20200101000000/{dead}")
    assert detail.snapshot_timestamp == dt.datetime(2020, 1, 1, tzinfo=UTC)
    assert list(store.iter_files()) == []  # nothing of the rejected capture is kept
    if answer == "http-502":
        assert len(wayback.capture_requests()) == settings.retries + 1


def test_a_snapshot_of_an_error_page_is_not_fetched(tls_server, wayback, settings, tmp_path):
    """The archive captured the origin's 404: its availability answer says so."""
    tls_server.route("/dead.gif", status_reply(404))
    dead = tls_server.url("/dead.gif")
    wayback.add(dead, "20190101000000", image_reply(encoded_image("GIF")), status="404")
    store = Store(tmp_path / "assets")

    _, outcomes = run(fetch_then_rescue([dead], settings, store))

    assert outcomes[dead].archive_reason == "wayback: snapshot-status-404"
    assert wayback.capture_requests() == []


def test_the_capture_closest_to_the_articles_date_is_chosen(
    tls_server, wayback, settings, tmp_path
):
    tls_server.route("/a.jpg", status_reply(404))
    tls_server.route("/b.jpg", status_reply(404))
    a, b = tls_server.url("/a.jpg"), tls_server.url("/b.jpg")
    early = {u: encoded_image("JPEG", seed=i) for i, u in enumerate((a, b))}
    late = {u: encoded_image("JPEG", seed=10 + i) for i, u in enumerate((a, b))}
    for url in (a, b):
        wayback.add(url, "20150302101010", image_reply(early[url]))
        wayback.add(url, "20210609120000", image_reply(late[url]))
    dates = {
        a: parse_article_date("Tue, 08 Jun 2021 09:48:47 GMT"),
        b: parse_article_date("2014-11-20 08:00:00"),
    }
    store = Store(tmp_path / "assets")

    _, outcomes = run(fetch_then_rescue([a, b], settings, store, dates=dates))

    assert stored_bytes(store, outcomes[a]) == late[a]
    assert outcomes[a].snapshot_timestamp == dt.datetime(2021, 6, 9, 12, tzinfo=UTC)
    assert stored_bytes(store, outcomes[b]) == early[b]
    assert outcomes[b].snapshot_timestamp == dt.datetime(2015, 3, 2, 10, 10, 10, tzinfo=UTC)
    # the lookups carried each article's date, as the Wayback timestamp
    lookups = {q["url"]: q.get("timestamp") for q in wayback.lookups()}
    assert lookups == {
        a.removeprefix("https://"): "20210608094847",
        b.removeprefix("https://"): "20141120080000",
    }


def test_connection_refused_and_dns_failures_are_rescued(
    tls_server, archive_server, wayback, ca_bundle, tmp_path
):
    """Dead hosts: a name that no longer resolves, a host that refuses connections."""
    with socket.socket() as probe:  # a port with nobody listening
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    refused = f"https://refused.example.com:{closed}/pic.png"
    unresolvable = "https://gone.example.net/pic.webp"
    settings = settings_for(
        ca_bundle=ca_bundle,
        resolve=(
            f"refused.example.com:{closed}:127.0.0.1",
            *archive_server.resolve_entries(ARCHIVE_NAMES),
        ),
        archive=("wayback",),
        archive_api=wayback.api_base,
    )
    png, webp = encoded_image("PNG", seed=3), encoded_image("WEBP", seed=4)
    wayback.add(refused, "20200505050505", image_reply(png, content_type="image/png"))
    wayback.add(unresolvable, "20200505050505", image_reply(webp, content_type="image/webp"))

    async def no_dns(host: str, port: int) -> list[str]:
        return []  # NXDOMAIN, without asking any real resolver

    store = Store(tmp_path / "assets")
    _, outcomes = run(fetch_then_rescue([refused, unresolvable], settings, store, resolver=no_dns))

    assert outcomes[refused].failure.reason == "connect"
    assert outcomes[unresolvable].failure.reason == "dns"
    assert stored_bytes(store, outcomes[refused]) == png
    assert outcomes[refused].fetched.ext == "png"
    assert stored_bytes(store, outcomes[unresolvable]) == webp
    assert outcomes[unresolvable].fetched.ext == "webp"


def test_failures_that_may_heal_are_not_looked_up(tls_server, wayback, settings, tmp_path):
    for path, reply in [
        ("/forbidden.jpg", status_reply(403)),
        ("/busy.jpg", status_reply(503)),
        ("/later.jpg", status_reply(429, headers={"Retry-After": "86400"})),
        ("/page.jpg", Reply(body=b"<html><body>hotlink denied</body></html>" * 20)),
    ]:
        tls_server.route(path, reply)
    urls = [tls_server.url(p) for p in ("/forbidden.jpg", "/busy.jpg", "/later.jpg", "/page.jpg")]
    store = Store(tmp_path / "assets")

    _, outcomes = run(fetch_then_rescue(urls, settings, store))

    assert {u: o.reason for u, o in outcomes.items()} == dict(
        zip(urls, ["http-403", "http-503", "http-429", "not-an-image"], strict=True)
    )
    for outcome in outcomes.values():
        assert isinstance(outcome, RescueFailed) and not outcome.tried
        assert outcome.as_failure() is outcome.failure  # passed through untouched
    assert wayback.server.requests == []  # the archive was not told about any of them


def test_the_feature_is_off_by_default(tls_server, wayback, ca_bundle, tmp_path):
    assert Settings().archive == ()
    assert sources_from_settings(Settings()) == ()
    tls_server.route("/gone.jpg", status_reply(404))
    dead = tls_server.url("/gone.jpg")
    wayback.add(dead, "20210608094847", image_reply(encoded_image("JPEG")))
    settings = settings_for(tls_server, ca_bundle=ca_bundle)

    _, outcomes = run(fetch_then_rescue([dead], settings, Store(tmp_path / "assets")))

    assert isinstance(outcomes[dead], RescueFailed) and not outcomes[dead].tried
    assert wayback.server.requests == []


def test_config_file_switches_it_on_and_rejects_unknown_sources(tmp_path):
    config = tmp_path / "harvester.toml"
    config.write_text(
        'archive = ["wayback", "https://mirror.example.org/old-images/"]\n'
        'archive_api = "https://archive.example"\narchive_per_host = 1\n',
        encoding="utf-8",
    )
    settings = Settings(**load_config(config))
    assert settings.archive == ("wayback", "https://mirror.example.org/old-images/")
    wayback, mirror = sources_from_settings(settings)
    assert isinstance(wayback, WaybackSource) and wayback.api_base == "https://archive.example"
    assert wayback.per_host == 1
    assert isinstance(mirror, MirrorBaseSource)

    config.write_text('archive = "wayback"\n', encoding="utf-8")
    assert Settings(**load_config(config)).archive == ("wayback",)

    config.write_text(
        'archive = ["wayback-cdx"]\narchive_cdx_api = "https://index.example"\n', encoding="utf-8"
    )
    (index,) = sources_from_settings(Settings(**load_config(config)))
    assert isinstance(index, WaybackCdxSource) and index.api_base == "https://index.example"

    config.write_text('archive = ["waybak"]\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="waybak"):
        load_config(config)
    config.write_text('placeholder_sha256 = ["abc"]\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="sha256"):
        load_config(config)
    with pytest.raises(ConfigError, match="ftp"):
        sources_from_settings(Settings(archive=("ftp://mirror.example/",)))


# --------------------------------------------------------------------------------------------
# Politeness, placeholders, more sources
# --------------------------------------------------------------------------------------------


def test_the_archive_gets_its_own_per_host_limit(tls_server, wayback, settings, tmp_path):
    """8 rescues at once, archive_per_host=2: at most 2 connections per archive host.

    Every answer is held back a little so requests would overlap without the limit; the
    pool opens a new connection whenever more requests are in flight than it has idle.
    """
    urls = []
    for i in range(8):
        tls_server.route(f"/old{i}.jpg", status_reply(404))
        url = tls_server.url(f"/old{i}.jpg")
        urls.append(url)
        wayback.add(url, "20200101000000", image_reply(encoded_image(seed=i)))
    wayback.server.latency = (0.05, 0.05)
    settings = settings.replace(per_host=8, concurrency=16, archive_per_host=2)
    store = Store(tmp_path / "assets")

    _, outcomes = run(fetch_then_rescue(urls, settings, store))

    assert all(isinstance(o, Rescued) for o in outcomes.values())
    assert len(wayback.server.requests) == 16  # 8 lookups, 8 captures
    hosts = {r.headers["host"].split(":")[0] for r in wayback.server.requests}
    assert hosts == set(ARCHIVE_NAMES)
    assert len(wayback.server.connections) <= 2 * len(ARCHIVE_NAMES)


def test_a_known_placeholder_picture_counts_as_dead_and_is_rescued(
    tls_server, wayback, settings, tmp_path
):
    removed = encoded_image("PNG", size=(32, 32), seed=99)  # the CDN's "image removed" PNG
    real = encoded_image("JPEG", seed=5)
    tls_server.route("/photo.jpg", image_reply(removed, content_type="image/png"))
    url = tls_server.url("/photo.jpg")
    wayback.add(url, "20180101000000", image_reply(real))
    settings = settings.replace(placeholder_sha256=(hashlib.sha256(removed).hexdigest().upper(),))
    store = Store(tmp_path / "assets")

    async def scenario():
        async with build_client(settings) as client:
            results = [
                r
                async for r in fetch_all(
                    [FetchRequest(url=url, policy="no-referrer")],
                    store=store,
                    settings=settings,
                    client=client,
                )
            ]
            (fetched,) = results
            failure = placeholder_failure(fetched, settings)
            assert failure is not None and is_rescuable(failure)
            assert placeholder_failure(fetched, Settings()) is None
            return [
                o
                async for o in rescue(
                    [failure],
                    sources=sources_from_settings(settings),
                    store=store,
                    settings=settings,
                    client=client,
                )
            ]

    (outcome,) = run(scenario())
    assert isinstance(outcome, Rescued)
    assert outcome.failure.reason == "placeholder-image"
    assert stored_bytes(store, outcome) == real


@pytest.fixture
def mirror_server(test_ca) -> Iterator[TestServer]:
    with TestServer(ssl_context=server_ssl_context(test_ca, ("mirror.example.org",))) as server:
        yield server


def test_sources_are_asked_in_order_and_a_users_mirror_can_rescue(
    tls_server, wayback, mirror_server, settings, tmp_path
):
    tls_server.route("/one.jpg", status_reply(404))
    tls_server.route("/two.jpg", status_reply(404))
    tls_server.route("/three.jpg", status_reply(404))
    one, two, three = (tls_server.url(p) for p in ("/one.jpg", "/two.jpg", "/three.jpg"))
    from_wayback, from_mirror = encoded_image(seed=1), encoded_image(seed=2)
    wayback.add(one, "20200101000000", image_reply(from_wayback))
    host = f"img.example.com:{tls_server.port}"
    mirror_server.route(f"/old/{host}/two.jpg", image_reply(from_mirror))
    mirror_server.route(f"/old/{host}/one.jpg", image_reply(encoded_image(seed=3)))
    base = f"https://mirror.example.org:{mirror_server.port}/old"
    settings = settings.replace(
        archive=("wayback", base),
        resolve=(*settings.resolve, *mirror_server.resolve_entries(("mirror.example.org",))),
    )
    store = Store(tmp_path / "assets")

    _, outcomes = run(fetch_then_rescue([one, two, three], settings, store))

    assert outcomes[one].fallback == "wayback"
    assert stored_bytes(store, outcomes[one]) == from_wayback
    assert outcomes[two].fallback == "mirror"
    assert stored_bytes(store, outcomes[two]) == from_mirror
    assert outcomes[two].provenance()["source"] == "archive"
    assert outcomes[two].snapshot_timestamp is None
    failed = outcomes[three]
    assert isinstance(failed, RescueFailed)
    assert failed.archive_reason == "wayback: no-snapshot; mirror: http-404"
    # the first source that had it wins: the mirror was never asked for one.jpg
    assert mirror_server.requests_for(f"/old/{host}/one.jpg") == []


class BrokenSource:
    name = "broken"
    per_host = 1

    async def locate(self, url, *, around, client):
        raise RuntimeError("source bug")


def test_a_broken_source_does_not_stop_the_others(tls_server, wayback, settings, tmp_path):
    tls_server.route("/x.jpg", status_reply(404))
    dead = tls_server.url("/x.jpg")
    image = encoded_image(seed=8)
    wayback.add(dead, "20200101000000", image_reply(image))
    sources = (BrokenSource(), *sources_from_settings(settings))
    store = Store(tmp_path / "assets")

    _, outcomes = run(fetch_then_rescue([dead], settings, store, sources=sources))

    assert stored_bytes(store, outcomes[dead]) == image


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (Reply(body=b"not json", content_type="application/json"), "bad-answer"),
        (Reply(body=b'{"archived_snapshots": null}'), "bad-answer"),
        (status_reply(404), "lookup-http-404"),
        (status_reply(503), "lookup-http-503"),
    ],
    ids=["not-json", "no-snapshots", "404", "503"],
)
def test_a_bad_availability_answer_is_an_answer_not_a_crash(
    tls_server, wayback, settings, tmp_path, reply, reason
):
    wayback.server.route("/wayback/available", reply)
    tls_server.route("/x.jpg", status_reply(404))
    dead = tls_server.url("/x.jpg")
    store = Store(tmp_path / "assets")

    _, outcomes = run(fetch_then_rescue([dead], settings, store))

    assert outcomes[dead].reason == "http-404"
    assert outcomes[dead].archive_reason == f"wayback: {reason}"
    expected_tries = settings.retries + 1 if reason == "lookup-http-503" else 1
    assert len(wayback.lookups()) == expected_tries


def test_the_archive_is_refused_like_any_host_without_allow_private(
    tls_server, wayback, settings, tmp_path
):
    """The lookup goes through the same SSRF guard: an archive on loopback is refused."""
    tls_server.route("/x.jpg", status_reply(404))
    dead = tls_server.url("/x.jpg")
    wayback.add(dead, "20200101000000", image_reply(encoded_image()))
    failure = FetchFailure(
        url=dead, reason="http-404", message="gone", attempts=1, policy="", referer=None
    )
    guarded = settings.replace(allow_private_addresses=False)
    store = Store(tmp_path / "assets")

    async def scenario():
        sources = sources_from_settings(guarded)
        return [o async for o in rescue([failure], sources=sources, store=store, settings=guarded)]

    (outcome,) = run(scenario())
    assert outcome.archive_reason == "wayback: lookup-blocked-address"
    assert wayback.server.connections == []


def test_capture_url_is_the_raw_form_over_https():
    source = WaybackSource("https://archive.org")
    snap = "http://web.archive.org/web/20210608094847/https://img.example.com/a.jpg?x=1"
    assert source.capture_url(snap) == (
        "https://web.archive.org/web/20210608094847id_/https://img.example.com/a.jpg?x=1"
    )
    assert source.capture_url("https://web.archive.org/web/20210608094847im_/http://a.b/c.png") == (
        "https://web.archive.org/web/20210608094847id_/http://a.b/c.png"
    )
    assert source.browse_url(snap) == (
        "https://web.archive.org/web/20210608094847/https://img.example.com/a.jpg?x=1"
    )
    assert source.capture_url("https://web.archive.org/not-a-snapshot") is None
    assert source.capture_url("javascript:alert(1)") is None
    assert WaybackSource("http://archive.local").capture_url(snap).startswith("http://")
    lookup = source.lookup_url(
        "https://img.example.com/a b.jpg?x=1&y=2", dt.datetime(2021, 6, 8, 9, 48, 47)
    )
    assert lookup == (
        "https://archive.org/wayback/available"
        "?url=img.example.com%2Fa%20b.jpg%3Fx%3D1%26y%3D2&timestamp=20210608094847"
    )


def test_mirror_base_layout():
    async def locate(url: str):
        return await MirrorBaseSource("https://m.example/base").locate(
            url, around=None, client=None
        )

    snap = run(locate("https://img.example.com:8443/a/b.jpg?v=2"))
    assert snap.capture_url == "https://m.example/base/img.example.com:8443/a/b.jpg?v=2"
    with pytest.raises(ValueError):
        MirrorBaseSource("file:///srv/mirror")


def test_an_archive_redirect_to_a_neighbouring_capture_is_followed(
    tls_server, wayback, settings, tmp_path
):
    """The Wayback Machine redirects an `id_` URL to the nearest capture it really has."""
    tls_server.route("/moved.jpg", status_reply(404))
    dead = tls_server.url("/moved.jpg")
    image = encoded_image(seed=12)
    port = wayback.server.port
    real = f"https://web.archive.org:{port}/web/20210610000000id_/{dead}"
    wayback.add(dead, "20210608094847", redirect_reply(real))
    wayback.server.route(f"/web/20210610000000id_/{dead}", image_reply(image))
    store = Store(tmp_path / "assets")

    _, outcomes = run(fetch_then_rescue([dead], settings, store))

    assert stored_bytes(store, outcomes[dead]) == image
    assert outcomes[dead].fetched.final_url == real


def test_an_unknown_archive_is_refused_before_anything_is_fetched(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from harvester.cli import app

    with pytest.raises(ConfigError, match="waybak"):
        Settings(archive=("waybak",))
    with pytest.raises(ConfigError, match="archive_per_host"):
        Settings(archive=("wayback",), archive_per_host=0)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "post.md").write_text("![x](https://img.example.com/a.jpg)\n", encoding="utf-8")
    (tmp_path / "harvester.toml").write_text('archive = ["waybak"]\n', encoding="utf-8")
    result = CliRunner().invoke(app, ["run", "post.md"])
    assert isinstance(result.exception, ConfigError)
    assert "waybak" in str(result.exception)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["harvester.toml", "post.md"]


def test_a_closed_gate_stops_new_lookups_and_leaves_the_rest_untried(
    tls_server, wayback, settings, tmp_path
):
    """A deadline or a stop signal: what was not started comes back untried, nothing lost."""
    urls = []
    for i in range(5):
        tls_server.route(f"/late{i}.jpg", status_reply(404))
        urls.append(tls_server.url(f"/late{i}.jpg"))
        wayback.add(urls[-1], "20200101000000", image_reply(encoded_image(seed=20 + i)))
    budget = iter([True, True])  # the gate allows two steps, then closes for good
    store = Store(tmp_path / "assets")

    async def scenario():
        async with build_client(settings) as client:
            failures = [
                r
                async for r in fetch_all(
                    [FetchRequest(url=u, policy="no-referrer") for u in urls],
                    store=store,
                    settings=settings,
                    client=client,
                )
            ]
            return [
                o
                async for o in rescue(
                    failures,
                    sources=sources_from_settings(settings),
                    store=store,
                    settings=settings,
                    client=client,
                    keep_going=lambda: next(budget, False),
                )
            ]

    outcomes = run(scenario())

    assert sorted(o.url for o in outcomes) == sorted(urls)  # one outcome each
    assert all(isinstance(o, RescueFailed) and not o.tried for o in outcomes)
    assert all(o.as_failure().reason == "http-404" for o in outcomes)
    # two lookups were allowed to start; when they answered the gate was closed, so no
    # capture was downloaded and nothing more was asked
    assert len(wayback.lookups()) == 2
    assert wayback.capture_requests() == []
    assert list(store.iter_files()) == []


# --------------------------------------------------------------------------------------------
# The CDX index source
# --------------------------------------------------------------------------------------------


def test_the_index_finds_an_older_good_capture_when_the_closest_one_recorded_the_404(
    tls_server, wayback, settings, tmp_path
):
    """The common case for a dead image: the archive's latest capture is of the 404 itself."""
    tls_server.route("/rot.jpg", status_reply(404))
    dead = tls_server.url("/rot.jpg")
    good = encoded_image("JPEG", seed=30)
    wayback.add(dead, "20160505000000", image_reply(good))
    wayback.add(dead, "20230101000000", status_reply(404), status="404", mimetype="text/html")
    settings = settings.replace(archive=("wayback", "wayback-cdx"))
    dates = {dead: parse_article_date("2022-06-01")}
    store = Store(tmp_path / "assets")

    _, outcomes = run(fetch_then_rescue([dead], settings, store, dates=dates))

    rescued = outcomes[dead]
    assert isinstance(rescued, Rescued) and rescued.fallback == "wayback-cdx"
    assert stored_bytes(store, rescued) == good
    assert rescued.snapshot_timestamp == dt.datetime(2016, 5, 5, tzinfo=UTC)
    assert rescued.snapshot_url == (
        f"https://web.archive.org:{wayback.server.port}/web/20160505000000/{dead}"
    )
    # the availability API was asked first and pointed at the recorded 404
    assert wayback.lookups()[0]["timestamp"] == "20220601000000"
    (index_query,) = wayback.lookups("/cdx/search/cdx")
    assert index_query["url"] == dead.removeprefix("https://")
    assert index_query["closest"] == "20220601000000"
    assert index_query["sort"] == "closest" and index_query["limit"] == "1"
    assert index_query["filter"] == "statuscode:200,!mimetype:text/html"
    assert [r.path for r in wayback.capture_requests()] == [f"/web/20160505000000id_/{dead}"]


def test_the_index_skips_captured_html_pages(tls_server, wayback, settings, tmp_path):
    tls_server.route("/soft404.png", status_reply(410))
    dead = tls_server.url("/soft404.png")
    png = encoded_image("PNG", seed=31)
    png_reply = image_reply(png, content_type="image/png")
    wayback.add(dead, "20180101000000", png_reply, mimetype="image/png")
    page = Reply(body=b"<html><body>Image not found</body></html>" * 10, content_type="text/html")
    wayback.add(dead, "20200101000000", page, mimetype="text/html")  # a 200 "not found" page
    settings = settings.replace(archive=("wayback-cdx",))
    dates = {dead: parse_article_date("2020-01-02")}
    store = Store(tmp_path / "assets")

    _, outcomes = run(fetch_then_rescue([dead], settings, store, dates=dates))

    assert stored_bytes(store, outcomes[dead]) == png
    assert wayback.lookups() == []  # only the index was asked
    assert [r.path for r in wayback.capture_requests()] == [f"/web/20180101000000id_/{dead}"]


def test_the_index_without_a_date_takes_the_latest_good_capture(
    tls_server, wayback, settings, tmp_path
):
    tls_server.route("/a.gif", status_reply(404))
    tls_server.route("/b.gif", status_reply(404))
    a, b = tls_server.url("/a.gif"), tls_server.url("/b.gif")
    old, new = encoded_image("GIF", seed=32), encoded_image("GIF", seed=33)
    wayback.add(a, "20120101000000", image_reply(old, content_type="image/gif"))
    wayback.add(a, "20190101000000", image_reply(new, content_type="image/gif"))
    wayback.add(a, "20240101000000", status_reply(404), status="404")
    settings = settings.replace(archive=("wayback-cdx",))
    store = Store(tmp_path / "assets")

    _, outcomes = run(fetch_then_rescue([a, b], settings, store))

    assert stored_bytes(store, outcomes[a]) == new
    queries = {q["url"]: q for q in wayback.lookups("/cdx/search/cdx")}
    assert queries[a.removeprefix("https://")]["limit"] == "-1"
    assert queries[a.removeprefix("https://")]["fastLatest"] == "true"
    assert "closest" not in queries[a.removeprefix("https://")]
    assert outcomes[b].archive_reason == "wayback-cdx: no-snapshot"
