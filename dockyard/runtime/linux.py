"""The container's Linux environment: namespaces, the mount tree, devices, pivot_root.

Mounts are planned as data first (``plan_mounts``: config.json in, a list of ``Mount`` out, pure,
tested without root), then applied by ``apply_mounts`` inside the container's new mount namespace.
Destinations come from config.json and are resolved inside the rootfs with ``resolve_in_root``,
so a symlink in the image cannot redirect a mount onto the host.

Everything here runs in the container's init (a forked child of ``dockyard-runtime create``)
before it execs the user's process; errors are OSError/errdefs and the caller reports them.
"""

import os
import stat

from dockyard import errdefs
from dockyard.runtime import syscalls as sc

NAMESPACES = {  # OCI type -> (clone flag, /proc/<pid>/ns name)
    "pid": (sc.CLONE_NEWPID, "pid"), "network": (sc.CLONE_NEWNET, "net"),
    "mount": (sc.CLONE_NEWNS, "mnt"), "ipc": (sc.CLONE_NEWIPC, "ipc"),
    "uts": (sc.CLONE_NEWUTS, "uts"), "user": (sc.CLONE_NEWUSER, "user"),
    "cgroup": (sc.CLONE_NEWCGROUP, "cgroup"),
}

# mount(8) option -> (flags to set, flags to clear)
_FLAGS = {
    "ro": (sc.MS_RDONLY, 0), "rw": (0, sc.MS_RDONLY),
    "nosuid": (sc.MS_NOSUID, 0), "suid": (0, sc.MS_NOSUID),
    "nodev": (sc.MS_NODEV, 0), "dev": (0, sc.MS_NODEV),
    "noexec": (sc.MS_NOEXEC, 0), "exec": (0, sc.MS_NOEXEC),
    "sync": (sc.MS_SYNCHRONOUS, 0), "async": (0, sc.MS_SYNCHRONOUS),
    "dirsync": (sc.MS_DIRSYNC, 0), "remount": (sc.MS_REMOUNT, 0),
    "mand": (sc.MS_MANDLOCK, 0), "nomand": (0, sc.MS_MANDLOCK),
    "noatime": (sc.MS_NOATIME, 0), "atime": (0, sc.MS_NOATIME),
    "nodiratime": (sc.MS_NODIRATIME, 0), "diratime": (0, sc.MS_NODIRATIME),
    "relatime": (sc.MS_RELATIME, 0), "norelatime": (0, sc.MS_RELATIME),
    "strictatime": (sc.MS_STRICTATIME, 0), "nostrictatime": (0, sc.MS_STRICTATIME),
    "lazytime": (sc.MS_LAZYTIME, 0), "nolazytime": (0, sc.MS_LAZYTIME),
    "nosymfollow": (sc.MS_NOSYMFOLLOW, 0), "symfollow": (0, sc.MS_NOSYMFOLLOW),
    "bind": (sc.MS_BIND, 0), "rbind": (sc.MS_BIND | sc.MS_REC, 0),
}
PROPAGATION = {
    "private": sc.MS_PRIVATE, "rprivate": sc.MS_PRIVATE | sc.MS_REC,
    "shared": sc.MS_SHARED, "rshared": sc.MS_SHARED | sc.MS_REC,
    "slave": sc.MS_SLAVE, "rslave": sc.MS_SLAVE | sc.MS_REC,
    "unbindable": sc.MS_UNBINDABLE, "runbindable": sc.MS_UNBINDABLE | sc.MS_REC,
}
# Flags a bind remount must repeat, or the kernel clears them (statvfs f_flag -> MS_*).
_ST_TO_MS = ((os.ST_NOSUID, sc.MS_NOSUID), (os.ST_NODEV, sc.MS_NODEV), (os.ST_NOEXEC, sc.MS_NOEXEC),
             (os.ST_NOATIME, sc.MS_NOATIME), (os.ST_NODIRATIME, sc.MS_NODIRATIME),
             (os.ST_RELATIME, sc.MS_RELATIME))

DEFAULT_DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
DEV_SYMLINKS = (("/proc/self/fd", "fd"), ("/proc/self/fd/0", "stdin"), ("/proc/self/fd/1", "stdout"),
                ("/proc/self/fd/2", "stderr"), ("pts/ptmx", "ptmx"))


