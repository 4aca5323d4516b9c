"""/images/* handlers. The image store is synchronous: calls go to worker threads, and tar bodies
(import, load, save) flow through an OS pipe between the event loop and the worker so a large image
is never held in memory whole.
"""

import asyncio
import dataclasses
import fnmatch
import json
import os

from dockyard import errdefs
from dockyard.api import render
from dockyard.api.containers import labels_match
from dockyard.api.server import Request, Response, Router, Stream, json_response
from dockyard.images import reference

_IMAGE_FILTERS = {"dangling", "label", "reference", "before", "since", "until"}


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


async def feed_to_thread(chunks, consume):
    """Run ``consume(fileobj)`` in a thread while the request body is written into the pipe it reads.
    Returns its result; if it stops early (bad tar) its error is the answer, not the broken pipe."""
    r, w = os.pipe()

    def run():
        with os.fdopen(r, "rb") as f:
            return consume(f)

    task = asyncio.ensure_future(asyncio.to_thread(run))
    err = None
    try:
        async for chunk in chunks:
            try:
                await asyncio.to_thread(_write_all, w, chunk)
            except BrokenPipeError:
                break
    except BaseException as e:  # client went away mid-body: still wait for the worker to finish
        err = e
    finally:
        os.close(w)
    result = await task
    if err:
        raise err
    return result


def stream_from_thread(produce):
    """Async iterator of what ``produce(fileobj)`` writes, running it in a worker thread."""
    r, w = os.pipe()

    def run():
        with os.fdopen(w, "wb") as f:
            produce(f)

    task = asyncio.ensure_future(asyncio.to_thread(run))
    # Mark a failure as seen: gen() re-raises it, or the client has already gone and nobody can hear it.
    task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def gen():
        try:
            while True:
                data = await asyncio.to_thread(os.read, r, 1 << 16)
                if not data:
                    break
                yield data
            await task  # re-raise a failure after the last byte: the client sees a cut stream
        finally:
            os.close(r)  # the producer gets EPIPE if the client left early

    return gen()


def _json_lines(*objs):
    async def gen():
        for o in objs:
            yield json.dumps(o).encode() + b"\r\n"

    return gen()


def _matching_tags(img, patterns: list[str]) -> list[str]:
    out = []
    for tag in img.repo_tags:
        repo = tag.rsplit(":", 1)[0] if ":" in tag.rsplit("/", 1)[-1] else tag
        if any(fnmatch.fnmatchcase(tag, p) or fnmatch.fnmatchcase(repo, p) for p in patterns):
            out.append(tag)
    return out


def filter_images(store, images, filters: dict) -> list:
    for k in filters:
        if k not in _IMAGE_FILTERS:
            raise errdefs.InvalidArgument(f"invalid filter '{k}'")
    out = []
    for img in images:
        if "dangling" in filters:
            want = any(v.lower() in ("true", "1") for v in filters["dangling"])
            if want != (not img.repo_tags):
                continue
        if filters.get("reference"):
            # moby lists only the tags that matched, not every tag of a matching image.
            tags = _matching_tags(img, filters["reference"])
            if not tags:
                continue
            img = dataclasses.replace(img, repo_tags=tags)
        if not labels_match((img.config.get("config") or {}).get("Labels") or {}, filters.get("label", [])):
            continue
        ok = True
        for key, older in (("before", True), ("since", False)):
            for ref in filters.get(key, []):
                pivot = render.to_unix(store.resolve(ref).created)
                t = render.to_unix(img.created)
                if (older and t >= pivot) or (not older and t <= pivot):
                    ok = False
        if ok:
            out.append(img)
    return out


