"""ImageStore: image metadata and tags in SQLite over the content store, plus overlay snapshots.

Commit points (a crash before one leaves nothing, after it the new state):
  * blob      - renamed into blobs/sha256/ (content.py)
  * snapshot  - its tmp dir renamed to snapshots/<n> and its row committed, in one write transaction
  * image     - its row, layer rows and tags committed in one transaction, after all its blobs and
                snapshots exist; so a load never leaves a half image, and tags appear last
  * rootfs    - the ``active`` row; the upper/work dirs are (re)made after it
On open, leftovers are swept: tmp/*, snapshot dirs without a row, active dirs without a row, and
snapshots no image or rootfs references. Snapshot refcounts are not counters that a crash could skew:
they are derived (rows of image_layers + chains of active rootfs) when garbage is collected.

Mutations that create or collect unreferenced things (load, import, delete, prune) hold an exclusive
flock on ``<root>/lock`` (and a thread lock), so a collector never sees a load's not-yet-committed
snapshots as garbage. ``prepare_rootfs``/``remove_rootfs`` do not wait for it: they only add or drop
references, and collection after remove_rootfs is skipped when a load holds the lock.
"""

from __future__ import annotations  # ImageStore.list shadows the builtin in annotations

import contextlib
import ctypes
import datetime
import fcntl
import gzip
import hashlib
import io
import json
import os
import platform
import posixpath
import re
import shutil
import sqlite3
import stat
import tarfile
import tempfile
import threading
import time
import zlib

from dockyard.errdefs import Conflict, FailedPrecondition, InvalidArgument, NotFound
from dockyard.images import Image, Mount
from dockyard.images import archive, reference
from dockyard.images.changes import apply_changes
from dockyard.images.content import ContentStore, DigestMismatch, check_digest, fsync_dir

MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
ANN_REF_NAME = "org.opencontainers.image.ref.name"
ANN_CONTAINERD_NAME = "io.containerd.image.name"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "ppc64le": "ppc64le", "s390x": "s390x"}
MOUNT_DATA_MAX = 4000  # the kernel copies at most one page of mount options

_SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY,              -- sha256:<config digest>
    manifest_digest TEXT,
    parent TEXT NOT NULL DEFAULT '',
    added REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS image_layers (
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    chain_id TEXT NOT NULL,
    blob TEXT NOT NULL,               -- digest of the layer as stored (compressed or not)
    media_type TEXT NOT NULL,
    PRIMARY KEY (image_id, idx)
);
CREATE TABLE IF NOT EXISTS snapshots (
    chain_id TEXT PRIMARY KEY,
    n INTEGER NOT NULL UNIQUE,        -- directory snapshots/<n>: short names keep lowerdir small
    diff_id TEXT NOT NULL,
    size INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tags (
    name TEXT PRIMARY KEY,            -- docker.io/library/busybox:latest
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS repo_digests (
    name TEXT PRIMARY KEY,            -- docker.io/library/busybox@sha256:<manifest digest>
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS active (
    key TEXT PRIMARY KEY,
    image_id TEXT NOT NULL,           -- no FK: rmi -f may remove the image of a live rootfs
    chain TEXT NOT NULL               -- space-separated chain ids, bottom first: keeps snapshots alive
);
"""

_HEX_RE = re.compile(r"^[a-f0-9]{1,64}$")
_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class _Busy(Exception):
    pass


def chain_ids(diff_ids: list[str]) -> list[str]:
    """OCI ChainID: chain[0] = diff[0]; chain[i] = sha256(chain[i-1] + " " + diff[i])."""
    out: list[str] = []
    for d in diff_ids:
        out.append(d if not out else "sha256:" + hashlib.sha256(f"{out[-1]} {d}".encode()).hexdigest())
    return out


def canonical_json(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(s: str | None) -> int:
    """RFC 3339 (with up to nanoseconds) -> Unix seconds; 0 when absent or unparsable."""
    if not s:
        return 0
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.\d+)?(Z|[+-]\d\d:\d\d)?$", s)
    if not m:
        return 0
    tz = m.group(2) or "Z"
    dt = datetime.datetime.fromisoformat(m.group(1) + ("+00:00" if tz == "Z" else tz))
    return int(dt.timestamp())


def _syncfs(path: str) -> None:
    """Flush an unpacked snapshot before committing it (a rename alone does not order the data)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        ctypes.CDLL(None).syncfs(fd)
    finally:
        os.close(fd)


def _rmtree(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _filter_layer(path: str, exclude: list[str]) -> tuple[str, int]:
    """Rewrite the layer tar at ``path`` without the entries at or below ``exclude`` (relative
    names). Returns (diff_id, entries kept). A second pass over the tar, paid only when something
    is excluded: cheaper than a second tar writer that could drift from ``archive``'s."""
    def excluded(name: str) -> bool:
        name = name.rstrip("/")
        return any(name == e or name.startswith(e + "/") for e in exclude)

    kept = 0
    with open(path + ".filtered", "wb") as out:
        try:
            w = archive.HashingWriter(out)
            with tarfile.open(path, "r:") as tin, \
                    tarfile.open(fileobj=w, mode="w|", format=tarfile.PAX_FORMAT) as tout:
                for m in tin:
                    if not excluded(m.name):
                        tout.addfile(m, tin.extractfile(m) if m.isreg() else None)
                        kept += 1
            out.flush()
            os.fsync(out.fileno())
        except BaseException:
            os.unlink(path + ".filtered")
            raise
    os.replace(path + ".filtered", path)
    return w.digest, kept


class ImageStore:
    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        if "," in self.root or ":" in self.root:  # they would split overlay's lowerdir option
            raise InvalidArgument(f"image store root {self.root!r} must not contain ',' or ':'")
        self.content = ContentStore(self.root)
        self.tmp = self.content.tmp_dir
        self.snapshots = os.path.join(self.root, "snapshots")
        self.active_dir = os.path.join(self.root, "active")
        self.empty = os.path.join(self.snapshots, "empty")  # lowerdir of a zero-layer image
        for d in (self.snapshots, self.active_dir, self.empty):
            os.makedirs(d, exist_ok=True)
        self._db_lock = threading.RLock()
        self._db = sqlite3.connect(os.path.join(self.root, "images.db"), timeout=60,
                                   isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)
        self._mutex = threading.RLock()
        self._depth = 0
        self._lock_fd = os.open(os.path.join(self.root, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._configs: dict[str, bytes] = {}  # verified config bytes; immutable by digest
        self._recover()

    def close(self) -> None:
        with self._db_lock:
            self._db.close()
        os.close(self._lock_fd)

    # -- plumbing ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _exclusive(self, blocking: bool = True):
        if not self._mutex.acquire(blocking=blocking):
            raise _Busy()
        try:
            if self._depth == 0:
                try:
                    fcntl.flock(self._lock_fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
                except BlockingIOError:
                    raise _Busy() from None
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0:
                    fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        finally:
            self._mutex.release()

    @contextlib.contextmanager
    def _tx(self):
        with self._db_lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                if self._db.in_transaction:  # some SQLite errors already rolled back
                    self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _q(self, sql: str, args=()) -> list[tuple]:
        with self._db_lock:
            return self._db.execute(sql, args).fetchall()

    def _recover(self) -> None:
        try:
            with self._exclusive(blocking=False):
                for name in os.listdir(self.tmp):
                    p = os.path.join(self.tmp, name)
                    _rmtree(p) if os.path.isdir(p) and not os.path.islink(p) else os.unlink(p)
                known = {str(n) for (n,) in self._q("SELECT n FROM snapshots")}
                for name in os.listdir(self.snapshots):
                    if name != "empty" and name not in known:
                        _rmtree(os.path.join(self.snapshots, name))
                with self._tx() as db:  # rows whose directory vanished are rebuilt from blobs on use
                    for (chain, n) in db.execute("SELECT chain_id, n FROM snapshots").fetchall():
                        if not os.path.isdir(os.path.join(self.snapshots, str(n), "fs")):
                            db.execute("DELETE FROM snapshots WHERE chain_id=?", (chain,))
                keys = {k for (k,) in self._q("SELECT key FROM active")}
                for name in os.listdir(self.active_dir):
                    if name not in keys:
                        _rmtree(os.path.join(self.active_dir, name))
                self._gc_snapshots()
        except _Busy:
            pass  # another process is mid-operation on this store; it owns the leftovers now

    # -- lookups ----------------------------------------------------------------------------

    def _by_prefix(self, hexp: str, ref: str) -> str | None:
        rows = self._q("SELECT id FROM images WHERE id >= ? AND id < ? ORDER BY id LIMIT 2",
                       (f"sha256:{hexp}", f"sha256:{hexp}g"))
        if len(rows) > 1:
            raise InvalidArgument(f"image ID prefix {ref!r} is ambiguous: it matches more than one image")
        return rows[0][0] if rows else None

    def _resolve(self, ref: str) -> tuple[str, str | None]:
        """(image id, fully qualified tag name when ref named a tag, else None)."""
        if not isinstance(ref, str) or not ref:
            raise InvalidArgument("image reference must not be empty")
        hexp = ref[len("sha256:"):] if ref.startswith("sha256:") else ref
        if ref.startswith("sha256:") or len(ref) == 64:
            if not _HEX_RE.match(hexp):
                raise InvalidArgument(f"invalid image ID {ref!r}")
            if image_id := self._by_prefix(hexp, ref):
                return image_id, None
            raise NotFound(f"No such image: {ref}")
        try:
            r = reference.parse(ref)
        except InvalidArgument:
            if _HEX_RE.match(ref) and (image_id := self._by_prefix(ref, ref)):
                return image_id, None
            raise
        if r.digest:
            rows = (self._q("SELECT image_id FROM repo_digests WHERE name=?", (str(r),))
                    or self._q("SELECT id FROM images WHERE manifest_digest=? OR id=?", (r.digest, r.digest)))
            if rows:
                return rows[0][0], None
            raise NotFound(f"No such image: {r.familiar()}")
        r = r.with_default_tag()
        rows = self._q("SELECT image_id FROM tags WHERE name=?", (str(r),))
        if rows:
            return rows[0][0], str(r)
        # Docker tries a name first, then a short ID: "abc123" may be either.
        if _HEX_RE.match(ref) and (image_id := self._by_prefix(ref, ref)):
            return image_id, None
        raise NotFound(f"No such image: {r.familiar()}")

    def _config_bytes(self, image_id: str) -> bytes:
        data = self._configs.get(image_id)
        if data is None:
            data = self.content.read(image_id)  # verified against its digest
            self._configs[image_id] = data
        return data

    def _image(self, image_id: str) -> Image:
        rows = self._q("SELECT manifest_digest, parent FROM images WHERE id=?", (image_id,))
        if not rows:
            raise NotFound(f"No such image: {image_id}")
        manifest_digest, parent = rows[0]
        tags = sorted(reference.familiar(t) for (t,) in self._q("SELECT name FROM tags WHERE image_id=?", (image_id,)))
        (size,) = self._q("""SELECT COALESCE(SUM(s.size), 0) FROM image_layers l
                             JOIN snapshots s ON s.chain_id = l.chain_id WHERE l.image_id=?""", (image_id,))[0]
        digests = sorted(reference.familiar(d) for (d,) in self._q("SELECT name FROM repo_digests WHERE image_id=?", (image_id,)))
        return Image(id=image_id, config=json.loads(self._config_bytes(image_id)), repo_tags=tags,
                     repo_digests=digests, manifest_digest=manifest_digest, size=size, parent=parent)

    def resolve(self, ref: str) -> Image:
        return self._image(self._resolve(ref)[0])

    def list(self) -> list[Image]:
        images = []
        for (image_id,) in self._q("SELECT id FROM images"):
            try:
                images.append(self._image(image_id))
            except NotFound:
                continue  # deleted by another thread between the two reads: not listed, not an error
        images.sort(key=lambda im: (parse_time(im.created), im.id), reverse=True)
        return images

    # -- tags -------------------------------------------------------------------------------

    def tag(self, ref: str, new_ref: str) -> None:
        image_id = self._resolve(ref)[0]
        r = reference.parse(new_ref)
        if r.digest:
            raise InvalidArgument(f"refusing to create a tag with a digest reference: {new_ref}")
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO tags (name, image_id) VALUES (?, ?)", (str(r.with_default_tag()), image_id))

    def add_repo_digest(self, image_id: str, name: str) -> None:
        """Record that ``image_id`` is ``name`` (``repo@sha256:...``) in a registry: what a pull or a
        push saw. Docker keeps these as the image's RepoDigests until the image goes."""
        r = reference.parse(name)
        if not r.digest or r.tag:
            raise InvalidArgument(f"not a repository digest: {name!r}")
        with self._tx() as db:
            if db.execute("SELECT 1 FROM images WHERE id=?", (image_id,)).fetchone() is None:
                raise NotFound(f"No such image: {image_id}")
            db.execute("INSERT OR REPLACE INTO repo_digests (name, image_id) VALUES (?, ?)", (str(r), image_id))

    def untag(self, ref: str) -> list[dict]:
        """``docker rmi <name>``: remove one tag; when it was the image's last one, the image goes
        too, unless a container rootfs or a child image still uses it (then it stays, dangling)."""
        r = reference.parse(ref).with_default_tag()
        with self._exclusive():
            with self._tx() as db:
                row = db.execute("SELECT image_id FROM tags WHERE name=?", (str(r),)).fetchone()
                if row is None:
                    raise NotFound(f"No such image: {r.familiar()}")
                db.execute("DELETE FROM tags WHERE name=?", (str(r),))
                image_id = row[0]
                keep = db.execute("""SELECT 1 FROM tags WHERE image_id=:i UNION ALL SELECT 1 FROM active WHERE image_id=:i
                                     UNION ALL SELECT 1 FROM images WHERE parent=:i LIMIT 1""", {"i": image_id}).fetchone()
            records = [{"Untagged": r.familiar()}]
            return records if keep else records + self._untag_digests(image_id) + self._drop_images([image_id])

    # -- delete / prune ---------------------------------------------------------------------

    def delete(self, ref: str, force: bool = False, noprune: bool = False) -> list[dict]:
        """``docker rmi``: a tag name untags, and the image goes with its last tag; an ID with
        several tags is a Conflict unless ``force``. ``ref`` may be any form ``resolve`` takes."""
        with self._exclusive():
            image_id, tag = self._resolve(ref)
            tags = [t for (t,) in self._q("SELECT name FROM tags WHERE image_id=?", (image_id,))]
            short = image_id[7:19]
            if tag is not None and len(tags) > 1:
                return self.untag(tag)  # other tags remain: only this name goes
            if tag is None and len(tags) > 1 and not force:
                raise Conflict(f"conflict: unable to delete {short} (must be forced) - image is referenced in multiple repositories")
            if self._q("SELECT 1 FROM images WHERE parent=? LIMIT 1", (image_id,)):
                if tag is not None:  # Docker: the name goes, the image stays for its children
                    return self.untag(tag)  # (untag keeps an image that has children)
                raise Conflict(f"conflict: unable to delete {short} (cannot be forced) - image has dependent child images")
            records = [{"Untagged": reference.familiar(t)} for t in sorted(tags)]
            records += self._untag_digests(image_id) + self._drop_images([image_id], noprune)
            return records

    def _untag_digests(self, image_id: str) -> list[dict]:
        """The "Untagged: repo@sha256:..." records Docker prints for an image that goes (its rows
        go with the image, by cascade)."""
        return [{"Untagged": reference.familiar(d)}
                for (d,) in self._q("SELECT name FROM repo_digests WHERE image_id=? ORDER BY name", (image_id,))]

    def _drop_images(self, image_ids: list[str], noprune: bool = False) -> list[dict]:
        """Delete image rows (and untagged parents unless noprune), then collect what they freed."""
        records, blobs = [], set()
        with self._tx() as db:
            queue = list(image_ids)
            while queue:
                image_id = queue.pop(0)
                row = db.execute("SELECT manifest_digest, parent FROM images WHERE id=?", (image_id,)).fetchone()
                if row is None:
                    continue
                blobs |= {image_id, row[0]} | {b for (b,) in db.execute("SELECT blob FROM image_layers WHERE image_id=?", (image_id,))}
                db.execute("DELETE FROM images WHERE id=?", (image_id,))
                records.append({"Deleted": image_id})
                parent = row[1]
                if parent and not noprune and not db.execute(
                        "SELECT 1 FROM tags WHERE image_id=? UNION SELECT 1 FROM images WHERE parent=?", (parent, parent)).fetchone():
                    queue.append(parent)
        self._gc_blobs(blobs - {None})
        self._gc_snapshots()
        return records

    def _referenced_blobs(self) -> set[str]:
        rows = self._q("SELECT id FROM images UNION SELECT manifest_digest FROM images UNION SELECT blob FROM image_layers")
        return {r for (r,) in rows if r}

    def _gc_blobs(self, candidates) -> int:
        """Remove candidate blobs no image references. Caller holds ``_exclusive``."""
        live = self._referenced_blobs()
        freed = 0
        for d in candidates:
            if d not in live:
                self._configs.pop(d, None)
                freed += self.content.delete(d)
        return freed

    def _gc_snapshots(self) -> int:
        """Remove snapshots no image and no rootfs uses; return their recorded size."""
        with self._tx() as db:
            live = {c for (c,) in db.execute("SELECT chain_id FROM image_layers")}
            for (chain,) in db.execute("SELECT chain FROM active"):
                live.update(chain.split())
            dead = [(c, n, s) for (c, n, s) in db.execute("SELECT chain_id, n, size FROM snapshots") if c not in live]
            db.executemany("DELETE FROM snapshots WHERE chain_id=?", [(c,) for (c, _, _) in dead])
        for _, n, _ in dead:  # after the commit: a crash here leaves a dir without row, swept on open
            _rmtree(os.path.join(self.snapshots, str(n)))
        return sum(s for (_, _, s) in dead)

    def prune(self, dangling_only: bool = True, in_use=frozenset()) -> tuple[list[dict], int]:
        """Remove untagged images (all unused ones when not dangling_only) that no container uses."""
        with self._exclusive():
            records: list[dict] = []
            before = self._q("SELECT COALESCE(SUM(size), 0) FROM snapshots")[0][0]
            rows = self._q("SELECT id FROM images WHERE id NOT IN (SELECT parent FROM images)")
            for (image_id,) in rows:
                if image_id in in_use:
                    continue
                tags = sorted(t for (t,) in self._q("SELECT name FROM tags WHERE image_id=?", (image_id,)))
                if tags and dangling_only:
                    continue
                records += [{"Untagged": reference.familiar(t)} for t in tags]
                records += self._drop_images([image_id])
            self._gc_blobs(self.content.list())  # also whatever a crashed load left
            after = self._q("SELECT COALESCE(SUM(size), 0) FROM snapshots")[0][0]
            return records, before - after

    # -- snapshots and rootfs ---------------------------------------------------------------

    def _snapshot_n(self, chain_id: str) -> int | None:
        rows = self._q("SELECT n FROM snapshots WHERE chain_id=?", (chain_id,))
        return rows[0][0] if rows else None

    def _unpack(self, chain_id: str, diff_id: str, blob: str, parent_chain: str | None = None) -> int:
        """Make the snapshot for ``chain_id`` from a layer blob (once; shared by every image)."""
        n = self._snapshot_n(chain_id)
        if n is not None:
            return n
        work = tempfile.mkdtemp(dir=self.tmp, prefix="snap-")
        try:
            fs = os.path.join(work, "fs")
            os.mkdir(fs, 0o755)
            with self.content.open(blob) as f:
                got, size = archive.apply_layer(f, fs, overlay=True)
            if got != diff_id:
                raise DigestMismatch(f"layer {blob} unpacks to {got}, but the image config says {diff_id}")
            _syncfs(fs)
            with self._tx() as db:
                row = db.execute("SELECT n FROM snapshots WHERE chain_id=?", (chain_id,)).fetchone()
                if row:  # someone else unpacked it meanwhile
                    return row[0]
                n = (db.execute("SELECT MAX(n) FROM snapshots").fetchone()[0] or 0) + 1
                final = os.path.join(self.snapshots, str(n))
                _rmtree(final)  # a numbered dir without a row is debris from a crash
                os.rename(work, final)
                fsync_dir(self.snapshots)
                db.execute("INSERT INTO snapshots (chain_id, n, diff_id, size) VALUES (?, ?, ?, ?)",
                           (chain_id, n, diff_id, size))
            return n
        finally:
            _rmtree(work)

    def _layers(self, image_id: str) -> list[tuple[str, str, str]]:
        """[(chain_id, blob, media_type)] bottom first."""
        return self._q("SELECT chain_id, blob, media_type FROM image_layers WHERE image_id=? ORDER BY idx", (image_id,))

    def prepare_rootfs(self, key: str, image_id: str) -> list[Mount]:
        """Overlay mount for a container: image layers as lowerdirs, upper/work under active/<key>."""
        if not _KEY_RE.match(key or ""):
            raise InvalidArgument(f"invalid rootfs key {key!r}")
        image_id = self._resolve(image_id)[0]
        diff_ids = json.loads(self._config_bytes(image_id)).get("rootfs", {}).get("diff_ids") or []
        layers = self._layers(image_id)
        chain = [c for (c, _, _) in layers]
        with self._tx() as db:  # commit point: the reference that keeps the snapshots alive
            if db.execute("SELECT 1 FROM images WHERE id=?", (image_id,)).fetchone() is None:
                raise NotFound(f"No such image: {image_id}")
            row = db.execute("SELECT image_id FROM active WHERE key=?", (key,)).fetchone()
            if row and row[0] != image_id:
                raise Conflict(f"rootfs {key} already exists for image {row[0]}")
            db.execute("INSERT OR REPLACE INTO active (key, image_id, chain) VALUES (?, ?, ?)", (key, image_id, " ".join(chain)))
        try:
            lowers = []
            for (c, blob, _), diff_id in zip(layers, diff_ids):
                n = self._snapshot_n(c)
                if n is None:  # swept or lost: everything but blobs can be rebuilt from blobs
                    n = self._unpack(c, diff_id, blob)
                lowers.append(os.path.join(self.snapshots, str(n), "fs"))
            lowers.reverse()  # overlayfs wants the topmost layer first
            base = os.path.join(self.active_dir, key)
            for d in ("upper", "work"):
                os.makedirs(os.path.join(base, d), exist_ok=True)
            os.chmod(os.path.join(base, "upper"), 0o755)
            opts = (f"lowerdir={':'.join(lowers) or self.empty}", f"upperdir={base}/upper", f"workdir={base}/work")
            if len(",".join(opts)) > MOUNT_DATA_MAX:
                raise InvalidArgument(f"image {image_id[:19]} has too many layers ({len(lowers)}) for one overlay mount")
        except BaseException:
            self.remove_rootfs(key)
            raise
        return [Mount(type="overlay", source="overlay", options=opts)]

    def rootfs_upper(self, key: str) -> str:
        if not self._q("SELECT 1 FROM active WHERE key=?", (key,)):
            raise NotFound(f"no rootfs for {key}")
        return os.path.join(self.active_dir, key, "upper")

    def remove_rootfs(self, key: str) -> None:
        """Drop a container's writable layer (idempotent). The caller has unmounted it."""
        if not _KEY_RE.match(key or ""):
            raise InvalidArgument(f"invalid rootfs key {key!r}")
        _rmtree(os.path.join(self.active_dir, key))
        with self._tx() as db:
            db.execute("DELETE FROM active WHERE key=?", (key,))
        try:
            with self._exclusive(blocking=False):
                self._gc_snapshots()  # only matters when rmi -f removed the image earlier
        except _Busy:
            pass

    # -- writing images ---------------------------------------------------------------------

    def _commit_images(self, pending: list[dict]) -> list[str]:
        """The commit point of load/import: all image rows and tags in one transaction."""
        loaded = []
        with self._tx() as db:
            for p in pending:
                if db.execute("SELECT 1 FROM images WHERE id=?", (p["id"],)).fetchone() is None:
                    db.execute("INSERT INTO images (id, manifest_digest, parent, added) VALUES (?, ?, ?, ?)",
                               (p["id"], p["manifest"], p.get("parent", ""), time.time()))
                    db.executemany("INSERT INTO image_layers (image_id, idx, chain_id, blob, media_type) VALUES (?, ?, ?, ?, ?)",
                                   [(p["id"], i, c, b, mt) for i, (c, b, mt) in enumerate(p["layers"])])
                for t in p["tags"]:
                    db.execute("INSERT OR REPLACE INTO tags (name, image_id) VALUES (?, ?)", (t, p["id"]))
                loaded += [reference.familiar(t) for t in p["tags"]] or [p["id"]]
        return loaded

    def _manifest_for(self, config_digest: str, layers: list[tuple[str, str, str]]) -> str:
        """Write the OCI manifest of an image we made (import) or got without one (old archives)."""
        manifest = {
            "schemaVersion": 2,
            "mediaType": MT_OCI_MANIFEST,
            "config": {"mediaType": MT_OCI_CONFIG, "digest": config_digest, "size": self.content.size(config_digest)},
            "layers": [{"mediaType": mt, "digest": b, "size": self.content.size(b)} for (_, b, mt) in layers],
        }
        return self.content.write(json.dumps(manifest, indent=2).encode())

    @contextlib.contextmanager
    def _cleanup_on_error(self):
        """Blobs written by a failed load/import are removed unless something else references them."""
        before = set(self.content.list())
        try:
            yield
        except BaseException:
            self._gc_blobs(set(self.content.list()) - before)
            self._gc_snapshots()
            raise

    def add_pulled(self, manifest: bytes, config: bytes, layer_files: dict[str, str], ref: str | None = None) -> Image:
        """Registry pull (dockyard.registry.client): commit an image whose blobs the caller fetched.

        ``manifest``/``config``: the image manifest's and config's bytes (the config is checked against
        the manifest's descriptor). ``layer_files``: for each layer blob not yet in the store, a file
        under ``self.tmp`` that the caller verified hashes to that digest; it is moved in by rename.
        Layers are unpacked and checked against the config's diff_ids; the image and its tag ``ref``
        commit in one transaction, and a failure removes every blob it added.
        """
        tag = str(reference.parse_docker_ref(ref)) if ref else None
        try:
            doc = json.loads(manifest)
            config_digest = doc["config"]["digest"]
            descs = [(l["digest"], l.get("mediaType") or MT_OCI_LAYER) for l in doc.get("layers") or []]
            diff_ids = json.loads(config)["rootfs"]["diff_ids"] or []
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise InvalidArgument(f"invalid pulled image: {e!r}") from e
        if not isinstance(diff_ids, list) or len(diff_ids) != len(descs):
            raise InvalidArgument(f"image {config_digest}: config has {len(diff_ids)} layers, manifest {len(descs)}")
        for d in diff_ids + [b for (b, _) in descs]:
            check_digest(d if isinstance(d, str) else "")
        with self._exclusive(), self._cleanup_on_error():
            self.content.write(config, config_digest)  # DigestMismatch unless it is the manifest's config
            layers = []
            for (blob, media_type), diff_id, chain in zip(descs, diff_ids, chain_ids(diff_ids)):
                if not self.content.has(blob):
                    if blob not in layer_files:
                        raise FailedPrecondition(f"layer {blob} is no longer in the store; pull again")
                    self.content.commit(layer_files[blob], blob)
                self._unpack(chain, diff_id, blob)
                layers.append((chain, blob, media_type))
            manifest_digest = self.content.write(manifest)
            self._commit_images([{"id": config_digest, "manifest": manifest_digest, "layers": layers,
                                  "tags": [tag] if tag else []}])
        return self._image(config_digest)

    def import_rootfs(self, fileobj, ref: str | None = None, changes=(), message: str = "") -> Image:
        """``docker import``: one rootfs tar (maybe compressed) becomes a one-layer image."""
        tag = str(reference.parse_docker_ref(ref)) if ref else None  # validate before writing anything
        inner = apply_changes({"Env": [DEFAULT_PATH]}, changes)
        with self._exclusive(), self._cleanup_on_error():
            fd, tmp = tempfile.mkstemp(dir=self.tmp, prefix="import-")
            try:
                with os.fdopen(fd, "wb") as out:
                    w = archive.HashingWriter(out)
                    shutil.copyfileobj(archive.decompressed(fileobj), w, 1 << 20)
                    out.flush()
                    os.fsync(out.fileno())
                diff_id = self.content.commit(tmp, w.digest)  # stored uncompressed: blob == diff_id
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
            self._unpack(diff_id, diff_id, diff_id)
            created = now_rfc3339()
            comment = message or "Imported from -"
            config = {
                "architecture": GOARCH.get(platform.machine(), platform.machine()),
                "os": "linux",
                "created": created,
                "comment": comment,
                "config": inner,
                "rootfs": {"type": "layers", "diff_ids": [diff_id]},
                "history": [{"created": created, "created_by": "", "comment": comment}],
            }
            config_digest = self.content.write(canonical_json(config))
            layers = [(diff_id, diff_id, MT_OCI_LAYER)]
            manifest = self._manifest_for(config_digest, layers)
            self._commit_images([{"id": config_digest, "manifest": manifest, "layers": layers, "tags": [tag] if tag else []}])
        return self._image(config_digest)

    def load(self, fileobj, progress=None) -> list[str]:
        """``docker load``: a docker-archive (Docker >= 25 or older layout) or an OCI layout tar.

        Every blob is verified (name digest, config diff_ids); nothing is tagged unless all images
        of the archive made it. ``progress``, if given, is called with Docker-style progress dicts.
        Returns "busybox:latest" for each tag loaded, "sha256:<id>" for an untagged image.
        """
        with self._exclusive(), self._cleanup_on_error():
            work = tempfile.mkdtemp(dir=self.tmp, prefix="load-")
            try:
                arc = _SpooledArchive(fileobj, work)
                pending = [self._ingest(arc, img, progress) for img in arc.images()]
                if not pending:
                    raise InvalidArgument("invalid archive: it contains no image")
                return self._commit_images(pending)
            finally:
                _rmtree(work)

    def _ingest(self, arc: "_SpooledArchive", img: dict, progress) -> dict:
        """Blobs and snapshots of one image of an archive; returns its pending row."""
        config_name, config_digest = img["config"]
        config_bytes = arc.bytes(config_name)
        try:
            config = json.loads(config_bytes)
            rootfs = config["rootfs"]
            diff_ids = rootfs["diff_ids"] or []
            valid = rootfs.get("type") == "layers" and isinstance(diff_ids, list)
        except (ValueError, KeyError, TypeError) as e:
            raise InvalidArgument(f"invalid image config {config_digest}: {e!r}") from e
        if not valid:
            raise InvalidArgument(f"invalid image config {config_digest}: rootfs must be of type layers with diff_ids")
        if len(diff_ids) != len(img["layers"]):
            raise InvalidArgument(f"image {config_digest}: config has {len(diff_ids)} layers, manifest {len(img['layers'])}")
        for d in diff_ids:
            check_digest(d if isinstance(d, str) else "")
        arc.ingest(self.content, config_name, config_digest)
        layers = []
        for i, ((name, blob, media_type), diff_id, chain) in enumerate(zip(img["layers"], diff_ids, chain_ids(diff_ids))):
            arc.ingest(self.content, name, blob)
            if progress:
                progress({"status": "Loading layer", "id": blob[7:19], "progressDetail": {"current": i + 1, "total": len(diff_ids)}})
            self._unpack(chain, diff_id, blob)
            if media_type is None:
                with self.content.open(blob) as f:
                    media_type = MT_OCI_LAYER + ("+gzip" if f.read(2) == b"\x1f\x8b" else "")
            layers.append((chain, blob, media_type))
        if img.get("manifest"):
            manifest = arc.ingest(self.content, *img["manifest"])
        else:
            manifest = self._manifest_for(config_digest, layers)
        return {"id": config_digest, "manifest": manifest, "layers": layers, "tags": img["tags"]}

    # -- commit, changes (container writable layer -> image) ---------------------------------

    def commit(self, key: str, container_config: dict | None = None, ref: str | None = None, changes=(),
               comment: str = "", author: str = "", created_by: str = "", exclude=()) -> Image:
        """``docker commit``: the upper dir of rootfs ``key`` becomes a new layer on its image.

        ``container_config`` is the container's Docker Config (the engine's merged view); ``changes``
        are applied on top. The caller pauses the container if it wants a consistent layer.
        ``exclude``: absolute paths left out of the layer with all below them (the engine's
        bind-mount placeholders, which a running container's upper dir cannot lose).
        """
        exclude = [p.strip("/") for p in exclude if p.strip("/")]
        tag = str(reference.parse_docker_ref(ref)) if ref else None
        rows = self._q("SELECT image_id FROM active WHERE key=?", (key,))
        if not rows:
            raise NotFound(f"no rootfs for {key}")
        base_id = rows[0][0]
        with self._exclusive(), self._cleanup_on_error():
            if not self._q("SELECT 1 FROM images WHERE id=?", (base_id,)):
                raise FailedPrecondition(f"the image {base_id[:19]} of {key} was removed; cannot commit")
            base = json.loads(self._config_bytes(base_id))
            upper = self.rootfs_upper(key)
            empty = not os.path.isdir(upper) or not os.listdir(upper)  # nothing changed: no layer
            exclude = [p for p in exclude if os.path.lexists(os.path.join(upper, p))]
            fd, tmp = tempfile.mkstemp(dir=self.tmp, prefix="commit-")
            try:
                with os.fdopen(fd, "wb") as out:
                    diff_id, _ = archive.tar_directory(upper, out)
                    out.flush()
                    os.fsync(out.fileno())
                if exclude and not empty:
                    diff_id, kept = _filter_layer(tmp, exclude)
                    empty = kept == 0
                if not empty:
                    self.content.commit(tmp, diff_id)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
            created = now_rfc3339()
            diff_ids = list(base.get("rootfs", {}).get("diff_ids") or []) + ([] if empty else [diff_id])
            entry = {"created": created, "created_by": created_by}
            entry.update({k: v for k, v in (("author", author), ("comment", comment)) if v})
            if empty:
                entry["empty_layer"] = True
            config = {k: v for k, v in base.items() if k not in ("container", "container_config", "comment")}
            config.update(created=created, rootfs={"type": "layers", "diff_ids": diff_ids},
                          config=apply_changes(container_config if container_config is not None else base.get("config") or {}, changes),
                          history=list(base.get("history") or []) + [entry])
            if author:
                config["author"] = author
            layers = list(self._layers(base_id))
            if not empty:
                chain = chain_ids(diff_ids)[-1]
                self._unpack(chain, diff_id, diff_id)
                layers.append((chain, diff_id, MT_OCI_LAYER))
            config_digest = self.content.write(canonical_json(config))
            manifest = self._manifest_for(config_digest, layers)
            self._commit_images([{"id": config_digest, "manifest": manifest, "layers": layers,
                                  "tags": [tag] if tag else [], "parent": base_id}])
        return self._image(config_digest)

    def changes(self, key: str) -> list[dict]:
        """``docker diff``: [{"Path": "/etc/x", "Kind": 0 modified | 1 added | 2 deleted}], sorted."""
        upper = self.rootfs_upper(key)
        (chain,) = self._q("SELECT chain FROM active WHERE key=?", (key,))[0]
        lowers = [os.path.join(self.snapshots, str(n), "fs") for c in chain.split()
                  for n in [self._snapshot_n(c)] if n is not None]
        out = []
        for rel in archive._walk_sorted(upper) if os.path.isdir(upper) else ():
            st = os.lstat(os.path.join(upper, rel))
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                kind = 2
            else:
                kind = 0 if any(os.path.lexists(os.path.join(lo, rel)) for lo in lowers) else 1
            out.append({"Path": "/" + rel, "Kind": kind})
        return out

    # -- save, history ----------------------------------------------------------------------

    def save(self, refs, fileobj, fmt: str = "docker-archive") -> None:
        """``docker save``: Docker >= 25's layout (OCI layout + manifest.json); "oci" omits manifest.json.

        A bare repository name (``busybox``) saves every tag of that repository, as Docker does.
        """
        if fmt not in ("docker-archive", "oci"):
            raise InvalidArgument(f"unknown save format {fmt!r}: want docker-archive or oci")
        if isinstance(refs, str):
            refs = [refs]
        chosen: dict[str, list[str]] = {}  # image id -> tags to write, in order
        for ref in refs:
            image_id, tag = self._resolve(ref)
            picked = [(image_id, tag)] if tag else [(image_id, None)]
            r = reference.parse(ref) if tag else None
            if r is not None and r.tag is None and r.digest is None:  # bare repository name
                picked = [(i, t) for (t, i) in self._q("SELECT name, image_id FROM tags ORDER BY name")
                          if t.rsplit(":", 1)[0] == r.name]
            for i, t in picked:
                tags = chosen.setdefault(i, [])
                if t and t not in tags:
                    tags.append(t)
        entries, index, blobs = [], [], []
        for image_id, tags in chosen.items():
            rows = self._q("SELECT manifest_digest FROM images WHERE id=?", (image_id,))
            manifest_digest = rows[0][0]
            layers = self._layers(image_id)
            blobs += [image_id] + [b for (_, b, _) in layers] + [manifest_digest]
            entries.append({"Config": f"blobs/sha256/{image_id[7:]}", "RepoTags": [reference.familiar(t) for t in tags] or None,
                            "Layers": [f"blobs/sha256/{b[7:]}" for (_, b, _) in layers]})
            manifest = json.loads(self.content.read(manifest_digest))
            desc = {"mediaType": manifest.get("mediaType", MT_OCI_MANIFEST), "digest": manifest_digest,
                    "size": self.content.size(manifest_digest)}
            for t in tags or [None]:
                d = dict(desc)
                if t:
                    d["annotations"] = {ANN_CONTAINERD_NAME: t, ANN_REF_NAME: t.rsplit(":", 1)[1]}
                index.append(d)
        index_doc = {"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": index}
        with tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT) as tf:
            def add_bytes(name, data):
                ti = tarfile.TarInfo(name)
                ti.size, ti.mode = len(data), 0o644
                tf.addfile(ti, io.BytesIO(data))

            for d in ("blobs", "blobs/sha256"):
                ti = tarfile.TarInfo(d)
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(ti)
            for b in dict.fromkeys(blobs):  # once each, in order
                ti = tarfile.TarInfo(f"blobs/sha256/{b[7:]}")
                ti.size, ti.mode = self.content.size(b), 0o644
                with self.content.open(b) as f:
                    hf = archive.HashingReader(f)
                    tf.addfile(ti, hf)
                if hf.digest != b:  # never ship a corrupt blob
                    raise DigestMismatch(f"blob {b} is corrupt: its content does not match its digest")
            add_bytes("index.json", json.dumps(index_doc).encode())
            if fmt == "docker-archive":
                add_bytes("manifest.json", json.dumps(entries).encode())
                repos: dict[str, dict] = {}
                for e in entries:
                    for t in e["RepoTags"] or []:
                        repo, _, tg = t.rpartition(":")
                        repos.setdefault(repo, {})[tg] = e["Layers"][-1][len("blobs/sha256/"):] if e["Layers"] else ""
                if repos:
                    add_bytes("repositories", json.dumps(repos).encode())
            add_bytes("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')

    def history(self, ref: str) -> list[dict]:
        img = self.resolve(ref)
        sizes = [s for (s,) in self._q("""SELECT COALESCE(s.size, 0) FROM image_layers l LEFT JOIN snapshots s
                                          ON s.chain_id = l.chain_id WHERE l.image_id=? ORDER BY l.idx""", (img.id,))]
        hist = img.config.get("history") or [{"created": img.created} for _ in sizes]
        items, layer = [], 0
        for h in hist:
            size = 0
            if not h.get("empty_layer") and layer < len(sizes):
                size, layer = sizes[layer], layer + 1
            items.append({"Id": "<missing>", "Created": parse_time(h.get("created")), "CreatedBy": h.get("created_by", ""),
                          "Tags": None, "Size": size, "Comment": h.get("comment", "")})
        # Entries that are the top of an ancestor image (commit/build) show that image, as Docker does.
        tops, parent = {len(hist) - 1: img}, img.parent
        while parent and self._q("SELECT 1 FROM images WHERE id=?", (parent,)):
            p = self._image(parent)
            tops.setdefault(len(p.config.get("history") or []) - 1, p)
            parent = p.parent
        for i, p in tops.items():
            if 0 <= i < len(items):
                items[i]["Id"], items[i]["Tags"] = p.id, p.repo_tags or None
        items.reverse()
        return items


class _SpooledArchive:
    """An image archive streamed once into numbered files, indexed by member name.

    Member names never touch the filesystem (files are ``<work>/<i>``), so a hostile ``../x`` in the
    archive cannot write anywhere; such names are refused anyway. Each file's digest is computed while
    spooling, and blobs are moved into the content store by rename (same filesystem) once verified.
    """

    def __init__(self, fileobj, work: str):
        self.files: dict[str, tuple[str, str, int]] = {}  # name -> (path, digest, size)
        self.links: dict[str, str] = {}
        try:
            tf = tarfile.open(fileobj=archive.decompressed(fileobj), mode="r|")
            with tf:
                for i, m in enumerate(tf):
                    name = self._clean(m.name)
                    if m.isreg():
                        path = os.path.join(work, str(i))
                        with open(path, "wb") as out:
                            w = archive.HashingWriter(out)
                            shutil.copyfileobj(tf.extractfile(m), w, 1 << 20)
                        self.files[name] = (path, w.digest, w.size)
                    elif m.issym():
                        self.links[name] = self._clean(posixpath.join(posixpath.dirname(name), m.linkname))
                    elif m.islnk():
                        self.links[name] = self._clean(m.linkname)
        except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error) as e:
            raise InvalidArgument(f"invalid image archive: {e}") from e

    @staticmethod
    def _clean(name: str) -> str:
        cleaned = posixpath.normpath(name)
        if cleaned.startswith("/") or cleaned == ".." or cleaned.startswith("../"):
            raise InvalidArgument(f"invalid image archive: member {name!r} points outside the archive")
        return cleaned

    def lookup(self, name: str) -> tuple[str, str, int]:
        name = self._clean(name)
        for _ in range(40):
            if name in self.files:
                return self.files[name]
            if name not in self.links:
                break
            name = self.links[name]
        raise InvalidArgument(f"invalid image archive: {name!r} is missing")

    def bytes(self, name: str) -> bytes:
        path, _, size = self.lookup(name)
        if size > 64 << 20:
            raise InvalidArgument(f"invalid image archive: {name!r} is too large for a JSON document")
        with open(path, "rb") as f:
            return f.read()

    def json(self, name: str):
        try:
            return json.loads(self.bytes(name))
        except ValueError as e:
            raise InvalidArgument(f"invalid image archive: {name} is not valid JSON: {e}") from e

    def digest_of(self, name: str, claimed: str | None = None) -> str:
        """The verified digest of a member; ``claimed`` comes from its name or a descriptor."""
        _, digest, _ = self.lookup(name)
        m = re.match(r"^(?:.*/)?blobs/sha256/([a-f0-9]{64})$", name) or re.match(r"^([a-f0-9]{64})\.json$", name)
        for want in filter(None, (claimed, m and "sha256:" + m.group(1))):
            if want != digest:
                raise DigestMismatch(f"invalid image archive: {name} has digest {digest}, expected {want}")
        return digest

    def ingest(self, content: ContentStore, name: str, digest: str) -> str:
        path, got, _ = self.lookup(name)
        if got != digest:
            raise DigestMismatch(f"invalid image archive: {name} has digest {got}, expected {digest}")
        if not content.has(digest):
            with open(path, "rb") as f:
                os.fsync(f.fileno())
            content.commit(path, digest)
            # The spool file is now the blob: later lookups of the same member read it there.
            for k, v in list(self.files.items()):
                if v[0] == path:
                    self.files[k] = (content.path(digest), v[1], v[2])
        return digest

    def images(self) -> list[dict]:
        """[{config: (name, digest), layers: [(name, digest, media_type|None)], tags, manifest}]."""
        by_config = self._oci_images() if "index.json" in self.files else []
        if "manifest.json" in self.files:
            manifests = {i["config"][1]: i["manifest"] for i in by_config}
            out = []
            entries = self.json("manifest.json")
            if not isinstance(entries, list):
                raise InvalidArgument("invalid image archive: manifest.json is not a list")
            for e in entries:
                try:
                    config_name, layer_names, repo_tags = e["Config"], e.get("Layers") or [], e.get("RepoTags") or []
                except (KeyError, TypeError) as err:
                    raise InvalidArgument(f"invalid image archive: bad manifest.json entry: {err!r}") from err
                config = self.digest_of(config_name)
                layers = [(n, self.digest_of(n), None) for n in layer_names]
                tags = [str(reference.parse_docker_ref(t)) for t in repo_tags]
                out.append({"config": (config_name, config), "layers": layers, "tags": tags,
                            "manifest": manifests.get(config)})
            return out
        if by_config:
            return by_config
        raise InvalidArgument("invalid image archive: no manifest.json or index.json found")

    def _blob_name(self, desc: dict) -> tuple[str, str]:
        digest = desc.get("digest") if isinstance(desc, dict) else None
        check_digest(digest or "")
        name = f"blobs/sha256/{digest[7:]}"
        if isinstance(desc.get("size"), int) and self.lookup(name)[2] != desc["size"]:
            raise DigestMismatch(f"invalid image archive: {name} size differs from its descriptor")
        self.digest_of(name, digest)
        return name, digest

    def _oci_images(self) -> list[dict]:
        """Images named by an OCI layout's index.json (nested indexes: our platform, else all)."""
        out: dict[str, dict] = {}

        def walk(index: dict, tags: list[str], depth: int = 0):
            if depth > 4 or not isinstance(index.get("manifests"), list):
                raise InvalidArgument("invalid image archive: bad index")
            descs = index["manifests"]
            if depth and len(descs) > 1:  # a multi-platform index: prefer ours
                arch = GOARCH.get(platform.machine(), platform.machine())
                ours = [d for d in descs if (d.get("platform") or {}).get("architecture") == arch]
                descs = ours[:1] or descs
            for d in descs:
                if not isinstance(d, dict):
                    raise InvalidArgument("invalid image archive: bad descriptor in index")
                ann = d.get("annotations") or {}
                own = tags
                name = ann.get(ANN_CONTAINERD_NAME) or ann.get(ANN_REF_NAME)
                if name and ("/" in name or ":" in name):
                    try:
                        own = tags + [str(reference.parse_docker_ref(name))]
                    except InvalidArgument:
                        pass  # a bare OCI tag like "latest" names no repository
                mt = d.get("mediaType")
                if mt in (MT_OCI_INDEX, MT_DOCKER_LIST):
                    walk(self.json(self._blob_name(d)[0]), own, depth + 1)
                elif mt in (MT_OCI_MANIFEST, MT_DOCKER_MANIFEST):
                    mname, mdigest = self._blob_name(d)
                    man = self.json(mname)
                    try:
                        cname, cdigest = self._blob_name(man["config"])
                        layers = [(*self._blob_name(l), l.get("mediaType")) for l in man.get("layers") or []]
                    except (KeyError, TypeError, AttributeError) as e:
                        raise InvalidArgument(f"invalid image archive: bad manifest {mdigest}: {e!r}") from e
                    img = out.setdefault(cdigest, {"config": (cname, cdigest), "layers": layers, "tags": [],
                                                   "manifest": (mname, mdigest)})
                    img["tags"] += [t for t in own if t not in img["tags"]]

        walk(self.json("index.json"), [])
        return list(out.values())
