"""X-Forwarded-For is believed only as far as the chain of trusted proxies goes."""

from __future__ import annotations

import ipaddress

import pytest

from promptstack.core.net import client_address

TRUSTED = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128"))


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("198.51.100.1", None, "198.51.100.1"),
        ("198.51.100.1", "1.2.3.4", "198.51.100.1"),  # untrusted peer: header ignored
        ("10.0.0.5", "1.2.3.4", "1.2.3.4"),
        ("10.0.0.5", "6.6.6.6, 1.2.3.4", "1.2.3.4"),  # the client cannot prepend its own
        ("10.0.0.5", "1.2.3.4, 10.0.0.9", "1.2.3.4"),  # two trusted hops
        ("10.0.0.5", "not-an-ip", "10.0.0.5"),
        ("10.0.0.5", "10.0.0.7", "10.0.0.7"),  # all trusted: the farthest known
        ("::1", "2001:db8::1", "2001:db8::1"),
        (None, "1.2.3.4", "unknown"),
    ],
)
def test_client_address(peer: str | None, forwarded: str | None, expected: str) -> None:
    assert client_address(peer, forwarded, TRUSTED) == expected
