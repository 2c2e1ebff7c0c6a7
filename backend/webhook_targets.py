"""Where a webhook may be sent: public https targets, and others only where WEBHOOK_ALLOW says so.

A webhook URL is chosen by whoever creates the job, and the dispatcher that POSTs to it sits inside the
studio's network: without these checks a job could make it call the instance metadata service
(169.254.169.254), a database on 10.x or the dispatcher's own loopback. So every address a host name
resolves to must be public (not private, loopback, link-local, multicast, reserved or unspecified)
unless an allow-listed network holds it or the host name itself is allow-listed, and plain http is
for allow-listed targets only. The check runs when the job is created and again before every attempt
(DNS can change in between), and the attempt connects to the address that was checked, never to a
second resolution of the name.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class TargetRefused(ValueError):
    """The URL is not one a webhook may be sent to; the message says why, for the job's owner."""


@dataclass(frozen=True)
class AllowList:
    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, value: str) -> AllowList:
        """`10.0.0.0/8, 127.0.0.1, hooks.internal` → networks and lower-case host names."""
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        for item in (part.strip() for part in value.split(",")):
            if not item:
                continue
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                hosts.add(item.lower().rstrip("."))
        return cls(tuple(networks), frozenset(hosts))

    def holds(self, address: IPAddress) -> bool:
        return any(address in net for net in self.networks if net.version == address.version)


@dataclass(frozen=True)
class Target:
    """A checked URL and the addresses it may be reached at (connect to these, not to the name)."""

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[IPAddress, ...]


def is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    special = (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )
    return address.is_global and not special


def split(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an absolute http(s) URL; TargetRefused for anything else."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetRefused(f"not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetRefused("must be an absolute http or https URL")
    if parts.username or parts.password:
        raise TargetRefused("must not carry credentials")
    return parts.scheme, parts.hostname.lower().rstrip("."), port or (443 if parts.scheme == "https" else 80)


async def resolve(host: str, port: int) -> tuple[IPAddress, ...]:
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return (literal,)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise TargetRefused(f"host {host!r} does not resolve ({exc.strerror})") from None
    addresses = {ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos}
    return tuple(sorted(addresses, key=lambda a: (a.version, int(a))))


async def check(url: str, allow: AllowList) -> Target:
    """The target of `url` if every address it resolves to may be reached; TargetRefused otherwise."""
    scheme, host, port = split(url)
    addresses = await resolve(host, port)
    named = host in allow.hosts
    for address in addresses:
        if not (named or allow.holds(address) or is_public(address)):
            raise TargetRefused(f"{host} resolves to {address}, a private or reserved address")
    if scheme == "http" and not (named or all(allow.holds(a) for a in addresses)):
        raise TargetRefused("must use https (plain http only for allow-listed targets)")
    return Target(url, scheme, host, port, addresses)
