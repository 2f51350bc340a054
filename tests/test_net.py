"""The SSRF guard and the guarded client (harvester/net.py), against real 127.0.0.1 servers.

Only 127.0.0.1 is ever contacted: private, link-local and metadata addresses are checked
through an injected resolver and a dialer that refuses anything but loopback.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harvester.net import (
    AddressGuard,
    BadURL,
    NetRefused,
    build_client,
    check_url,
    parse_host,
    parse_resolve,
)
from harvester.records import FetchRequest
from harvester.settings import HTTP_TRANSPORTS, Settings
from tests.servers import (
    LoopbackOnlyNetwork,
    TestServer,
    encoded_image,
    image_reply,
    redirect_reply,
    run_fetch,
    settings_for,
)

POLICY = "strict-origin-when-cross-origin"
PUBLIC = "93.184.215.14"  # stand-in public address; the test dialer translates it to loopback


def req(url: str) -> FetchRequest:
    return FetchRequest(url=url, policy=POLICY)


# -- host spellings ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("2130706433", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0x7F000001", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("0", "0.0.0.0"),
        ("169.254.43518", "169.254.169.254"),
        ("[::1]", "::1"),
        ("::ffff:127.0.0.1", "::ffff:7f00:1"),
        ("8.8.8.8.", "8.8.8.8"),
    ],
)
def test_every_spelling_of_an_address_is_read_as_that_address(host, address):
    assert parse_host(host) == ipaddress.ip_address(address)


MALFORMED = ["1.2.3.4.5", "256.1", "08.1", "1.2.3.0x1ff", "fe80::1%eth0", "[::g]"]


@pytest.mark.parametrize("host", MALFORMED)
def test_malformed_numeric_hosts_are_bad_urls(host):
    with pytest.raises(BadURL):
        parse_host(host)


def test_names_are_lowercased_and_lose_the_trailing_dot():
    assert parse_host("IMG.Example.COM.") == "img.example.com"
    assert parse_host("localhost") == "localhost"


# -- the address tables ------------------------------------------------------------------------

BLOCKED = [
    "127.0.0.1",
    "127.255.255.254",
    "10.1.2.3",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "169.254.0.1",
    "100.64.0.1",  # CGNAT
    "100.127.255.254",
    "0.0.0.0",
    "0.1.2.3",
    "224.0.0.1",
    "239.255.255.250",
    "255.255.255.255",
    "240.0.0.1",
    "192.0.2.1",
    "198.51.100.1",
    "203.0.113.1",
    "198.18.0.1",
    "192.0.0.8",
    "::",
    "::1",
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:169.254.169.254",
    "::127.0.0.1",  # IPv4-compatible
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2002:a00:1::",  # 6to4 of 10.0.0.1
    "2001::1",  # Teredo
    "2001:db8::1",
    "fc00::1",
    "fd12:3456::1",
    "fe80::1",
    "fec0::1",
    "ff02::1",
    "100::1",
    "4000::1",  # outside global unicast 2000::/3
]
ALLOWED = [
    "8.8.8.8",
    "93.184.215.14",
    "1.1.1.1",
    "2606:4700::1111",
    "::ffff:8.8.8.8",
    "2002:808:808::1",
]


@pytest.mark.parametrize("address", BLOCKED)
def test_non_public_addresses_are_blocked(address):
    assert AddressGuard().why_blocked(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_are_allowed(address):
    assert AddressGuard().why_blocked(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize("address", ["0.0.0.0", "224.0.0.1", "255.255.255.255", "::", "ff02::1"])
def test_allow_private_never_lifts_unspecified_multicast_or_broadcast(address):
    assert AddressGuard(allow_private=True).why_blocked(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["127.0.0.1", "10.0.0.1", "169.254.169.254", "fd00::1", "::1"])
def test_allow_private_lifts_private_ranges(address):
    assert AddressGuard(allow_private=True).why_blocked(ipaddress.ip_address(address)) is None


# -- --resolve ---------------------------------------------------------------------------------


def test_parse_resolve_follows_curl():
    entry = parse_resolve("img.example.com:443:127.0.0.1")
    assert (entry.host, entry.port, entry.addresses) == (
        "img.example.com",
        443,
        (ipaddress.ip_address("127.0.0.1"),),
    )
    wild = parse_resolve("*:8080:[::1],127.0.0.2")
    assert wild.host == "*" and wild.addresses == (
        ipaddress.ip_address("::1"),
        ipaddress.ip_address("127.0.0.2"),
    )
    assert wild.matches("anything.example", 8080) and not wild.matches("anything.example", 80)


@pytest.mark.parametrize("spec", ["img.example.com:443", "host:port:127.0.0.1", "h:80:not-an-ip"])
def test_parse_resolve_rejects_bad_specs(spec):
    with pytest.raises(ValueError):
        parse_resolve(spec)


# -- URL checks --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://img.example.com/a.jpg", "unsupported-scheme"),
        ("file:///etc/passwd", "unsupported-scheme"),
        ("http://user:secret@img.example.com/a.jpg", "bad-url"),
        ("http://user@img.example.com/a.jpg", "bad-url"),
        ("http://[fe80::1%25eth0]/a.jpg", "bad-url"),
        ("http://169.254.169.254/latest/meta-data/", "blocked-address"),
        ("http://0x7f.1/a.jpg", "blocked-address"),
        ("http://mail.example.com:25/a.jpg", "blocked-port"),
        ("https://irc.example.net:6667/a.jpg", "blocked-port"),
    ],
)
def test_check_url_refuses_before_any_connection(url, reason):
    with pytest.raises(NetRefused) as caught:
        check_url(url, AddressGuard())
    assert caught.value.reason == reason


# -- end to end: loopback in every spelling, with a real server listening ------------------------

LOOPBACK_HOSTS = [
    "localhost",
    "127.0.0.1",
    "127.0.0.2",
    "[::1]",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
    "0.0.0.0",
    "0",
    "2130706433",
    "0x7f.1",
    "0x7f000001",
    "127.1",
    "0177.0.0.1",
]


@pytest.fixture(params=HTTP_TRANSPORTS)
def transport(request) -> str:
    """Both transports under httpx: tests that inject no dialer run over each of them."""
    return request.param


def test_loopback_in_every_spelling_is_refused_and_no_byte_reaches_the_server(
    image_server, tmp_path, transport
):
    image_server.route("/a.jpg", image_reply(encoded_image("JPEG")))
    port = image_server.port
    urls = [f"http://{host}:{port}/a.jpg" for host in LOOPBACK_HOSTS]
    settings = Settings(
        retries=0, connect_timeout=2, read_timeout=2, total_timeout=5, http_transport=transport
    )
    results, backend = run_fetch([req(u) for u in urls], settings, tmp_path)
    for url, result in zip(urls, results, strict=True):
        assert result.reason == "blocked-address", (url, result)
        assert result.attempts <= 1
    assert image_server.connections == []
    assert image_server.requests == []
    assert backend.connections == 0


def test_a_name_resolving_to_loopback_is_refused_over_http_and_https(
    image_server, tls_server, ca_bundle, tmp_path, transport
):
    image_server.route("/a.jpg", image_reply(encoded_image("JPEG")))
    tls_server.route("/a.jpg", image_reply(encoded_image("JPEG")))
    # The same --resolve mappings the other tests use, but private addresses not allowed.
    settings = settings_for(
        image_server,
        tls_server,
        ca_bundle=ca_bundle,
        allow_private_addresses=False,
        http_transport=transport,
    )
    urls = [image_server.url("/a.jpg"), tls_server.url("/a.jpg", host="cdn.example.net")]
    results, _ = run_fetch([req(u) for u in urls], settings, tmp_path)
    assert [r.reason for r in results] == ["blocked-address", "blocked-address"]
    assert image_server.connections == [] and tls_server.connections == []


def test_a_system_resolved_name_for_loopback_is_refused(image_server, tmp_path, transport):
    # `localhost` goes through the real system resolver here (no injected resolver).
    image_server.route("/a.jpg", image_reply(encoded_image("JPEG")))
    url = f"http://localhost.:{image_server.port}/a.jpg"
    settings = Settings(retries=0, http_transport=transport)
    results, _ = run_fetch([req(url)], settings, tmp_path)
    assert results[0].reason == "blocked-address"
    assert image_server.connections == []


PRIVATE_NAMES = {
    "rfc1918.example.com": ["10.0.0.5"],
    "home-router.example.com": ["192.168.1.1"],
    "corp.example.com": ["172.20.3.4"],
    "metadata.example.com": ["169.254.169.254"],
    "cgnat.example.com": ["100.64.12.34"],
    "ula.example.com": ["fd00::1"],
    "linklocal6.example.com": ["fe80::1"],
    "mapped.example.com": ["::ffff:10.0.0.1"],
    "nat64.example.com": ["64:ff9b::a9fe:a9fe"],
    "sixtofour.example.com": ["2002:a9fe:a9fe::1"],
    "multicast.example.com": ["224.0.0.251"],
    # rebinding-style answer: one public, one private → refused as a whole
    "mixed.example.com": [PUBLIC, "10.0.0.1"],
}


def test_private_link_local_and_metadata_addresses_are_refused_without_dialing(tmp_path):
    network = LoopbackOnlyNetwork(names=PRIVATE_NAMES)
    urls = [f"http://{name}/a.jpg" for name in PRIVATE_NAMES] + [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://[fd00::1]/a.jpg",
        "http://[::ffff:a9fe:a9fe]/a.jpg",
        "https://10.0.0.1/a.jpg",
        "http://100.100.100.200/latest/meta-data/",  # Alibaba Cloud metadata (CGNAT range)
    ]
    settings = Settings(retries=0)
    results, backend = run_fetch(
        [req(u) for u in urls], settings, tmp_path, resolver=network.resolve, dialer=network.dial
    )
    for url, result in zip(urls, results, strict=True):
        assert result.reason == "blocked-address", (url, result)
    assert network.dials == []
    assert backend.refusals == len(PRIVATE_NAMES)  # names were refused at connect time
    assert sorted(network.lookups) == sorted(PRIVATE_NAMES)


def test_unknown_names_are_dns_failures(tmp_path):
    network = LoopbackOnlyNetwork(names={})
    results, _ = run_fetch(
        [req("http://no-such-host.example.com/a.jpg")],
        Settings(retries=0),
        tmp_path,
        resolver=network.resolve,
        dialer=network.dial,
    )
    assert results[0].reason == "dns"
    assert network.dials == []


def test_redirects_to_refused_addresses_are_refused_and_never_dialed(image_server, tmp_path):
    """A public host redirecting inward: each hop goes through the guard."""
    port = image_server.port
    image_server.route("/to-metadata", redirect_reply("http://169.254.169.254/latest/meta-data/"))
    image_server.route("/to-localhost", redirect_reply(f"http://localhost:{port}/a.jpg"))
    image_server.route("/to-private-name", redirect_reply(f"http://rfc1918.example.com:{port}/"))
    image_server.route("/to-decimal", redirect_reply(f"http://2130706433:{port}/a.jpg"))
    image_server.route("/to-octal", redirect_reply(f"http://0177.0.0.1:{port}/a.jpg"))
    names = {"img.example.com": [PUBLIC], "localhost": ["127.0.0.1"], **PRIVATE_NAMES}
    network = LoopbackOnlyNetwork(names=names, nat={PUBLIC: "127.0.0.1"})
    paths = ["/to-metadata", "/to-localhost", "/to-private-name", "/to-decimal", "/to-octal"]
    urls = [f"http://img.example.com:{port}{p}" for p in paths]
    results, _ = run_fetch(
        [req(u) for u in urls],
        Settings(retries=0),
        tmp_path,
        resolver=network.resolve,
        dialer=network.dial,
    )
    assert [r.reason for r in results] == ["blocked-address"] * 5
    assert {a for a, _ in network.dials} == {PUBLIC}  # only the public host was ever dialed
    assert sorted(r.path for r in image_server.requests) == sorted(paths)
    assert results[0].final_url == "http://169.254.169.254/latest/meta-data/"


def test_the_checked_address_is_the_one_dialed_dns_rebinding(image_server, tmp_path):
    """Each connection resolves once; a second answer cannot swap in a private address."""
    image_server.route("/a.jpg", image_reply(encoded_image("JPEG"), close=True))
    answers = iter([[PUBLIC], ["127.0.0.1"]])
    network = LoopbackOnlyNetwork(nat={PUBLIC: "127.0.0.1"})

    async def rebinding_resolver(host: str, port: int) -> list[str]:
        network.lookups.append(host)
        return next(answers)

    url = f"http://img.example.com:{image_server.port}/a.jpg"
    settings = Settings(retries=0)
    first, _ = run_fetch(
        [req(url)], settings, tmp_path, resolver=rebinding_resolver, dialer=network.dial
    )
    second, _ = run_fetch(
        [req(url)], settings, tmp_path, resolver=rebinding_resolver, dialer=network.dial
    )
    assert first[0].sha256 and second[0].reason == "blocked-address"
    assert network.dials == [(PUBLIC, image_server.port)]  # an address, never the name


# -- the guard cannot be bypassed --------------------------------------------------------------


def _hops_across_both_servers(image_server, tls_server) -> list[str]:
    """Routes that open connections every way a fetch can: plain and TLS, redirects from one
    server to the other under new names, a reply that closes its connection. The URLs: a
    plain image, two redirect chains, a TLS image, the closing image."""
    jpeg, png = encoded_image("JPEG"), encoded_image("PNG")
    image_server.route("/a.jpg", image_reply(jpeg))
    image_server.route("/hop", redirect_reply(tls_server.url("/b.png", host="cdn.example.net")))
    image_server.route("/close.jpg", image_reply(encoded_image("JPEG", seed=2), close=True))
    tls_server.route("/b.png", image_reply(png, "image/png"))
    tls_server.route(
        "/hop", redirect_reply(image_server.url("/close.jpg", host="static.example.org"))
    )
    return [
        image_server.url("/a.jpg"),
        image_server.url("/hop"),
        tls_server.url("/hop", host="pics.example.com"),
        tls_server.url("/b.png", host="img.example.com"),
        image_server.url("/close.jpg"),
    ]


def test_every_connection_the_servers_accept_was_opened_through_the_guard(
    image_server, tls_server, ca_bundle, tmp_path
):
    """Fails if an httpx/httpcore change routes connections around our network backend."""
    urls = _hops_across_both_servers(image_server, tls_server)[:4]
    settings = settings_for(image_server, tls_server, ca_bundle=ca_bundle)
    network = LoopbackOnlyNetwork()
    results, backend = run_fetch([req(u) for u in urls], settings, tmp_path, dialer=network.dial)
    assert all(r.sha256 for r in results), results
    seen = [port for _, port in image_server.connections + tls_server.connections]
    assert len(seen) >= 4
    assert sorted(seen) == sorted(network.client_ports)
    assert backend.connections == len(seen)


def test_environment_proxies_are_ignored(image_server, monkeypatch, tmp_path, transport):
    with TestServer() as proxy:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
            monkeypatch.setenv(name, f"http://127.0.0.1:{proxy.port}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        image_server.route("/a.jpg", image_reply(encoded_image("JPEG")))
        results, _ = run_fetch(
            [req(image_server.url("/a.jpg"))],
            settings_for(image_server, http_transport=transport),
            tmp_path,
        )
        assert results[0].sha256
        assert proxy.connections == []
        assert len(image_server.requests) == 1


def test_tls_verifies_the_host_name_not_the_pinned_address(
    tls_server, ca_bundle, tmp_path, transport
):
    """The certificate covers the test names, not 127.0.0.1 and not other names."""
    tls_server.route("/a.jpg", image_reply(encoded_image("JPEG")))
    settings = settings_for(tls_server, ca_bundle=ca_bundle, http_transport=transport).replace(
        resolve=(
            *tls_server.resolve_entries(),
            f"evil.example.com:{tls_server.port}:127.0.0.1",
        )
    )
    urls = [
        tls_server.url("/a.jpg"),  # img.example.com: covered
        tls_server.url("/a.jpg", host="evil.example.com"),  # resolves fine, wrong name
        f"https://127.0.0.1:{tls_server.port}/a.jpg",  # the pinned IP itself is not covered
    ]
    results, _ = run_fetch([req(u) for u in urls], settings, tmp_path)
    assert results[0].sha256
    assert results[1].reason == "tls" and results[2].reason == "tls"
    assert results[1].attempts == 1  # certificate errors are final


def test_ca_bundle_and_ssl_cert_file_add_trust(tls_server, ca_bundle, tmp_path, transport):
    tls_server.route("/a.jpg", image_reply(encoded_image("JPEG")))
    url = tls_server.url("/a.jpg")
    untrusted = settings_for(tls_server, ca_bundle=None, http_transport=transport)
    assert run_fetch([req(url)], untrusted, tmp_path)[0][0].reason == "tls"

    async def with_env() -> int:
        client = build_client(untrusted, environ={"SSL_CERT_FILE": str(ca_bundle)})
        async with client:
            response = await client.get(url)
            return response.status_code

    assert asyncio.run(with_env()) == 200
    assert run_fetch([req(url)], untrusted.replace(ca_bundle=ca_bundle), tmp_path)[0][0].sha256


def test_client_sends_an_honest_user_agent_and_identity_encoding(image_server, tmp_path, transport):
    image_server.route("/a.jpg", image_reply(encoded_image("JPEG")))
    settings = settings_for(
        image_server,
        user_agent="harvester-test/1.0 (+https://example.org)",
        http_transport=transport,
    )
    run_fetch([req(image_server.url("/a.jpg"))], settings, tmp_path)
    headers = image_server.requests[0].headers
    assert headers["user-agent"] == "harvester-test/1.0 (+https://example.org)"
    assert headers["accept-encoding"] == "identity"
    assert "cookie" not in headers


def test_build_client_refuses_unix_sockets_and_uses_no_redirects():
    client = build_client(Settings())
    try:
        assert client.follow_redirects is False
        assert client.trust_env is False
    finally:
        asyncio.run(client.aclose())


def test_guard_refusal_is_not_an_httpx_error_so_nothing_retries_it(tmp_path: Path, transport):
    """BlockedAddress must surface as itself through httpx (not as a retryable ConnectError)."""

    async def go() -> Exception:
        # client.get, not the fetcher: nothing checked the literal address before the transport
        async with build_client(Settings(http_transport=transport)) as client:
            try:
                await client.get("http://127.0.0.1:8/")
            except Exception as exc:  # the type is what is checked
                return exc
        raise AssertionError("no error")

    exc = asyncio.run(go())
    assert isinstance(exc, NetRefused) and not isinstance(exc, httpx.HTTPError)


@pytest.mark.parametrize("spec", ["img.example.com:80", "img.example.com:x:127.0.0.1"])
def test_a_bad_resolve_setting_is_a_config_error(spec):
    from harvester.errors import ConfigError

    with pytest.raises(ConfigError, match="resolve"):
        build_client(Settings(resolve=(spec,)))


def test_a_missing_ca_bundle_is_a_config_error(tmp_path):
    from harvester.errors import ConfigError

    with pytest.raises(ConfigError, match="CA bundle"):
        build_client(Settings(ca_bundle=tmp_path / "missing.pem"))


def _spell(value: int, base: int) -> str:
    if base == 16:
        return hex(value)
    if base == 8:
        return "0" + oct(value)[2:]
    return str(value)


@given(
    address=st.integers(min_value=0, max_value=2**32 - 1),
    parts=st.integers(min_value=1, max_value=4),
    bases=st.lists(st.sampled_from([8, 10, 16]), min_size=4, max_size=4),
)
@settings(max_examples=300, deadline=None)
def test_host_parsing_agrees_with_the_system_for_any_numeric_spelling(address, parts, bases):
    """Whatever numeric spelling a URL uses, we read the address the C library would dial."""
    packed = address.to_bytes(4, "big")
    if parts == 1:
        numbers = [address]
    elif parts == 2:
        numbers = [packed[0], int.from_bytes(packed[1:], "big")]
    elif parts == 3:
        numbers = [packed[0], packed[1], int.from_bytes(packed[2:], "big")]
    else:
        numbers = list(packed)
    host = ".".join(_spell(n, b) for n, b in zip(numbers, bases, strict=False))
    expected = ipaddress.IPv4Address(socket.inet_aton(host))
    assert parse_host(host) == expected == ipaddress.IPv4Address(address)


def test_build_client_installs_the_guarded_lean_pool():
    from harvester.net import GuardedBackend, LeanConnectionPool

    client = build_client(Settings(http_transport="httpcore"))
    try:
        pool = client._transport._pool
        assert isinstance(pool, LeanConnectionPool)
        assert isinstance(pool._network_backend, GuardedBackend)
    finally:
        asyncio.run(client.aclose())


def test_a_connection_the_server_closed_while_idle_is_never_reused(
    image_server, tmp_path, transport
):
    # The lean pool sweeps for expired connections only now and then, but checks each one
    # again as it hands it out: the second request gets a new connection, not a failure.
    from harvester.fetch import fetch_all
    from mirror.store import Store

    jpeg = encoded_image("JPEG", size=(64, 48))
    image_server.route("/first.jpg", image_reply(jpeg, quiet_close=True))
    image_server.route("/second.jpg", image_reply(jpeg))
    settings = settings_for(
        image_server, per_host=1, concurrency=1, retries=0, http_transport=transport
    )
    store = Store(tmp_path / "store")

    async def both():
        async with build_client(settings) as client:
            results = [
                r
                async for r in fetch_all(
                    [req(image_server.url("/first.jpg"))],
                    store=store,
                    settings=settings,
                    client=client,
                )
            ]
            await asyncio.sleep(0.2)  # the server's close arrives while the connection idles
            results += [
                r
                async for r in fetch_all(
                    [req(image_server.url("/second.jpg"))],
                    store=store,
                    settings=settings,
                    client=client,
                )
            ]
            return results

    results = asyncio.run(both())
    assert [type(r).__name__ for r in results] == ["Fetched", "Fetched"], results
    assert [r.attempts for r in results] == [1, 1]
    assert len(image_server.connections) == 2


@pytest.mark.parametrize("dialer_name", ["default_dialer", "anyio_dialer"])
def test_both_stream_implementations_fetch_over_http_and_https(
    dialer_name, image_server, tls_server, ca_bundle, tmp_path
):
    """The lean asyncio stream and httpcore's anyio stream behave the same (bench compares)."""
    import harvester.net as net

    jpeg = encoded_image("JPEG", size=(640, 480))
    image_server.route("/a.jpg", image_reply(jpeg))
    tls_server.route("/a.jpg", image_reply(jpeg, chunked=True))
    # one request per host at a time, so the second HTTPS request must reuse the connection
    settings = settings_for(image_server, tls_server, ca_bundle=ca_bundle, per_host=1)
    urls = [image_server.url("/a.jpg"), tls_server.url("/a.jpg"), tls_server.url("/a.jpg?2")]
    results, backend = run_fetch(
        [req(u) for u in urls], settings, tmp_path, dialer=getattr(net, dialer_name)
    )
    assert [(tmp_path / r.path).read_bytes() for r in results] == [jpeg] * 3
    assert backend.connections == 2
    assert len(tls_server.connections) == 1