class Mount:
    """One mount(2) of the plan; ``target`` is the path inside the container. ``propagation`` is
    applied by a separate mount(2) after the mount itself; ``bind``: flags other than
    MS_BIND|MS_REC need a remount of the bind. (A plain class: typing.NamedTuple or
    collections.namedtuple would cost every container start 1-4 ms of imports.)"""

    __slots__ = ("source", "target", "fstype", "flags", "data", "propagation", "bind")

    def __init__(self, source, target, fstype, flags=0, data="", propagation=0, bind=False):
        self.source, self.target, self.fstype, self.flags = source, target, fstype, flags
        self.data, self.propagation, self.bind = data, propagation, bind

    def _fields(self) -> tuple:
        return tuple(getattr(self, f) for f in self.__slots__)

    def __eq__(self, other):
        return isinstance(other, Mount) and self._fields() == other._fields()

    def __repr__(self):
        return "Mount(" + ", ".join(f"{f}={getattr(self, f)!r}" for f in self.__slots__) + ")"


def parse_options(options) -> tuple[int, int, str]:
    """mount options -> (flags, propagation flags, data string for the filesystem)."""
    flags, prop, data = 0, 0, []
    for o in options or ():
        if o in _FLAGS:
            set_, clear = _FLAGS[o]
            flags = (flags | set_) & ~clear
        elif o in PROPAGATION:
            prop |= PROPAGATION[o]
        else:
            data.append(o)
    return flags, prop, ",".join(data)


def plan_mounts(mounts: list[dict], cgroup_hierarchies=(), cgroupns=True) -> list[Mount]:
    """config.json ``mounts`` -> the mount(2) calls, in order.

    ``cgroup_hierarchies``: (name, fstype, super options, host mount point, own cgroup path) of
    each host cgroup hierarchy; a ``cgroup`` mount becomes one mount per hierarchy (v1 has many,
    v2 one). Inside a cgroup namespace each is mounted fresh and shows the container's own cgroup
    as its root; without one, the container's own cgroup dir is bind-mounted from the host.
    """
    plan = []
    for m in mounts:
        dst = m.get("destination", "")
        if not dst.startswith("/"):
            raise errdefs.InvalidArgument(f"mount destination {dst!r} is not an absolute path")
        flags, prop, data = parse_options(m.get("options"))
        fstype, src = m.get("type") or None, m.get("source")
        if fstype == "bind":
            flags |= sc.MS_BIND
        if flags & sc.MS_BIND:
            if not src:
                raise errdefs.InvalidArgument(f"bind mount on {dst} has no source")
            plan.append(Mount(src, dst, None, flags, "", prop, bind=True))
        elif fstype == "cgroup" and any(h[1] == "cgroup" for h in cgroup_hierarchies):
            # v1 (or hybrid): a tmpfs holding one directory per hierarchy, each mounted with the
            # same flags; the tmpfs itself becomes read-only (if asked) once they are in place.
            plan.append(Mount("cgroup", dst, "tmpfs", flags & ~sc.MS_RDONLY, "mode=755", prop))
            for name, htype, opts, host_mp, own in cgroup_hierarchies:
                sub = dst.rstrip("/") + "/" + name
                if cgroupns:
                    plan.append(Mount(htype, sub, htype, flags, ",".join(opts) if htype == "cgroup" else ""))
                else:
                    plan.append(Mount(host_mp + own, sub, None, sc.MS_BIND | sc.MS_REC | flags, "", 0, bind=True))
            if flags & sc.MS_RDONLY:
                plan.append(Mount(None, dst, None, sc.MS_REMOUNT | flags, "mode=755"))
        elif fstype == "cgroup" and not cgroupns and cgroup_hierarchies:
            _, _, _, host_mp, own = cgroup_hierarchies[0]  # v2: the one unified hierarchy
            plan.append(Mount(host_mp + own, dst, None, sc.MS_BIND | sc.MS_REC | flags, "", prop, bind=True))
        elif fstype == "cgroup":
            plan.append(Mount("cgroup2", dst, "cgroup2", flags, data, prop))
        else:
            plan.append(Mount(src, dst, fstype, flags, data, prop))
    return plan


