"""Registry client: pull images into an ImageStore and push them out (Distribution Spec, as Docker does).

Everything that comes from a registry is untrusted until hashed: manifests are capped at 4 MiB and
checked against the digest that named them, blobs are streamed to a temp file under the store's tmp/
and refused when they exceed their descriptor's size (an endless stream ends there), fall short of it,
or hash to another digest. Only after every blob of an image is verified does the store commit it
(``ImageStore.add_pulled``, one transaction), so an interrupted or failed pull leaves nothing behind;
layer tars are unpacked by the store, which resolves every member path safely.

Transport: ``http.client``, one connection per request (simple, and threads never share one). HTTPS
is verified, except for loopback and ``insecure`` registries, which also fall back to plain HTTP as
Docker does. Auth: Docker's challenge flow: a 401 names Basic or a Bearer token realm; tokens are
cached per scope. Credentials come from the caller (X-Registry-Auth) or Docker's config.json.
"""

import base64
import concurrent.futures
import hashlib
import http.client
import ipaddress
import json
import os
import platform as platform_mod
import re
import ssl
import tempfile
import threading
import urllib.parse

from dockyard.errdefs import DockyardError, Forbidden, Internal, InvalidArgument, NotFound, Unavailable
from dockyard.images import reference
from dockyard.images.content import check_digest

MANIFEST_MAX = 4 << 20
CONFIG_MAX = 16 << 20
TOKEN_MAX = 1 << 20
TIMEOUT = 60  # seconds without a byte before a request is abandoned
CONCURRENCY = 3  # parallel layer transfers, Docker's default
RESUMES = 3  # times a broken blob download is resumed
CHUNK = 1 << 16
PROGRESS_STEP = 512 << 10  # emit a progress message at most every this many bytes

MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
ACCEPT = ", ".join((MT_OCI_INDEX, MT_DOCKER_LIST, MT_OCI_MANIFEST, MT_DOCKER_MANIFEST))
GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "ppc64le": "ppc64le", "s390x": "s390x"}
HUB_HOST = "registry-1.docker.io"
HUB_CONFIG_KEY = "https://index.docker.io/v1/"


