"""/volumes/* handlers: the engine owns volumes; this only translates."""

from dockyard import errdefs
from dockyard.api import render
from dockyard.api.server import Request, Router, json_response

_VOLUME_FILTERS = {"name", "label", "driver", "dangling"}


def setup(router: Router, eng) -> None:
    async def create(req: Request):
        body = await req.json()
        v = await eng.create_volume(body.get("Name") or None, driver=body.get("Driver") or "local",
                                    driver_opts=body.get("DriverOpts") or None, labels=body.get("Labels") or None)
        return json_response(render.volume(v), 201)

    async def list_(req: Request):
        filters = req.filters()
        for k in filters:
            if k not in _VOLUME_FILTERS:
                raise errdefs.InvalidArgument(f"invalid filter '{k}'")
        return json_response({"Volumes": [render.volume(v) for v in eng.list_volumes(filters)], "Warnings": None})

    async def inspect(req: Request):
        return json_response(render.volume(eng.get_volume(req.params["name"])))

    async def remove(req: Request):
        await eng.remove_volume(req.params["name"], force=req.qbool("force"))

    async def prune(req: Request):
        filters = req.filters()
        all_ = any(v.lower() in ("true", "1") for v in filters.get("all", []))
        deleted, reclaimed = await eng.prune_volumes(all=all_)
        return json_response({"VolumesDeleted": list(deleted), "SpaceReclaimed": reclaimed})

    router.add("POST", "/volumes/create", create)
    router.add("GET", "/volumes", list_)
    router.add("POST", "/volumes/prune", prune)
    router.add("GET", "/volumes/(?P<name>[^/]+)", inspect)
    router.add("DELETE", "/volumes/(?P<name>[^/]+)", remove)
