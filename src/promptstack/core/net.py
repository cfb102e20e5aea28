"""Which address a request really came from."""

from __future__ import annotations

import ipaddress

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_address(
    peer: str | None, forwarded_for: str | None, trusted: tuple[Network, ...]
) -> str:
    """The client's address, believing `X-Forwarded-For` only as far as trusted proxies go.

    Walks the chain from the nearest hop outwards and stops at the first address that is
    not a trusted proxy, so a client cannot pick its own address by sending the header.
    """
    if not peer:
        return "unknown"
    if not forwarded_for or not address_in(peer, trusted):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    address = peer
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return address
        address = hop
        if not address_in(hop, trusted):
            return hop
    return address


def address_in(address: str, networks: tuple[Network, ...]) -> bool:
    """Whether `address` is an IP address inside one of `networks` (False if not an IP)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)
