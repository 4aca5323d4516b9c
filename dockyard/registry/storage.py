"""Registry storage: content-addressed blobs shared by every repository, plus per-repository links.

Layout under ``root``::

    blobs/sha256/<hex>                       every blob and manifest, once (dockyard.images.content)
    uploads/<uuid>/{data,repo}               in-flight uploads; ``data`` grows with each PATCH
    repos/<name>/_layers/<hex>               empty: the blob is part of this repository
    repos/<name>/_manifests/<hex>            the manifest's media type: it is in this repository
    repos/<name>/_tags/<tag>                 the manifest digest the tag points at
    repos/<name>/_referrers/<subject>/<hex>  empty: manifest <hex> names <subject> as its subject
    lock                                     flock: writers share it, the garbage collector excludes

Commit points: a blob exists when renamed into blobs/ (verified first); it belongs to a repository
when its link exists; a tag moves when its file is renamed over. Every link is created after what it
points at, so a crash leaves at worst an unlinked blob, which GC collects.

GC is mark and sweep: the marks are every manifest linked in any repository, what those manifests
name, and every blob younger than ``grace`` seconds (an upload that finished but whose manifest is
not pushed yet). Writers that link blobs hold the lock shared, GC holds it exclusive, so a manifest
checked against existing blobs can never lose one to a concurrent sweep.

Repository names and tags are validated by the caller (server) against the spec's grammar before
they are joined into paths: names are ``[a-z0-9]+`` components with separators, never ``..``.
"""

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
import uuid as uuidlib

from dockyard.images.content import CHUNK, ContentStore, check_digest, fsync_dir

NAME_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
UUID_RE = re.compile(r"^[a-f0-9-]{36}$")
MANIFEST_MAX = 4 << 20
UPLOAD_MAX_AGE = 24 * 3600

MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
INDEX_TYPES = (MT_OCI_INDEX, MT_DOCKER_LIST)
MANIFEST_TYPES = (MT_OCI_MANIFEST, MT_DOCKER_MANIFEST, *INDEX_TYPES)


class RegistryError(Exception):
    """A spec error: ``code`` is one of the Distribution Spec's error codes, ``status`` its HTTP status."""

    def __init__(self, code: str, message: str, status: int = 400, detail=None, headers: dict | None = None):
        super().__init__(message)
        self.code, self.status, self.detail, self.headers = code, status, detail, headers or {}


