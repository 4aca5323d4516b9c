"""The one resolver for untrusted paths (image tars, API bodies, later cp and build contexts).

An ``unsafe_path`` is interpreted as if ``root`` were ``/`` (a chroot): ``..`` stops at root and
absolute symlinks restart at root, so nothing it names can be outside root. Two ways to use it:

* ``open_beneath(root, unsafe_path, flags)``: the kernel does the walk with openat2(2) and
  RESOLVE_IN_ROOT, which is race-free against a tree that changes underneath us. Creating helpers
  (``open_parent`` + the ``*at`` calls with ``dir_fd``) build on it, so the last component is
  created relative to a directory fd that is known to be inside root, never through a path string.
* ``resolve(root, unsafe_path)``: the same walk in userspace, returning a path string. Safe only while
  no one else is changing the tree (e.g. a directory we just created); it is also the fallback when
  openat2 is missing (Linux < 5.6), in which case the opened fd is re-checked through /proc.
"""

import collections
import ctypes
import errno
import os
import stat

from dockyard.errdefs import InvalidArgument

MAX_SYMLINKS = 40  # what the kernel allows in one walk (ELOOP beyond it)

# openat2(2): struct open_how and RESOLVE_* flags from linux/openat2.h; syscall 437 on every arch
# that uses the generic table (x86_64, aarch64).
SYS_OPENAT2 = 437
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_have_openat2: bool | None = None  # decided on first use


def _split(unsafe_path: str) -> list[str]:
    return [p for p in unsafe_path.split("/") if p and p != "."]


def resolve(root: str, unsafe_path: str, follow_last: bool = True) -> str:
    """Resolve ``unsafe_path`` inside ``root``, following symlinks as if root were ``/``.

    Components that do not exist are taken literally (so the result can name a file to create).
    """
    root = os.path.realpath(root)
    pending = collections.deque(_split(unsafe_path))
    resolved: list[str] = []  # components below root, none of them a symlink
    links = 0
    while pending:
        part = pending.popleft()
        if part == "..":
            if resolved:
                resolved.pop()  # lexical is right: every resolved component is a real directory
            continue
        candidate = os.path.join(root, *resolved, part)
        try:
            st = os.lstat(candidate)
        except (FileNotFoundError, NotADirectoryError):
            resolved.append(part)
            continue
        if not stat.S_ISLNK(st.st_mode) or (not pending and not follow_last):
            resolved.append(part)
            continue
        links += 1
        if links > MAX_SYMLINKS:
            raise InvalidArgument(f"too many levels of symbolic links resolving {unsafe_path!r}")
        target = os.readlink(candidate)
        if target.startswith("/"):
            resolved = []
        pending.extendleft(reversed(_split(target)))
    return os.path.join(root, *resolved)


def _openat2(dir_fd: int, path: str, flags: int, mode: int) -> int:
    how = _OpenHow(flags | os.O_CLOEXEC, mode if flags & os.O_CREAT else 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
    while True:
        fd = _libc.syscall(SYS_OPENAT2, dir_fd, os.fsencode(path), ctypes.byref(how), ctypes.sizeof(how))
        if fd >= 0:
            return fd
        err = ctypes.get_errno()
        if err in (errno.EINTR, errno.EAGAIN):  # EAGAIN: a concurrent rename raced the walk
            continue
        raise OSError(err, os.strerror(err), path)


def _fd_path(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


def _open_fallback(root_fd: int, unsafe_path: str, flags: int, mode: int) -> int:
    root = _fd_path(root_fd)
    fd = os.open(resolve(root, unsafe_path), flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    real = _fd_path(fd)
    if real != root and not real.startswith(root.rstrip("/") + "/"):
        os.close(fd)  # the tree changed under the userspace walk: refuse rather than escape
        raise InvalidArgument(f"path {unsafe_path!r} escapes {root}")
    return fd


def open_beneath(root: str | int, unsafe_path: str, flags: int = os.O_RDONLY, mode: int = 0o644) -> int:
    """Open ``unsafe_path`` with root as ``/``; ``root`` is a path or a directory fd. Returns an fd."""
    global _have_openat2
    root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC) if isinstance(root, str) else root
    try:
        rel = "/".join(_split(unsafe_path)) or "."
        if _have_openat2 is not False:
            try:
                fd = _openat2(root_fd, rel, flags, mode)
                _have_openat2 = True
                return fd
            except OSError as e:
                if e.errno != errno.ENOSYS or _have_openat2:
                    raise
                _have_openat2 = False
        return _open_fallback(root_fd, rel, flags, mode)
    finally:
        if isinstance(root, str):
            os.close(root_fd)


def open_dir(root: str | int, unsafe_path: str) -> int:
    """An O_PATH fd of a directory beneath root (for the ``dir_fd=`` of the ``*at`` calls)."""
    return open_beneath(root, unsafe_path, os.O_PATH | os.O_DIRECTORY)


def mkdir_all(root: str | int, unsafe_path: str, mode: int = 0o755) -> int:
    """Create missing directories of ``unsafe_path`` beneath root; return an O_PATH fd of the last."""
    parts = _split(unsafe_path)
    fd = open_dir(root, ".")
    for i, part in enumerate(parts):
        if part == "..":
            os.close(fd)
            fd = open_dir(root, "/".join(parts[: i + 1]))
            continue
        try:
            os.mkdir(part, mode, dir_fd=fd)
        except FileExistsError:
            pass
        os.close(fd)
        # Reopen through the full prefix so a symlink at this component is resolved inside root.
        fd = open_dir(root, "/".join(parts[: i + 1]))
    return fd


def open_parent(root: str | int, unsafe_path: str, create: bool = False) -> tuple[int, str]:
    """(O_PATH fd of the parent directory beneath root, last component) for a ``*at`` call.

    The last component is returned unresolved: callers act on it with ``dir_fd`` and without
    following symlinks, so an entry planted there is replaced, never followed.
    """
    parts = _split(unsafe_path)
    if not parts or parts[-1] == "..":
        raise InvalidArgument(f"path {unsafe_path!r} does not name an entry below the root")
    parent = "/".join(parts[:-1])
    try:
        return open_dir(root, parent), parts[-1]
    except FileNotFoundError:
        if not create:
            raise
    return mkdir_all(root, parent), parts[-1]
