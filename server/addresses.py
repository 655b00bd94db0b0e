"""Whom a client address stands for: the key that per-address limits count under.

An IPv6 host is usually given a whole /64, so counting its single addresses would
let it pass any per-address limit by changing the last 64 bits: an IPv6 client is
counted by its /64 network. An IPv4-mapped IPv6 address is its IPv4 address.
"""

from __future__ import annotations

import ipaddress


def address_key(host: str) -> str:
    """The key of a client at ``host``: its IPv4 address, or its IPv6 /64 network."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host or "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)