def _write_atomic(path: str, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except (FileNotFoundError, NotADirectoryError):
        return None


def _digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _names_in(manifest: dict) -> tuple[list[str], list[str]]:
    """(blob digests, child manifest digests) a manifest or index refers to."""
    def digests(descs):
        return [d["digest"] for d in descs if isinstance(d, dict) and isinstance(d.get("digest"), str)]

    blobs, children = [], []
    if isinstance(manifest.get("manifests"), list):
        children += digests(manifest["manifests"])
    if isinstance(manifest.get("config"), dict):
        blobs += digests([manifest["config"]])
    if isinstance(manifest.get("layers"), list):
        blobs += digests(manifest["layers"])
    if isinstance(manifest.get("blobs"), list):  # OCI artifact manifests of the 1.1 drafts
        blobs += digests(manifest["blobs"])
    return blobs, children


class RegistryStorage:
    def __init__(self, root: str, grace: float = 3600.0):
        self.root = os.path.abspath(root)
        self.content = ContentStore(self.root)
        self.uploads = os.path.join(self.root, "uploads")
        self.repos = os.path.join(self.root, "repos")
        self.grace = grace
        for d in (self.uploads, self.repos):
            os.makedirs(d, exist_ok=True)
        self._lock_path = os.path.join(self.root, "lock")

    @contextlib.contextmanager
    def _locked(self, exclusive: bool = False):
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)  # closing drops the flock

    def _repo(self, name: str, *parts: str) -> str:
        return os.path.join(self.repos, name, *parts)

    # -- blobs --------------------------------------------------------------------------------

    def blob_path(self, name: str, digest: str) -> str:
        """Path of a blob of repository ``name``; BLOB_UNKNOWN unless it is linked there."""
        hexd = self._check_digest(digest)
        path = self.content.path(digest)
        if not os.path.exists(self._repo(name, "_layers", hexd)) or not os.path.exists(path):
            raise RegistryError("BLOB_UNKNOWN", f"blob {digest} is not in repository {name}", 404, {"digest": digest})
        return path

    def _check_digest(self, digest: str) -> str:
        try:
            return check_digest(digest)
        except Exception:
            raise RegistryError("DIGEST_INVALID", f"invalid digest {digest!r}: want sha256:<64 hex>", 400) from None

    def _link_blob(self, name: str, digest: str) -> None:
        d = self._repo(name, "_layers")
        os.makedirs(d, exist_ok=True)
        open(os.path.join(d, digest[7:]), "a").close()

    def touch(self, name: str, digest: str) -> str:
        """A client saw the blob (HEAD) and may reference it soon: restart its grace period, under
        the lock so that a running GC either already deleted it (BLOB_UNKNOWN) or will keep it."""
        with self._locked():
            path = self.blob_path(name, digest)
            os.utime(path)
            return path

    def mount(self, name: str, digest: str, source: str) -> bool:
        """Cross-repository mount: link a blob of ``source`` into ``name``; False if ``source`` lacks it."""
        self._check_digest(digest)
        with self._locked():
            try:
                self.blob_path(source, digest)
            except RegistryError:
                return False
            self._link_blob(name, digest)
            os.utime(self.content.path(digest))  # a fresh link gets the grace period too
            return True

    def delete_blob(self, name: str, digest: str) -> None:
        """Unlink a blob from a repository; GC frees the bytes when nothing else needs them."""
        self.blob_path(name, digest)
        os.unlink(self._repo(name, "_layers", digest[7:]))

    # -- uploads ------------------------------------------------------------------------------

    def start_upload(self, name: str) -> str:
        u = str(uuidlib.uuid4())
        d = os.path.join(self.uploads, u)
        os.makedirs(d)
        open(os.path.join(d, "data"), "wb").close()
        _write_atomic(os.path.join(d, "repo"), name.encode())
        return u

    def upload_path(self, name: str, u: str) -> str:
        """The data file of upload ``u`` of repository ``name``; BLOB_UPLOAD_UNKNOWN if there is none."""
        if not UUID_RE.match(u) or _read(os.path.join(self.uploads, u, "repo")) != name:
            raise RegistryError("BLOB_UPLOAD_UNKNOWN", f"upload {u} is unknown to repository {name}", 404)
        return os.path.join(self.uploads, u, "data")

    def upload_size(self, name: str, u: str) -> int:
        return os.stat(self.upload_path(name, u)).st_size

    def cancel_upload(self, name: str, u: str) -> None:
        self.upload_path(name, u)
        shutil.rmtree(os.path.join(self.uploads, u), ignore_errors=True)

    def finish_upload(self, name: str, u: str, digest: str) -> None:
        """Verify the upload against ``digest``, commit the blob and link it (blocking: hashes)."""
        self._check_digest(digest)
        data = self.upload_path(name, u)
        h = hashlib.sha256()
        with open(data, "rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
            os.fsync(f.fileno())
        if "sha256:" + h.hexdigest() != digest:
            shutil.rmtree(os.path.join(self.uploads, u), ignore_errors=True)  # the spec: upload is over
            raise RegistryError("DIGEST_INVALID", f"uploaded content has digest sha256:{h.hexdigest()}, not {digest}", 400)
        with self._locked():
            self.content.commit(data, digest)
            os.utime(self.content.path(digest))  # start the grace period now, for a re-upload too
            self._link_blob(name, digest)
        shutil.rmtree(os.path.join(self.uploads, u), ignore_errors=True)

    # -- manifests and tags -------------------------------------------------------------------

    def _check_tag(self, tag: str) -> None:
        if not TAG_RE.match(tag):
            raise RegistryError("MANIFEST_INVALID", f"invalid tag {tag!r}", 400)

    def resolve(self, name: str, ref: str) -> str:
        """A tag or digest of repository ``name`` -> manifest digest; MANIFEST_UNKNOWN if absent."""
        if ":" in ref:
            hexd = self._check_digest(ref)
            if os.path.exists(self._repo(name, "_manifests", hexd)):
                return ref
        else:
            self._check_tag(ref)
            digest = _read(self._repo(name, "_tags", ref))
            if digest:
                return digest
        if not os.path.isdir(self._repo(name)):
            raise RegistryError("NAME_UNKNOWN", f"repository {name} is not known to this registry", 404)
        raise RegistryError("MANIFEST_UNKNOWN", f"manifest {ref} is not in repository {name}", 404, {"reference": ref})

    def get_manifest(self, name: str, ref: str) -> tuple[str, str, str]:
        """-> (digest, media type, path of the bytes)."""
        digest = self.resolve(name, ref)
        media_type = _read(self._repo(name, "_manifests", digest[7:])) or MT_OCI_MANIFEST
        return digest, media_type, self.content.path(digest)

    def put_manifest(self, name: str, ref: str, data: bytes, content_type: str) -> tuple[str, str | None]:
        """Store a manifest under a tag or its digest. -> (digest, subject digest or None)."""
        if len(data) > MANIFEST_MAX:
            raise RegistryError("SIZE_INVALID", f"manifest is larger than {MANIFEST_MAX} bytes", 413)
        digest = _digest_of(data)
        if ":" in ref:
            self._check_digest(ref)
            if ref != digest:
                raise RegistryError("DIGEST_INVALID", f"manifest has digest {digest}, not {ref}", 400)
        else:
            self._check_tag(ref)
        try:
            manifest = json.loads(data)
            if not isinstance(manifest, dict) or manifest.get("schemaVersion") != 2:
                raise ValueError("schemaVersion must be 2")
        except ValueError as e:
            raise RegistryError("MANIFEST_INVALID", f"invalid manifest: {e}", 400) from None
        media_type = manifest.get("mediaType") or content_type.split(";")[0].strip()
        if media_type not in MANIFEST_TYPES:
            media_type = MT_OCI_INDEX if "manifests" in manifest else MT_OCI_MANIFEST
        if "mediaType" in manifest and content_type and content_type.split(";")[0].strip() not in (media_type, ""):
            raise RegistryError("MANIFEST_INVALID", f"Content-Type {content_type} differs from the manifest's mediaType {media_type}", 400)
        blobs, children = _names_in(manifest)
        if media_type in INDEX_TYPES and not isinstance(manifest.get("manifests"), list):
            raise RegistryError("MANIFEST_INVALID", "an index must have a manifests list", 400)
        if media_type not in INDEX_TYPES and not isinstance(manifest.get("config"), dict):
            raise RegistryError("MANIFEST_INVALID", "an image manifest must have a config descriptor", 400)
        subject = manifest.get("subject", {}).get("digest") if isinstance(manifest.get("subject"), dict) else None
        with self._locked():
            for b in blobs:
                if not re.match(r"^sha256:[a-f0-9]{64}$", b) or not os.path.exists(self._repo(name, "_layers", b[7:])) \
                        or not self.content.has(b):
                    raise RegistryError("MANIFEST_BLOB_UNKNOWN", f"blob {b} named by the manifest is not in repository {name}",
                                        400, {"digest": b})
            for c in children:
                if not re.match(r"^sha256:[a-f0-9]{64}$", c) or not os.path.exists(self._repo(name, "_manifests", c[7:])):
                    raise RegistryError("MANIFEST_BLOB_UNKNOWN", f"manifest {c} named by the index is not in repository {name}",
                                        400, {"digest": c})
            self.content.write(data, digest)
            mdir = self._repo(name, "_manifests")
            os.makedirs(mdir, exist_ok=True)
            _write_atomic(os.path.join(mdir, digest[7:]), media_type.encode())
            if subject and re.match(r"^sha256:[a-f0-9]{64}$", subject):
                rdir = self._repo(name, "_referrers", subject[7:])
                os.makedirs(rdir, exist_ok=True)
                open(os.path.join(rdir, digest[7:]), "a").close()
            if ":" not in ref:
                tdir = self._repo(name, "_tags")
                os.makedirs(tdir, exist_ok=True)
                _write_atomic(os.path.join(tdir, ref), digest.encode())  # the commit point of a tag
        return digest, subject

    def delete_manifest(self, name: str, ref: str) -> None:
        """By digest: the manifest and every tag pointing at it; by tag: only the tag."""
        digest = self.resolve(name, ref)
        tdir = self._repo(name, "_tags")
        if ":" not in ref:
            os.unlink(os.path.join(tdir, ref))
            return
        for t in os.listdir(tdir) if os.path.isdir(tdir) else ():
            if _read(os.path.join(tdir, t)) == digest:
                os.unlink(os.path.join(tdir, t))
        os.unlink(self._repo(name, "_manifests", digest[7:]))
        rroot = self._repo(name, "_referrers")
        for subject in os.listdir(rroot) if os.path.isdir(rroot) else ():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(rroot, subject, digest[7:]))

    def tags(self, name: str) -> list[str]:
        tdir = self._repo(name, "_tags")
        if not os.path.isdir(self._repo(name)):
            raise RegistryError("NAME_UNKNOWN", f"repository {name} is not known to this registry", 404)
        return sorted(t for t in os.listdir(tdir) if TAG_RE.match(t)) if os.path.isdir(tdir) else []

    def catalog(self) -> list[str]:
        """Repositories with at least one manifest."""
        out = []
        for dirpath, dirnames, _ in os.walk(self.repos):
            if "_manifests" in dirnames and os.listdir(os.path.join(dirpath, "_manifests")):
                out.append(os.path.relpath(dirpath, self.repos))
            dirnames[:] = [d for d in dirnames if not d.startswith("_")]
        return sorted(out)

    def referrers(self, name: str, digest: str, artifact_type: str | None = None) -> list[dict]:
        """Descriptors of the manifests whose subject is ``digest`` (the OCI 1.1 referrers API)."""
        hexd = self._check_digest(digest)
        rdir = self._repo(name, "_referrers", hexd)
        out = []
        for h in sorted(os.listdir(rdir)) if os.path.isdir(rdir) else ():
            mt = _read(self._repo(name, "_manifests", h))
            if mt is None:
                continue
            try:
                data = self.content.read("sha256:" + h)
                m = json.loads(data)
            except Exception:
                continue
            at = m.get("artifactType") or (m.get("config") or {}).get("mediaType")
            if artifact_type and at != artifact_type:
                continue
            d = {"mediaType": mt, "digest": "sha256:" + h, "size": len(data)}
            if at:
                d["artifactType"] = at
            if m.get("annotations"):
                d["annotations"] = m["annotations"]
            out.append(d)
        return out

    # -- garbage collection -------------------------------------------------------------------

    def gc(self, dry_run: bool = False) -> list[str]:
        """Delete blobs no repository's manifest needs and older than the grace period; -> digests."""
        with self._locked(exclusive=True):
            live: set[str] = set()
            for dirpath, dirnames, _ in os.walk(self.repos):
                if os.path.basename(dirpath) == "_manifests":
                    for h in os.listdir(dirpath):
                        digest = "sha256:" + h
                        live.add(digest)
                        try:
                            blobs, children = _names_in(json.loads(self.content.read(digest)))
                        except Exception:
                            continue  # a corrupt manifest keeps nothing alive but itself
                        live.update(blobs + children)
                dirnames[:] = [d for d in dirnames if d != "_layers"]
            now, dead = time.time(), []
            for digest in self.content.list():
                if digest in live:
                    continue
                try:
                    if now - os.stat(self.content.path(digest)).st_mtime < self.grace:
                        continue
                except FileNotFoundError:
                    continue
                dead.append(digest)
                if not dry_run:
                    self.content.delete(digest)
            if not dry_run:
                self._unlink_dead(set(dead))
                fsync_dir(self.content.blob_dir)
                for u in os.listdir(self.uploads):  # uploads abandoned for a day
                    data = os.path.join(self.uploads, u, "data")
                    with contextlib.suppress(FileNotFoundError):
                        if now - os.stat(data).st_mtime > UPLOAD_MAX_AGE:
                            shutil.rmtree(os.path.join(self.uploads, u), ignore_errors=True)
            return dead

    def _unlink_dead(self, dead: set[str]) -> None:
        """Drop repository links to deleted blobs, so HEAD stops answering for them."""
        for dirpath, dirnames, filenames in os.walk(self.repos):
            if os.path.basename(dirpath) == "_layers":
                for h in filenames:
                    if "sha256:" + h in dead:
                        os.unlink(os.path.join(dirpath, h))
