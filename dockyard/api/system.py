"""System endpoints (_ping, version, info, events, auth: a login checked against the registry) and
the placeholders clients probe for: the swarm/plugin/distribution areas we do not have (networks
are in ``networks``)."""

import asyncio
import json
import re
import time

from dockyard import errdefs
from dockyard.api import render
from dockyard.api.containers import parse_timestamp_ns
from dockyard.api.server import HTTPError, Request, Response, Router, Stream, json_response
from dockyard.engine.events import check_filters as check_event_filters

_NOT_SWARM = ('This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" to connect '
              "this node to swarm and try again.")


def check_login(body: dict, insecure=()) -> None:
    """``POST /auth``: verify the credentials against the registry as a pull would use them
    (``GET /v2/`` answering its Basic or Bearer challenge); raise HTTP 401 when refused."""
    from dockyard.images.reference import DEFAULT_DOMAIN, Reference
    from dockyard.registry import client as regclient

    server = str(body.get("serveraddress") or regclient.HUB_CONFIG_KEY)
    host = re.sub(r"^https?://", "", server).split("/")[0]
    if not host:
        raise errdefs.InvalidArgument(f"invalid registry address {server!r}")
    if host in ("docker.io", "index.docker.io", regclient.HUB_HOST):
        host = DEFAULT_DOMAIN
    creds = {k: body[k] for k in ("username", "password", "identitytoken")
             if isinstance(body.get(k), str) and body[k]}
    if "username" not in creds and "identitytoken" not in creds:
        raise errdefs.InvalidArgument("login needs a username and password (or an identity token)")
    reg = regclient.Registry(Reference(host, "x"), creds, insecure)
    try:
        resp = reg.request("GET", "/v2/", "")
    except errdefs.Forbidden as e:  # the token service refused the credentials
        raise HTTPError(401, f"login to {host} failed: {e}") from e
    resp.close()
    if resp.status in (401, 403):
        raise HTTPError(401, f"login attempt to {reg.scheme}://{reg.host}/v2/ failed with status: "
                             f"{resp.status} Unauthorized")
    if resp.status != 200:
        raise errdefs.Unavailable(f"login to {host} failed: the registry answered {resp.status} to /v2/")


def setup(router: Router, eng) -> None:
    async def ping(req: Request):
        hs = [("Builder-Version", "1"), ("Swarm", "inactive"),
              ("Cache-Control", "no-cache, no-store, must-revalidate"), ("Pragma", "no-cache")]
        if req.method == "HEAD":
            return Response(200, b"", "text/plain; charset=utf-8", hs)
        return Response(200, b"OK", "text/plain; charset=utf-8", hs)

    async def version(req: Request):
        return json_response(render.version())

    async def info(req: Request):
        return json_response(render.info(eng.info()))

    async def events(req: Request):
        since = parse_timestamp_ns(req.q("since"), "since")
        until = parse_timestamp_ns(req.q("until"), "until")
        if since and until and since > until:
            raise errdefs.InvalidArgument("since time cannot be after until time")
        filters = req.filters()
        check_event_filters(filters)  # a 400 now, not a broken stream later

        log = getattr(eng, "events", None)  # tests/api's fake engine keeps no events

        async def body():
            # Headers go out first (the CLI's `stats` and compose hold the subscription open).
            if log is None:
                if until:
                    await asyncio.sleep(max(0.0, until / 1e9 - time.time()))
                return
            async for ev in log.stream(since, until, filters):
                yield json.dumps(ev).encode() + b"\n"

        return Stream(body(), "application/json")

    async def df(req: Request):
        imgs = await asyncio.to_thread(eng.images.list)
        ctrs = eng.list(all=True)
        used = {}
        for c in ctrs:
            for m in c.mounts or []:
                if m.get("Type") == "volume":
                    used[m.get("Name")] = used.get(m.get("Name"), 0) + 1
        images = []
        for i in imgs:
            d = render.image_summary(i)
            d["Containers"] = sum(1 for c in ctrs if c.image_id == i.id)
            images.append(d)
        vols = []
        for v in eng.list_volumes({}):
            d = render.volume(v)
            d["UsageData"] = {"Size": -1, "RefCount": used.get(v.name, 0)}
            vols.append(d)
        return json_response({"LayersSize": sum(i.size for i in imgs), "Images": images,
                              "Containers": [render.container_summary(c, True) for c in ctrs],
                              "Volumes": vols, "BuildCache": []})

    async def not_found(req: Request):
        raise errdefs.NotFound(f"plugin {req.params.get('rest', '')} not found"
                               if req.path.startswith("/plugins") else "page not found")

    async def plugins(req: Request):
        return json_response([])

    async def swarm(req: Request):
        raise errdefs.Unavailable(_NOT_SWARM)

    async def auth(req: Request):
        body = await req.json()
        await asyncio.to_thread(check_login, body, tuple(getattr(router, "insecure_registries", ())))
        return json_response({"Status": "Login Succeeded", "IdentityToken": ""})

    router.add("GET", "/_ping", ping)
    router.add("GET", "/version", version)
    router.add("GET", "/info", info)
    router.add("GET", "/events", events)
    router.add("GET", "/system/df", df)
    router.add("POST", "/auth", auth)
    router.add("GET", "/plugins", plugins)
    for m in ("GET", "POST", "DELETE"):
        router.add(m, "/plugins/(?P<rest>[^/]+)(?:/.*)?", not_found)
        router.add(m, "/distribution/.*", not_found)
        for area in ("swarm", "services", "nodes", "secrets", "configs", "tasks"):
            router.add(m, f"/{area}(?:/.*)?", swarm)
