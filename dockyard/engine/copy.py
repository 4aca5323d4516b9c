"""docker cp: stat, read and write paths inside a container's filesystem (the archive endpoints).

Every container path is untrusted: it is resolved with ``dockyard.safepath`` against a directory
fd of the container's root, so ``..`` and symlinks (absolute ones included) stay inside it. The
root of a running container is ``/proc/<pid>/root``, which shows its volumes and binds too; a
stopped one gets its rootfs mounted for the duration of the call, under the container's lock so
a concurrent start cannot stack a second mount. Trees are walked with ``*at`` calls relative to
directory fds opened with O_NOFOLLOW, never through path strings, so a symlink swapped in while we
walk is archived as a link, not followed. Writing reuses the layer unpacker (``apply_layer``),
which creates everything beneath the fd it is given.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import posixpath
import stat
import tarfile
import tempfile
import time

from dockyard import errdefs, safepath
from dockyard.engine import sysmount

# Go's os.FileMode type bits (the CLI reads them from X-Docker-Container-Path-Stat).
_GO_DIR, _GO_SYMLINK, _GO_DEVICE, _GO_PIPE, _GO_SOCKET = 1 << 31, 1 << 27, 1 << 26, 1 << 25, 1 << 24
_GO_SETUID, _GO_SETGID, _GO_CHARDEV, _GO_STICKY = 1 << 23, 1 << 22, 1 << 21, 1 << 20


def go_file_mode(mode: int) -> int:
    """A POSIX st_mode as Go's os.FileMode (type bits high, permission bits low)."""
    out = mode & 0o777
    fmt = stat.S_IFMT(mode)
    out |= {stat.S_IFDIR: _GO_DIR, stat.S_IFLNK: _GO_SYMLINK, stat.S_IFIFO: _GO_PIPE, stat.S_IFSOCK: _GO_SOCKET,
            stat.S_IFBLK: _GO_DEVICE, stat.S_IFCHR: _GO_DEVICE | _GO_CHARDEV}.get(fmt, 0)
    out |= (_GO_SETUID if mode & stat.S_ISUID else 0) | (_GO_SETGID if mode & stat.S_ISGID else 0)
    return out | (_GO_STICKY if mode & stat.S_ISVTX else 0)


def _rfc3339(t: float) -> str:
    ns = int(t * 1e9)
    frac = f"{ns % 1_000_000_000:09d}".rstrip("0")
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000)) + (f".{frac}Z" if frac else "Z")


def _clean(path: str) -> str:
    """The API path made absolute; a trailing '/' or '/.' is kept (it means 'the contents')."""
    if not path:
        raise errdefs.InvalidArgument("path is required")
    p = posixpath.normpath("/" + path)
    if path.endswith("/."):
        return p.rstrip("/") + "/."
    return p.rstrip("/") + "/" if path.endswith("/") and p != "/" else p


def _follows_last(path: str) -> bool:
    # moby resolves the last component only when the path says "inside this directory".
    return path.endswith("/") or path.endswith("/.")


def _lookup(root_fd: int, path: str):
    """(parent dir fd, name) of path beneath root; the last component unresolved unless the path
    ends in '/' or '/.'. Raises FileNotFoundError / NotADirectoryError."""
    if _follows_last(path) or path == "/":
        fd = safepath.open_dir(root_fd, path)
        return fd, "."
    return safepath.open_parent(root_fd, path)


def _container_path(root_fd: int, fd: int) -> str:
    """Where fd is, as a path in the container (both were opened through the same root)."""
    root, target = os.readlink(f"/proc/self/fd/{root_fd}"), os.readlink(f"/proc/self/fd/{fd}")
    if root == "/":
        return target
    return target[len(root):] or "/" if target == root or target.startswith(root + "/") else target


