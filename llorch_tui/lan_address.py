"""A pool's LAN address: where the LAN route of a model copy binds the source's mirror.

One rule for the config key, the command-line flag and the agent that binds it: an IP literal (no
name to resolve, so what the control plane checked is what gets bound and fetched), and never a
wildcard, multicast or broadcast address: the mirror listens on exactly the one interface the user
named, not on every network the pool is attached to.
"""

from __future__ import annotations

import ipaddress


def check_lan_address(value: str) -> str:
    """The address, normalised; ValueError saying what is wrong and what to give instead."""
    try:
        ip = ipaddress.ip_address(value.strip().strip("[]"))
    except ValueError:
        raise ValueError(f"lan address {value!r} is not an IP address: give the pool's address on the network "
                         "its peers share, e.g. 192.168.1.20 (no host names: nothing to resolve or spoof)") from None
    if ip.is_unspecified or ip.is_multicast or str(ip) == "255.255.255.255":
        raise ValueError(f"lan address {value!r} is not one interface's address: the mirror would listen on every "
                         "network the pool is on; give the pool's address on the shared LAN")
    return str(ip)


def url_host(address: str) -> str:
    """The address as the host part of a URL (IPv6 in brackets)."""
    return f"[{address}]" if ":" in address else address
