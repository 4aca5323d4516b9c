"""/build and /build/prune: the legacy builder's wire protocol over dockyard.build.builder.

As moby does, the whole request body (the context tar) is read before any output: it is spooled
to a file, unpacked with the image store's safe extraction into ``<data-root>/build/tmp``, and the
Dockerfile parsed, so a bad request (BuildKit's ``version=2``, a missing or broken Dockerfile) is
an HTTP 400. From then on the answer is a JSON stream: ``stream`` lines, ``aux.ID``, and a failure
as ``errorDetail`` (with ``code`` for a failed RUN) plus ``error``. ``q=1`` holds the output back
and sends only the image ID. The context dir is removed when the build ends, whatever happened.
"""

import asyncio
import json
import os
import shutil
import tarfile
import tempfile

from dockyard import errdefs, safepath
from dockyard.api.images import feed_to_thread
from dockyard.api.server import Request, Router, Stream, json_response
from dockyard.build.builder import BuildError, Builder
from dockyard.build.cache import BuildCache
from dockyard.images import archive, reference


def _json_param(req: Request, name: str):
    raw = req.q(name)
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        raise errdefs.InvalidArgument(f"invalid {name} parameter: {raw!r} is not JSON") from None
    if not isinstance(value, dict):
        raise errdefs.InvalidArgument(f"invalid {name} parameter: expected a JSON object")
    return value


def _line(obj) -> bytes:
    return json.dumps(obj).encode() + b"\r\n"


def _unpack_context(spool: str, dest: str, dockerfile_name: str) -> str:
    """Unpack the context (a tar, maybe compressed, or a bare Dockerfile); return the Dockerfile text."""
    with open(spool, "rb") as f:
        head = f.read(6)
    is_tar = head[:2] == b"\x1f\x8b" or head[:3] == b"BZh" or head == b"\xfd7zXZ\x00" or tarfile.is_tarfile(spool)
    if not is_tar:  # `curl --data-binary @Dockerfile`: the body is the Dockerfile itself
        with open(spool, "rb") as f:
            return f.read().decode("utf-8", "replace")
    with open(spool, "rb") as f:
        archive.apply_layer(f, dest, overlay=False)
    try:
        fd = safepath.open_beneath(dest, dockerfile_name, os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        raise errdefs.InvalidArgument(f"Cannot locate specified Dockerfile: {dockerfile_name}") from None
    with os.fdopen(fd, "rb") as f:
        return f.read().decode("utf-8", "replace")


def setup(router: Router, eng) -> None:
    state = {}

    def cache_path():
        root = getattr(eng.images, "root", None)  # test doubles of the engine may have no store
        return os.path.join(os.path.dirname(root), "build", "cache.db") if root else ""

    def opened():
        """(cache, tmp dir), made on first use: routers are also built over engines without a store."""
        if not state:
            data_root = os.path.dirname(eng.images.root)
            tmp_root = os.path.join(data_root, "build", "tmp")
            os.makedirs(tmp_root, exist_ok=True)
            for leftover in os.listdir(tmp_root):  # contexts of builds a crash interrupted
                shutil.rmtree(os.path.join(tmp_root, leftover), ignore_errors=True)
            state["cache"] = BuildCache(cache_path())
            state["tmp"] = tmp_root
        return state["cache"], state["tmp"]

    async def build(req: Request):
        if req.q("version") == "2":
            await req.body()
            raise errdefs.InvalidArgument("BuildKit (version=2) is not supported by this daemon: "
                                          "set DOCKER_BUILDKIT=0 to use the legacy builder")
        if req.q("remote"):
            raise errdefs.InvalidArgument("remote build contexts are not supported: send the context as a tar")
        build_args = _json_param(req, "buildargs")
        labels = _json_param(req, "labels")
        network = req.q("networkmode") or ""
        if network not in ("", "default", "none", "host", "bridge"):
            raise errdefs.InvalidArgument(f"network mode {network!r} is not supported for RUN: use none, host or default")
        # validated before the body is read, and spelt as docker prints them ("x" -> "x:latest")
        tags = [reference.familiar(str(reference.parse_docker_ref(t))) for t in req.qlist("t")]
        quiet, dockerfile_name = req.qbool("q"), req.q("dockerfile") or "Dockerfile"
        cache, tmp_root = opened()
        work = tempfile.mkdtemp(dir=tmp_root, prefix="ctx-")
        try:
            spool = os.path.join(work, "context.tar")
            ctx = os.path.join(work, "context")
            os.mkdir(ctx)

            def spool_body(f):
                with open(spool, "wb") as out:
                    shutil.copyfileobj(f, out, 1 << 20)

            await feed_to_thread(req.chunks(), spool_body)  # the whole body before any output
            text = await asyncio.to_thread(_unpack_context, spool, ctx, dockerfile_name)
            os.unlink(spool)
            queue: asyncio.Queue = asyncio.Queue()
            builder = Builder(eng, cache, queue.put_nowait, context_dir=ctx, dockerfile_text=text,
                              dockerfile_name=os.path.basename(dockerfile_name), tags=tags,
                              build_args=build_args, target=req.q("target") or None,
                              no_cache=req.qbool("nocache"), labels=labels, network_mode=network)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        return Stream(_run(builder, queue, work, quiet))

    async def _run(builder, queue, work, quiet):
        end = object()
        result = {}

        async def drive():
            try:
                result["id"] = await builder.build()
            except Exception as e:  # reported in the stream: the status line went out already
                result["error"] = e
            finally:
                queue.put_nowait(end)

        task = asyncio.ensure_future(drive())
        try:
            while (msg := await queue.get()) is not end:
                if not quiet:
                    yield _line({"stream": msg})
            # the context goes before the last line: a client that saw the end sees it gone
            await asyncio.to_thread(shutil.rmtree, work, True)
            if "error" in result:
                e = result["error"]
                detail = {"message": str(e)}
                if isinstance(e, BuildError) and e.code is not None:
                    detail["code"] = e.code
                yield _line({"errorDetail": detail, "error": str(e)})
                return
            image_id = result["id"]
            if quiet:
                yield _line({"stream": image_id + "\n"})
                return
            yield _line({"aux": {"ID": image_id}})
            yield _line({"stream": f"Successfully built {image_id[7:19]}\n"})
            for t in builder.tags:
                yield _line({"stream": f"Successfully tagged {t}\n"})
        finally:
            # The client went away (or the stream ended): stop the build, which removes what it
            # made, then the context. Shielded in its own task: a second cancellation of this
            # handler must not cut the cleanup short.
            async def cleanup():
                if not task.done():
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
                await asyncio.to_thread(shutil.rmtree, work, True)

            await asyncio.shield(asyncio.ensure_future(cleanup()))

    async def build_prune(req: Request):
        if not state and not os.path.exists(cache_path()):
            return json_response({"CachesDeleted": [], "SpaceReclaimed": 0})  # never built here
        deleted = await asyncio.to_thread(opened()[0].prune)
        return json_response({"CachesDeleted": deleted, "SpaceReclaimed": 0})

    router.add("POST", "/build", build)
    router.add("POST", "/build/prune", build_prune)
