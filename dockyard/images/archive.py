"""Layer tars: apply one into a directory, and make one from a directory.

``apply_layer`` is the only code that writes untrusted tar members to disk. Every member is created
relative to a parent directory fd opened through ``dockyard.safepath`` (openat2 RESOLVE_IN_ROOT), with
``*at`` calls that never follow a symlink in the last component, so absolute names, ``..``, symlinked
parents and hardlinks cannot reach outside the target. Names that climb above the root (``../x``) are
refused outright, as Docker does; device nodes are skipped (a container gets /dev from the runtime).

Whiteouts: in ``overlay`` mode (a snapshot that overlayfs stacks on its lower layers) ``.wh.x`` becomes
a 0:0 character device and ``.wh..wh..opq`` the ``trusted.overlay.opaque=y`` xattr, which is how
overlayfs spells them; in flat mode they delete what lower layers put there.

``tar_directory`` is the inverse (for save of imported rootfs, later commit and build): sorted,
mtimes kept, owner names dropped, overlay whiteouts turned back into ``.wh.`` entries.
"""

import bz2
import errno
import gzip
import hashlib
import lzma
import os
import posixpath
import shutil
import stat
import tarfile
import zlib

from dockyard import safepath
from dockyard.errdefs import InvalidArgument

WHITEOUT_PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
# What a truncated or garbled (compressed) tar raises from the stdlib.
# What a member that contradicts the tree so far raises (hardlink to nothing, file under a file...).
_MEMBER_ERRNOS = {errno.ENOENT, errno.EEXIST, errno.ENOTDIR, errno.ELOOP, errno.EXDEV, errno.EISDIR,
                  errno.EINVAL, errno.EPERM, errno.ENOTEMPTY}
_CORRUPT = (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error, lzma.LZMAError)


class HashingReader:
    """Wraps a stream; sha256 and byte count of everything read through it."""

    def __init__(self, raw):
        self.raw, self.hash, self.size = raw, hashlib.sha256(), 0

    def read(self, n=-1):
        data = self.raw.read(n)
        self.hash.update(data)
        self.size += len(data)
        return data

    def drain(self):
        while self.read(1 << 20):
            pass

    @property
    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


class HashingWriter:
    def __init__(self, raw):
        self.raw, self.hash, self.size = raw, hashlib.sha256(), 0

    def write(self, data):
        self.hash.update(data)
        self.size += len(data)
        return self.raw.write(data)

    @property
    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


class _Peek:
    """A non-seekable stream whose first bytes can be looked at before reading."""

    def __init__(self, raw, n=6):
        self.raw, self.head = raw, raw.read(n)

    def read(self, n=-1):
        if not self.head:
            return self.raw.read(n)
        if n is None or n < 0:
            data, self.head = self.head + self.raw.read(), b""
            return data
        data, self.head = self.head[:n], self.head[n:]
        if len(data) < n:
            data += self.raw.read(n - len(data))
        return data


def decompressed(fileobj):
    """The uncompressed stream of a tar that may be gzip, bzip2 or xz compressed (by magic)."""
    p = _Peek(fileobj)
    if p.head.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(fileobj=p, mode="rb")
    if p.head.startswith(b"BZh"):
        return bz2.BZ2File(p, "rb")
    if p.head.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMAFile(p, "rb")
    if p.head.startswith(b"\x28\xb5\x2f\xfd"):
        raise InvalidArgument("zstd-compressed layers are not supported")
    return p


def clean_member_name(name: str) -> str:
    """Tar member name -> path relative to the root; refuse names that climb out of it."""
    cleaned = posixpath.normpath(name)  # absolute names stay below "/", i.e. below the root
    if cleaned == ".." or cleaned.startswith("../"):
        raise InvalidArgument(f"invalid tar member {name!r}: path points outside the target directory")
    return cleaned.lstrip("/")


