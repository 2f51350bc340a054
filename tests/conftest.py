"""Shared fixtures. Network fixtures (local HTTP/HTTPS servers) live in tests/servers.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import TestServer, make_ca, server_ssl_context


@pytest.fixture(scope="session")
def test_ca():
    """A trustme CA; its certificates cover the test names in tests.servers.NAMES."""
    return make_ca()


@pytest.fixture(scope="session")
def ca_bundle(test_ca, tmp_path_factory) -> Path:
    """The test CA's certificate as a PEM file, for Settings(ca_bundle=...)."""
    path = tmp_path_factory.mktemp("ca") / "test-ca.pem"
    test_ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture
def image_server() -> Iterator[TestServer]:
    """A plain-HTTP TestServer on 127.0.0.1: `.url(path)`, `.route(path, reply)`, `.requests`."""
    with TestServer() as server:
        yield server


@pytest.fixture
def tls_server(test_ca) -> Iterator[TestServer]:
    """An HTTPS TestServer whose certificate covers the test names (trust it via ca_bundle)."""
    with TestServer(ssl_context=server_ssl_context(test_ca)) as server:
        yield server


@pytest.fixture
def tls_settings(tls_server, image_server, ca_bundle):
    """Settings reaching both test servers by name, trusting the test CA, failing fast."""
    from tests.servers import settings_for

    return settings_for(image_server, tls_server, ca_bundle=ca_bundle)
