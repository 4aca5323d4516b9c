"""The content store: blobs addressed by their sha256 digest, the single source of truth.

A blob exists once it is renamed into ``blobs/sha256/<hex>``; that rename is the commit point. Writers
stream into a private tmp file on the same filesystem, fsync it, check digest (and size when the
caller knows it), rename, then fsync the directory so the rename survives a crash. Concurrent writers
of the same blob each use their own tmp file and the last rename wins with identical bytes, so writes
are idempotent. Reads verify the digest: a blob whose bytes changed on disk is an error, never data.
"""

import hashlib
import os
import re
import tempfile

from dockyard.errdefs import InvalidArgument, NotFound

_DIGEST_RE = re.compile(r"^sha256:([a-f0-9]{64})$")
CHUNK = 1 << 20


class DigestMismatch(InvalidArgument):
    """Content does not hash to the digest that names it (corrupt blob or hostile archive)."""


def check_digest(digest: str) -> str:
    """Return the hex of a well-formed ``sha256:<hex>`` digest, else raise InvalidArgument."""
    m = _DIGEST_RE.match(digest or "")
    if not m:
        raise InvalidArgument(f"invalid digest {digest!r}: want sha256:<64 lowercase hex>")
    return m.group(1)


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ContentStore:
    def __init__(self, root: str):
        self.root = root
        self.blob_dir = os.path.join(root, "blobs", "sha256")
        self.tmp_dir = os.path.join(root, "tmp")
        os.makedirs(self.blob_dir, exist_ok=True)
        os.makedirs(self.tmp_dir, exist_ok=True)

    def path(self, digest: str) -> str:
        return os.path.join(self.blob_dir, check_digest(digest))

    def has(self, digest: str) -> bool:
        return os.path.exists(self.path(digest))

    def size(self, digest: str) -> int:
        try:
            return os.stat(self.path(digest)).st_size
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found") from None

    def list(self) -> list[str]:
        return ["sha256:" + h for h in os.listdir(self.blob_dir) if _DIGEST_RE.match("sha256:" + h)]

    def write(self, data: bytes, expected: str | None = None) -> str:
        """Store bytes; return their digest."""
        fd, tmp = tempfile.mkstemp(dir=self.tmp_dir, prefix="blob-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            return self.commit(tmp, "sha256:" + hashlib.sha256(data).hexdigest(), expected, len(data))
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def write_stream(self, fileobj, expected: str | None = None, expected_size: int | None = None) -> str:
        """Store a stream; verify against ``expected``/``expected_size`` when given."""
        fd, tmp = tempfile.mkstemp(dir=self.tmp_dir, prefix="blob-")
        try:
            h, n = hashlib.sha256(), 0
            with os.fdopen(fd, "wb") as f:
                while chunk := fileobj.read(CHUNK):
                    h.update(chunk)
                    n += len(chunk)
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
            if expected_size is not None and n != expected_size:
                raise DigestMismatch(f"blob size {n} does not match expected size {expected_size}")
            return self.commit(tmp, "sha256:" + h.hexdigest(), expected, n)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def commit(self, tmp: str, digest: str, expected: str | None = None, size: int | None = None) -> str:
        """Rename an already fsynced tmp file (hashed by the caller) to its blob path."""
        if expected is not None and digest != expected:
            raise DigestMismatch(f"content digest {digest} does not match expected digest {expected}")
        final = self.path(digest)
        if os.path.exists(final):
            os.unlink(tmp)  # idempotent: same digest, same bytes
            return digest
        os.chmod(tmp, 0o644)
        os.rename(tmp, final)
        fsync_dir(self.blob_dir)
        return digest

    def open(self, digest: str):
        """Open for reading (no verification: callers streaming a layer verify as they go)."""
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found") from None

    def read(self, digest: str) -> bytes:
        """Read a (small) blob and verify it."""
        with self.open(digest) as f:
            data = f.read()
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise DigestMismatch(f"blob {digest} is corrupt: its content does not match its digest")
        return data

    def verify(self, digest: str) -> None:
        h = hashlib.sha256()
        with self.open(digest) as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
        if "sha256:" + h.hexdigest() != digest:
            raise DigestMismatch(f"blob {digest} is corrupt: its content does not match its digest")

    def delete(self, digest: str) -> int:
        """Remove a blob; return the bytes freed (0 if it was not there)."""
        p = self.path(digest)
        try:
            n = os.stat(p).st_size
            os.unlink(p)
            return n
        except FileNotFoundError:
            return 0
