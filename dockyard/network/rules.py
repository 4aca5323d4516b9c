"""The nft ruleset of one daemon, as text, from stored state. Pure; applied by ``kernel.apply_nft``.

The whole ruleset is regenerated on every change and loaded in ONE ``nft -f`` transaction that
deletes and recreates our two tables: the kernel swaps them atomically, a failure changes nothing,
and reconcile is the same operation as any update (level-triggered, no diffing).

Rules, per bridge network B with subnet S:
* forward: drop traffic from B to any other of our bridges (isolation between networks, including
  the default bridge) unless it was DNATed to a published port: a published port is reachable
  from wherever the host is. An internal B drops everything entering or leaving B except to B
  itself (and publishing on it is refused).
* postrouting: masquerade S leaving through a non-B interface (outbound NAT), not for internal B.
* published ports: DNAT in prerouting (other hosts) and output (the host itself) for local
  destination addresses; masquerade hairpin traffic (a container reaching its own published port).
* 127.0.0.1: output DNAT rewrites the destination but the source stays 127.0.0.1, which the kernel
  treats as martian on a non-loopback interface unless ``route_localnet=1`` on the bridge (set by
  the executor); we then masquerade 127.0.0.0/8 sources leaving by B so the container sees the
  gateway as the peer and its reply can be routed back.
Other tables (iptables-nft's, podman's) are never touched; their verdicts still apply.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class BridgeRule:
    bridge: str
    subnet: str
    internal: bool
    masquerade: bool = True


@dataclass(frozen=True)
class PortRule:
    bridge: str
    host_ip: str  # "" or "0.0.0.0" = every local address
    host_port: int
    container_ip: str
    container_port: int
    proto: str


def table_names(tag: str) -> tuple[str, str]:
    return f"dockyard_{tag}", f"dockyard_{tag}_nat"


def ruleset(tag: str, bridges: list, ports: list) -> str:
    """The nft script that replaces our tables; with no bridges it just deletes them."""
    filt, nat = table_names(tag)
    # "add table" first so "delete table" never fails, all inside the same transaction.
    out = [f"add table inet {filt}", f"delete table inet {filt}", f"add table ip {nat}", f"delete table ip {nat}"]
    if not bridges:
        return "\n".join(out) + "\n"
    names = sorted(b.bridge for b in bridges)
    fwd = []
    for b in sorted(bridges, key=lambda b: b.bridge):
        if b.internal:
            fwd.append(f'iifname "{b.bridge}" oifname != "{b.bridge}" drop')
            fwd.append(f'oifname "{b.bridge}" iifname != "{b.bridge}" drop')
        others = [n for n in names if n != b.bridge]
        if others:
            fwd.append(f'iifname "{b.bridge}" oifname {{ {", ".join(_q(o) for o in others)} }} ct status & dnat == 0 drop')
    out.append(f"table inet {filt} {{")
    out.append("  chain forward {")
    out.append("    type filter hook forward priority filter; policy accept;")
    out += [f"    {r}" for r in fwd]
    out += ["  }", "}"]

    dnat, post = [], []
    for b in sorted(bridges, key=lambda b: b.bridge):
        if not b.internal and b.masquerade:
            post.append(f'ip saddr {b.subnet} oifname != "{b.bridge}" masquerade')
        post.append(f'ip saddr 127.0.0.0/8 oifname "{b.bridge}" masquerade')
    for p in sorted(ports, key=lambda p: (p.host_port, p.proto, p.host_ip)):
        match = f"ip daddr {p.host_ip} " if p.host_ip not in ("", "0.0.0.0") else ""
        dnat.append(f"{match}{p.proto} dport {p.host_port} dnat to {p.container_ip}:{p.container_port}")
        post.append(
            f"ip saddr {p.container_ip} ip daddr {p.container_ip} {p.proto} dport {p.container_port} masquerade"
        )
    out.append(f"table ip {nat} {{")
    out.append("  chain ports {")
    out += [f"    {r}" for r in dnat]
    out.append("  }")
    out.append("  chain prerouting {")
    out.append("    type nat hook prerouting priority dstnat; policy accept;")
    out.append("    fib daddr type local jump ports")
    out.append("  }")
    out.append("  chain output {")
    out.append("    type nat hook output priority -100; policy accept;")
    out.append("    fib daddr type local jump ports")
    out.append("  }")
    out.append("  chain postrouting {")
    out.append("    type nat hook postrouting priority srcnat; policy accept;")
    out += [f"    {r}" for r in post]
    out += ["  }", "}"]
    return "\n".join(out) + "\n"


def _q(name: str) -> str:
    return f'"{name}"'