def apply_layer(fileobj, dest: str, overlay: bool = True) -> tuple[str, int]:
    """Unpack a layer tar stream into ``dest``. Returns (diff_id, bytes of regular file content).

    The diff_id is the sha256 of the uncompressed tar; callers compare it with the image config.
    """
    stream = HashingReader(decompressed(fileobj))
    root_fd = os.open(dest, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    dir_times: list[tuple[str, int]] = []
    seen: set[str] = set()  # flat mode: entries of this layer survive an opaque marker
    size = 0
    try:
        try:
            with tarfile.open(fileobj=stream, mode="r|") as tf:
                for m in tf:
                    try:
                        size += _apply_member(tf, m, root_fd, overlay, dir_times, seen)
                    except OSError as e:
                        if e.errno not in _MEMBER_ERRNOS:
                            raise  # ENOSPC, EIO...: the host's problem, not the tar's
                        raise InvalidArgument(f"cannot apply tar member {m.name!r}: {e.strerror}") from e
            stream.drain()  # the trailing zero blocks count in the diff_id
        except _CORRUPT as e:
            raise InvalidArgument(f"layer is not a valid tar archive: {e}") from e
        # Directory mtimes last: creating their entries changed them.
        for name, mtime in reversed(dir_times):
            try:
                fd = safepath.open_beneath(root_fd, name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
            except OSError:
                continue  # replaced by a later member of the same layer
            try:
                os.utime(fd, (mtime, mtime))
            finally:
                os.close(fd)
    finally:
        os.close(root_fd)
    return stream.digest, size


def _remove(parent_fd: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=parent_fd)
    except FileNotFoundError:
        pass
    except IsADirectoryError:
        shutil.rmtree(name, dir_fd=parent_fd)


def _apply_member(tf, m, root_fd, overlay, dir_times, seen) -> int:
    name = clean_member_name(m.name)
    if name in ("", "."):
        if m.isdir():
            dir_times.append((".", int(m.mtime)))
        return 0
    base = posixpath.basename(name)
    parent_name = posixpath.dirname(name)

    if base.startswith(WHITEOUT_PREFIX):
        parent_fd = safepath.mkdir_all(root_fd, parent_name)
        try:
            if base == OPAQUE:
                if overlay:
                    fd = safepath.open_beneath(root_fd, parent_name or ".", os.O_RDONLY | os.O_DIRECTORY)
                    try:
                        os.setxattr(f"/proc/self/fd/{fd}", OPAQUE_XATTR, b"y")
                    finally:
                        os.close(fd)
                else:
                    fd = safepath.open_beneath(root_fd, parent_name or ".", os.O_RDONLY | os.O_DIRECTORY)
                    try:
                        entries = os.listdir(fd)
                    finally:
                        os.close(fd)
                    for entry in entries:
                        if posixpath.join(parent_name, entry) not in seen:
                            _remove(parent_fd, entry)
            elif base.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
                pass  # aufs metadata (.wh..wh.plnk ...): meaningless here
            else:
                target = base[len(WHITEOUT_PREFIX):]
                if target in ("", ".", ".."):
                    raise InvalidArgument(f"invalid whiteout {m.name!r}")
                _remove(parent_fd, target)
                if overlay:
                    os.mknod(target, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=parent_fd)
                    # The whiteout keeps the entry's mtime, so a layer tarred again (commit, save)
                    # has the same digest.
                    os.utime(target, (int(m.mtime), int(m.mtime)), dir_fd=parent_fd, follow_symlinks=False)
        finally:
            os.close(parent_fd)
        return 0

    if m.ischr() and overlay and m.devmajor == 0 and m.devminor == 0:
        pass  # already in overlay's whiteout form
    elif m.ischr() or m.isblk():
        return 0  # devices: skipped on purpose (fifos are fine)

    seen.add(name)
    parent_fd, base = safepath.open_parent(root_fd, name, create=True)
    try:
        existing = _lstat_at(parent_fd, base)
        if existing is not None and not (m.isdir() and stat.S_ISDIR(existing.st_mode)):
            _remove(parent_fd, base)
        if m.isdir():
            if existing is None or not stat.S_ISDIR(existing.st_mode):
                os.mkdir(base, 0o700, dir_fd=parent_fd)
            fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd)
            try:
                _set_meta_fd(fd, m)
            finally:
                os.close(fd)
            dir_times.append((name, int(m.mtime)))
            return 0
        if m.isreg():
            fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=parent_fd)
            try:
                src = tf.extractfile(m)
                with os.fdopen(fd, "wb", closefd=False) as out:
                    shutil.copyfileobj(src, out, 1 << 20)
                _set_meta_fd(fd, m)
                os.utime(fd, (int(m.mtime), int(m.mtime)))
            finally:
                os.close(fd)
            return m.size
        if m.issym():
            os.symlink(m.linkname, base, dir_fd=parent_fd)
        elif m.islnk():
            src_fd, src_base = safepath.open_parent(root_fd, clean_member_name(m.linkname))
            try:
                os.link(src_base, base, src_dir_fd=src_fd, dst_dir_fd=parent_fd, follow_symlinks=False)
            finally:
                os.close(src_fd)
            return 0
        elif m.isfifo():
            os.mkfifo(base, 0o600, dir_fd=parent_fd)
        elif m.ischr():
            os.mknod(base, stat.S_IFCHR, os.makedev(0, 0), dir_fd=parent_fd)
        else:
            return 0  # unknown types (GNU sparse/long names are handled by tarfile)
        os.chown(base, m.uid, m.gid, dir_fd=parent_fd, follow_symlinks=False)
        if not m.issym():
            # fchmodat cannot refuse to follow a symlink; base is not one here (we just made it).
            os.chmod(base, m.mode & 0o7777, dir_fd=parent_fd)
        os.utime(base, (int(m.mtime), int(m.mtime)), dir_fd=parent_fd, follow_symlinks=False)
        return 0
    finally:
        os.close(parent_fd)


