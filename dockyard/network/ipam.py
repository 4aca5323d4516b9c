"""IPAM: pure functions that choose subnets, addresses and MACs. No I/O; the caller passes in what
is taken (from SQLite and the host's routes) and records the answer in the same transaction.
"""

import ipaddress

from dockyard.errdefs import InvalidArgument, Unavailable

# Docker's default address pools: 172.17-31.0.0/16, then 192.168.0.0/16 cut into /20s.
DEFAULT_POOLS = [("172.17.0.0/12", 16), ("192.168.0.0/16", 20)]


def parse_subnet(text: str) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError as e:
        raise InvalidArgument(f"invalid subnet {text!r}: {e}") from e
    if net.version != 4:
        raise InvalidArgument(f"invalid subnet {text!r}: only IPv4 is supported")
    if net.prefixlen > 30:
        raise InvalidArgument(f"invalid subnet {text!r}: prefix must be /30 or shorter")
    if str(net) != text and "/" in text and ipaddress.ip_interface(text).ip != net.network_address:
        raise InvalidArgument(f"invalid subnet {text!r}: host bits set, did you mean {net}?")
    return net


def parse_ip(text: str, what: str = "address") -> ipaddress.IPv4Address:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError as e:
        raise InvalidArgument(f"invalid {what} {text!r}") from e
    if ip.version != 4:
        raise InvalidArgument(f"invalid {what} {text!r}: only IPv4 is supported")
    return ip


def pick_subnet(pools, taken) -> ipaddress.IPv4Network:
    """First pool block that overlaps nothing in ``taken`` (our networks and the host's routes).

    ``pools`` is [(cidr, prefixlen)]; a default route (0.0.0.0/0) in ``taken`` is ignored, or
    nothing would ever fit.
    """
    taken = [t for t in taken if t.prefixlen > 0]
    for base, size in pools:
        start = ipaddress.ip_address(base.split("/")[0])  # "172.17.0.0/12" starts at 172.17
        for cand in ipaddress.ip_network(base, strict=False).subnets(new_prefix=size):
            if cand.network_address >= start and not any(cand.overlaps(t) for t in taken):
                return cand
    raise Unavailable("all predefined address pools have been fully subnetted")


def check_overlap(subnet, taken_by_name: dict):
    for name, other in taken_by_name.items():
        if subnet.overlaps(other):
            raise InvalidArgument(f"Pool overlaps with other one on this address space ({name} {other})")


def default_gateway(subnet) -> ipaddress.IPv4Address:
    return subnet.network_address + 1


def allocate(subnet, ip_range, used: set, last=None) -> ipaddress.IPv4Address:
    """Next free host address after ``last`` (wrapping), inside ``ip_range`` if given.

    Sequential rather than lowest-free, as Docker does: a just-released address is not handed out
    again at once, so peers' stale ARP/conntrack entries for it age out first.
    """
    pool = ip_range or subnet
    first = int(pool.network_address) + (1 if pool.prefixlen < 31 else 0)
    end = int(pool.broadcast_address) - (1 if pool.prefixlen < 31 else 0)
    # The subnet's own network/broadcast addresses are never valid, even inside a wider range.
    first = max(first, int(subnet.network_address) + 1)
    end = min(end, int(subnet.broadcast_address) - 1)
    start = int(last) + 1 if last is not None and first <= int(last) + 1 <= end else first
    n = end - first + 1
    for i in range(max(n, 0)):
        cand = first + (start - first + i) % n
        if cand not in used:
            return ipaddress.IPv4Address(cand)
    raise Unavailable(f"no available IPv4 addresses on this network's address pools: {subnet}")


def check_static(ip, subnet, used: set):
    if ip not in subnet or ip in (subnet.network_address, subnet.broadcast_address):
        raise InvalidArgument(f"requested address {ip} is not in the network's subnet {subnet}")
    if int(ip) in used:
        raise InvalidArgument(f"Address already in use: {ip}")


def mac_for(ip) -> str:
    """Docker's rule: 02:42 then the four IPv4 bytes, so the MAC is unique wherever the IP is."""
    return "02:42:" + ":".join(f"{b:02x}" for b in ip.packed)


def check_mac(text: str) -> str:
    parts = text.split(":")
    if len(parts) != 6 or not all(len(p) == 2 and all(c in "0123456789abcdefABCDEF" for c in p) for p in parts):
        raise InvalidArgument(f"invalid MAC address {text!r}")
    if int(parts[0], 16) & 1:
        raise InvalidArgument(f"invalid MAC address {text!r}: multicast bit set")
    return text.lower()
