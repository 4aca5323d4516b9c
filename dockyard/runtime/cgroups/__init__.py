"""cgroups: one interface over cgroup v1 and v2 (the cgroupfs driver; no systemd).

    from dockyard.runtime import cgroups
    cg = cgroups.open("/dockyard/<id>")   # v2 if /sys/fs/cgroup is cgroup2, else v1 controllers
    cg.create(linux_resources)            # mkdir in every hierarchy, then apply the limits
    cg.update(linux_resources); cg.add_pid(pid); cg.pids(); cg.oom_killed(); cg.stats()
    cg.freeze(); cg.thaw(); cg.frozen(); cg.destroy()

``path`` is absolute from the hierarchy root (Docker's cgroupfs layout), never relative to the
caller's own cgroup. OCI resources are translated by the pure functions in ``plan.py``; ``v1.py``
and ``v2.py`` only read and write files. ``destroy()`` never kills: it removes the directories and
raises Conflict while processes remain (the runtime kills, the cgroup layer only observes).

Overrides (tests, odd hosts): env ``DOCKYARD_CGROUP_DRIVER=v1|v2`` forces the version and
``DOCKYARD_CGROUP_ROOT`` sets the v2 mount point (the default for a forced v2 is the first cgroup2
mount, e.g. /sys/fs/cgroup/unified on a hybrid host); ``open(path, driver=, root=)`` take precedence.
"""

import builtins
import errno
import os
import time

from dockyard import errdefs

CGROUP_FS = "/sys/fs/cgroup"


class Cgroup:
    """What every driver provides. ``stats()`` returns, normalised across versions::

        {"cpu": {"usage_ns", "user_ns", "system_ns", "percpu_ns": [...] (v1 only, else []),
                 "throttled_periods", "throttled_ns"},
         "memory": {"usage", "limit" (None = unlimited), "inactive_file", "max_usage" (v1, else None)},
         "pids": {"current", "limit" (None = unlimited)},
         "io": {"read_bytes", "write_bytes"}}
    """

    version: int
    path: str

    def create(self, resources: dict | None = None) -> None: ...
    def update(self, resources: dict) -> None: ...
    def add_pid(self, pid: int) -> None: ...
    def pids(self) -> list[int]: ...
    def exists(self) -> bool: ...
    def oom_killed(self) -> bool: ...
    def stats(self) -> dict: ...
    def freeze(self) -> None: ...
    def thaw(self) -> None: ...
    def frozen(self) -> bool: ...
    def destroy(self) -> None: ...


def _mounts() -> list[tuple[str, str, list[str]]]:
    """(mountpoint, fstype, super options) of every cgroup/cgroup2 mount, from mountinfo."""
    out = []
    with builtins.open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, rfields = left.split(), right.split()
            if rfields and rfields[0] in ("cgroup", "cgroup2"):
                # Mount points escape spaces as \040.
                mp = fields[4].replace("\\040", " ")
                out.append((mp, rfields[0], rfields[2].split(",") if len(rfields) > 2 else []))
    return out


def v1_mounts(mounts=None) -> dict[str, str]:
    """controller -> mount point of the v1 hierarchy holding it (co-mounts map to one dir).
    ``mounts``: ``_mounts()`` when the caller has it already (mountinfo may be long)."""
    out = {}
    for mp, fstype, opts in mounts if mounts is not None else _mounts():
        if fstype == "cgroup":
            for o in opts:
                if o not in ("rw", "ro") and not o.startswith(
                        ("name=", "release_agent", "clone_children", "noprefix", "xattr")):
                    out.setdefault(o, mp)
    return out


def v1_membership_hierarchies(mounts=None) -> list[str]:
    """Hierarchies without resource controllers that a v1 container still joins, as runc does:
    named ones (name=systemd) and, on a hybrid host, the cgroup2 mount. Leaving them out would
    leave the runtime's directories there behind at destroy()."""
    return [mp for mp, fstype, opts in (mounts if mounts is not None else _mounts())
            if fstype == "cgroup2" or any(o.startswith("name=") for o in opts)]


def v2_mount() -> str | None:
    if os.environ.get("DOCKYARD_CGROUP_ROOT"):
        return os.environ["DOCKYARD_CGROUP_ROOT"]
    if os.path.exists(os.path.join(CGROUP_FS, "cgroup.controllers")):
        return CGROUP_FS
    return next((mp for mp, fstype, _ in _mounts() if fstype == "cgroup2"), None)


