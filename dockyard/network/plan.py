"""Link plans: the kernel changes for a bridge or an endpoint, as a list of ``Op`` values.

Pure: built from stored state and unit-tested without root; ``kernel.apply`` is the only place
that performs them. Ops are idempotent where the kernel allows (an existing bridge is reused), so
reconcile can replay a plan.
"""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Op:
    kind: str  # bridge | sysctl | veth | master | addr | up | route | del_link
    args: dict = field(default_factory=dict)

    def __getitem__(self, key):
        return self.args[key]


def bridge_plan(bridge: str, gateway: str, prefixlen: int) -> list[Op]:
    conf = f"/proc/sys/net/ipv4/conf/{bridge}"
    return [
        Op("bridge", {"name": bridge}),
        Op("addr", {"netns": None, "ifname": bridge, "address": gateway, "prefixlen": prefixlen}),
        # route_localnet: see rules.py, published ports reached via 127.0.0.1.
        Op("sysctl", {"path": f"{conf}/route_localnet", "value": "1"}),
        Op("up", {"netns": None, "ifname": bridge}),
    ]


def endpoint_plan(bridge, host_ifname, netns_path, ifname, address, prefixlen, mac, gateway, mtu=None) -> list[Op]:
    """veth: host end enslaved to the bridge, peer created directly inside the netns as ``ifname``
    (no temporary name in the host namespace that could clash), then address, up, default route.
    ``gateway`` None (internal network) means no default route: nothing leaves the subnet.
    ``mtu`` None keeps the kernel's 1500; the bridge follows its ports' MTU by itself."""
    # Host-side ops first, then the container's: kernel.apply runs each group on one socket.
    ops = [
        Op("veth", {"host": host_ifname, "peer": ifname, "peer_netns": netns_path, "master": bridge, "mac": mac}),
        Op("up", {"netns": None, "ifname": host_ifname, "mtu": mtu}),
        Op("addr", {"netns": netns_path, "ifname": ifname, "address": address, "prefixlen": prefixlen}),
        Op("up", {"netns": netns_path, "ifname": "lo"}),
        Op("up", {"netns": netns_path, "ifname": ifname, "mtu": mtu}),
    ]
    if gateway:
        ops.append(Op("route", {"netns": netns_path, "gateway": gateway}))
    return ops


def enslave_plan(host_ifname: str, bridge: str) -> list[Op]:
    return [Op("master", {"name": host_ifname, "master": bridge}), Op("up", {"netns": None, "ifname": host_ifname})]


def host_ifname(endpoint_id: str) -> str:
    # 15 chars max (IFNAMSIZ-1); "veth" + 11 hex of the endpoint ID is unique enough per host.
    return "veth" + endpoint_id[:11]


def container_ifname(taken: set) -> str:
    n = 0
    while f"eth{n}" in taken:
        n += 1
    return f"eth{n}"
