"""NetworkManager: the one owner of network state and the only caller of ``kernel``.

Commit points: create_network, connect and publish commit their SQLite row first, then change the
kernel; if the kernel change fails they delete the row and undo what was made, so a caller sees
either success or one error and nothing left. remove/disconnect delete the row first (the commit
point) and then the kernel objects; a crash in between leaves leaks that ``reconcile`` removes.
The nft ruleset is always regenerated whole from the store (see rules.py).
"""

from __future__ import annotations

import errno
import hashlib
import ipaddress
import os
import re
import secrets
import socket
import threading
from datetime import datetime, timezone

from dockyard.errdefs import AlreadyExists, Conflict, Forbidden, InvalidArgument, NotFound

from . import Endpoint, Network, PortMapping, ipam, kernel, plan, rules
from .store import Store

_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
_BRIDGE_NAME_OPT = "com.docker.network.bridge.name"
_MTU_OPT = "com.docker.network.driver.mtu"


class NetworkManager:
    def __init__(self, state_dir, exec_root, bip="172.17.0.1/16", default_pools=None):
        os.makedirs(state_dir, exist_ok=True)
        self.state_dir, self.exec_root = state_dir, exec_root
        # Per-daemon tag: two daemons on different data roots get different bridge/table names.
        self.tag = hashlib.sha256(os.path.abspath(state_dir).encode()).hexdigest()[:6]
        self.pools = default_pools or ipam.DEFAULT_POOLS
        self.store = Store(os.path.join(state_dir, "network.db"))
        self._reserved = {}  # (host_ip, port, proto) -> bound socket holding the host port
        self._lock = threading.RLock()
        self._deleter = _LinkDeleter()
        self._init_predefined(bip)

    # ---- naming -------------------------------------------------------------------------------
    @property
    def default_bridge(self):
        return f"dy{self.tag}"

    def _user_bridge(self, network_id):
        return f"dy{self.tag}-{network_id[:6]}"  # 15 chars: IFNAMSIZ-1

    def _ours(self, ifname):
        return ifname.startswith(f"dy{self.tag}")

    def _init_predefined(self, bip):
        try:
            iface = ipaddress.ip_interface(bip)
        except ValueError as e:
            raise InvalidArgument(f"invalid bip {bip!r}: {e}") from e
        have = {n.name for n in self.store.networks()}
        with self.store.tx() as s:
            for name, driver in (("bridge", "bridge"), ("host", "host"), ("none", "null")):
                if name in have:
                    continue
                n = Network(id=secrets.token_hex(32), name=name, driver=driver, created=_now())
                if name == "bridge":
                    n.subnet, n.gateway, n.bridge = str(iface.network), str(iface.ip), self.default_bridge
                s.insert_network(n)

    # ---- networks -----------------------------------------------------------------------------
    def list(self) -> list[Network]:
        return self.store.networks()

    def get(self, ref) -> Network:
        nets = self.store.networks()
        for match in (lambda n: n.id == ref, lambda n: n.name == ref, lambda n: n.id.startswith(ref)):
            found = [n for n in nets if ref and match(n)]
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise InvalidArgument(f"network {ref} is ambiguous ({len(found)} matches found based on ID prefix)")
        raise NotFound(f"network {ref} not found")

    def create_network(self, name, driver="bridge", subnet=None, gateway=None, ip_range=None,
                       internal=False, labels=None, options=None) -> Network:
        if not name or not _NAME.match(name):
            raise InvalidArgument(f"invalid network name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        if driver in ("host", "null"):
            raise Forbidden(f'only one instance of "{driver}" network is allowed')
        if driver != "bridge":
            raise InvalidArgument(f"plugin {driver!r} not found: only the bridge driver is supported")
        options = dict(options or {})
        _mtu(options)  # checked before anything is made
        with self._lock:
            nets = self.store.networks()
            if any(n.name == name for n in nets):
                raise AlreadyExists(f"network with name {name} already exists")
            ours = {n.name: ipaddress.ip_network(n.subnet) for n in nets if n.subnet}
            if subnet:
                net = ipam.parse_subnet(subnet)
                ipam.check_overlap(net, ours)
            else:
                net = ipam.pick_subnet(self.pools, list(ours.values()) + _host_routes())
            gw = ipam.parse_ip(gateway, "gateway") if gateway else ipam.default_gateway(net)
            if gw not in net:
                raise InvalidArgument(f"gateway {gw} is not in the subnet {net}")
            rng = ""
            if ip_range:
                r = ipam.parse_subnet(ip_range)
                if not r.subnet_of(net):
                    raise InvalidArgument(f"ip-range {r} is not within the subnet {net}")
                rng = str(r)
            nid = secrets.token_hex(32)
            bridge = options.get(_BRIDGE_NAME_OPT) or self._user_bridge(nid)
            if len(bridge) > 15:
                raise InvalidArgument(f"bridge name {bridge!r} is longer than 15 characters")
            # Never adopt an existing interface: its rollback would delete someone else's link.
            if bridge in kernel.links() or any(n.bridge == bridge for n in nets):
                raise Conflict(f"network interface {bridge} already exists, choose another bridge name")
            n = Network(id=nid, name=name, driver=driver, subnet=str(net), gateway=str(gw), ip_range=rng,
                        internal=bool(internal), labels=dict(labels or {}), options=options, bridge=bridge,
                        created=_now())
            with self.store.tx() as s:
                s.insert_network(n)
            try:
                self._ensure_bridge(n)
                self._apply_rules()
            except BaseException:
                with self.store.tx() as s:
                    s.delete_network(n.id)
                kernel.delete_link(bridge)  # checked above: the name was free, so it is ours
                raise  # the ruleset load is the last step and atomic: no rules to undo
            return n

    def remove_network(self, ref):
        with self._lock:
            n = self.get(ref)
            if not n.user_defined:
                raise Forbidden(f"{n.name} is a pre-defined network and cannot be removed")
            if self.store.endpoints(network_id=n.id):
                raise Conflict(f"error while removing network: network {n.name} id {n.id} has active endpoints")
            with self.store.tx() as s:
                s.delete_network(n.id)
            kernel.delete_link(n.bridge)
            self._apply_rules()

    def prune(self) -> list[str]:
        removed = []
        for n in self.list():
            if n.user_defined and not self.store.endpoints(network_id=n.id):
                self.remove_network(n.id)
                removed.append(n.name)
        return removed

    # ---- endpoints ----------------------------------------------------------------------------
    def endpoints(self, container_id=None, network=None) -> list[Endpoint]:
        nid = self.get(network).id if network else None
        return self.store.endpoints(network_id=nid, container_id=container_id)

    def connect(self, container_id, netns_path, network, aliases=(), ip=None, mac=None, name=None) -> Endpoint:
        with self._lock:
            n = self.get(network)
            mine = self.store.endpoints(container_id=container_id)
            if any(e.network_id == n.id for e in mine):
                raise Conflict(f"endpoint with name {name or container_id[:12]} already exists in network {n.name}")
            ep = Endpoint(id=secrets.token_hex(32), network_id=n.id, container_id=container_id,
                          name=name or "", aliases=list(aliases), netns_path=netns_path or "")
            if n.driver != "bridge":  # host / none: nothing to plumb, the engine picks the netns
                with self.store.tx() as s:
                    s.insert_endpoint(ep)
                return ep
            if not netns_path or not os.path.exists(netns_path):
                raise InvalidArgument(f"network namespace {netns_path!r} does not exist")
            subnet = ipaddress.ip_network(n.subnet)
            # Docker keeps the default route on the first network that gave the container one: a
            # network joined later (live, or second in the create body) adds only its subnet route.
            has_gateway = self._gateway_endpoint(mine) is not None
            with self.store.tx() as s:  # commit point: the address is ours
                used = {int(ipaddress.ip_address(e.ip)) for e in s.endpoints(network_id=n.id) if e.ip}
                used.add(int(ipaddress.ip_address(n.gateway)))
                if ip:
                    addr = ipam.parse_ip(ip)
                    ipam.check_static(addr, subnet, used)
                else:
                    last = s.last_ip(n.id)
                    addr = ipam.allocate(subnet, ipaddress.ip_network(n.ip_range) if n.ip_range else None,
                                         used, ipaddress.ip_address(last) if last else None)
                ep.ip, ep.prefixlen, ep.gateway = str(addr), subnet.prefixlen, n.gateway
                ep.mac = ipam.check_mac(mac) if mac else ipam.mac_for(addr)
                ep.ifname = plan.container_ifname({e.ifname for e in mine})
                ep.host_ifname = plan.host_ifname(ep.id)
                s.insert_endpoint(ep)
            try:
                if self._ensure_bridge(n, repair=False):
                    self._apply_rules()  # the default bridge is made on first use: add its rules
                kernel.apply(plan.endpoint_plan(n.bridge, ep.host_ifname, netns_path, ep.ifname, ep.ip,
                                                ep.prefixlen, ep.mac,
                                                None if n.internal or has_gateway else n.gateway, _mtu(n.options)))
            except BaseException:
                kernel.delete_link(ep.host_ifname)  # deleting one end removes the peer too
                with self.store.tx() as s:
                    s.delete_endpoint(ep.id)
                raise
            return ep

    def disconnect(self, container_id, network):
        with self._lock:
            n = self.get(network)
            eps = self.store.endpoints(network_id=n.id, container_id=container_id)
            if not eps:
                raise NotFound(f"container {container_id[:12]} is not connected to network {n.name}")
            holder = self._gateway_endpoint(self.store.endpoints(container_id=container_id))
            self._drop_endpoint(eps[0])
            if holder is not None and holder.id == eps[0].id:
                self._move_gateway(container_id)

    def rename_endpoint(self, container_id, new_name):
        """The container was renamed: its endpoints answer to ``new_name`` in DNS from now on
        (lookups read the store). A container without endpoints (not running) is a no-op."""
        name = str(new_name or "").lstrip("/")
        if not name or not _NAME.match(name):
            raise InvalidArgument(f"invalid container name {new_name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        with self._lock:
            with self.store.tx() as s:
                s.rename_endpoints(container_id, name)

    def _gateway_endpoint(self, eps):
        """The endpoint holding the container's default route: the first one (in connect order)
        on a bridge network that is not internal; None if there is none."""
        nets = {n.id: n for n in self.store.networks()}
        for e in eps:
            n = nets.get(e.network_id)
            if n and n.driver == "bridge" and not n.internal and e.ip:
                return e
        return None

    def _move_gateway(self, container_id):
        # The veth that carried the default route is gone and the route with it; as Docker does,
        # the next network in connect order takes over, so the container still gets out.
        nxt = self._gateway_endpoint(self.store.endpoints(container_id=container_id))
        if nxt is not None:
            try:
                kernel.apply([plan.Op("route", {"netns": nxt.netns_path, "gateway": nxt.gateway})])
            except NotFound:
                pass  # the container's netns is gone too: nothing left to route

    def release_container(self, container_id, exited=False):
        """Drop the container's endpoints: rows, ports and rules now. ``exited``: its init is gone,
        so its netns dies and takes the veths along; we delete them anyway (a netns can outlive
        its init) but in the background: a veth's unregistering waits out RCU grace periods in the
        kernel (10-35 ms here), which need not delay the exit's record. ``close()`` waits for them."""
        with self._lock:
            for ep in self.store.endpoints(container_id=container_id):
                self._drop_endpoint(ep, later=exited)

    def _drop_endpoint(self, ep, later=False):
        with self.store.tx() as s:  # commit point
            s.delete_endpoint(ep.id)
        for p in ep.ports:
            self._release_port(p)
        if ep.host_ifname:
            if later:
                self._deleter.put(ep.host_ifname)
            else:
                kernel.delete_link(ep.host_ifname)
        if ep.ports:
            self._apply_rules()

    # ---- published ports ----------------------------------------------------------------------
    def publish(self, endpoint, mappings) -> list[PortMapping]:
        """Reserve each host port by binding it (held open: nothing else can take it later, and
        DNAT happens before socket lookup so the bound socket never sees traffic), then record the
        mappings and load the rules. Any failure releases everything this call took."""
        with self._lock:
            eps = [e for e in self.store.endpoints(container_id=endpoint.container_id) if e.id == endpoint.id]
            if not eps:
                raise NotFound(f"endpoint {endpoint.id[:12]} not found")
            ep = eps[0]
            if not ep.ip:
                raise InvalidArgument("ports can only be published on a bridge network")
            net = self.get(ep.network_id)
            if net.internal:
                raise InvalidArgument(f"network {net.name} is internal: its ports cannot be published")
            done = []
            try:
                for host_ip, host_port, cport, proto in mappings:
                    host_ip = host_ip or "0.0.0.0"
                    ipam.parse_ip(host_ip, "host IP")
                    proto = (proto or "tcp").lower()
                    if proto not in ("tcp", "udp"):
                        raise InvalidArgument(f"invalid protocol {proto!r}: tcp or udp")
                    if not isinstance(host_port, int) or not 0 <= host_port <= 65535:
                        raise InvalidArgument(f"invalid host port {host_port!r}")
                    if not isinstance(cport, int) or not 1 <= cport <= 65535:
                        raise InvalidArgument(f"invalid container port {cport!r}")
                    done.append(self._reserve_port(host_ip, host_port, cport, proto))
                with self.store.tx() as s:
                    for p in done:
                        s.insert_port(ep.id, p)
                self._apply_rules()
            except BaseException:
                with self.store.tx() as s:
                    s.delete_ports(ep.id)
                    for p in ep.ports:
                        s.insert_port(ep.id, p)
                for p in done:
                    self._release_port(p)
                raise  # the ruleset load is the last step and atomic: no rules to undo
            endpoint.ports = ep.ports + done
            return done

    def unpublish(self, endpoint):
        with self._lock:
            ports = self.store.ports(endpoint.id)
            with self.store.tx() as s:
                s.delete_ports(endpoint.id)
            for p in ports:
                self._release_port(p)
            self._apply_rules()
            endpoint.ports = []

    def _reserve_port(self, host_ip, host_port, cport, proto) -> PortMapping:
        key_ips = {host_ip, "0.0.0.0"} if host_ip != "0.0.0.0" else None
        for (ip, port, pr) in self._reserved:
            if pr == proto and port == host_port and (key_ips is None or ip in key_ips):
                raise Conflict(f"Bind for {host_ip}:{host_port} failed: port is already allocated")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
        try:
            sock.bind((host_ip, host_port))  # port 0: the kernel picks a free ephemeral port
        except OSError as e:
            sock.close()
            if e.errno == errno.EADDRNOTAVAIL:
                raise InvalidArgument(f"host IP {host_ip} is not an address of this host") from e
            raise Conflict(f"Bind for {host_ip}:{host_port} failed: port is already allocated ({e.strerror})") from e
        port = sock.getsockname()[1]
        self._reserved[(host_ip, port, proto)] = sock
        return PortMapping(host_ip, port, cport, proto)

    def _release_port(self, p):
        sock = self._reserved.pop((p.host_ip, p.host_port, p.proto), None)
        if sock:
            sock.close()

    # ---- kernel -------------------------------------------------------------------------------
    def _ensure_bridge(self, n, repair=True) -> bool:
        """Create or repair the bridge of ``n``; True if it did not exist. ``repair=False`` (connect,
        on every container start) trusts an existing bridge: reconcile repaired it at daemon start."""
        missing = not kernel.link_exists(n.bridge)
        if not missing and not repair:
            return False
        prefix = ipaddress.ip_network(n.subnet).prefixlen
        kernel.apply(plan.bridge_plan(n.bridge, n.gateway, prefix))
        return missing

    def _rules(self):
        nets = [n for n in self.store.networks() if n.driver == "bridge"]
        links = kernel.links()
        # The default bridge is only in the ruleset once it exists (it is made lazily).
        nets = [n for n in nets if n.user_defined or n.bridge in links]
        by_id = {n.id: n for n in nets}
        eps = {e.id: e for e in self.store.endpoints()}
        ports = []
        for eid, p in self.store.all_ports():
            e = eps[eid]
            if e.network_id in by_id:
                ports.append(rules.PortRule(by_id[e.network_id].bridge, p.host_ip, p.host_port, e.ip,
                                            p.container_port, p.proto))
        return rules.ruleset(self.tag, [rules.BridgeRule(n.bridge, n.subnet, n.internal, _masquerade(n)) for n in nets],
                             ports)

    def _apply_rules(self):
        kernel.apply_nft(self._rules())

    def reconcile(self) -> dict:
        """Make the kernel match the store after a crash: drop endpoints whose veth is gone (the
        container died), delete our links nobody owns, recreate missing bridges, re-reserve host
        ports and reload the ruleset. Returns what was fixed."""
        fixed = {"endpoints": [], "links": [], "bridges": [], "ports": []}
        with self._lock:
            nets = {n.id: n for n in self.store.networks()}
            links = kernel.links()
            for ep in self.store.endpoints():
                if ep.host_ifname and ep.host_ifname not in links:
                    with self.store.tx() as s:
                        s.delete_endpoint(ep.id)
                    fixed["endpoints"].append(ep.id)
            eps = self.store.endpoints()
            wanted = {e.host_ifname for e in eps if e.host_ifname}
            bridges = {n.bridge for n in nets.values() if n.driver == "bridge"}
            for link in sorted(links):
                master = kernel.link_master(link) if link.startswith("veth") else None
                if (link.startswith("veth") and master in bridges and link not in wanted) or (
                    self._ours(link) and link not in bridges
                ):
                    kernel.delete_link(link)
                    fixed["links"].append(link)
            for n in nets.values():
                if n.driver == "bridge" and (n.user_defined or any(e.network_id == n.id for e in eps)):
                    if n.bridge not in links:
                        fixed["bridges"].append(n.bridge)
                    self._ensure_bridge(n)
            for ep in eps:
                # A recreated bridge has no ports: deleting a bridge frees its veths, it does
                # not delete them, so put them back.
                bridge = nets[ep.network_id].bridge
                if ep.host_ifname and kernel.link_master(ep.host_ifname) != bridge:
                    try:
                        kernel.apply(plan.enslave_plan(ep.host_ifname, bridge))
                        fixed["links"].append(ep.host_ifname)
                    except NotFound:  # its netns is being destroyed right now (asynchronously)
                        self._drop_endpoint(ep)
                        fixed["endpoints"].append(ep.id)
                        continue
                for p in ep.ports:
                    if (p.host_ip, p.host_port, p.proto) not in self._reserved:
                        try:
                            self._reserve_port(p.host_ip, p.host_port, p.container_port, p.proto)
                            fixed["ports"].append(p.host_port)
                        except Conflict:
                            pass  # someone took it meanwhile; DNAT still wins for new connections
            self._apply_rules()
        return fixed

    def teardown(self):
        """Remove every kernel object of this daemon; the stored state stays (reconcile rebuilds)."""
        self._deleter.drain()
        with self._lock:
            for sock in self._reserved.values():
                sock.close()
            self._reserved.clear()
            for ep in self.store.endpoints():
                if ep.host_ifname:
                    kernel.delete_link(ep.host_ifname)
            for link in kernel.links():
                if self._ours(link):
                    kernel.delete_link(link)
            kernel.apply_nft(rules.ruleset(self.tag, [], []))

    def close(self):
        self._deleter.drain()  # a crash instead leaves the links to reconcile
        for sock in self._reserved.values():
            sock.close()
        self._reserved.clear()
        self.store.close()

    # ---- DNS ----------------------------------------------------------------------------------
    def dns_lookup(self, network_id, src_ip, qname):
        """Addresses for ``qname`` as seen by the container at ``src_ip`` on ``network_id``: names,
        aliases and short IDs of containers sharing a network with it. None = not ours (forward)."""
        q = qname.rstrip(".").lower()
        me = [e for e in self.store.endpoints(network_id=network_id) if e.ip == src_ip]
        if not me:
            return None
        my_nets = {e.network_id for e in self.store.endpoints(container_id=me[0].container_id)}
        nets = {n.id: n for n in self.store.networks()}
        found = []
        for nid in my_nets:
            if not nets.get(nid) or not nets[nid].user_defined:
                continue  # the default bridge has no name resolution, as in Docker
            for e in self.store.endpoints(network_id=nid):
                names = {e.name.lower(), e.container_id[:12]} | {a.lower() for a in e.aliases}
                if e.ip and q in names - {""}:
                    found.append(e.ip)
        return sorted(set(found)) or None


def _host_routes():
    """Destinations the host already routes to (so an auto-picked subnet does not shadow them)."""
    from pyroute2 import IPRoute

    out = []
    with IPRoute() as ipr:
        for r in ipr.get_routes(family=socket.AF_INET):
            dst = r.get("RTA_DST")
            if dst and r.get("table") in (254, 255) and r["dst_len"] > 0:
                out.append(ipaddress.ip_network(f"{dst}/{r['dst_len']}", strict=False))
    return out


def _mtu(options):
    """Docker's MTU option: veths default to 1500, where loopback has 64 KiB; a larger MTU lets
    bulk TCP through a published port run at loopback speed (bench/bench_network.py)."""
    raw = options.get(_MTU_OPT)
    if raw in (None, ""):
        return None
    try:
        mtu = int(raw)
    except (TypeError, ValueError):
        mtu = 0
    if not 68 <= mtu <= 65535:
        raise InvalidArgument(f"invalid {_MTU_OPT} {raw!r}: an integer from 68 to 65535")
    return mtu


def _masquerade(n) -> bool:
    # Docker's per-network switch; NAT off means the outside must route the subnet itself.
    return str(n.options.get("com.docker.network.bridge.enable_ip_masquerade", "true")).lower() != "false"


def _now():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class _LinkDeleter:
    """One thread that deletes links handed to it, in order; ``drain`` waits until it is idle."""

    def __init__(self):
        self._cv = threading.Condition()
        self._todo: list[str] = []
        self._busy = False
        self._thread = None

    def put(self, name: str) -> None:
        with self._cv:
            self._todo.append(name)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="link-deleter", daemon=True)
                self._thread.start()
            self._cv.notify_all()

    def drain(self) -> None:
        with self._cv:
            while self._todo or self._busy:
                self._cv.wait()

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._todo:
                    self._cv.wait()
                name = self._todo.pop(0)
                self._busy = True
            try:
                kernel.delete_link(name)
            except Exception:  # noqa: BLE001 - a leftover link is reconcile's to remove
                pass
            finally:
                with self._cv:
                    self._busy = False
                    self._cv.notify_all()
