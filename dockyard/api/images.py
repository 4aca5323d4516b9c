"""/images/* handlers. The image store is synchronous: calls go to worker threads, and tar bodies
(import, load, save) flow through an OS pipe between the event loop and the worker so a large image
is never held in memory whole.

Pull and push run ``dockyard.registry.client`` in a worker thread whose progress callback feeds an
asyncio queue; the handler holds back the opening line ("Pulling from", "The push refers to") until
the registry has answered, so a missing repository or refused credentials is an HTTP error status,
and only later failures become an in-stream ``errorDetail`` line. A client that hangs up aborts the
transfer (the next progress callback raises), and the client library then leaves nothing behind.
Registries named by the daemon's ``--insecure-registry`` (``router.insecure_registries``) may use
plain HTTP, as loopback ones always may.
"""

import asyncio
import base64
import binascii
import dataclasses
import fnmatch
import json
import logging
import os
import threading

from dockyard import errdefs
from dockyard.api import render
from dockyard.api.containers import labels_match
from dockyard.api.server import Request, Response, Router, Stream, json_response
from dockyard.images import reference

log = logging.getLogger("dockyard.api")

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



# -- registry transfers (pull, push) ----------------------------------------------------------------

def registry_auth(req: Request) -> dict | None:
    """The X-Registry-Auth header (base64url JSON AuthConfig) as the registry client's auth dict."""
    raw = (req.headers.get("x-registry-auth") or "").strip()
    if not raw:
        return None
    try:
        # Go's URLEncoding wants padding, docker-py strips none; older clients use std base64.
        data = base64.b64decode(raw.replace("+", "-").replace("/", "_") + "=" * (-len(raw) % 4),
                                altchars=b"-_", validate=True)
        doc = json.loads(data) if data.strip() else {}
    except (binascii.Error, ValueError) as e:
        raise errdefs.InvalidArgument(f"invalid X-Registry-Auth header: not base64url-encoded JSON ({e})") from None
    if not isinstance(doc, dict):
        raise errdefs.InvalidArgument("invalid X-Registry-Auth header: not a JSON object")
    doc = {k.lower(): v for k, v in doc.items() if isinstance(v, str) and v}
    if "auth" in doc and "username" not in doc:  # config.json style "auth": base64("user:pass")
        try:
            doc["username"], _, doc["password"] = base64.b64decode(doc["auth"]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise errdefs.InvalidArgument("invalid X-Registry-Auth header: bad 'auth' field") from None
    out = {k: doc[k] for k in ("username", "password", "identitytoken", "registrytoken") if k in doc}
    return out or None


def progress_bar(current: int, total: int, width: int = 50) -> str:
    """moby's JSONProgress text (``[====>   ] 1.2MB/3.4MB``), for clients that read ``progress``."""
    def size(n):
        for unit in ("B", "kB", "MB", "GB"):
            if n < 1000 or unit == "GB":
                return f"{n:.4g}{unit}" if unit != "B" else f"{n}B"
            n /= 1000
    if total <= 0:
        return size(current)
    filled = min(width, int(width * current / total))
    arrow = ">" if filled < width else ""
    return f"[{'=' * filled}{arrow}{' ' * (width - filled - len(arrow))}] {size(current)}/{size(total)}"


class _Messages:
    """Turns the client's progress dicts into the lines moby writes: a ``progress`` text next to
    ``progressDetail``, an ``Extracting`` line before each ``Pull complete`` (the store unpacks
    after every layer is verified, so this marks the step rather than timing it), and push's final
    ``aux`` on a line of its own (the docker CLI does not print the status of a line with aux)."""

    def __init__(self):
        self.sizes: dict[str, int] = {}

    def __call__(self, msg: dict) -> list[dict]:
        detail = msg.get("progressDetail") or {}
        if detail.get("total"):
            self.sizes[msg.get("id", "")] = detail["total"]
            msg = {**msg, "progress": progress_bar(detail.get("current", 0), detail["total"])}
        out = []
        if msg.get("status") == "Pull complete":
            n = self.sizes.get(msg.get("id", ""), 0)
            out.append({"status": "Extracting", "progressDetail": {"current": n, "total": n},
                        "progress": progress_bar(n, n), "id": msg["id"]})
        if "aux" in msg:
            rest = {k: v for k, v in msg.items() if k != "aux"}
            return out + [rest, {"progressDetail": {}, "aux": msg["aux"]}]
        return out + [msg]


def _line(obj) -> bytes:
    return json.dumps(obj).encode() + b"\r\n"


def error_line(message: str) -> bytes:
    # The docker CLI reads errorDetail, docker-py reads error: moby sends both.
    return _line({"errorDetail": {"message": message}, "error": message})


async def stream_transfer(work, opening: str):
    """Run ``work(emit)`` in a thread and stream what it emits as JSON lines.

    Messages whose status starts with ``opening`` are held until another message arrives; an
    error before that is raised here (an HTTP error status), a later one ends the stream with an
    error line. When the client leaves, the next ``emit`` raises, which aborts the transfer."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    gone = threading.Event()
    end = object()
    convert = _Messages()

    def emit(msg: dict) -> None:
        if gone.is_set():
            raise errdefs.Unavailable("the client went away: transfer aborted")
        for m in convert(msg):
            loop.call_soon_threadsafe(queue.put_nowait, m)

    def run():
        try:
            work(emit)
        except BaseException as e:  # noqa: BLE001 - handed to the stream, which reports it
            loop.call_soon_threadsafe(queue.put_nowait, e)
        else:
            loop.call_soon_threadsafe(queue.put_nowait, end)

    task = asyncio.ensure_future(asyncio.to_thread(run))
    held: list[dict] = []
    item = None
    while True:
        item = await queue.get()
        if isinstance(item, BaseException):
            await task
            raise item
        if item is end:
            break
        held.append(item)
        if not str(item.get("status", "")).startswith(opening):
            break

    async def gen():
        try:
            for m in held:
                yield _line(m)
            if item is end:
                return
            while (m := await queue.get()) is not end:
                if isinstance(m, BaseException):
                    if not isinstance(m, errdefs.DockyardError):
                        log.error("transfer failed", exc_info=m)
                    yield error_line(str(m) or type(m).__name__)
                    return
                yield _line(m)
        finally:
            gone.set()
            await asyncio.shield(task)  # the thread ends at its next progress callback at the latest

    return gen()


def _tags_in_registry(ref: reference.Reference, auth, insecure) -> list[str] | None:
    """The repository's tags (``/v2/<name>/tags/list``), or None when it does not exist."""
    from dockyard.registry import client as regclient

    reg = regclient.Registry(ref, auth, insecure)
    resp = reg.request("GET", f"/v2/{ref.path}/tags/list", f"repository:{ref.path}:pull")
    if resp.status in (401, 403, 404):
        resp.close()
        return None
    if resp.status != 200:
        resp.close()
        raise errdefs.Unavailable(f"registry {reg.host} answered {resp.status} to a tag listing")
    try:
        tags = json.loads(resp.read(1 << 22)).get("tags") or []
    except (ValueError, AttributeError) as e:
        raise errdefs.InvalidArgument(f"registry {reg.host} sent a bad tag list: {e}") from None
    return sorted(t for t in tags if isinstance(t, str))


def _denied(ref: reference.Reference, why: str = "") -> errdefs.NotFound:
    return errdefs.NotFound(f"pull access denied for {ref.familiar_name}, repository does not exist or may "
                            f"require 'docker login'" + (f": {why}" if why else ""))


def pull_work(store, ref: reference.Reference, all_tags: bool, platform, auth, insecure, on_pulled=None):
    """The body of a pull thread: ``work(emit)`` for ``stream_transfer``. ``on_pulled(name)`` runs
    after each tag arrived (the engine's ``image pull`` event)."""
    from dockyard.registry import client as regclient

    def one(r: reference.Reference, emit):
        try:
            regclient.pull(str(r), store, platform=platform, progress=emit, auth=auth, insecure=insecure)
            if on_pulled:
                on_pulled(r.familiar())
        except errdefs.Unavailable as e:
            # No registry to ask (offline, Docker Hub): an image we have is as fresh as we can know.
            try:
                store.resolve(r.familiar())
            except errdefs.NotFound:
                raise _denied(r, str(e)) from e
            emit({"status": f"Warning: {e}; using the local image"})
            emit({"status": f"Status: Image is up to date for {r.familiar()}"})
        except errdefs.NotFound as e:
            # Tell a missing repository (Docker's "pull access denied") from a missing tag.
            try:
                exists = _tags_in_registry(r, auth, insecure) is not None
            except errdefs.DockyardError:
                exists = True
            raise (e if exists else _denied(r)) from e

    def work(emit):
        if not all_tags:
            return one(ref, emit)
        try:
            tags = _tags_in_registry(ref, auth, insecure)
        except errdefs.Unavailable as e:
            raise _denied(ref, str(e)) from e
        if tags is None:
            raise _denied(ref)
        for t in tags:
            one(reference.Reference(ref.domain, ref.path, t), emit)

    return work

def setup(router: Router, eng) -> None:
    store = eng.images

    async def list_(req: Request):
        filters = req.filters()
        imgs = await asyncio.to_thread(store.list)
        if not req.qbool("all"):
            # Like moby: untagged images that are parents of others (build intermediates) are
            # listed only with all=1; untagged leaves are the "dangling" images and do show.
            parents = {i.parent for i in imgs if i.parent}
            imgs = [i for i in imgs if i.repo_tags or i.id not in parents]
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

    def insecure() -> tuple:
        return tuple(getattr(router, "insecure_registries", ()))

    async def create(req: Request):
        if req.q("fromSrc") is not None:
            return await _import(req)
        from_image = req.q("fromImage")
        if not from_image:
            raise errdefs.InvalidArgument("fromImage or fromSrc is required")
        t = req.q("tag") or ""
        ref = from_image + (("@" if reference.is_digest(t) else ":") + t if t else "")
        parsed = reference.parse(ref)
        # moby: a bare name with no tag parameter means every tag of the repository.
        all_tags = parsed.tag is None and parsed.digest is None
        auth = registry_auth(req)
        emit_event = getattr(eng, "emit_event", None)
        work = pull_work(store, parsed, all_tags, req.q("platform") or None, auth, insecure(),
                         on_pulled=(lambda name: emit_event("image", "pull", name, {"name": name}))
                         if emit_event else None)
        return Stream(await stream_transfer(work, "Pulling from "))

    async def push(req: Request):
        name, t = req.params["name"], req.q("tag") or ""
        r = reference.parse(name + (":" + t if t else ""))
        if r.digest:
            raise errdefs.InvalidArgument(f"cannot push a digest reference {name!r}: push a tag")
        if r.tag:
            refs = [r]
        else:  # no tag: every local tag of the repository, as docker push -a
            imgs = await asyncio.to_thread(store.list)
            refs = sorted({x for i in imgs for x in map(reference.parse, i.repo_tags) if x.name == r.name},
                          key=str)
        for x in refs or [r.with_default_tag()]:
            try:
                await asyncio.to_thread(store.resolve, x.familiar())
            except errdefs.NotFound:
                raise errdefs.NotFound(f"An image does not exist locally with the tag: {r.familiar_name}") from None
        auth, loose = registry_auth(req), insecure()

        def work(emit):
            from dockyard.registry import client as regclient

            for x in refs:
                regclient.push(str(x), store, progress=emit, auth=auth, insecure=loose)

        return Stream(await stream_transfer(work, "The push refers to repository"))

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
    router.add("POST", "/images/(?P<name>.+)/push", push)
    router.add("DELETE", "/images/(?P<name>.+)", remove)
