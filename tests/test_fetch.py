"""The fetcher (harvester/fetch.py) against real HTTP/HTTPS servers on 127.0.0.1.

Every server is reached by a real-looking name through --resolve mappings; images are real
files encoded by Pillow in the test.
"""

from __future__ import annotations

import asyncio
import email.utils
import gzip
import hashlib
import os
import socket
import time
import zlib

import pytest

from harvester.fetch import REASONS, fetch_all, fetch_batch, parse_retry_after, sniff
from harvester.net import build_client
from harvester.records import Fetched, FetchFailure, FetchRequest
from mirror.store import Store
from tests.servers import (
    Reply,
    encoded_image,
    gzip_bomb,
    image_reply,
    redirect_reply,
    run_fetch,
    settings_for,
    status_reply,
)

DEFAULT = "strict-origin-when-cross-origin"


def req(url: str, policy: str = DEFAULT, **kw) -> FetchRequest:
    return FetchRequest(url=url, policy=policy, **kw)


def stored_bytes(tmp_path, result: Fetched) -> bytes:
    return (tmp_path / result.path).read_bytes()


def temp_is_empty(tmp_path) -> bool:
    tmp = tmp_path / ".tmp"
    return not tmp.exists() or os.listdir(tmp) == []


def fetch_one(server, path, tmp_path, *, settings=None, **req_kw):
    settings = settings or settings_for(server)
    results, _ = run_fetch([req(server.url(path), **req_kw)], settings, tmp_path)
    return results[0]


# -- success ---------------------------------------------------------------------------------


def test_images_over_http_and_https_land_in_the_store_by_content(
    image_server, tls_server, tls_settings, tmp_path
):
    jpeg, png = encoded_image("JPEG", seed=1), encoded_image("PNG", seed=2)
    image_server.route("/photo.jpg", image_reply(jpeg, headers={"ETag": '"v1"'}))
    tls_server.route("/pic.png", image_reply(png, "image/png", headers={"Last-Modified": "x"}))
    urls = [image_server.url("/photo.jpg"), tls_server.url("/pic.png", host="cdn.example.net")]
    results, _ = run_fetch([req(u) for u in urls], tls_settings, tmp_path)
    first, second = results
    assert isinstance(first, Fetched) and isinstance(second, Fetched)
    assert first.sha256 == hashlib.sha256(jpeg).hexdigest()
    assert stored_bytes(tmp_path, first) == jpeg
    assert (first.ext, first.media_type, first.http_status, first.etag) == (
        "jpg",
        "image/jpeg",
        200,
        '"v1"',
    )
    assert first.path == f"{first.sha256[:2]}/{first.sha256[2:4]}/{first.sha256}.jpg"
    assert stored_bytes(tmp_path, second) == png and second.ext == "png"
    assert second.last_modified == "x" and second.attempts == 1
    assert temp_is_empty(tmp_path)


@pytest.mark.parametrize(
    ("fmt", "ext", "media_type"),
    [
        ("JPEG", "jpg", "image/jpeg"),
        ("PNG", "png", "image/png"),
        ("GIF", "gif", "image/gif"),
        ("WEBP", "webp", "image/webp"),
        ("AVIF", "avif", "image/avif"),
        ("BMP", "bmp", "image/bmp"),
        ("TIFF", "tif", "image/tiff"),
        ("ICO", "ico", "image/vnd.microsoft.icon"),
    ],
)
def test_every_supported_format_is_recognized_from_its_bytes(fmt, ext, media_type):
    data = encoded_image(fmt)
    found = sniff(data[:512])
    assert found is not None and (found.ext, found.media_type) == (ext, media_type)


@pytest.mark.parametrize(
    "body",
    [
        b"BMW and Mercedes: a comparison of the 2024 models" + b" " * 100,
        b"\x00\x00\x01\x00\x00\x00" + b"\x00" * 40,
        b"GIF8 is not a GIF",
        b'{"error": "not found"}',
        b"%PDF-1.7\n",
    ],
)
def test_lookalikes_are_not_images(body):
    assert sniff(body) is None