def cgroup_hierarchies() -> list[tuple]:
    """The host's cgroup mounts under /sys/fs/cgroup, for ``plan_mounts`` (reads mountinfo)."""
    own = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            for c in ctrls.split(",") if ctrls else [""]:
                own[c] = path
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, rfields = left.split(), right.split()
            mp = fields[4]
            if not rfields or rfields[0] not in ("cgroup", "cgroup2") or not mp.startswith("/sys/fs/cgroup"):
                continue
            if rfields[0] == "cgroup2":
                out.append((os.path.basename(mp) if mp != "/sys/fs/cgroup" else "", "cgroup2", [], mp, own.get("", "/")))
                continue
            opts = [o for o in rfields[2].split(",") if o not in ("rw", "ro")]
            out.append((os.path.basename(mp), "cgroup", opts, mp, next((own[o] for o in opts if o in own), "/")))
    return out


# --- paths inside the rootfs ---------------------------------------------------------------------

def resolve_in_root(root: str, path: str) -> str:
    """Host path of container path ``path`` under ``root``, following symlinks as if ``root``
    were ``/``: '..' and absolute links never leave it. Missing components are allowed."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    done: list[str] = []
    links = 0
    while parts:
        p = parts.pop(0)
        if p == "..":
            if done:
                done.pop()
            continue
        cur = os.path.join(root, *done, p)
        try:
            target = os.readlink(cur)
        except OSError:  # not a symlink, or missing: take it as it is
            done.append(p)
            continue
        links += 1
        if links > 40:
            raise errdefs.InvalidArgument(f"too many levels of symbolic links in {path}")
        if target.startswith("/"):
            done = []
        parts = [x for x in target.split("/") if x not in ("", ".")] + parts
    return os.path.join(root, *done)


def _make_target(host_path: str, like_file: bool) -> None:
    if os.path.lexists(host_path):
        return
    os.makedirs(os.path.dirname(host_path), exist_ok=True)
    if like_file:
        open(host_path, "a").close()
    else:
        os.mkdir(host_path, 0o755)


# --- applying the plan ---------------------------------------------------------------------------

def prepare_root(rootfs: str, propagation: str | None) -> None:
    """Detach our mount namespace from the host's, then make the rootfs a mount point.

    Propagation first: with the host's / shared, every mount below would appear on the host too.
    The rootfs must be a mount of its own for pivot_root, hence the bind onto itself.
    """
    sc.mount(None, "/", None, PROPAGATION.get(propagation or "rprivate", sc.MS_PRIVATE | sc.MS_REC))
    sc.mount(rootfs, rootfs, None, sc.MS_BIND | sc.MS_REC)


def apply_mounts(rootfs: str, plan: list[Mount], mount_label: str = "") -> None:
    for m in plan:
        target = resolve_in_root(rootfs, m.target)
        if m.bind:
            try:
                src_is_file = not stat.S_ISDIR(os.stat(m.source).st_mode)
            except OSError as e:
                raise OSError(e.errno, f"bind mount source {m.source}: {e.strerror.lower()}") from e
            _make_target(target, src_is_file)
            sc.mount(m.source, target, None, m.flags & (sc.MS_BIND | sc.MS_REC))
            # A bind takes no flags in the same call: ro/nosuid/... need a remount of the bind.
            extra = m.flags & ~(sc.MS_BIND | sc.MS_REC)
            if extra:
                sc.mount(None, target, None, sc.MS_BIND | sc.MS_REMOUNT | extra | _kept_flags(target))
        else:
            if not m.flags & sc.MS_REMOUNT:
                _make_target(target, False)
            try:
                sc.mount(m.source, target, m.fstype, m.flags, m.data or None)
            except OSError as e:
                raise OSError(e.errno, f"mount {m.fstype or m.source} on {m.target}: {e.strerror.lower()}") from e
        if m.propagation:
            sc.mount(None, target, None, m.propagation)


def _kept_flags(path: str) -> int:
    f = os.statvfs(path).f_flag
    return sum(ms for st, ms in _ST_TO_MS if f & st)


def setup_dev(rootfs: str, devices: list[dict]) -> None:
    """Device nodes and the usual /dev symlinks in a tmpfs /dev.

    Default nodes are bind mounts of the host's: mknod may be refused (device cgroup, nodev
    mounts), a bind of an existing node always works. Config devices with no host twin are mknod'ed.
    """
    dev = resolve_in_root(rootfs, "/dev")
    for d in devices or ():
        path = d.get("path", "")
        target = resolve_in_root(rootfs, path)
        kind = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}.get(d.get("type"))
        if kind is None:
            raise errdefs.InvalidArgument(f"device {path}: unknown type {d.get('type')!r}")
        rdev = os.makedev(d.get("major", 0), d.get("minor", 0))
        try:
            st = os.stat(path)
            host_twin = stat.S_IFMT(st.st_mode) == kind and st.st_rdev == rdev
        except OSError:
            host_twin = False
        if os.path.lexists(target):
            os.unlink(target)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if host_twin:
            _make_target(target, True)
            sc.mount(path, target, None, sc.MS_BIND)
        else:
            os.mknod(target, kind | (d.get("fileMode", 0o666) & 0o7777), rdev)
            os.chown(target, d.get("uid", 0), d.get("gid", 0))
    for name in DEFAULT_DEVICES:  # after the config's, which may name the same nodes
        target = os.path.join(dev, name)
        if not os.path.lexists(target):
            _make_target(target, True)
            sc.mount("/dev/" + name, target, None, sc.MS_BIND)
    for src, name in DEV_SYMLINKS:
        link = os.path.join(dev, name)
        if not os.path.lexists(link):
            os.symlink(src, link)
    if os.path.exists("/proc/kcore") and not os.path.lexists(os.path.join(dev, "core")):
        os.symlink("/proc/kcore", os.path.join(dev, "core"))


def pivot(rootfs: str, no_pivot: bool = False) -> None:
    """Make ``rootfs`` the root and drop the host's tree from this mount namespace.

    pivot_root(".", ".") stacks the old root on top of the new one at "/"; unmounting "." then
    removes the old root without needing a temporary directory inside the image. It is made a
    slave first so the detach cannot propagate to the host.
    """
    os.chdir(rootfs)
    if no_pivot:  # e.g. a ramfs root, where pivot_root is refused
        sc.mount(rootfs, "/", None, sc.MS_MOVE)
        os.chroot(".")
    else:
        sc.pivot_root(".", ".")
        sc.mount(None, ".", None, sc.MS_SLAVE | sc.MS_REC)
        sc.umount2(".", sc.MNT_DETACH)
    os.chdir("/")


def readonly_path(path: str) -> None:
    try:
        sc.mount(path, path, None, sc.MS_BIND | sc.MS_REC)
    except FileNotFoundError:
        return
    sc.mount(None, path, None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | sc.MS_REC | _kept_flags(path))


def mask_path(path: str) -> None:
    """Hide a file behind /dev/null, a directory behind an empty read-only tmpfs."""
    try:
        is_dir = stat.S_ISDIR(os.stat(path).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return
    if is_dir:
        sc.mount("tmpfs", path, "tmpfs", sc.MS_RDONLY)
    else:
        sc.mount("/dev/null", path, None, sc.MS_BIND)


def remount_root_readonly() -> None:
    sc.mount(None, "/", None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | _kept_flags("/"))


def write_sysctl(sysctl: dict) -> None:
    for key, value in (sysctl or {}).items():
        path = "/proc/sys/" + key.replace(".", "/")
        try:
            with open(path, "w") as f:
                f.write(str(value))
        except OSError as e:
            raise OSError(e.errno, f"sysctl {key}={value}: {e.strerror.lower()}") from e


def loopback_up() -> None:
    """A new network namespace has lo down; Docker's --network none has it up."""
    import fcntl
    import struct

    SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
    s = sc.socket(sc.AF_INET, sc.SOCK_DGRAM)  # not the socket module: ~3 ms to import
    try:
        ifr = fcntl.ioctl(s, SIOCGIFFLAGS, struct.pack("16sH14x", b"lo", 0))
        flags = struct.unpack("16sH14x", ifr)[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))
    finally:
        os.close(s)


def host_devices() -> list[dict]:
    """Every char/block device under the host's /dev, as OCI linux.devices (for --privileged)."""
    out = []
    for dirpath, dirnames, filenames in os.walk("/dev"):
        dirnames[:] = [d for d in dirnames if d not in ("pts", "shm", "mqueue")]
        for name in filenames:
            path = os.path.join(dirpath, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                if path in ("/dev/console", "/dev/ptmx") or path.startswith("/dev/tty") and path != "/dev/tty":
                    continue
                out.append({"path": path, "type": "c" if stat.S_ISCHR(st.st_mode) else "b",
                            "major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev),
                            "fileMode": st.st_mode & 0o7777, "uid": st.st_uid, "gid": st.st_gid})
    return out

