"""The engine's few direct kernel calls: mount, unmount, and reading a file inside a container rootfs.

Mounts are described by the image store as data (``images.Mount``) and applied here with the mount(2)
syscall through ctypes: no ``mount`` subprocess per container start.
"""

import ctypes
import errno
import os

from dockyard import errdefs, safepath

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p)
_libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)

MS_RDONLY, MS_BIND, MS_REC = 1, 4096, 16384
MNT_DETACH = 2


def mount(source: str, target: str, fstype: str, flags: int = 0, data: str = ""):
    if _libc.mount(source.encode(), target.encode(), fstype.encode(), flags, data.encode() or None) != 0:
        e = ctypes.get_errno()
        raise errdefs.Internal(f"mount {fstype} on {target}: {os.strerror(e)}")


def apply_rootfs(mounts, target: str):
    """Apply the image store's rootfs description (one overlay, or a bind for a plain dir) at target."""
    for m in mounts:
        if m.type == "bind":
            mount(m.source, target, "", MS_BIND | MS_REC)
        else:
            mount(m.source, target, m.type, 0, ",".join(m.options))


def unmount(target: str):
    """Lazily unmount target if something is mounted there; idempotent."""
    if not is_mountpoint(target):
        return
    if _libc.umount2(target.encode(), MNT_DETACH) != 0:
        e = ctypes.get_errno()
        if e not in (errno.EINVAL, errno.ENOENT):
            raise errdefs.Internal(f"unmount {target}: {os.strerror(e)}")


def is_mountpoint(path: str) -> bool:
    # /proc/self/mountinfo and not st_dev: a bind of a dir on the same fs has the same st_dev.
    try:
        with open("/proc/self/mountinfo") as f:
            return any(line.split()[4] == path for line in f)
    except OSError:
        return False


def read_in_root(root: str, path: str, limit: int = 1 << 20) -> bytes | None:
    """Read ``path`` as seen from inside ``root`` (symlinks and '..' cannot escape it); None if absent."""
    try:
        fd = safepath.open_beneath(root, path, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        raise errdefs.Internal(f"open {path} in container: {e.strerror}") from e
    with os.fdopen(fd, "rb") as f:
        return f.read(limit)
