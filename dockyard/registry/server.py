"""The registry server: the OCI Distribution Spec ``/v2/`` API over ``RegistryStorage``, on aiohttp.

A plain asyncio HTTP server (no connection hijacking is needed here, unlike the daemon's API, so a
ready-made one is the smaller choice). The handler only translates HTTP to storage calls and spec
errors to JSON; blocking work (hashing a finished upload, GC) goes to a thread. One route table
matches the whole path after ``/v2/`` because repository names contain slashes.

Auth: none by default; with ``--htpasswd`` every request needs Basic credentials of a user in the
file; with ``--token-auth`` too, clients get Docker's Bearer challenge and fetch a token from this
server's ``/token`` (Basic credentials there), as ``docker login``/``pull``/``push`` do.

``main(argv)`` is ``dockyard registry serve``; it prints ``listening on HOST:PORT`` once it accepts
connections (``--addr 127.0.0.1:0`` picks a free port). ``main(["gc", "--root", DIR])`` collects
unreferenced blobs; it is safe next to a running server (see storage.py).
"""

import argparse
import contextlib
import hashlib
import asyncio
import os
import re
import secrets
import signal
import ssl
import sys
import time

from aiohttp import web

from dockyard.errdefs import DockyardError
from dockyard.registry import auth
from dockyard.registry.storage import MANIFEST_MAX, MT_OCI_INDEX, RegistryError, RegistryStorage

_NAME = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
_ROUTES = [
    (re.compile(rf"^(?P<name>{_NAME})/tags/list$"), "tags"),
    (re.compile(rf"^(?P<name>{_NAME})/manifests/(?P<ref>[^/]+)$"), "manifest"),
    (re.compile(rf"^(?P<name>{_NAME})/blobs/uploads/?$"), "upload_start"),
    (re.compile(rf"^(?P<name>{_NAME})/blobs/uploads/(?P<uuid>[^/]+)$"), "upload"),
    (re.compile(rf"^(?P<name>{_NAME})/blobs/(?P<digest>[^/]+)$"), "blob"),
    (re.compile(rf"^(?P<name>{_NAME})/referrers/(?P<digest>[^/]+)$"), "referrers"),
    (re.compile(r"^_catalog$"), "catalog"),
    (re.compile(r"^$"), "version"),
]
_ACTION = {"GET": "pull", "HEAD": "pull", "POST": "push", "PUT": "push", "PATCH": "push", "DELETE": "delete"}
API_HEADERS = {"Docker-Distribution-API-Version": "registry/2.0"}
SERVICE = "dockyard-registry"
BODY_CHUNK = 1 << 16


def _error(code: str, message: str, status: int, detail=None, headers=None) -> web.Response:
    err = {"code": code, "message": message}
    if detail is not None:
        err["detail"] = detail
    return web.json_response({"errors": [err]}, status=status, headers={**API_HEADERS, **(headers or {})})


def _page(items: list[str], query) -> tuple[list[str], str | None]:
    """The spec's ``n``/``last`` pagination: (this page, the ``last`` of the next link or None)."""
    last = query.get("last")
    if last:
        items = [i for i in items if i > last]
    if "n" not in query:
        return items, None
    try:
        n = int(query["n"])
        if n < 0:
            raise ValueError
    except ValueError:
        raise RegistryError("PAGINATION_NUMBER_INVALID", f"invalid n={query['n']!r}", 400) from None
    page = items[:n]
    return page, (page[-1] if n and len(items) > n else None)


