"""The /etc/hosts and /etc/resolv.conf a container gets. Pure text in, text out (except
``host_resolv_conf``, which only reads the host's file)."""

import ipaddress

_HOSTS_HEAD = (
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "ff00::0\tip6-mcastprefix\n"
    "ff02::1\tip6-allnodes\n"
    "ff02::2\tip6-allrouters\n"
)
# What Docker falls back to when the host only lists loopback resolvers, unreachable from a netns.
_FALLBACK = ("8.8.8.8", "8.8.4.4")


def host_resolv_conf(path="/etc/resolv.conf") -> str:
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def nameservers(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            out.append(parts[1])
    return out


def resolv_conf(host_text: str, nameserver: str | None = None) -> str:
    """resolv.conf for a container. ``nameserver`` is the embedded DNS server's address (the
    network's gateway) for containers on a user-defined network; None for the default bridge,
    which gets the host's resolvers minus loopback ones."""
    keep = [l for l in host_text.splitlines() if l.split()[:1] and l.split()[0] in ("search", "options", "domain")]
    if nameserver:
        servers = [nameserver]
    else:
        servers = [s for s in nameservers(host_text) if not _is_loopback(s)] or list(_FALLBACK)
    return "".join(f"nameserver {s}\n" for s in servers) + "".join(l + "\n" for l in keep)


def etc_hosts(hostname: str, ips=(), extra_hosts=()) -> str:
    """Docker's /etc/hosts: the fixed localhost block, ``--add-host`` entries ("name:ip"), then
    the container's own addresses mapped to its hostname."""
    out = _HOSTS_HEAD
    for entry in extra_hosts:
        name, _, ip = entry.partition(":")
        out += f"{ip}\t{name}\n"
    for ip in ips:
        out += f"{ip}\t{hostname}\n"
    return out


def _is_loopback(addr: str) -> bool:
    try:
        return ipaddress.ip_address(addr.split("%")[0]).is_loopback
    except ValueError:
        return False