def _lstat_at(dir_fd: int, name: str):
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _set_meta_fd(fd: int, m) -> None:
    os.fchown(fd, m.uid, m.gid)
    os.fchmod(fd, m.mode & 0o7777)  # after chown: chown clears setuid bits
    for key, value in m.pax_headers.items():
        if key.startswith("SCHILY.xattr."):
            try:
                os.setxattr(f"/proc/self/fd/{fd}", key[len("SCHILY.xattr."):], value.encode("utf-8", "surrogateescape"))
            except OSError:
                pass  # xattrs are best effort (filesystem may not support the namespace)


def tar_directory(src: str, fileobj) -> tuple[str, int]:
    """Write ``src`` as a deterministic layer tar to ``fileobj``. Returns (digest, size) of the tar."""
    out = HashingWriter(fileobj)
    inodes: dict[tuple[int, int], str] = {}
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:
        for rel in _walk_sorted(src):
            path = os.path.join(src, rel)
            st = os.lstat(path)
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                ti = tarfile.TarInfo(posixpath.join(posixpath.dirname(rel), WHITEOUT_PREFIX + posixpath.basename(rel)))
                ti.mtime = int(st.st_mtime)
                tf.addfile(ti)
                continue
            ti = tarfile.TarInfo(rel)
            ti.mode, ti.uid, ti.gid, ti.mtime = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, int(st.st_mtime)
            if stat.S_ISDIR(st.st_mode):
                ti.type = tarfile.DIRTYPE
                tf.addfile(ti)
                if _getxattr(path, OPAQUE_XATTR) == b"y":
                    op = tarfile.TarInfo(posixpath.join(rel, OPAQUE))
                    op.mtime = ti.mtime
                    tf.addfile(op)
            elif stat.S_ISLNK(st.st_mode):
                ti.type, ti.linkname = tarfile.SYMTYPE, os.readlink(path)
                tf.addfile(ti)
            elif stat.S_ISREG(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and key in inodes:
                    ti.type, ti.linkname = tarfile.LNKTYPE, inodes[key]
                    tf.addfile(ti)
                    continue
                inodes[key] = rel
                ti.size = st.st_size
                with open(path, "rb") as f:
                    tf.addfile(ti, f)
            elif stat.S_ISFIFO(st.st_mode):
                ti.type = tarfile.FIFOTYPE
                tf.addfile(ti)
            # sockets and devices are not layer content
    return out.digest, out.size


def _walk_sorted(src: str):
    def walk(rel):
        for name in sorted(os.listdir(os.path.join(src, rel) if rel else src)):
            child = posixpath.join(rel, name) if rel else name
            yield child
            if stat.S_ISDIR(os.lstat(os.path.join(src, child)).st_mode):
                yield from walk(child)

    yield from walk("")


def _getxattr(path: str, name: str):
    try:
        return os.getxattr(path, name, follow_symlinks=False)
    except OSError:
        return None