# -- the aiohttp transport: the same guard at every new connection ------------------------------


def test_aiohttp_checks_every_new_connection_so_a_rebound_name_is_refused(image_server, tmp_path):
    """aiohttp's DNS cache is off: the second connection (the first was closed by the server)
    resolves again, and an answer the guard refuses is never dialed."""
    jpeg = encoded_image("JPEG")
    image_server.route("/a.jpg", image_reply(jpeg, close=True))
    image_server.route("/b.jpg", image_reply(jpeg))
    answers = iter([["127.0.0.1"], ["0.0.0.0"]])  # 0.0.0.0: never allowed, even for private
    lookups: list[str] = []

    async def rebinding_resolver(host: str, port: int) -> list[str]:
        lookups.append(host)
        return next(answers)

    settings = Settings(
        retries=0, allow_private_addresses=True, per_host=1, concurrency=1, http_transport="aiohttp"
    )
    urls = [f"http://img.example.com:{image_server.port}/{name}" for name in ("a.jpg", "b.jpg")]
    results, backend = run_fetch(
        [req(u) for u in urls], settings, tmp_path, resolver=rebinding_resolver
    )
    assert results[0].sha256 and results[1].reason == "blocked-address"
    assert lookups == ["img.example.com", "img.example.com"]
    assert len(image_server.connections) == 1 == backend.connections
    assert backend.refusals == 1