def test_a_jpeg_served_as_octet_stream_under_a_png_name_is_stored_as_jpg(image_server, tmp_path):
    jpeg = encoded_image("JPEG")
    image_server.route("/download.png", image_reply(jpeg, "application/octet-stream"))
    result = fetch_one(image_server, "/download.png", tmp_path)
    assert isinstance(result, Fetched)
    assert (result.ext, result.media_type) == ("jpg", "image/jpeg")
    assert result.path.endswith(".jpg")


def test_the_same_bytes_from_two_urls_are_stored_once(image_server, tmp_path):
    jpeg = encoded_image("JPEG")
    image_server.route("/a.jpg", image_reply(jpeg))
    image_server.route("/copy-of-a.jpg", image_reply(jpeg))
    urls = [image_server.url("/a.jpg"), image_server.url("/copy-of-a.jpg", host="cdn.example.net")]
    results, _ = run_fetch([req(u) for u in urls], settings_for(image_server), tmp_path)
    assert results[0].path == results[1].path
    assert list(Store(tmp_path).iter_files()) == [results[0].path]


def test_a_large_image_streams_through_temp_files_intact(image_server, tmp_path):
    big = encoded_image("BMP", size=(1200, 1000))  # ~3.6 MB: several spills to disk
    image_server.route("/big.bmp", image_reply(big, chunked=True))
    result = fetch_one(image_server, "/big.bmp", tmp_path)
    assert result.sha256 == hashlib.sha256(big).hexdigest()
    assert stored_bytes(tmp_path, result) == big


def test_a_gzip_encoded_image_is_stored_decoded(image_server, tmp_path):
    jpeg = encoded_image("JPEG")
    image_server.route(
        "/z.jpg", image_reply(gzip.compress(jpeg), headers={"Content-Encoding": "gzip"})
    )
    image_server.route(
        "/d.jpg", image_reply(zlib.compress(jpeg), headers={"Content-Encoding": "deflate"})
    )
    urls = [image_server.url("/z.jpg"), image_server.url("/d.jpg")]
    results, _ = run_fetch([req(u) for u in urls], settings_for(image_server), tmp_path)
    assert [stored_bytes(tmp_path, r) for r in results] == [jpeg, jpeg]


# -- statuses and retries ----------------------------------------------------------------------


@pytest.mark.parametrize("status", [404, 410, 403, 400])
def test_client_errors_are_final_after_one_request(image_server, tmp_path, status):
    image_server.route("/gone.jpg", status_reply(status))
    result = fetch_one(image_server, "/gone.jpg", tmp_path)
    assert isinstance(result, FetchFailure)
    assert (result.reason, result.http_status, result.attempts) == (f"http-{status}", status, 1)
    assert len(image_server.requests_for("/gone.jpg")) == 1


def test_500_then_200_is_retried_and_succeeds(image_server, tmp_path):
    jpeg = encoded_image("JPEG")
    image_server.route("/flaky.jpg", [status_reply(500), image_reply(jpeg)])
    result = fetch_one(image_server, "/flaky.jpg", tmp_path)
    assert isinstance(result, Fetched) and result.attempts == 2
    assert stored_bytes(tmp_path, result) == jpeg
    assert len(image_server.requests_for("/flaky.jpg")) == 2


@pytest.mark.parametrize("status", [408, 425, 502, 504])
def test_other_transient_statuses_are_retried(image_server, tmp_path, status):
    image_server.route("/t.jpg", [status_reply(status), image_reply(encoded_image("JPEG"))])
    assert fetch_one(image_server, "/t.jpg", tmp_path).attempts == 2


def test_always_500_stops_after_the_configured_attempts(image_server, tmp_path):
    image_server.route("/broken.jpg", status_reply(500))
    settings = settings_for(image_server, retries=3)
    result = fetch_one(image_server, "/broken.jpg", tmp_path, settings=settings)
    assert (result.reason, result.attempts) == ("http-500", 4)
    assert len(image_server.requests_for("/broken.jpg")) == 4


