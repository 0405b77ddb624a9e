"""Which addresses webhooks may be sent to: the outbound half of SSRF protection.

A callback URL is chosen by whoever registers a subscription, so without a check the worker could
be made to POST to its own host, the internal network or a cloud's metadata service. Every address
a callback host resolves to is checked at connect time (`worker.transport`), and the connection
goes to the address that was checked, so a second DNS answer cannot swap it (DNS rebinding).

Refused unless the operator allows them in OUTBOX_ALLOWED_NETWORKS: loopback, private (RFC 1918,
IPv6 unique local), link-local, CGNAT (100.64.0.0/10), unspecified, multicast, documentation and
other reserved ranges. Cloud metadata endpoints are refused even inside an allowed range unless an
entry names them exactly (a /32 or /128), so a broad entry such as 169.254.0.0/16 cannot open them
by accident. IPv4 addresses wrapped in IPv6 (::ffff:a.b.c.d, NAT64 64:ff9b::/96, 6to4 2002::/16)
are judged by the IPv4 address inside.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

import httpx

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

ENVIRONMENT_VARIABLE = "OUTBOX_ALLOWED_NETWORKS"

# Metadata services answer credentials to anyone who asks from inside the instance.
CLOUD_METADATA: frozenset[IPAddress] = frozenset(
    ip_address(text)
    for text in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, ...
        "169.254.170.2",  # AWS ECS task metadata and credentials
        "169.254.0.23",  # Tencent Cloud
        "168.63.129.16",  # Azure WireServer: a public address, so no range below covers it
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud
        "fd00:ec2::254",  # AWS IMDS over IPv6
    )
)


def _table(*rows: tuple[str, str]) -> tuple[tuple[IPNetwork, str], ...]:
    return tuple((ip_network(network), kind) for network, kind in rows)


# First match wins, so narrower ranges come before the ranges around them.
_IPV4 = _table(
    ("0.0.0.0/8", "unspecified"),  # "this network": 0.0.0.0 reaches the local host on Linux
    ("127.0.0.0/8", "loopback"),
    ("10.0.0.0/8", "private"),
    ("172.16.0.0/12", "private"),
    ("192.168.0.0/16", "private"),
    ("169.254.0.0/16", "link-local"),
    ("100.64.0.0/10", "CGNAT"),
    ("192.0.0.0/24", "reserved"),  # IETF protocol assignments
    ("192.0.2.0/24", "documentation"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("192.88.99.0/24", "reserved"),  # the retired 6to4 relay anycast
    ("198.18.0.0/15", "reserved"),  # benchmarking
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),  # includes the broadcast address 255.255.255.255
)
_IPV6 = _table(
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("64:ff9b:1::/48", "private"),  # local-use NAT64
    ("fc00::/7", "private"),  # unique local
    ("fec0::/10", "private"),  # the retired site-local
    ("fe80::/10", "link-local"),
    ("ff00::/8", "multicast"),
    ("2001:db8::/32", "documentation"),
    ("3fff::/20", "documentation"),
    ("2001::/23", "reserved"),  # IETF protocol assignments, Teredo among them
    ("5f00::/16", "reserved"),  # SRv6 SIDs
)
_GLOBAL_UNICAST = ip_network("2000::/3")  # IPv6 outside it is not allocated for the Internet
_NAT64 = ip_network("64:ff9b::/96")


def embedded_ipv4(address: IPAddress) -> IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, NAT64 or 6to4), if any."""
    if not isinstance(address, IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def kind_of(address: IPAddress) -> str | None:
    """What kind of non-public address this is ("loopback", "private", ...), None when public."""
    inner = embedded_ipv4(address)
    if inner is not None:
        address = inner
    if address in CLOUD_METADATA:
        return "cloud metadata"
    for network, kind in _IPV4 if isinstance(address, IPv4Address) else _IPV6:
        if address in network:
            return kind
    if isinstance(address, IPv6Address) and address not in _GLOBAL_UNICAST:
        return "reserved"
    return None


class AddressPolicy:
    """Public addresses pass; others only inside one of the operator's allowed networks."""

    def __init__(self, allowed: Iterable[IPNetwork] = ()) -> None:
        self.allowed: tuple[IPNetwork, ...] = tuple(allowed)

    def __repr__(self) -> str:
        return f"AddressPolicy({[str(network) for network in self.allowed]})"

    def _allows(self, address: IPAddress, kind: str) -> bool:
        candidates = [address]
        inner = embedded_ipv4(address)
        if inner is not None:
            candidates.append(inner)
        for network in self.allowed:
            if kind == "cloud metadata" and network.num_addresses != 1:
                continue  # only an exact entry opens a metadata endpoint
            if any(candidate in network for candidate in candidates):
                return True
        return False

    def refusal(self, address: IPAddress | str) -> str | None:
        """Why `address` is refused (its kind, e.g. "loopback"), or None when it may be used."""
        if isinstance(address, str):
            address = ip_address(address)
        kind = kind_of(address)
        if kind is None or self._allows(address, kind):
            return None
        return kind


class DestinationRefused(httpx.ConnectError):
    """The callback host is, or resolves to, an address the policy refuses; nothing was sent.

    The message names the host, the address and its kind, never a path, query or header.
    """

    def __init__(self, host: str, address: str, kind: str) -> None:
        self.host, self.address, self.kind = host, address, kind
        if host == address:
            where = f"callback address {address} is {kind}"
        else:
            where = f"callback host {host} resolves to {address} ({kind})"
        super().__init__(f"refused: {where}; allow it with {ENVIRONMENT_VARIABLE}")


def parse_networks(text: str) -> tuple[IPNetwork, ...]:
    """OUTBOX_ALLOWED_NETWORKS: CIDRs or single addresses, separated by commas (blank = none).

    Raises ValueError naming the first bad entry.
    """
    networks: list[IPNetwork] = []
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        try:
            networks.append(ip_network(entry, strict=True))
        except ValueError as exc:
            if "has host bits set" in str(exc):
                suggestion = ip_network(entry, strict=False)
                raise ValueError(f"{entry!r} has host bits set (did you mean {suggestion}?)") from None
            raise ValueError(f"{entry!r} is not an IP network (CIDR) or address") from None
    return tuple(networks)


def policy_from_environment(environ: Mapping[str, str] | None = None) -> AddressPolicy:
    """The policy OUTBOX_ALLOWED_NETWORKS describes, for commands that do not load WorkerSettings.

    Raises ValueError with a line that names the variable.
    """
    text = (os.environ if environ is None else environ).get(ENVIRONMENT_VARIABLE, "")
    try:
        return AddressPolicy(parse_networks(text))
    except ValueError as exc:
        raise ValueError(f"{ENVIRONMENT_VARIABLE}: {exc}") from None
