"""The build cache: which image a build step produced, keyed by everything that determines it.

A key is the sha256 of (parent image ID, the step's text after expansion, the build args the step
sees, and for COPY/ADD the content+metadata hash of the files it reads, heredoc files included;
for RUN --mount the mount specs plus what bind mounts read, but not a cache mount's contents). The table lives in SQLite
at ``<data-root>/build/cache.db`` so it survives a daemon restart. It holds no images itself: a row
whose image was removed meanwhile is a miss (and is dropped), so image GC never needs to ask us.
"""

import fcntl
import hashlib
import json
import os
import shutil
import sqlite3
import stat
import tempfile
import threading


def step_key(parent: str, text: str, args: dict | None = None, sources: str = "") -> str:
    """The cache key of one step; the same inputs always give the same key."""
    blob = json.dumps([parent, text, sorted((args or {}).items()), sources], separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def hash_tree(root: str, rel: str) -> str:
    """Content+metadata hash of ``rel`` below ``root`` (a file, a symlink or a whole directory).

    Hashed per entry, in sorted order: relative name, type, permission bits, size and the content
    (or link target). mtimes and owners are left out: a fresh checkout of the same files must hit
    the cache (Docker's tarsum also ignores mtime), and COPY sets the owner itself."""
    h = hashlib.sha256()
    base = os.path.join(root, rel)

    def add(path: str, name: str):
        st = os.lstat(path)
        h.update(json.dumps([name, stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode)]).encode())
        if stat.S_ISLNK(st.st_mode):
            h.update(os.readlink(path).encode())
        elif stat.S_ISREG(st.st_mode):
            h.update(str(st.st_size).encode())
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            with os.fdopen(fd, "rb") as f:
                while block := f.read(1 << 20):
                    h.update(block)
        elif stat.S_ISDIR(st.st_mode):
            for entry in sorted(os.listdir(path)):
                add(os.path.join(path, entry), f"{name}/{entry}")

    if not os.path.lexists(base):
        raise FileNotFoundError(rel)  # callers resolve through safepath first
    add(base, "")
    return h.hexdigest()


class BuildCache:
    def __init__(self, path: str):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self._dir = os.path.dirname(path)  # <data-root>/build
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS steps (key TEXT PRIMARY KEY, image_id TEXT NOT NULL)")

    def get(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT image_id FROM steps WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def put(self, key: str, image_id: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO steps (key, image_id) VALUES (?, ?)", (key, image_id))

    def forget(self, key: str | None = None, image_id: str | None = None) -> None:
        with self._lock:
            if key:
                self._db.execute("DELETE FROM steps WHERE key=?", (key,))
            if image_id:
                self._db.execute("DELETE FROM steps WHERE image_id=?", (image_id,))

    def prune(self) -> list[str]:
        """Drop every entry (``builder prune``) and the RUN cache mounts no build is using, as
        BuildKit's prune does; returns the keys and the cache mount names dropped."""
        with self._lock:
            keys = [k for (k,) in self._db.execute("SELECT key FROM steps")]
            self._db.execute("DELETE FROM steps")
        return keys + self._prune_mounts()

    def _prune_mounts(self) -> list[str]:
        """Remove ``cache-mounts/<name>`` dirs whose lock (``<name>.lock``) is free: a RUN holds
        it (shared or exclusive) while it uses the dir and creates the dir only under it. The lock
        files stay, so a builder never locks an inode we are about to unlink."""
        root = os.path.join(self._dir, "cache-mounts")
        removed = []
        for name in sorted(os.listdir(root)) if os.path.isdir(root) else ():
            path = os.path.join(root, name)
            if name.startswith(".del-"):  # a prune that crashed midway
                shutil.rmtree(path, ignore_errors=True)
                continue
            if name.endswith(".lock") or name.startswith(".new-") or not os.path.isdir(path):
                continue
            fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue  # in use by a running build
            try:
                # renamed first: the name is free at once, the tree goes after
                doomed = tempfile.mkdtemp(dir=root, prefix=".del-")
                os.rename(path, os.path.join(doomed, "d"))
                shutil.rmtree(doomed, ignore_errors=True)
                removed.append(name)
            finally:
                os.close(fd)
        return removed

    def close(self) -> None:
        self._db.close()