def test_503_retry_after_seconds_is_waited_for(image_server, tmp_path):
    jpeg = encoded_image("JPEG")
    image_server.route("/busy.jpg", [status_reply(503, {"Retry-After": "1"}), image_reply(jpeg)])
    result = fetch_one(image_server, "/busy.jpg", tmp_path)
    assert isinstance(result, Fetched) and result.attempts == 2
    first, second = image_server.requests_for("/busy.jpg")
    assert second.at - first.at >= 0.95  # backoff alone would be ~0.01 s


def test_429_retry_after_http_date_is_waited_for(image_server, tmp_path):
    when = email.utils.formatdate(time.time() + 2, usegmt=True)
    image_server.route(
        "/slow-down.jpg",
        [status_reply(429, {"Retry-After": when}), image_reply(encoded_image("JPEG"))],
    )
    result = fetch_one(image_server, "/slow-down.jpg", tmp_path)
    assert isinstance(result, Fetched)
    first, second = image_server.requests_for("/slow-down.jpg")
    assert second.at - first.at >= 0.9  # whole-second dates: at least 1 s of the 2 s remain


def test_a_retry_after_over_the_cap_defers_the_url(image_server, tmp_path):
    image_server.route("/later.jpg", status_reply(429, {"Retry-After": "3600"}))
    settings = settings_for(image_server, retry_after_cap=30)
    result = fetch_one(image_server, "/later.jpg", tmp_path, settings=settings)
    assert (result.reason, result.attempts, result.retry_after) == ("http-429", 1, 3600)
    assert len(image_server.requests) == 1


def test_parse_retry_after():
    now = 1_700_000_000.0
    assert parse_retry_after("120", now) == 120
    assert parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now) == 30
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now) == 0
    assert parse_retry_after("soon", now) is None and parse_retry_after(None) is None


def test_connection_refused_is_retried_then_reported(tmp_path, image_server):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = settings_for(image_server, retries=1).replace(
        resolve=(f"img.example.com:{port}:127.0.0.1",)
    )
    results, _ = run_fetch([req(f"http://img.example.com:{port}/a.jpg")], settings, tmp_path)
    assert (results[0].reason, results[0].attempts) == ("connect", 2)


# -- content checks --------------------------------------------------------------------------


def test_an_html_page_served_as_200_is_not_an_image(image_server, tmp_path):
    page = b"<!doctype html><html><head><title>Login</title></head><body>" + b"x" * 2000
    image_server.route("/img.jpg", Reply(body=page, content_type="image/jpeg"))
    result = fetch_one(image_server, "/img.jpg", tmp_path)
    assert (result.reason, result.attempts) == ("not-an-image", 1)
    assert list(Store(tmp_path).iter_files()) == [] and temp_is_empty(tmp_path)


def test_svg_with_script_is_refused_by_default_and_allowed_on_request(image_server, tmp_path):
    svg = (
        b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
        b"<script>alert(document.cookie)</script><rect width='10' height='10'/></svg>"
    )
    image_server.route("/logo.svg", Reply(body=svg, content_type="image/svg+xml"))
    refused = fetch_one(image_server, "/logo.svg", tmp_path)
    assert refused.reason == "svg-refused"
    assert list(Store(tmp_path).iter_files()) == []
    allowed = fetch_one(
        image_server, "/logo.svg", tmp_path, settings=settings_for(image_server, allow_svg=True)
    )
    assert (allowed.ext, allowed.media_type) == ("svg", "image/svg+xml")


def test_an_empty_body_is_a_failure(image_server, tmp_path):
    image_server.route("/empty.jpg", Reply(body=b"", content_type="image/jpeg"))
    assert fetch_one(image_server, "/empty.jpg", tmp_path).reason == "empty"


def test_a_truncated_body_is_a_failure_and_nothing_is_stored(image_server, tmp_path):
    jpeg = encoded_image("JPEG", size=(400, 300))
    image_server.route("/cut.jpg", image_reply(jpeg[:1000], content_length=len(jpeg)))
    result = fetch_one(image_server, "/cut.jpg", tmp_path)
    assert result.reason == "truncated"
    assert f"of {len(jpeg)} bytes" in result.message
    assert list(Store(tmp_path).iter_files()) == [] and temp_is_empty(tmp_path)


