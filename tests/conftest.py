"""Shared fixtures. Network fixtures (local HTTP/HTTPS servers) live in tests/servers.py."""