def test_aiohttp_every_connection_the_servers_accept_went_through_the_guard(
    image_server, tls_server, ca_bundle, tmp_path
):
    """Fails if aiohttp ever opens a connection without asking our resolver (a DNS cache, a
    happy-eyeballs path, a redirect): each one the servers accept is one the guard counted."""
    urls = _hops_across_both_servers(image_server, tls_server)
    settings = settings_for(image_server, tls_server, ca_bundle=ca_bundle, http_transport="aiohttp")
    results, backend = run_fetch([req(u) for u in urls], settings, tmp_path)
    assert all(r.sha256 for r in results), results
    accepted = len(image_server.connections) + len(tls_server.connections)
    assert accepted >= 4
    assert backend.connections == accepted
    assert {address for address, _ in backend.dialed} == {"127.0.0.1"}


def test_aiohttp_transport_is_the_default_and_keeps_no_cookies(image_server, tmp_path):
    from harvester.aio import AiohttpTransport

    assert Settings().http_transport == "aiohttp"
    image_server.route("/a.jpg", image_reply(encoded_image("JPEG"), headers={"Set-Cookie": "k=v"}))
    settings = settings_for(image_server, per_host=1, concurrency=1)
    results, _ = run_fetch(
        [req(image_server.url(f"/a.jpg?{n}")) for n in range(2)], settings, tmp_path
    )
    assert all(r.sha256 for r in results)
    assert all("cookie" not in r.headers for r in image_server.requests)
    client = build_client(settings)
    try:
        assert isinstance(client._transport, AiohttpTransport)
    finally:
        asyncio.run(client.aclose())