def test_a_chunked_body_over_the_cap_is_cut_off(image_server, tmp_path):
    body = encoded_image("JPEG") + os.urandom(400_000)
    image_server.route("/huge.jpg", image_reply(body, chunked=True))
    settings = settings_for(image_server, max_bytes=100_000)
    result = fetch_one(image_server, "/huge.jpg", tmp_path, settings=settings)
    assert (result.reason, result.attempts) == ("too-large", 1)
    assert temp_is_empty(tmp_path) and list(Store(tmp_path).iter_files()) == []


def test_a_declared_length_over_the_cap_is_refused_before_reading(image_server, tmp_path):
    image_server.route("/huge.jpg", image_reply(encoded_image("JPEG"), content_length=10**9))
    settings = settings_for(image_server, max_bytes=100_000)
    assert fetch_one(image_server, "/huge.jpg", tmp_path, settings=settings).reason == "too-large"


def test_a_gzip_bomb_cannot_inflate_past_the_cap(image_server, tmp_path):
    bomb = gzip_bomb(200 * 1024 * 1024)  # 200 MiB of zeros in ~200 KB
    assert len(bomb) < 300_000
    image_server.route(
        "/bomb.jpg", image_reply(bomb, "image/jpeg", headers={"Content-Encoding": "gzip"})
    )
    settings = settings_for(image_server, max_bytes=1_000_000)
    result = fetch_one(image_server, "/bomb.jpg", tmp_path, settings=settings)
    assert result.reason == "too-large"
    assert temp_is_empty(tmp_path)


def test_other_content_encodings_are_refused(image_server, tmp_path):
    image_server.route(
        "/br.jpg", image_reply(encoded_image("JPEG"), headers={"Content-Encoding": "br"})
    )
    assert fetch_one(image_server, "/br.jpg", tmp_path).reason == "encoding-refused"


# -- time limits -------------------------------------------------------------------------------


def test_a_slow_drip_ends_at_the_total_deadline(image_server, tmp_path):
    image_server.route("/drip.jpg", image_reply(encoded_image("JPEG"), drip_interval=0.1))
    settings = settings_for(image_server, total_timeout=1.0, read_timeout=5.0)
    started = time.monotonic()
    result = fetch_one(image_server, "/drip.jpg", tmp_path, settings=settings)
    elapsed = time.monotonic() - started
    assert (result.reason, result.attempts) == ("timeout", 1)
    assert elapsed < 10  # the body alone would take ~110 s at this pace
    assert temp_is_empty(tmp_path)


def test_a_stalled_server_ends_at_the_deadline(image_server, tmp_path):
    image_server.route("/stall-body.jpg", image_reply(encoded_image("JPEG"), stall=60))
    image_server.route(
        "/stall-head.jpg", image_reply(encoded_image("JPEG"), stall_before_headers=60)
    )
    settings = settings_for(image_server, total_timeout=1.0, read_timeout=30.0, retries=0)
    urls = [image_server.url("/stall-body.jpg"), image_server.url("/stall-head.jpg")]
    started = time.monotonic()
    results, _ = run_fetch([req(u) for u in urls], settings, tmp_path)
    assert [r.reason for r in results] == ["timeout", "timeout"]
    assert time.monotonic() - started < 10


def test_a_read_timeout_is_retried(image_server, tmp_path):
    jpeg = encoded_image("JPEG")
    image_server.route("/once-slow.jpg", [image_reply(jpeg, stall=5), image_reply(jpeg)])
    settings = settings_for(image_server, read_timeout=0.3, total_timeout=3.0)
    result = fetch_one(image_server, "/once-slow.jpg", tmp_path, settings=settings)
    assert isinstance(result, Fetched) and result.attempts == 2