def version() -> int:
    forced = os.environ.get("DOCKYARD_CGROUP_DRIVER", "")
    if forced in ("v1", "v2"):
        return int(forced[1])
    if forced:
        raise errdefs.InvalidArgument(f"DOCKYARD_CGROUP_DRIVER must be v1 or v2, not {forced!r}")
    # Pure unified mode: the cgroup2 root is mounted at /sys/fs/cgroup itself.
    return 2 if os.path.exists(os.path.join(CGROUP_FS, "cgroup.controllers")) else 1


def driver_name() -> str:
    """Docker's name for how cgroups are managed (``docker info`` CgroupDriver)."""
    return "cgroupfs"


def _check_path(path: str) -> str:
    if not isinstance(path, str) or not path.startswith("/") or path == "/":
        raise errdefs.InvalidArgument(f"cgroup path must be absolute and below the root, not {path!r}")
    parts = path.strip("/").split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise errdefs.InvalidArgument(f"cgroup path {path!r} has an empty, '.' or '..' component")
    return "/" + "/".join(parts)


def open(path: str, driver: str | None = None, root: str | None = None) -> Cgroup:  # noqa: A001
    """The cgroup at ``path`` (e.g. "/dockyard/<id>"); nothing is created until ``create()``."""
    path = _check_path(path)
    ver = int(driver[1]) if driver in ("v1", "v2") else version()
    if driver not in (None, "v1", "v2"):
        raise errdefs.InvalidArgument(f"cgroup driver must be v1 or v2, not {driver!r}")
    if ver == 2:
        from dockyard.runtime.cgroups.v2 import CgroupV2

        mount = root or v2_mount()
        if not mount:
            raise errdefs.Unavailable("no cgroup2 hierarchy is mounted")
        return CgroupV2(mount, path)
    from dockyard.runtime.cgroups.v1 import CgroupV1

    table = _mounts()
    mounts, extra = v1_mounts(table), v1_membership_hierarchies(table)
    if root:  # one directory per controller below root, as under /sys/fs/cgroup
        mounts, extra = {c: os.path.join(root, c) for c in mounts}, []
    if not mounts:
        raise errdefs.Unavailable("no cgroup v1 controllers are mounted")
    return CgroupV1(mounts, path, extra)


# ---- helpers shared by the v1 and v2 executors ----

def _read(path: str) -> str:
    # os.read instead of a text file object: stats read ~15 of these per sample, and the io stack
    # costs more than the read. cgroup and proc files here are far below 64 KiB, but loop anyway.
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        parts = []
        while chunk := os.read(fd, 65536):
            parts.append(chunk)
    finally:
        os.close(fd)
    return b"".join(parts).decode()


def _write(path: str, value: str) -> None:
    """One write(2) per value, as the kernel parses each write separately; errors say what failed."""
    try:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)
    except OSError as e:
        msg = f"cannot write {value!r} to {path}: {e.strerror}"
        if e.errno == errno.ENOENT:
            raise errdefs.Unavailable(msg + " (controller not available?)") from e
        if e.errno in (errno.EINVAL, errno.ERANGE, errno.EOVERFLOW):
            raise errdefs.InvalidArgument(msg) from e
        if e.errno == errno.EBUSY:
            raise errdefs.Conflict(msg) from e
        raise errdefs.Internal(msg) from e


def _read_pids(path: str) -> set[int]:
    try:
        return {int(x) for x in _read(path).split()}
    except FileNotFoundError:
        return set()


def _rmdir(dirs: list[str], pids_of) -> None:
    """rmdir each dir, retrying for ~1 s while the last tasks drain (EBUSY until they are reaped)."""
    deadline = time.monotonic() + 1.0
    for d in dirs:
        while True:
            try:
                os.rmdir(d)
                break
            except FileNotFoundError:
                break
            except OSError as e:
                if e.errno != errno.EBUSY:
                    raise errdefs.Internal(f"cannot remove cgroup {d}: {e.strerror}") from e
                if time.monotonic() > deadline:
                    left = sorted(pids_of())
                    raise errdefs.Conflict(
                        f"cgroup {d} is busy" + (f": processes {left} are still in it" if left else "")) from e
                time.sleep(0.02)


def _makedirs(d: str, made: list[str]) -> None:
    """mkdir -p that appends each directory it created to ``made`` (for an exact undo)."""
    missing = []
    while not os.path.isdir(d):
        missing.append(d)
        d = os.path.dirname(d)
    for m in reversed(missing):
        try:
            os.mkdir(m)
            made.append(m)
        except FileExistsError:
            pass  # made concurrently by someone else: not ours to remove
        except OSError as e:
            raise errdefs.Internal(f"cannot create cgroup {m}: {e.strerror}") from e