def test_idle_connections_stay_capped_across_many_hosts(image_server, tmp_path, transport):
    """One connection per host name (30 names, one server): a run over articles that hotlink
    from thousands of hosts must not keep a socket open for each until the keep-alive
    timeout (out of file descriptors at the usual 1,024)."""
    from harvester.fetch import fetch_all
    from mirror.store import Store

    image_server.route("/a.jpg", image_reply(encoded_image("JPEG", size=(32, 24))))
    port = image_server.port
    hosts = [f"h{n}.example.com" for n in range(30)]
    settings = Settings(
        concurrency=2,
        per_host=1,
        retries=0,
        allow_private_addresses=True,
        resolve=(f"*:{port}:127.0.0.1",),
        http_transport=transport,
    )
    cap = 2 * settings.concurrency  # build_client's keep-alive limit

    async def fetch_then_count() -> tuple[list, int]:
        async with build_client(settings) as client:
            urls = [req(f"http://{host}:{port}/a.jpg") for host in hosts]
            store = Store(tmp_path / "store")
            results = [
                r async for r in fetch_all(urls, store=store, settings=settings, client=client)
            ]
            for _ in range(100):  # the server notices closed sockets a moment later
                if image_server.open_connections <= cap:
                    break
                await asyncio.sleep(0.02)
            return results, image_server.open_connections

    results, still_open = asyncio.run(fetch_then_count())
    assert all(r.sha256 for r in results), results
    assert len(image_server.connections) == len(hosts)
    assert still_open <= cap