def test_retries_stop_once_the_url_has_used_total_timeout_in_all(image_server, tmp_path):
    """A host that stalls every time must not hold the run for retries × read_timeout: the
    cap counts from the first attempt, which runs outside the retry loop."""
    image_server.route("/always-slow.jpg", image_reply(encoded_image("JPEG"), stall=5))
    settings = settings_for(
        image_server, read_timeout=0.3, total_timeout=1.2, retries=10, backoff_base=0.05
    )
    started = time.monotonic()
    result = fetch_one(image_server, "/always-slow.jpg", tmp_path, settings=settings)
    elapsed = time.monotonic() - started
    assert result.reason == "timeout"
    assert 2 <= result.attempts <= 5  # 11 allowed by count; ~0.35 s each by the clock
    assert result.attempts == len(image_server.requests_for("/always-slow.jpg"))
    assert elapsed < 4


# -- redirects and Referer -------------------------------------------------------------------


def test_a_redirect_loop_is_detected(image_server, tmp_path):
    image_server.route("/a", redirect_reply("/b"))
    image_server.route("/b", redirect_reply(image_server.url("/a")))
    result = fetch_one(image_server, "/a", tmp_path)
    assert (result.reason, result.attempts) == ("redirect-loop", 1)
    assert len(image_server.requests) == 2


def test_too_many_redirects(image_server, tmp_path):
    for hop in range(10):
        image_server.route(f"/r{hop}", redirect_reply(f"/r{hop + 1}", status=301))
    image_server.route("/r10", image_reply(encoded_image("JPEG")))
    settings = settings_for(image_server, max_redirects=5)
    result = fetch_one(image_server, "/r0", tmp_path, settings=settings)
    assert result.reason == "too-many-redirects"
    assert len(image_server.requests) == 6  # the first request and 5 hops
    ok = fetch_one(image_server, "/r5", tmp_path, settings=settings)
    assert isinstance(ok, Fetched) and ok.final_url == image_server.url("/r10")


def test_no_referrer_images_arrive_without_a_referer(tls_server, tls_settings, tmp_path):
    tls_server.route("/a.jpg", image_reply(encoded_image("JPEG")))
    page = "https://blog.example.org/2024/05/post.html"
    request = req(tls_server.url("/a.jpg"), policy="no-referrer", page_url=page)
    results, _ = run_fetch([request], tls_settings, tmp_path)
    assert isinstance(results[0], Fetched) and results[0].referer is None
    assert "referer" not in tls_server.requests[0].headers


def test_default_policy_images_arrive_with_the_origin_only(tls_server, tls_settings, tmp_path):
    tls_server.route("/a.jpg", image_reply(encoded_image("JPEG")))
    page = "https://blog.example.org/2024/05/post.html?utm=x"
    request = req(tls_server.url("/a.jpg"), page_url=page)
    results, _ = run_fetch([request], tls_settings, tmp_path)
    assert tls_server.requests[0].referer == "https://blog.example.org/"
    assert results[0].referer == "https://blog.example.org/"


def test_the_referer_is_recomputed_for_every_redirect_hop(
    image_server, tls_server, tls_settings, tmp_path
):
    """same-origin: the full page URL to the page's own host, nothing after a cross-origin hop."""
    page = tls_server.url("/posts/1.html")  # https://img.example.com:<port>/posts/1.html
    tls_server.route("/moved.jpg", redirect_reply(tls_server.url("/b.jpg", host="cdn.example.net")))
    tls_server.route("/b.jpg", image_reply(encoded_image("JPEG")))
    request = req(tls_server.url("/moved.jpg"), policy="same-origin", page_url=page)
    results, _ = run_fetch([request], tls_settings, tmp_path)
    assert isinstance(results[0], Fetched)
    first, second = tls_server.requests
    assert first.referer == page
    assert second.referer is None and results[0].referer is None