class Registry:
    def __init__(self, storage: RegistryStorage, users: dict | None = None, token_auth: bool = False):
        self.storage = storage
        self.users = users
        self.token_auth = token_auth
        self.secret = secrets.token_bytes(32)
        self._upload_locks: dict[str, asyncio.Lock] = {}
        self._verified: set[bytes] = set()  # sha256 of Authorization headers that passed bcrypt

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._errors])
        app.router.add_route("GET", "/token", self.token)
        app.router.add_route("*", "/v2", self.dispatch)
        app.router.add_route("*", "/v2/{tail:.*}", self.dispatch)
        return app

    @web.middleware
    async def _errors(self, request, handler):
        try:
            resp = await handler(request)
        except RegistryError as e:
            return _error(e.code, str(e), e.status, e.detail, e.headers)
        resp.headers.update(API_HEADERS)
        return resp

    # -- auth -----------------------------------------------------------------------------------

    def _challenge(self, request, scope: str | None) -> dict:
        if not self.token_auth:
            return {"WWW-Authenticate": f'Basic realm="{SERVICE}"'}
        realm = f"{request.scheme}://{request.host}/token"
        value = f'Bearer realm="{realm}",service="{SERVICE}"' + (f',scope="{scope}"' if scope else "")
        return {"WWW-Authenticate": value}

    async def _authorize(self, request, scope: tuple[str, str, str] | None) -> None:
        """Raise UNAUTHORIZED (401 + challenge) unless the request may do ``scope`` (kind, name, action)."""
        if self.users is None:
            return
        header = request.headers.get("Authorization", "")
        if self.token_auth:
            claims = auth.check_token(self.secret, header[7:].strip()) if header[:7].lower() == "bearer " else None
            if claims is not None and (scope is None or auth.token_allows(claims, *scope)):
                return
        else:
            # bcrypt is slow on purpose; a header that verified once is remembered (by its hash).
            key = hashlib.sha256(header.encode()).digest()
            if key in self._verified:
                return
            creds = auth.parse_basic(header)
            if creds and await asyncio.to_thread(auth.check_password, self.users, *creds):
                if len(self._verified) > 1000:
                    self._verified.clear()
                self._verified.add(key)
                return
        scope_s = None
        if scope:
            actions = "pull,push" if scope[2] == "push" else scope[2]
            scope_s = f"{scope[0]}:{scope[1]}:{actions}"
        raise RegistryError("UNAUTHORIZED", "authentication required", 401,
                            [{"Type": scope[0], "Name": scope[1], "Action": scope[2]}] if scope else None,
                            self._challenge(request, scope_s))

    async def token(self, request) -> web.Response:
        """Docker's token endpoint: Basic credentials in, a token for the asked scopes out."""
        if not self.token_auth:
            raise RegistryError("UNSUPPORTED", "this registry does not use token authentication", 404)
        creds = auth.parse_basic(request.headers.get("Authorization"))
        if not creds or not await asyncio.to_thread(auth.check_password, self.users, *creds):
            raise RegistryError("UNAUTHORIZED", "invalid username or password", 401, None,
                                {"WWW-Authenticate": f'Basic realm="{SERVICE}"'})
        access = []
        for s in request.query.getall("scope", []):
            for one in s.split(" "):
                parsed = auth.parse_scope(one)
                if parsed:  # htpasswd users are trusted with every action they ask for
                    kind, name, actions = parsed
                    if "*" in actions:
                        actions |= {"pull", "push", "delete"}
                    access.append({"type": kind, "name": name, "actions": sorted(actions)})
        token = auth.issue_token(self.secret, creds[0], access)
        issued = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return web.json_response({"token": token, "access_token": token, "expires_in": auth.TOKEN_TTL, "issued_at": issued})

    # -- dispatch -------------------------------------------------------------------------------

    async def dispatch(self, request) -> web.StreamResponse:
        tail = request.match_info.get("tail", "")
        for pattern, kind in _ROUTES:
            m = pattern.match(tail)
            if m:
                break
        else:
            if re.match(r"^(.+)/(manifests|blobs|tags|referrers)/", tail):
                raise RegistryError("NAME_INVALID", f"invalid repository name in {tail!r}", 400)
            raise RegistryError("UNSUPPORTED", f"no such endpoint /v2/{tail}", 404)
        args = m.groupdict()
        if len(args.get("name") or "") > 255:
            raise RegistryError("NAME_INVALID", "repository name is longer than 255 characters", 400)
        if kind == "version":
            await self._authorize(request, None)
            return web.json_response({})
        if kind == "catalog":
            await self._authorize(request, ("registry", "catalog", "*"))
        else:
            await self._authorize(request, ("repository", args["name"], _ACTION.get(request.method, "pull")))
        handler = getattr(self, f"{kind}_{request.method.lower()}", None)
        if handler is None:
            raise RegistryError("UNSUPPORTED", f"{request.method} is not supported on /v2/{tail}", 405)
        return await handler(request, **args)

    # -- blobs ----------------------------------------------------------------------------------

    async def blob_get(self, request, name: str, digest: str) -> web.StreamResponse:
        if request.method == "HEAD":
            path = await asyncio.to_thread(self.storage.touch, name, digest)
        else:
            path = self.storage.blob_path(name, digest)
        # FileResponse serves HEAD and single Range requests (206 / 416) from the file itself.
        return web.FileResponse(path, headers={"Docker-Content-Digest": digest, "Content-Type": "application/octet-stream"})

    blob_head = blob_get

    async def blob_delete(self, request, name: str, digest: str) -> web.Response:
        self.storage.delete_blob(name, digest)
        return web.Response(status=202, headers={"Content-Length": "0"})

    # -- uploads --------------------------------------------------------------------------------

    def _upload_headers(self, name: str, u: str) -> dict:
        size = self.storage.upload_size(name, u)
        return {"Location": f"/v2/{name}/blobs/uploads/{u}", "Docker-Upload-UUID": u,
                "Range": f"0-{max(size - 1, 0)}", "Content-Length": "0"}

    async def _append(self, request, name: str, u: str, check_range: bool) -> None:
        """Append the request body to upload ``u``; a Content-Range must start where the data ends."""
        path = self.storage.upload_path(name, u)
        lock = self._upload_locks.setdefault(u, asyncio.Lock())
        async with lock:
            size = os.stat(path).st_size
            cr = request.headers.get("Content-Range")
            if check_range and cr:
                m = re.match(r"^(?:bytes[ =])?(\d+)-(\d+)$", cr.strip())
                if not m or int(m.group(1)) != size or int(m.group(2)) < int(m.group(1)):
                    raise RegistryError("BLOB_UPLOAD_INVALID", f"Content-Range {cr} does not continue the upload at {size}", 416)
                if request.content_length is not None and request.content_length != int(m.group(2)) - int(m.group(1)) + 1:
                    raise RegistryError("SIZE_INVALID", f"Content-Range {cr} does not match Content-Length {request.content_length}", 400)
            with open(path, "ab") as f:
                while chunk := await request.content.read(BODY_CHUNK):
                    f.write(chunk)

    async def _finish(self, request, name: str, u: str) -> web.Response:
        digest = request.query.get("digest")
        if not digest:
            raise RegistryError("DIGEST_INVALID", "the digest query parameter is required to finish an upload", 400)
        await self._append(request, name, u, check_range=False)
        await asyncio.to_thread(self.storage.finish_upload, name, u, digest)
        self._upload_locks.pop(u, None)
        return web.Response(status=201, headers={"Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": digest,
                                                 "Content-Length": "0"})

    async def upload_start_post(self, request, name: str) -> web.Response:
        q = request.query
        if q.get("mount"):
            source = q.get("from", "")
            allowed = True
            if self.users is not None and self.token_auth:  # the token must also grant pull on the source
                try:
                    await self._authorize(request, ("repository", source, "pull"))
                except RegistryError:
                    allowed = False
            if allowed and re.match(rf"^{_NAME}$", source) and self.storage.mount(name, q["mount"], source):
                return web.Response(status=201, headers={"Location": f"/v2/{name}/blobs/{q['mount']}",
                                                         "Docker-Content-Digest": q["mount"], "Content-Length": "0"})
            # Not mountable: the spec says to fall back to an ordinary upload session.
        u = self.storage.start_upload(name)
        if "digest" in q:  # monolithic upload in one POST: all or nothing
            try:
                return await self._finish(request, name, u)
            except BaseException:
                with contextlib.suppress(RegistryError):
                    self.storage.cancel_upload(name, u)
                raise
        return web.Response(status=202, headers=self._upload_headers(name, u))

    async def upload_patch(self, request, name: str, uuid: str) -> web.Response:
        await self._append(request, name, uuid, check_range=True)
        return web.Response(status=202, headers=self._upload_headers(name, uuid))

    async def upload_put(self, request, name: str, uuid: str) -> web.Response:
        return await self._finish(request, name, uuid)

    async def upload_get(self, request, name: str, uuid: str) -> web.Response:
        return web.Response(status=204, headers=self._upload_headers(name, uuid))

    async def upload_delete(self, request, name: str, uuid: str) -> web.Response:
        self.storage.cancel_upload(name, uuid)
        self._upload_locks.pop(uuid, None)
        return web.Response(status=204)

    # -- manifests ------------------------------------------------------------------------------

    async def manifest_get(self, request, name: str, ref: str) -> web.Response:
        digest, media_type, path = self.storage.get_manifest(name, ref)
        with open(path, "rb") as f:
            data = f.read(MANIFEST_MAX + 1)
        headers = {"Docker-Content-Digest": digest, "Content-Type": media_type, "Etag": f'"{digest}"'}
        if request.method == "HEAD":
            return web.Response(headers={**headers, "Content-Length": str(len(data))})
        return web.Response(body=data, headers=headers)

    manifest_head = manifest_get

    async def manifest_put(self, request, name: str, ref: str) -> web.Response:
        data = bytearray()
        while chunk := await request.content.read(BODY_CHUNK):
            data += chunk
            if len(data) > MANIFEST_MAX:
                raise RegistryError("SIZE_INVALID", f"manifest is larger than {MANIFEST_MAX} bytes", 413)
        digest, subject = await asyncio.to_thread(self.storage.put_manifest, name, ref, bytes(data),
                                                  request.headers.get("Content-Type", ""))
        headers = {"Location": f"/v2/{name}/manifests/{digest}", "Docker-Content-Digest": digest, "Content-Length": "0"}
        if subject:
            headers["OCI-Subject"] = subject
        return web.Response(status=201, headers=headers)

    async def manifest_delete(self, request, name: str, ref: str) -> web.Response:
        self.storage.delete_manifest(name, ref)
        return web.Response(status=202, headers={"Content-Length": "0"})

    # -- listings -------------------------------------------------------------------------------

    async def tags_get(self, request, name: str) -> web.Response:
        page, nxt = _page(self.storage.tags(name), request.query)
        headers = {"Link": f'</v2/{name}/tags/list?n={request.query["n"]}&last={nxt}>; rel="next"'} if nxt else {}
        return web.json_response({"name": name, "tags": page}, headers=headers)

    async def catalog_get(self, request) -> web.Response:
        page, nxt = _page(await asyncio.to_thread(self.storage.catalog), request.query)
        headers = {"Link": f'</v2/_catalog?n={request.query["n"]}&last={nxt}>; rel="next"'} if nxt else {}
        return web.json_response({"repositories": page}, headers=headers)

    async def referrers_get(self, request, name: str, digest: str) -> web.Response:
        artifact_type = request.query.get("artifactType")
        descs = await asyncio.to_thread(self.storage.referrers, name, digest, artifact_type)
        headers = {"OCI-Filters-Applied": "artifactType"} if artifact_type else {}
        return web.json_response({"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": descs},
                                 content_type=MT_OCI_INDEX, headers=headers)