def stat_path(root_fd: int, path: str) -> dict:
    """moby's PathStat of path (lstat; linkTarget is where a symlink leads, inside the container)."""
    path = _clean(path)
    parent, name = _lookup(root_fd, path)
    try:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    finally:
        os.close(parent)
    link = ""
    if stat.S_ISLNK(st.st_mode):
        try:
            fd = safepath.open_beneath(root_fd, path, os.O_PATH)
            try:
                link = _container_path(root_fd, fd)
            finally:
                os.close(fd)
        except OSError:
            link = ""  # dangling: docker reports no target either
    base = posixpath.basename(path.rstrip("/")) if path not in ("/",) else "/"
    return {"name": base or "/", "size": st.st_size, "mode": go_file_mode(st.st_mode),
            "mtime": _rfc3339(st.st_mtime), "linkTarget": link}


def write_tar(root_fd: int, path: str, out) -> None:
    """Archive path (a file or a tree) into ``out``, named by the path's base name as moby does."""
    path = _clean(path)
    arcroot = "." if path.endswith("/.") else (posixpath.basename(path.rstrip("/")) or ".")
    parent, name = _lookup(root_fd, path)
    try:
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:
            _add(tf, parent, name, arcroot, {})
    finally:
        os.close(parent)


def _add(tf, dir_fd: int, name: str, arcname: str, inodes: dict) -> None:
    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    ti = tarfile.TarInfo(arcname)
    ti.mode, ti.uid, ti.gid, ti.mtime = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, int(st.st_mtime)
    if stat.S_ISDIR(st.st_mode):
        ti.type = tarfile.DIRTYPE
        tf.addfile(ti)
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        try:
            for child in sorted(os.listdir(fd)):
                _add(tf, fd, child, f"{arcname}/{child}", inodes)
        finally:
            os.close(fd)
    elif stat.S_ISLNK(st.st_mode):
        ti.type, ti.linkname = tarfile.SYMTYPE, os.readlink(name, dir_fd=dir_fd)
        tf.addfile(ti)
    elif stat.S_ISREG(st.st_mode):
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in inodes:
            ti.type, ti.linkname = tarfile.LNKTYPE, inodes[key]
            tf.addfile(ti)
            return
        inodes[key] = arcname
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        with os.fdopen(fd, "rb") as f:
            ti.size = os.fstat(fd).st_size
            tf.addfile(ti, f)
    elif stat.S_ISFIFO(st.st_mode):
        ti.type = tarfile.FIFOTYPE
        tf.addfile(ti)
    elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        ti.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
        ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        tf.addfile(ti)
    # sockets cannot be archived (moby skips them too)


def extract_tar(root_fd: int, path: str, fileobj, no_overwrite_dir_non_dir: bool, copy_uidgid: bool) -> None:
    """Unpack a tar into the directory path. Without copy_uidgid entries are owned by root, as
    docker cp does; with no_overwrite_dir_non_dir a dir never replaces a non-dir or vice versa."""
    from dockyard.images.archive import apply_layer, clean_member_name

    try:
        dest = safepath.open_dir(root_fd, path)
    except NotADirectoryError:
        raise errdefs.InvalidArgument(f"extraction point is not a directory: {path}") from None
    try:
        if not copy_uidgid or no_overwrite_dir_non_dir:
            # One pass rewrites owners and checks kinds; the result goes to the unpacker.
            fileobj = _rewrite(fileobj, dest, no_overwrite_dir_non_dir, copy_uidgid, clean_member_name)
        apply_layer(fileobj, f"/proc/self/fd/{dest}", overlay=False)
    finally:
        os.close(dest)


def _rewrite(fileobj, dest_fd, check_kinds, copy_uidgid, clean):
    out = tempfile.SpooledTemporaryFile(32 << 20)
    try:
        with tarfile.open(fileobj=fileobj, mode="r|*") as src, tarfile.open(fileobj=out, mode="w|",
                                                                            format=tarfile.PAX_FORMAT) as dst:
            for m in src:
                if check_kinds:
                    _check_kind(dest_fd, clean(m.name), m)
                if not copy_uidgid:
                    m.uid = m.gid = 0
                    m.uname = m.gname = ""
                dst.addfile(m, src.extractfile(m) if m.isreg() else None)
    except tarfile.TarError as e:
        raise errdefs.InvalidArgument(f"not a valid tar archive: {e}") from e
    out.seek(0)
    return out