def test_referer_overrides_apply_per_host_but_never_leak_the_page(
    tls_server, tls_settings, tmp_path
):
    tls_server.route("/a.jpg", image_reply(encoded_image("JPEG")))
    settings = tls_settings.replace(
        referer_overrides={
            "cdn.example.net": "https://weibo.com/u/1",
            "img.example.com": "https://blog.example.org/other",  # the page's own site
        }
    )
    page = "https://blog.example.org/post.html"
    allowed = req(tls_server.url("/a.jpg", host="cdn.example.net"), page_url=page)
    # no-referrer: only the override's foreign origin goes, which says nothing about the page
    quiet = req(
        tls_server.url("/a.jpg?2", host="cdn.example.net"), policy="no-referrer", page_url=page
    )
    # ... and an override naming the page's own site is withheld, as the policy demands
    own = req(
        tls_server.url("/a.jpg?3", host="img.example.com"), policy="no-referrer", page_url=page
    )
    run_fetch([allowed, quiet, own], settings, tmp_path)
    by_path = {r.path: r.referer for r in tls_server.requests}
    assert by_path == {
        "/a.jpg": "https://weibo.com/",
        "/a.jpg?2": "https://weibo.com/",
        "/a.jpg?3": None,
    }


def test_a_scan_computed_referer_is_sent_when_no_page_url_is_known(image_server, tmp_path):
    image_server.route("/a.jpg", image_reply(encoded_image("JPEG")))
    result = fetch_one(
        image_server, "/a.jpg", tmp_path, policy="unsafe-url", referer="http://blog.example.org/"
    )
    assert image_server.requests[0].referer == "http://blog.example.org/"
    assert result.referer == "http://blog.example.org/"


# -- conditional requests ----------------------------------------------------------------------


def test_a_304_answers_a_conditional_request_as_unchanged(image_server, tmp_path):
    jpeg = encoded_image("JPEG")
    image_server.route("/a.jpg", image_reply(jpeg, headers={"ETag": '"abc"'}))
    first = fetch_one(image_server, "/a.jpg", tmp_path)

    def answer(request):
        if request.headers.get("if-none-match") == '"abc"':
            return Reply(status=304, headers={"ETag": '"abc"'}, content_type=None)
        return image_reply(jpeg)

    image_server.route("/a.jpg", answer)
    second = fetch_one(
        image_server,
        "/a.jpg",
        tmp_path,
        etag='"abc"',
        last_modified="Wed, 21 Oct 2015 07:28:00 GMT",
        known_sha256=first.sha256,
        known_path=first.path,
    )
    assert isinstance(second, Fetched) and second.not_modified
    assert (second.sha256, second.path, second.size, second.http_status) == (
        first.sha256,
        first.path,
        len(jpeg),
        304,
    )
    last = image_server.requests[-1].headers
    assert last["if-none-match"] == '"abc"'
    assert last["if-modified-since"] == "Wed, 21 Oct 2015 07:28:00 GMT"


def test_no_conditional_request_when_the_stored_file_is_gone(image_server, tmp_path):
    jpeg = encoded_image("JPEG")
    image_server.route("/a.jpg", image_reply(jpeg))
    first = fetch_one(image_server, "/a.jpg", tmp_path)
    Store(tmp_path).remove(first.path)
    again = fetch_one(
        image_server,
        "/a.jpg",
        tmp_path,
        etag='"abc"',
        known_sha256=first.sha256,
        known_path=first.path,
    )
    assert isinstance(again, Fetched) and not again.not_modified
    assert "if-none-match" not in image_server.requests[-1].headers
    assert Store(tmp_path).exists(first.path)


# -- many URLs ---------------------------------------------------------------------------------


def test_limits_hold_per_host_and_globally(image_server, tmp_path):
    jpegs = [encoded_image("JPEG", seed=i) for i in range(24)]
    for i, data in enumerate(jpegs):
        image_server.route(f"/{i}.jpg", image_reply(data))
    image_server.latency = (0.05, 0.05)
    hosts = ["img.example.com", "cdn.example.net", "static.example.org"]
    urls = [image_server.url(f"/{i}.jpg", host=hosts[i % 3]) for i in range(24)]
    settings = settings_for(image_server, concurrency=5, per_host=2)
    results, backend = run_fetch([req(u) for u in urls], settings, tmp_path)
    assert all(isinstance(r, Fetched) for r in results)
    assert max(image_server.max_active.values()) <= 2
    assert image_server.max_active_total <= 5
    assert image_server.max_active_total >= 3  # several hosts really run side by side
    assert backend.connections <= 6  # keep-alive: connections are reused across images