@pytest.mark.parametrize("size", [12_000, 40_000])
def test_large_response_header_fields_are_accepted(image_server, tmp_path, transport, size):
    """A long Content-Security-Policy or Link field must not fail the image (h11 accepts
    heads up to 16 KiB; aiohttp's default was 8,190 bytes a field)."""
    if transport == "httpcore" and size > 16_000:
        pytest.skip("h11 refuses heads over 16 KiB")
    jpeg = encoded_image("JPEG")
    headers = {"Content-Security-Policy": "default-src " + "x" * size}
    image_server.route("/a.jpg", image_reply(jpeg, headers=headers))
    settings = settings_for(image_server, retries=0, http_transport=transport)
    results, _ = run_fetch([req(image_server.url("/a.jpg"))], settings, tmp_path)
    assert results[0].sha256, results[0]


def test_the_aiohttp_transport_refuses_bodies_and_use_after_close():
    from harvester.net import sender_of

    async def go() -> tuple[Exception, Exception]:
        client = build_client(Settings(http_transport="aiohttp"))
        async with client:
            try:
                await client.post("http://img.example.com/", content=b"x")
            except Exception as exc:  # the type is what is checked
                posted = exc
        try:
            await sender_of(client).get("http://img.example.com/", {})
        except Exception as exc:
            return posted, exc
        raise AssertionError("a closed transport sent a request")

    posted, after_close = asyncio.run(go())
    assert isinstance(posted, httpx.UnsupportedProtocol)
    assert isinstance(after_close, RuntimeError)
