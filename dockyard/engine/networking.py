"""Container networking as the engine sees it: the glue between containers and ``dockyard.network``.

Which networks a container joins is the container's own state (``HostConfig.NetworkMode`` plus
``NetworkingConfig.EndpointsConfig``, keyed by network name); the network store holds only live
endpoints, made at start (after ``runtime.create``: the init process holds a fresh netns and is
blocked before exec, so the process starts with its network ready) and dropped at exit/remove.
The live view (addresses, ports) is mirrored into ``Container.network_settings`` so the API
renders without I/O. Every NetworkManager call here runs in a worker thread (the caller's job).
"""

from __future__ import annotations

from dockyard import errdefs

PORTS_KEY, NETS_KEY = "Ports", "Networks"


def network_mode(hc: dict) -> str:
    mode = (hc or {}).get("NetworkMode") or "default"
    return "bridge" if mode == "default" else mode


def joins_networks(mode: str) -> bool:
    """True when the container gets its own netns plumbed by us (bridge or a user network)."""
    return mode not in ("host", "none") and not mode.startswith("container:")


def endpoints_config(c) -> dict:
    """name -> EndpointSettings the container asked for, the NetworkMode network first."""
    mode = network_mode(c.host_config)
    cfg = dict(((c.networking_config or {}).get("EndpointsConfig")) or {})
    if "default" in cfg:
        cfg.setdefault("bridge", cfg.pop("default"))
    if not joins_networks(mode):
        return {}
    out = {mode: cfg.pop(mode, None) or {}}
    out.update({k: v or {} for k, v in cfg.items() if joins_networks(k)})
    return out


def parse_port_key(key: str) -> tuple[int, str]:
    port, _, proto = str(key).partition("/")
    try:
        n = int(port)
    except ValueError:
        raise errdefs.InvalidArgument(f"invalid port specification: {key!r}") from None
    if not 1 <= n <= 65535:
        raise errdefs.InvalidArgument(f"invalid port specification: {key!r}")
    return n, (proto or "tcp").lower()


def _host_ports(text) -> list[int]:
    """``"8080"`` -> [8080]; ``""`` -> [0] (random); ``"8000-8010"`` -> the range, tried in order."""
    text = str(text or "").strip()
    if not text:
        return [0]
    lo, _, hi = text.partition("-")
    try:
        a, b = int(lo), int(hi or lo)
    except ValueError:
        raise errdefs.InvalidArgument(f"invalid host port {text!r}") from None
    if not (0 <= a <= b <= 65535):
        raise errdefs.InvalidArgument(f"invalid host port {text!r}")
    return list(range(a, b + 1))


def port_requests(c) -> list[tuple[str, list[int], int, str]]:
    """(host_ip, candidate host ports, container port, proto) from PortBindings and, with
    PublishAllPorts (-P), a random host port for every other exposed port. Pure."""
    hc = c.host_config or {}
    bindings = dict(hc.get("PortBindings") or {})
    if hc.get("PublishAllPorts"):
        for key in (c.config or {}).get("ExposedPorts") or {}:
            if not bindings.get(key):
                bindings[key] = [{"HostIp": "", "HostPort": ""}]
    out = []
    for key, binds in sorted(bindings.items()):
        cport, proto = parse_port_key(key)
        for b in binds or [{}]:
            out.append(((b or {}).get("HostIp") or "", _host_ports((b or {}).get("HostPort")), cport, proto))
    return out


def check_create(c, warnings: list):
    """Create-time checks Docker makes on the networking part of a create body."""
    mode = network_mode(c.host_config)
    hc = c.host_config
    if mode.startswith("container:") and (hc.get("PortBindings") or hc.get("PublishAllPorts")):
        raise errdefs.InvalidArgument("conflicting options: port publishing and the container type network mode")
    if mode == "host" and hc.get("PortBindings"):
        warnings.append("Published ports are discarded when using host network mode")
    for key in hc.get("PortBindings") or {}:
        parse_port_key(key)
        for b in hc["PortBindings"][key] or []:
            _host_ports((b or {}).get("HostPort"))
    for name, ep in endpoints_config(c).items():
        ip = ((ep.get("IPAMConfig") or {}).get("IPv4Address")) or ""
        if ip and name == "bridge":
            raise errdefs.InvalidArgument("user specified IP address is supported on user defined networks only")
        if ep.get("Aliases") and name == "bridge":
            raise errdefs.InvalidArgument("network-scoped alias is supported only for containers in user defined networks")


def plumb(nm, c, pid: int) -> list:
    """Connect container ``c`` (its init is ``pid``) to its networks and publish its ports.
    Raises on the first failure; the caller's teardown (``nm.release_container``) undoes it all."""
    netns = f"/proc/{pid}/ns/net"
    eps = []
    mac_top = (c.config or {}).get("MacAddress") or ""
    for i, (name, ep_cfg) in enumerate(endpoints_config(c).items()):
        ip = ((ep_cfg.get("IPAMConfig") or {}).get("IPv4Address")) or None
        mac = ep_cfg.get("MacAddress") or (mac_top if i == 0 else "") or None
        eps.append(nm.connect(c.id, netns, name, aliases=list(ep_cfg.get("Aliases") or ()), ip=ip, mac=mac,
                              name=c.name.lstrip("/")))
    reqs = port_requests(c)
    if reqs and eps:
        for host_ip, candidates, cport, proto in reqs:
            for n, hp in enumerate(candidates):
                try:
                    nm.publish(eps[0], [(host_ip, hp, cport, proto)])
                    break
                except errdefs.Conflict:
                    if n == len(candidates) - 1:
                        raise
    return eps


def settings(nm, c) -> dict:
    """The live part of NetworkSettings for ``c``: per network name the endpoint's addresses,
    and the published ports. Thread."""
    nets = {n.id: n for n in nm.list()}
    out_nets, ports = {}, {}
    for ep in nm.endpoints(container_id=c.id):
        n = nets.get(ep.network_id)
        if n is None:
            continue
        dns_names = None
        if n.user_defined:
            dns_names = [ep.name] + list(ep.aliases) + [c.id[:12]]
        out_nets[n.name] = {"NetworkID": n.id, "EndpointID": ep.id, "Gateway": ep.gateway,
                            "IPAddress": ep.ip, "IPPrefixLen": ep.prefixlen, "MacAddress": ep.mac,
                            "Aliases": list(ep.aliases) or None, "DNSNames": dns_names}
        for p in ep.ports:
            ports.setdefault(f"{p.container_port}/{p.proto}", []).append(
                {"HostIp": p.host_ip or "0.0.0.0", "HostPort": str(p.host_port)})
    return {NETS_KEY: out_nets, PORTS_KEY: ports}


def host_gateway(nm) -> str:
    """What ``--add-host name:host-gateway`` maps to: the default bridge's gateway, as Docker."""
    return nm.get("bridge").gateway


def render_extra_hosts(extra, gateway: str) -> list:
    out = []
    for item in extra or ():
        name, sep, ip = str(item).partition(":")
        if not sep or not name:
            raise errdefs.InvalidArgument(f"invalid extra host {item!r}: expected name:ip")
        out.append(f"{name}:{gateway if ip == 'host-gateway' else ip}")
    return out