def test_one_bad_url_never_stops_the_others(image_server, tmp_path):
    image_server.route("/ok.jpg", image_reply(encoded_image("JPEG")))
    image_server.route("/404.jpg", status_reply(404))
    urls = [
        "ftp://img.example.com/x.jpg",
        "http://user:pw@img.example.com/x.jpg",
        "not a url at all",
        "http://[::1/x.jpg",
        image_server.url("/404.jpg"),
        image_server.url("/ok.jpg"),
    ]
    results, _ = run_fetch([req(u) for u in urls], settings_for(image_server), tmp_path)
    assert [r.reason if isinstance(r, FetchFailure) else "ok" for r in results] == [
        "unsupported-scheme",
        "bad-url",
        "bad-url",
        "bad-url",
        "http-404",
        "ok",
    ]
    assert sorted(r.path for r in image_server.requests) == ["/404.jpg", "/ok.jpg"]


def test_fetch_all_consumes_its_input_lazily(image_server, tmp_path):
    image_server.route("/a.jpg", image_reply(encoded_image("JPEG")))
    settings = settings_for(image_server, concurrency=4, per_host=4)
    pulled = 0

    def requests():
        nonlocal pulled
        for i in range(2000):
            pulled += 1
            yield req(image_server.url(f"/a.jpg?{i}"))

    async def go():
        async with build_client(settings) as client:
            stream = fetch_all(requests(), store=Store(tmp_path), settings=settings, client=client)
            first = await stream.__anext__()
            pulled_at_first = pulled
            await stream.aclose()
            return first, pulled_at_first

    first, pulled_at_first = asyncio.run(go())
    assert isinstance(first, Fetched)
    assert pulled_at_first <= 100  # a bounded window, not the whole input


def test_fetch_all_accepts_an_async_iterable(image_server, tmp_path):
    image_server.route("/a.jpg", image_reply(encoded_image("JPEG")))
    settings = settings_for(image_server)

    async def requests():
        for i in range(5):
            yield req(image_server.url(f"/a.jpg?{i}"))

    async def go():
        return [r async for r in fetch_all(requests(), store=Store(tmp_path), settings=settings)]

    results = asyncio.run(go())
    assert len(results) == 5 and all(isinstance(r, Fetched) for r in results)


def test_fetch_batch_returns_results_in_request_order(image_server, tmp_path):
    for i in range(6):
        image_server.route(f"/{i}.jpg", image_reply(encoded_image("JPEG", seed=i)))
    image_server.route("/3.jpg", status_reply(404))
    urls = [image_server.url(f"/{i}.jpg") for i in range(6)]
    results = fetch_batch([req(u) for u in urls], tmp_path, settings_for(image_server))
    assert [r.url for r in results] == urls
    assert [isinstance(r, Fetched) for r in results] == [True, True, True, False, True, True]


def test_reason_codes_are_documented_in_one_table():
    import harvester.fetch as module

    for code in REASONS:
        assert f"`{code}`" in module.__doc__


def test_204_is_an_empty_body(image_server, tmp_path):
    image_server.route("/nothing.jpg", Reply(status=204, content_type=None))
    assert fetch_one(image_server, "/nothing.jpg", tmp_path).reason == "empty"


def test_the_fetcher_forgets_hosts_it_is_done_with(image_server, tmp_path):
    from harvester.fetch import Fetcher

    image_server.route("/a.jpg", image_reply(encoded_image("JPEG")))
    settings = settings_for(image_server)

    async def go():
        async with build_client(settings) as client:
            fetcher = Fetcher(client, Store(tmp_path), settings)
            urls = [
                image_server.url("/a.jpg", host=h) for h in ("img.example.com", "cdn.example.net")
            ]
            results = [r async for r in fetcher.run([req(u) for u in urls])]
            return results, dict(fetcher._hosts)

    results, hosts = asyncio.run(go())
    assert all(isinstance(r, Fetched) for r in results) and hosts == {}


