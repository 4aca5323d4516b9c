"""/networks/* handlers: Docker's network JSON over the engine's network calls.

Translation only: the engine (and below it ``dockyard.network``) owns every check. Filters are
applied here because they are pure functions of the rendered objects.
"""

from dockyard import errdefs
from dockyard.api import render
from dockyard.api.server import Request, Response, Router, json_response

_FILTERS = {"name", "id", "label", "driver", "scope", "type", "dangling"}


def network_json(n, endpoints=None, containers=None) -> dict:
    """Docker's Network object; ``endpoints`` (inspect only) fill ``Containers``."""
    cfg = []
    if n.subnet:
        c = {"Subnet": n.subnet, "Gateway": n.gateway}
        if n.ip_range:
            c["IPRange"] = n.ip_range
        cfg.append(c)
    out = {}
    for ep in endpoints or ():
        c = (containers or {}).get(ep.container_id)
        out[ep.container_id] = {"Name": c.name.lstrip("/") if c else ep.name, "EndpointID": ep.id,
                                "MacAddress": ep.mac, "IPv4Address": f"{ep.ip}/{ep.prefixlen}" if ep.ip else "",
                                "IPv6Address": ""}
    return {
        "Name": n.name, "Id": n.id, "Created": n.created or render.ZERO_TIME, "Scope": "local",
        "Driver": n.driver, "EnableIPv4": True, "EnableIPv6": False,
        "IPAM": {"Driver": "default", "Options": None if not n.user_defined else {}, "Config": cfg},
        "Internal": n.internal, "Attachable": False, "Ingress": False, "ConfigFrom": {"Network": ""},
        "ConfigOnly": False, "Containers": out, "Options": dict(n.options or {}), "Labels": dict(n.labels or {}),
    }


def _label_ok(labels: dict, wanted) -> bool:
    for w in wanted:
        k, eq, v = w.partition("=")
        if k not in labels or (eq and labels[k] != v):
            return False
    return True


def matches(n, filters: dict, in_use: bool) -> bool:
    for key in filters:
        if key not in _FILTERS:
            raise errdefs.InvalidArgument(f"invalid filter '{key}'")
    f = filters
    if f.get("name") and not any(v in n.name for v in f["name"]):
        return False
    if f.get("id") and not any(n.id.startswith(v) for v in f["id"]):
        return False
    if f.get("driver") and n.driver not in f["driver"]:
        return False
    if f.get("scope") and "local" not in f["scope"]:
        return False
    if f.get("label") and not _label_ok(n.labels or {}, f["label"]):
        return False
    if f.get("type"):
        for t in f["type"]:
            if t not in ("custom", "builtin"):
                raise errdefs.InvalidArgument(f"invalid filter: 'type'='{t}'")
        if ("custom" if n.user_defined else "builtin") not in f["type"]:
            return False
    if f.get("dangling"):
        want = str(f["dangling"][0]).lower()
        if want not in ("true", "false", "1", "0"):
            raise errdefs.InvalidArgument(f"invalid filter 'dangling={want}'")
        # Docker: dangling = user-defined and unused (predefined networks are never dangling).
        if (want in ("true", "1")) != (n.user_defined and not in_use):
            return False
    return True


class _PredefinedOnly:
    """The view of an engine without networking (``Engine.open(network=False)``, the API tests'
    fake engine): the three predefined networks, with stable IDs, and nothing can be created."""

    def __init__(self):
        import hashlib

        from dockyard.network import Network

        self.nets = [Network(id=hashlib.sha256(b"dockyard-network-" + n.encode()).hexdigest(), name=n, driver=d)
                     for n, d in (("bridge", "bridge"), ("host", "host"), ("none", "null"))]

    async def list_networks(self):
        return list(self.nets)

    async def get_network(self, ref):
        for n in self.nets:
            if ref and (ref in (n.name, n.id) or n.id.startswith(ref)):
                return n
        raise errdefs.NotFound(f"network {ref} not found")

    async def network_endpoints(self, ref):
        return []

    async def remove_network(self, ref):
        n = await self.get_network(ref)
        raise errdefs.Forbidden(f"{n.name} is a pre-defined network and cannot be removed")

    async def create_network(self, name, *args):
        if any(n.name == name for n in self.nets):
            raise errdefs.AlreadyExists(f"network with name {name} already exists")
        raise errdefs.Unavailable("networking is disabled in this daemon")

    connect_network = disconnect_network = create_network

    async def prune_networks(self, filters=None):
        return []


def setup(router: Router, eng) -> None:
    nets = eng if getattr(eng, "nm", None) is not None else _PredefinedOnly()

    def _containers():
        return {c.id: c for c in eng.list(all=True)}

    async def list_(req: Request):
        filters = req.filters()
        out = []
        for n in await nets.list_networks():
            in_use = bool(await nets.network_endpoints(n.id)) if "dangling" in filters else False
            if matches(n, filters, in_use):
                out.append(network_json(n))
        return json_response(out)

    async def inspect(req: Request):
        n = await nets.get_network(req.params["id"])
        return json_response(network_json(n, await nets.network_endpoints(n.id), _containers()))

    async def create(req: Request):
        body = await req.json()
        if not isinstance(body, dict):
            raise errdefs.InvalidArgument("invalid network config: expected a JSON object")
        ipam = body.get("IPAM") or {}
        configs = ipam.get("Config") or []
        if len(configs) > 1:
            raise errdefs.InvalidArgument("only one IPAM config (one IPv4 subnet) is supported")
        if body.get("EnableIPv6"):
            raise errdefs.InvalidArgument("IPv6 networks are not supported")
        if ipam.get("Driver") not in (None, "", "default"):
            raise errdefs.InvalidArgument(f"IPAM driver {ipam['Driver']!r} is not supported")
        c = configs[0] if configs else {}
        if c and not c.get("Subnet") and (c.get("Gateway") or c.get("IPRange")):
            raise errdefs.InvalidArgument("a gateway or IP range needs a subnet")
        n = await nets.create_network(body.get("Name") or "", body.get("Driver") or "bridge", c.get("Subnet"),
                                     c.get("Gateway"), c.get("IPRange"), bool(body.get("Internal")),
                                     body.get("Labels") or {}, body.get("Options") or {})
        return json_response({"Id": n.id, "Warning": ""}, 201)

    async def remove(req: Request):
        await nets.remove_network(req.params["id"])
        return Response(204)

    async def prune(req: Request):
        filters = req.filters()
        for key in filters:
            if key not in ("label", "label!"):
                raise errdefs.InvalidArgument(f"invalid filter '{key}'")
        return json_response({"NetworksDeleted": await nets.prune_networks(filters) or None})

    async def connect(req: Request):
        body = await req.json() or {}
        ep = body.get("EndpointConfig") or {}
        ip = (ep.get("IPAMConfig") or {}).get("IPv4Address") or None
        await nets.connect_network(req.params["id"], body.get("Container") or "", ep.get("Aliases") or (), ip)
        return Response(200)

    async def disconnect(req: Request):
        body = await req.json() or {}
        await nets.disconnect_network(req.params["id"], body.get("Container") or "", bool(body.get("Force")))
        return Response(200)

    router.add("GET", "/networks", list_)
    router.add("POST", "/networks/create", create)
    router.add("POST", "/networks/prune", prune)
    router.add("GET", "/networks/(?P<id>[^/]+)", inspect)
    router.add("DELETE", "/networks/(?P<id>[^/]+)", remove)
    router.add("POST", "/networks/(?P<id>[^/]+)/connect", connect)
    router.add("POST", "/networks/(?P<id>[^/]+)/disconnect", disconnect)