# -- process entry point --------------------------------------------------------------------------

def _parse_args(argv):
    p = argparse.ArgumentParser(prog="dockyard registry serve", description="Run an OCI distribution registry.")
    p.add_argument("--addr", default="127.0.0.1:5000", help="HOST:PORT to listen on (port 0: any free port)")
    p.add_argument("--root", default="/var/lib/dockyard/registry", help="storage directory")
    p.add_argument("--tls-cert", help="PEM certificate: serve HTTPS")
    p.add_argument("--tls-key", help="PEM private key of --tls-cert")
    p.add_argument("--htpasswd", help="require Basic auth of users in this file (bcrypt, htpasswd -B)")
    p.add_argument("--token-auth", action="store_true", help="with --htpasswd: Docker's token flow (Bearer) instead of Basic")
    return p.parse_args(argv)


async def _serve(args) -> None:
    host, _, port = args.addr.rpartition(":")
    if not host or not port.isdigit():
        raise SystemExit(f"invalid --addr {args.addr!r}: want HOST:PORT")
    if bool(args.tls_cert) != bool(args.tls_key):
        raise SystemExit("--tls-cert and --tls-key go together")
    if args.token_auth and not args.htpasswd:
        raise SystemExit("--token-auth needs --htpasswd (the token service checks those users)")
    users = auth.load_htpasswd(args.htpasswd) if args.htpasswd else None
    ssl_ctx = None
    if args.tls_cert:
        ssl_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_ctx.load_cert_chain(args.tls_cert, args.tls_key)
    registry = Registry(RegistryStorage(args.root), users, args.token_auth)
    runner = web.AppRunner(registry.app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host.strip("[]"), int(port), ssl_context=ssl_ctx)
    await site.start()
    bound = runner.addresses[0]  # the real port when asked for port 0
    print(f"listening on {host}:{bound[1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["gc"]:
        p = argparse.ArgumentParser(prog="dockyard registry gc")
        p.add_argument("--root", default="/var/lib/dockyard/registry")
        p.add_argument("--grace", type=float, default=3600.0, help="keep blobs younger than this many seconds")
        p.add_argument("--dry-run", action="store_true")
        a = p.parse_args(argv[1:])
        for d in RegistryStorage(a.root, grace=a.grace).gc(dry_run=a.dry_run):
            print(d)
        return 0
    if argv[:1] == ["serve"]:
        argv = argv[1:]
    try:
        asyncio.run(_serve(_parse_args(argv)))
    except (OSError, ValueError, DockyardError) as e:  # bad address, port in use, bad cert or htpasswd
        print(f"dockyard registry: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