def test_a_connection_dropped_before_the_answer_is_retried(image_server, tmp_path):
    jpeg = encoded_image("JPEG")
    image_server.route("/reset.jpg", [Reply(hang_up=True), image_reply(jpeg)])
    image_server.route("/always-reset.jpg", Reply(hang_up=True))
    urls = [image_server.url("/reset.jpg"), image_server.url("/always-reset.jpg")]
    results, _ = run_fetch([req(u) for u in urls], settings_for(image_server, retries=2), tmp_path)
    assert isinstance(results[0], Fetched) and results[0].attempts == 2
    assert (results[1].reason, results[1].attempts) == ("connect", 3)


def test_a_servers_own_x_harvester_location_does_not_beat_its_location(image_server, tmp_path):
    jpeg = encoded_image("JPEG")
    image_server.route("/real.jpg", image_reply(jpeg))
    image_server.route("/decoy.jpg", status_reply(404))
    image_server.route(
        "/hop",
        Reply(
            status=302,
            headers={"Location": "/real.jpg", "X-Harvester-Location": "/decoy.jpg"},
            content_type=None,
        ),
    )
    result = fetch_one(image_server, "/hop", tmp_path)
    assert isinstance(result, Fetched) and result.final_url.endswith("/real.jpg")


@pytest.mark.parametrize("transport", ["aiohttp", "httpcore"])
def test_a_body_that_ends_at_the_close_is_whole_only_if_the_close_was_clean(
    image_server, tmp_path, transport
):
    """No Content-Length, no chunks: the body ends when the server closes. A reset half-way
    must not be stored as the picture (aiohttp ends such a body at a reset too)."""
    jpeg = encoded_image("JPEG", size=(320, 240))
    cut = Reply(body=jpeg, content_type="image/jpeg", no_length=True, reset_after=len(jpeg) // 2)
    image_server.route("/cut.jpg", [cut, image_reply(jpeg, no_length=True)])
    image_server.route("/whole.jpg", image_reply(jpeg, no_length=True))
    settings = settings_for(image_server, retries=1, http_transport=transport)
    cut_result = fetch_one(image_server, "/cut.jpg", tmp_path, settings=settings)
    whole = fetch_one(image_server, "/whole.jpg", tmp_path, settings=settings)
    assert isinstance(cut_result, Fetched) and cut_result.attempts == 2, cut_result
    assert (tmp_path / cut_result.path).read_bytes() == jpeg
    assert isinstance(whole, Fetched) and whole.attempts == 1
    assert (tmp_path / whole.path).read_bytes() == jpeg


def test_a_host_in_the_override_table_gets_its_referer_without_a_page_url(
    tls_server, tls_settings, tmp_path
):
    """Feeds with no page URL still reach hotlink-protected CDNs: the override's origin only."""
    tls_server.route("/a.jpg", image_reply(encoded_image("JPEG")))
    settings = tls_settings.replace(referer_overrides={"cdn.example.net": "https://weibo.com/u/1"})
    overridden = req(tls_server.url("/a.jpg", host="cdn.example.net"), policy="no-referrer")
    plain = req(tls_server.url("/a.jpg?2", host="img.example.com"), policy="no-referrer")
    run_fetch([overridden, plain], settings, tmp_path)
    by_path = {r.path: r.referer for r in tls_server.requests}
    assert by_path == {"/a.jpg": "https://weibo.com/", "/a.jpg?2": None}


def test_a_large_image_over_https_arrives_whole(tls_server, tls_settings, tmp_path):
    """Flow control across the TLS upgrade: a body far larger than the read buffer's
    high-water mark must not stall (it once did, above ~1 MB, ending as `timeout`)."""
    import io

    import numpy as np
    from PIL import Image

    noise = np.random.default_rng(7).integers(0, 256, (1100, 1100, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, "PNG")
    data = buffer.getvalue()
    assert len(data) > 3_000_000
    tls_server.route("/big.png", image_reply(data, "image/png"))
    (result,), _ = run_fetch([req(tls_server.url("/big.png"))], tls_settings, tmp_path)
    assert isinstance(result, Fetched), result
    assert stored_bytes(tmp_path, result) == data
