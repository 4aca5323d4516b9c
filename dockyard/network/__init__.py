"""network: bridge networks, IPAM, NAT, published ports and embedded DNS for containers.

The engine owns one ``NetworkManager`` per daemon (``engine/networking.py``) and calls it
from worker threads (``asyncio.to_thread``), never on the event loop: every method blocks briefly
(SQLite, netlink, one ``nft`` run) and pyroute2's sync API runs an event loop of its own.

    nm = NetworkManager(state_dir, exec_root, bip="172.17.0.1/16", default_pools=None)
    nm.reconcile() -> dict    # at daemon start: make the kernel match the stored state (drops
                              # endpoints whose veth is gone, deletes our orphan links, recreates
                              # bridges, re-reserves host ports, reloads nft); idempotent
    nm.create_network(name, driver="bridge", subnet=None, gateway=None, ip_range=None,
                      internal=False, labels=None, options=None) -> Network
        # AlreadyExists (name taken), InvalidArgument (bad CIDR, gateway outside subnet, driver),
        # Unavailable (no free pool left); subnet auto-picked avoiding host routes and our networks
    nm.get(ref) -> Network    # ref = name, full ID or unique ID prefix; NotFound
    nm.list() -> list[Network]
    nm.remove_network(ref)    # Forbidden for bridge/host/none; Conflict while endpoints exist
    nm.prune() -> list[str]   # removes unused user networks, returns their names
    nm.connect(container_id, netns_path, network, aliases=(), ip=None, mac=None, name=None)
        -> Endpoint           # veth into the netns as eth0, eth1...; works on running containers;
                              # name = container name (without "/") for DNS; Conflict if already
                              # connected; InvalidArgument for an IP outside the subnet; driver
                              # host/none: records the endpoint, touches nothing. The default
                              # route stays on the first non-internal network connected (as
                              # Docker); disconnecting it moves the route to the next one
    nm.disconnect(container_id, network)     # NotFound if not connected; unpublishes its ports
    nm.endpoints(container_id=None, network=None) -> list[Endpoint]
    nm.rename_endpoint(container_id, new_name)  # `docker rename`: DNS answers to the new name at
                              # once; no-op without endpoints; InvalidArgument for a bad name
    nm.publish(endpoint, [(host_ip, host_port, container_port, proto)]) -> list[PortMapping]
        # host_ip "" = all; host_port 0 = random ephemeral port; Conflict("Bind for
        # 0.0.0.0:8080 failed: port is already allocated") leaves nothing configured
    nm.unpublish(endpoint)
    nm.release_container(container_id)       # disconnect from everything (container removed)
    nm.teardown()             # remove every kernel object of this daemon (tests, uninstall)
    nm.close()

    dns = DnsServer(nm, upstreams=None)      # asyncio; upstreams default to host resolv.conf
    await dns.sync()          # (re)bind <gateway>:53 of every user network; call after changes
    await dns.close()

    # container files (pure): resolv.conf gets nameserver <gateway> on a user-defined network
    # (the embedded DNS), the host's non-loopback resolvers on the default bridge
    resolv_conf(host_resolv_conf(), nameserver=endpoint.gateway or None) -> str
    etc_hosts(hostname, [endpoint.ip, ...], extra_hosts=["name:ip"]) -> str
    nm.dns_lookup(network_id, src_ip, qname) -> [ip] | None   # what the DNS server answers

Kernel objects carry a per-daemon tag (6 hex of a hash of ``state_dir``) so two daemons coexist
and reconcile can tell its leaks from others' objects: the default bridge ``dy<tag>`` (made on
first connect, with ``bip``), user bridges ``dy<tag>-<6 of network id>`` (or the
``com.docker.network.bridge.name`` option), host veths ``veth<11 of endpoint id>``, nft tables
``inet dockyard_<tag>`` and ``ip dockyard_<tag>_nat``. Nothing in any other table is touched.
Options honoured: ``com.docker.network.bridge.name``, ``...bridge.enable_ip_masquerade``,
``com.docker.network.driver.mtu`` (the containers' and host veths' MTU; default 1500).
IPv4 only. The default bridge has no name resolution (as in Docker); user networks do.
"""

from dataclasses import dataclass, field

PREDEFINED = ("bridge", "host", "none")


@dataclass
class Network:
    id: str  # 64 hex
    name: str
    driver: str  # bridge | host | null
    subnet: str = ""  # "172.18.0.0/16" ("" for host/none)
    gateway: str = ""  # "172.18.0.1"
    ip_range: str = ""
    internal: bool = False
    labels: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)
    bridge: str = ""  # kernel interface name
    created: str = ""  # RFC3339

    @property
    def user_defined(self) -> bool:
        return self.name not in PREDEFINED


@dataclass
class PortMapping:
    host_ip: str
    host_port: int
    container_port: int
    proto: str  # tcp | udp


@dataclass
class Endpoint:
    id: str  # 64 hex
    network_id: str
    container_id: str
    name: str  # container name (DNS)
    aliases: list = field(default_factory=list)
    ifname: str = ""  # inside the container: eth0...
    host_ifname: str = ""  # veth on the bridge
    ip: str = ""
    prefixlen: int = 0
    gateway: str = ""
    mac: str = ""
    netns_path: str = ""
    ports: list = field(default_factory=list)  # PortMapping


def __getattr__(name):
    # Lazy so that importing the types does not pull in pyroute2 and sqlite.
    if name == "NetworkManager":
        from .manager import NetworkManager
        return NetworkManager
    if name == "DnsServer":
        from .dns import DnsServer
        return DnsServer
    if name in ("resolv_conf", "etc_hosts", "host_resolv_conf"):
        from . import files
        return getattr(files, name)
    raise AttributeError(name)