def _check_kind(dest_fd: int, name: str, m) -> None:
    if name in ("", "."):
        return
    try:
        parent, base = safepath.open_parent(dest_fd, name)
    except (FileNotFoundError, NotADirectoryError):
        return  # its parent is new: nothing there to overwrite
    try:
        st = os.stat(base, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return
    finally:
        os.close(parent)
    if stat.S_ISDIR(st.st_mode) and not m.isdir():
        raise errdefs.InvalidArgument(f'cannot overwrite directory "/{name}" with non-directory "{m.name}"')
    if not stat.S_ISDIR(st.st_mode) and m.isdir():
        raise errdefs.InvalidArgument(f'cannot overwrite non-directory "/{name}" with directory "{m.name}"')


class CopyOps:
    """Engine methods behind GET/HEAD/PUT /containers/{id}/archive (mixed into Engine)."""

    @contextlib.asynccontextmanager
    async def _fs_root(self, ref: str):
        """A directory fd of the container's root as its processes see it (or its mounted rootfs)."""
        c = self.get(ref)
        fd = None
        if c.state.running and c.state.pid:
            try:
                fd = await asyncio.to_thread(os.open, f"/proc/{c.state.pid}/root", os.O_PATH | os.O_DIRECTORY)
            except (FileNotFoundError, ProcessLookupError):
                fd = None  # exited just now: fall back to the mounted rootfs below
        if fd is not None:
            try:
                yield c, fd
            finally:
                os.close(fd)
            return
        async with self._locks[c.id]:
            mounted = await asyncio.to_thread(self._mount_stopped, c)
            try:
                fd = os.open(c.rootfs, os.O_PATH | os.O_DIRECTORY)
                try:
                    yield c, fd
                finally:
                    os.close(fd)
            finally:
                if mounted:
                    await asyncio.to_thread(sysmount.unmount, c.rootfs)

    def _mount_stopped(self, c) -> bool:
        if sysmount.is_mountpoint(c.rootfs):
            return False  # mounted by a run that is being torn down: use it, leave it
        os.makedirs(c.rootfs, mode=0o700, exist_ok=True)
        sysmount.apply_rootfs(self.images.prepare_rootfs(c.id, c.image_id), c.rootfs)
        return True

    @staticmethod
    def _not_found(c, path: str, e: OSError):
        if isinstance(e, (FileNotFoundError, NotADirectoryError)):
            return errdefs.NotFound(f"Could not find the file {path} in container {c.name.lstrip('/')}")
        return errdefs.Internal(f"{path} in container {c.name.lstrip('/')}: {e.strerror}")

    async def archive_stat(self, ref: str, path: str) -> dict:
        async with self._fs_root(ref) as (c, root):
            try:
                return await asyncio.to_thread(stat_path, root, path)
            except OSError as e:
                raise self._not_found(c, path, e) from e

    async def get_archive(self, ref: str, path: str):
        """(PathStat, a file positioned at the start of the tar). The tar is spooled so the
        stopped container's rootfs is unmounted before the response is streamed."""
        async with self._fs_root(ref) as (c, root):
            def build():
                st = stat_path(root, path)
                out = tempfile.SpooledTemporaryFile(32 << 20)
                try:
                    write_tar(root, path, out)
                except BaseException:
                    out.close()
                    raise
                out.seek(0)
                return st, out
            try:
                return await asyncio.to_thread(build)
            except OSError as e:
                raise self._not_found(c, path, e) from e

    async def put_archive(self, ref: str, path: str, fileobj, no_overwrite_dir_non_dir=False, copy_uidgid=False):
        async with self._fs_root(ref) as (c, root):
            try:
                await asyncio.to_thread(extract_tar, root, _clean(path), fileobj, no_overwrite_dir_non_dir,
                                        copy_uidgid)
            except OSError as e:
                raise self._not_found(c, path, e) from e