def _is_loopback(host: str) -> bool:
    h = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    h = h.strip("[]")
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def docker_config_auth(domain: str) -> dict | None:
    """Credentials for ``domain`` from Docker's config.json ($DOCKER_CONFIG or ~/.docker), if any."""
    path = os.path.join(os.environ.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker"), "config.json")
    try:
        with open(path) as f:
            auths = json.load(f).get("auths") or {}
    except (OSError, ValueError):
        return None
    keys = [HUB_CONFIG_KEY, "docker.io", "index.docker.io"] if domain == reference.DEFAULT_DOMAIN else [domain]
    for k, entry in auths.items():
        bare = re.sub(r"^https?://", "", k).split("/")[0]
        if (k in keys or bare in keys) and isinstance(entry, dict):
            if entry.get("auth"):
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
                return {"username": user, "password": password}
            if entry.get("identitytoken"):
                return {"identitytoken": entry["identitytoken"]}
    return None


def _parse_challenge(header: str) -> tuple[str, dict]:
    """``Bearer realm="...",service="..."`` -> ("bearer", {realm, service, ...})."""
    scheme, _, rest = header.strip().partition(" ")
    return scheme.lower(), {k.lower(): v for k, v in re.findall(r'(\w+)="([^"]*)"', rest)}


def _registry_error(body: bytes) -> str:
    """The first spec error of a response body as ``code: message``, or ''."""
    try:
        e = json.loads(body)["errors"][0]
        return f"{str(e.get('code', '')).lower()}: {e.get('message', '')}"
    except (ValueError, KeyError, IndexError, TypeError):
        return ""


class _Response:
    def __init__(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse):
        self.conn, self.raw = conn, resp
        self.status, self.headers = resp.status, resp.headers

    def read(self, limit: int) -> bytes:
        """The whole body, refusing more than ``limit`` bytes."""
        try:
            data = self.raw.read(limit + 1)
        finally:
            self.close()
        if len(data) > limit:
            raise InvalidArgument(f"registry response is larger than the {limit} bytes allowed")
        return data

    def close(self) -> None:
        self.conn.close()


class Registry:
    """One registry and repository, with its auth state. Thread safe (no shared connections)."""

    def __init__(self, ref: reference.Reference, auth: dict | None = None, insecure=()):
        self.ref = ref
        self.host = HUB_HOST if ref.domain == reference.DEFAULT_DOMAIN else ref.domain
        self.loose = _is_loopback(self.host) or ref.domain in set(insecure) or self.host in set(insecure)
        self.scheme: str | None = None  # decided on first contact
        self.auth = auth if auth else docker_config_auth(ref.domain)
        self._tokens: dict[str, str] = {}  # scope -> bearer token
        self._basic = False  # the registry asked for Basic credentials
        self._lock = threading.Lock()

    # -- HTTP plumbing ----------------------------------------------------------------------------

    def _open(self, scheme: str, host: str, method: str, target: str, headers: dict, body=None) -> _Response:
        if scheme == "https":
            ctx = ssl.create_default_context()
            if self.loose and host == self.host:
                ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
            conn = http.client.HTTPSConnection(host, timeout=TIMEOUT, context=ctx)
        else:
            conn = http.client.HTTPConnection(host, timeout=TIMEOUT)
        try:
            conn.request(method, target, body=body, headers=headers)
            return _Response(conn, conn.getresponse())
        except BaseException:
            conn.close()
            raise

    def _fetch(self, method: str, url: str, headers: dict, body=None, max_redirects: int = 5) -> _Response:
        """A request to an absolute URL, following redirects (blob downloads often go to a CDN)."""
        for _ in range(max_redirects + 1):
            u = urllib.parse.urlsplit(url)
            target = (u.path or "/") + (f"?{u.query}" if u.query else "")
            try:
                resp = self._open(u.scheme, u.netloc, method, target, headers, body)
            except (OSError, http.client.HTTPException) as e:
                raise Unavailable(f"cannot reach registry {u.netloc}: {e}") from e
            if resp.status in (301, 302, 303, 307, 308) and resp.headers.get("Location"):
                resp.close()
                nxt = urllib.parse.urljoin(url, resp.headers["Location"])
                if u.scheme == "https" and not nxt.startswith("https://") and not self.loose:
                    raise Unavailable(f"registry {u.netloc} redirected to plain HTTP ({nxt}): refusing it")
                if urllib.parse.urlsplit(nxt).netloc != u.netloc:
                    headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
                url = nxt
                continue
            return resp
        raise Unavailable(f"too many redirects from {url}")

    def _base(self) -> str:
        """Scheme and host; for loopback/insecure registries HTTPS is tried first, then HTTP."""
        with self._lock:
            if self.scheme is None:
                self.scheme = "https"
                if self.loose:
                    try:
                        self._open("https", self.host, "GET", "/v2/", {}).close()
                    except (OSError, http.client.HTTPException):
                        self.scheme = "http"
            return f"{self.scheme}://{self.host}"

    def _auth_header(self, scope: str) -> dict:
        if self.auth and self.auth.get("registrytoken"):  # X-Registry-Auth may carry a bearer token
            return {"Authorization": f"Bearer {self.auth['registrytoken']}"}
        if scope in self._tokens:
            return {"Authorization": f"Bearer {self._tokens[scope]}"}
        return self._basic_header() if self._basic else {}

    def _basic_header(self) -> dict:
        if not self.auth or "username" not in self.auth:
            return {}
        cred = base64.b64encode(f"{self.auth['username']}:{self.auth.get('password', '')}".encode()).decode()
        return {"Authorization": f"Basic {cred}"}

    def _get_token(self, params: dict, scope: str) -> None:
        realm = params.get("realm")
        if not realm or urllib.parse.urlsplit(realm).scheme not in ("http", "https"):
            raise Forbidden(f"registry {self.host} sent an unusable token realm {realm!r}")
        query = [("scope", one) for one in scope.split(" ")]  # Docker sends one parameter per scope
        if params.get("service"):
            query.append(("service", params["service"]))
        if realm.startswith("http://") and self.auth and not self.loose:
            raise Forbidden(f"registry {self.host} wants credentials sent to {realm} over plain HTTP: refusing")
        if self.auth and self.auth.get("identitytoken"):  # OAuth2 refresh-token grant, as Docker does
            form = urllib.parse.urlencode({"grant_type": "refresh_token", "refresh_token": self.auth["identitytoken"],
                                           "service": params.get("service", ""), "scope": scope, "client_id": "dockyard"})
            resp = self._fetch("POST", realm, {"Content-Type": "application/x-www-form-urlencoded"}, form.encode())
        else:
            sep = "&" if "?" in realm else "?"
            resp = self._fetch("GET", realm + sep + urllib.parse.urlencode(query), self._basic_header())
        body = resp.read(TOKEN_MAX)
        if resp.status in (401, 403):
            raise Forbidden(f"registry {self.host} refused the credentials: {_registry_error(body) or resp.status}")
        if resp.status != 200:
            raise Unavailable(f"token service {realm} answered {resp.status}")
        try:
            doc = json.loads(body)
            token = doc.get("token") or doc.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise Unavailable(f"token service {realm} sent no token")
        self._tokens[scope] = token

    def request(self, method: str, path: str, scope: str, headers=None, body=None) -> _Response:
        """A request to this registry (``path`` absolute or from a Location header), answering one
        auth challenge. ``body`` may be a callable returning a fresh body, for the retry."""
        url = path if re.match(r"^https?://", path) else self._base() + path
        for attempt in range(2):
            h = {**(headers or {}), **self._auth_header(scope)}
            resp = self._fetch(method, url, h, body() if callable(body) else body)
            if resp.status != 401 or attempt:
                return resp
            scheme, params = _parse_challenge(resp.headers.get("WWW-Authenticate", ""))
            resp.close()
            if scheme == "bearer":
                self._get_token(params, scope)
            elif scheme == "basic" and self.auth and "username" in self.auth:
                self._basic = True
            else:
                return self._unauthorized(path)
        return resp

    def _unauthorized(self, path: str):
        what = "no credentials" if not self.auth else "the credentials were refused"
        raise Forbidden(f"registry {self.host} requires authentication for {path} ({what}); log in first")

    # -- operations -------------------------------------------------------------------------------

    def _check(self, resp: _Response, what: str) -> None:
        if 200 <= resp.status < 300:
            return
        msg = _registry_error(resp.read(1 << 16)) or f"HTTP {resp.status}"
        if resp.status in (401, 403):
            raise Forbidden(f"{what}: access denied by {self.host}: {msg}")
        if resp.status == 404:
            raise NotFound(f"{what}: not found: {msg}")
        if resp.status >= 500:
            raise Unavailable(f"{what}: registry {self.host} failed: {msg}")
        raise InvalidArgument(f"{what}: registry {self.host} refused: {msg}")

    def get_manifest(self, ref: str, scope: str) -> tuple[bytes, str, str]:
        """-> (bytes, media type, digest), verified against ``ref`` when it is a digest."""
        path = f"/v2/{self.ref.path}/manifests/{ref}"
        resp = self.request("GET", path, scope, {"Accept": ACCEPT})
        if resp.status == 404:
            resp.close()
            raise NotFound(f"manifest for {self.ref.familiar_name}:{ref} not found: manifest unknown"
                           if ":" not in ref else f"manifest {ref} of {self.ref.familiar_name} not found")
        if resp.status in (401, 403):
            msg = _registry_error(resp.read(1 << 16)) or f"HTTP {resp.status}"
            raise Forbidden(f"pull access denied for {self.ref.familiar_name}, repository does not exist or "
                            f"may require 'docker login': {msg}")
        self._check(resp, f"manifest {ref}")
        length = resp.headers.get("Content-Length")
        if length and length.isdigit() and int(length) > MANIFEST_MAX:
            resp.close()
            raise InvalidArgument(f"manifest {ref} from {self.host} is {length} bytes, more than the {MANIFEST_MAX} allowed")
        try:
            data = resp.read(MANIFEST_MAX)
        except InvalidArgument:
            raise InvalidArgument(f"manifest {ref} from {self.host} is larger than the {MANIFEST_MAX} bytes allowed") from None
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        claimed = ref if ":" in ref else resp.headers.get("Docker-Content-Digest")
        if claimed and claimed.startswith("sha256:") and claimed != digest:
            raise InvalidArgument(f"manifest {ref} from {self.host} has digest {digest}, not {claimed}: refusing it")
        try:
            doc = json.loads(data)
        except ValueError as e:
            raise InvalidArgument(f"manifest {ref} from {self.host} is not JSON: {e}") from None
        if not isinstance(doc, dict):
            raise InvalidArgument(f"manifest {ref} from {self.host} is not a JSON object")
        media_type = doc.get("mediaType") or resp.headers.get("Content-Type", "").split(";")[0]
        return data, media_type, digest

    def download(self, desc: dict, dest, scope: str, on_bytes=None) -> None:
        """Stream a blob into the open file ``dest``, refusing any byte beyond its size and any digest
        other than its own. A connection lost midway resumes with a Range request, as Docker does."""
        digest, size = desc["digest"], desc["size"]
        h, n = hashlib.sha256(), 0
        for _ in range(RESUMES + 1):
            resp = self.request("GET", f"/v2/{self.ref.path}/blobs/{digest}", scope, {"Range": f"bytes={n}-"} if n else {})
            self._check(resp, f"blob {digest}")
            if n and not (resp.status == 206 and resp.headers.get("Content-Range", "").startswith(f"bytes {n}-")):
                dest.seek(0)  # the registry ignored the Range: start over
                dest.truncate()
                h, n = hashlib.sha256(), 0
            error = None
            try:
                while chunk := resp.raw.read(min(CHUNK, size - n + 1)):  # a short body just ends early
                    n += len(chunk)
                    if n > size:
                        raise InvalidArgument(f"blob {digest} from {self.host} is larger than its size {size}: refusing it")
                    h.update(chunk)
                    dest.write(chunk)
                    if on_bytes:
                        on_bytes(n)
            except (OSError, http.client.HTTPException) as e:
                error = e
            finally:
                resp.close()
            if n == size:
                break
        if error is not None:
            raise Unavailable(f"download of blob {digest} from {self.host} failed: {error}") from error
        if n != size:
            raise InvalidArgument(f"blob {digest} from {self.host} is truncated: got {n} of {size} bytes")
        if "sha256:" + h.hexdigest() != digest:
            raise InvalidArgument(f"blob {digest} from {self.host} has digest sha256:{h.hexdigest()}: refusing it")


def _check_desc(desc, what: str, limit: int | None = None) -> dict:
    """A manifest descriptor as far as we rely on it: a sha256 digest and a sane size."""
    if not isinstance(desc, dict) or not isinstance(desc.get("size"), int) or desc["size"] < 0:
        raise InvalidArgument(f"invalid {what} descriptor in manifest: {desc!r:.200}")
    try:
        check_digest(desc.get("digest"))
    except InvalidArgument as e:
        raise InvalidArgument(f"invalid {what} descriptor in manifest: {e}") from None
    if limit is not None and desc["size"] > limit:
        raise InvalidArgument(f"{what} {desc['digest']} is {desc['size']} bytes, more than the {limit} allowed")
    return desc


def _host_platform() -> dict:
    return {"os": "linux", "architecture": GOARCH.get(platform_mod.machine(), platform_mod.machine())}


def _parse_platform(s: str | None) -> dict:
    if not s:
        return _host_platform()
    parts = s.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise InvalidArgument(f"invalid platform {s!r}: want os/arch[/variant]")
    p = {"os": parts[0], "architecture": parts[1]}
    if len(parts) == 3:
        p["variant"] = parts[2]
    return p


def select_platform(index: dict, want: dict) -> dict:
    """The descriptor of ``index`` matching ``want`` (os, architecture, variant if asked)."""
    manifests = index.get("manifests")
    if not isinstance(manifests, list):
        raise InvalidArgument("invalid index: no manifests list")
    for d in manifests:
        p = (d or {}).get("platform") or {}
        if p.get("os") == want["os"] and p.get("architecture") == want["architecture"] \
                and ("variant" not in want or p.get("variant") == want["variant"]):
            return _check_desc(d, "manifest", MANIFEST_MAX)
    name = "/".join(want[k] for k in ("os", "architecture", "variant") if k in want)
    raise NotFound(f"no matching manifest for {name} in the manifest list entries")


class _Progress:
    """Serialises progress callbacks from the transfer threads; no-op without a callback."""

    def __init__(self, cb):
        self.cb, self.lock = cb, threading.Lock()

    def __call__(self, status: str, id: str | None = None, current=None, total=None, **extra):
        if not self.cb:
            return
        msg = {"status": status}
        if id:
            msg["id"] = id
        if current is not None:
            msg["progressDetail"] = {"current": current, "total": total}
        elif id:
            msg["progressDetail"] = {}
        msg.update(extra)
        with self.lock:
            self.cb(msg)

    def bytes_cb(self, status: str, id: str, total: int):
        last = [-PROGRESS_STEP]

        def on_bytes(n):
            if n - last[0] >= PROGRESS_STEP or n == total:
                last[0] = n
                self(status, id, n, total)
        return on_bytes


def pull(ref: str, store, platform: str | None = None, progress=None, auth: dict | None = None, insecure=()):
    """Pull ``ref`` into ``store``; returns the Image. Tags it unless pulled by digest."""
    r = reference.parse_docker_ref(ref)
    want = _parse_platform(platform)
    reg = Registry(r, auth, insecure)
    scope = f"repository:{r.path}:pull"
    say = _Progress(progress)
    say(f"Pulling from {r.path if r.domain != reference.DEFAULT_DOMAIN else r.familiar_name}", r.tag or r.digest)
    data, media_type, digest = reg.get_manifest(r.digest or r.tag, scope)
    top_digest = digest
    doc = json.loads(data)
    if media_type in (MT_OCI_INDEX, MT_DOCKER_LIST) or "manifests" in doc:
        desc = select_platform(doc, want)
        data, media_type, digest = reg.get_manifest(desc["digest"], scope)
        doc = json.loads(data)
    if media_type not in (MT_OCI_MANIFEST, MT_DOCKER_MANIFEST) and "config" not in doc:
        raise InvalidArgument(f"{r.familiar()}: unsupported manifest type {media_type!r}")
    config_desc = _check_desc(doc.get("config"), "config", CONFIG_MAX)
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise InvalidArgument(f"{r.familiar()}: manifest {digest} has no layers list")
    layers = [_check_desc(l, "layer") for l in layers]
    tag = str(r) if r.tag and not r.digest else None

    with tempfile.TemporaryDirectory(dir=store.tmp, prefix="pull-") as work:
        with open(os.path.join(work, "config"), "w+b") as f:
            reg.download(config_desc, f, scope)
            f.seek(0)
            config = f.read()
        # The image is already here (same config): nothing to fetch, only maybe a tag to add.
        try:
            existing = store.resolve(config_desc["digest"])
        except DockyardError:
            existing = None
        files: dict[str, str] = {}

        abort = threading.Event()  # set when one transfer fails: the others stop at their next chunk

        def fetch(i: int, desc: dict) -> None:
            short = desc["digest"][7:19]
            path = os.path.join(work, f"layer-{i}")
            report = say.bytes_cb("Downloading", short, desc["size"])

            def on_bytes(n):
                if abort.is_set():
                    raise Unavailable("pull aborted")
                report(n)
            with open(path, "wb") as f:
                reg.download(desc, f, scope, on_bytes)
                f.flush()
                os.fsync(f.fileno())
            say("Verifying Checksum", short)
            say("Download complete", short)
            files[desc["digest"]] = path

        todo: dict[str, tuple[int, dict]] = {}  # digest -> (index, descriptor): each blob once
        for i, desc in enumerate(layers):
            if existing is None and not store.content.has(desc["digest"]) and desc["digest"] not in todo:
                say("Pulling fs layer", desc["digest"][7:19])
                todo[desc["digest"]] = (i, desc)
            else:
                say("Already exists", desc["digest"][7:19])
        with concurrent.futures.ThreadPoolExecutor(CONCURRENCY) as pool:
            futures = [pool.submit(fetch, *args) for args in todo.values()]
            try:
                for fut in concurrent.futures.as_completed(futures):
                    fut.result()
            except BaseException:
                abort.set()
                for fut in futures:
                    fut.cancel()
                raise
        image = store.add_pulled(data, config, files, tag)
        # RepoDigests: Docker records the digest it pulled by (an index's, for a multi-platform image).
        store.add_repo_digest(image.id, f"{r.name}@{top_digest}")
        image = store.resolve(image.id)
        for digest in todo:
            say("Pull complete", digest[7:19])
    say(f"Digest: {top_digest}")
    name = r.familiar() if tag else f"{r.familiar_name}@{top_digest}"
    fresh = existing is None or r.familiar() not in existing.repo_tags
    say(f"Status: {'Downloaded newer image' if fresh else 'Image is up to date'} for {name}")
    return image


class _ReadProgress:
    """A file wrapper for http.client's body upload that reports how much was sent."""

    def __init__(self, f, on_bytes):
        self.f, self.on_bytes, self.n = f, on_bytes, 0

    def read(self, n=-1):
        chunk = self.f.read(n)
        self.n += len(chunk)
        if chunk and self.on_bytes:
            self.on_bytes(self.n)
        return chunk


def push(ref: str, store, progress=None, auth: dict | None = None, insecure=()) -> str:
    """Push the local image ``ref`` to its registry; returns the manifest digest."""
    r = reference.parse_docker_ref(ref)
    if r.digest:
        raise InvalidArgument(f"cannot push a digest reference {ref!r}: push a tag")
    image = store.resolve(str(r))
    if not image.manifest_digest:
        raise Internal(f"image {image.id[:19]} has no manifest")
    manifest = store.content.read(image.manifest_digest)  # verified against its digest
    doc = json.loads(manifest)
    media_type = doc.get("mediaType") or MT_OCI_MANIFEST
    reg = Registry(r, auth, insecure)
    scope = f"repository:{r.path}:pull,push"
    say = _Progress(progress)
    say(f"The push refers to repository [{r.name if r.domain != reference.DEFAULT_DOMAIN else r.familiar_name}]")
    layers = [_check_desc(l, "layer") for l in doc.get("layers") or []]
    config_desc = _check_desc(doc.get("config"), "config")

    sources = []
    for t in image.repo_tags:
        other = reference.parse_docker_ref(t)
        if other.domain == r.domain and other.path != r.path and other.path not in sources:
            sources.append(other.path)

    def upload(desc: dict, show: bool) -> None:
        digest, short = desc["digest"], desc["digest"][7:19]
        blob_path = f"/v2/{r.path}/blobs/{digest}"
        head = reg.request("HEAD", blob_path, scope)
        head.close()
        if head.status == 200:
            if show:
                say("Layer already exists", short)
            return
        if show:
            say("Preparing", short)
        query, post_scope = "", scope
        if sources:  # the same image is tagged in another repository of this registry: try a mount
            query = "?" + urllib.parse.urlencode({"mount": digest, "from": sources[0]})
            post_scope = f"{scope} repository:{sources[0]}:pull"
        resp = reg.request("POST", f"/v2/{r.path}/blobs/uploads/{query}", post_scope, {"Content-Length": "0"}, b"")
        location = resp.headers.get("Location")
        reg._check(resp, f"upload of {digest}")
        resp.close()
        if resp.status == 201 and sources:
            if show:
                say(f"Mounted from {sources[0]}", short)
            return
        if resp.status != 202 or not location:
            raise Unavailable(f"registry {reg.host} did not start an upload for {digest}")
        url = urllib.parse.urljoin(reg._base() + f"/v2/{r.path}/blobs/uploads/", location)
        url += ("&" if "?" in url else "?") + urllib.parse.urlencode({"digest": digest})
        on_bytes = say.bytes_cb("Pushing", short, desc["size"]) if show else None
        with store.content.open(digest) as f:
            def body():
                f.seek(0)
                return _ReadProgress(f, on_bytes)
            resp = reg.request("PUT", url, scope, {"Content-Type": "application/octet-stream",
                                                   "Content-Length": str(desc["size"])}, body)
            reg._check(resp, f"upload of {digest}")
            resp.close()
        if show:
            say("Pushed", short)

    with concurrent.futures.ThreadPoolExecutor(CONCURRENCY) as pool:
        jobs = [pool.submit(upload, d, True) for d in layers] + [pool.submit(upload, config_desc, False)]
        for fut in concurrent.futures.as_completed(jobs):
            fut.result()
    resp = reg.request("PUT", f"/v2/{r.path}/manifests/{r.tag}", scope, {"Content-Type": media_type}, manifest)
    reg._check(resp, f"manifest {r.tag}")
    got = resp.headers.get("Docker-Content-Digest")
    resp.close()
    if got and got != image.manifest_digest:
        raise InvalidArgument(f"registry {reg.host} stored the manifest as {got}, not {image.manifest_digest}")
    store.add_repo_digest(image.id, f"{r.name}@{image.manifest_digest}")
    say(f"{r.tag}: digest: {image.manifest_digest} size: {len(manifest)}",
        aux={"Tag": r.tag, "Digest": image.manifest_digest, "Size": len(manifest)})
    return image.manifest_digest