def setup(router: Router, eng) -> None:
    store = eng.images

    async def list_(req: Request):
        filters = req.filters()
        imgs = await asyncio.to_thread(store.list)
        imgs = await asyncio.to_thread(filter_images, store, imgs, filters)
        imgs.sort(key=lambda i: render.to_unix(i.created), reverse=True)
        return json_response([render.image_summary(i) for i in imgs])

    async def inspect(req: Request):
        img = await asyncio.to_thread(store.resolve, req.params["name"])
        return json_response(render.image_inspect(img))

    async def history(req: Request):
        return json_response(await asyncio.to_thread(store.history, req.params["name"]))

    async def tag(req: Request):
        repo = req.q("repo")
        if not repo:
            raise errdefs.InvalidArgument("repository name must have at least one component")
        new = reference.parse_repo_tag(repo, req.q("tag") or None).familiar()
        await asyncio.to_thread(store.tag, req.params["name"], new)
        return Response(201)

    async def remove(req: Request):
        res = await eng.remove_image(req.params["name"], force=req.qbool("force"), noprune=req.qbool("noprune"))
        return json_response(res)

    async def prune(req: Request):
        filters = req.filters()
        dangling_only = True
        for v in filters.get("dangling", []):
            dangling_only = v.lower() in ("true", "1")
        deleted, reclaimed = await eng.prune_images(dangling_only=dangling_only)
        return json_response({"ImagesDeleted": deleted or None, "SpaceReclaimed": reclaimed})

    async def create(req: Request):
        if req.q("fromSrc") is not None:
            return await _import(req)
        from_image = req.q("fromImage")
        if not from_image:
            raise errdefs.InvalidArgument("fromImage or fromSrc is required")
        t = req.q("tag") or ""
        ref = from_image + (("@" if reference.is_digest(t) else ":") + t if t else "")
        parsed = reference.parse(ref)
        if parsed.tag is None and parsed.digest is None and not t:
            parsed = parsed.with_default_tag()
        name = parsed.familiar()
        try:
            await asyncio.to_thread(store.resolve, name)
        except errdefs.NotFound:
            # Registries come later; an image present locally is "up to date" without network.
            raise errdefs.NotFound(f"pull access denied for {parsed.familiar_name}, repository does not "
                                   "exist or may require 'docker login'") from None
        return Stream(_json_lines({"status": f"Status: Image is up to date for {name}"}))

    async def _import(req: Request):
        src = req.q("fromSrc")
        if src != "-":
            raise errdefs.InvalidArgument("importing from a URL is not supported; send the tar as the body")
        repo, t = req.q("repo") or "", req.q("tag") or ""
        ref = reference.parse_repo_tag(repo, t or None).familiar() if repo else None
        changes = tuple(c for c in req.qlist("changes") if c)
        message = req.q("message") or ""
        img = await feed_to_thread(req.chunks(),
                                   lambda f: store.import_rootfs(f, ref, changes=changes, message=message))
        return Stream(_json_lines({"status": img.id}))

    async def load(req: Request):
        names = await feed_to_thread(req.chunks(), lambda f: store.load(f))
        lines = [{"stream": (f"Loaded image ID: {n}\n" if n.startswith("sha256:") else f"Loaded image: {n}\n")}
                 for n in names]
        return Stream(_json_lines(*lines))

    async def save(req: Request):
        names = req.qlist("names") or ([req.params["name"]] if "name" in req.params else [])
        if not names:
            raise errdefs.InvalidArgument("no image names given")
        for n in names:  # unknown names are a 404 status, before any tar byte is sent
            await asyncio.to_thread(store.resolve, n)
        return Stream(stream_from_thread(lambda f: store.save(names, f)), "application/x-tar")

    router.add("GET", "/images/json", list_)
    router.add("POST", "/images/create", create)
    router.add("POST", "/images/load", load)
    router.add("GET", "/images/get", save)
    router.add("POST", "/images/prune", prune)
    router.add("GET", "/images/(?P<name>.+)/json", inspect)
    router.add("GET", "/images/(?P<name>.+)/history", history)
    router.add("GET", "/images/(?P<name>.+)/get", save)
    router.add("POST", "/images/(?P<name>.+)/tag", tag)
    router.add("DELETE", "/images/(?P<name>.+)", remove)
