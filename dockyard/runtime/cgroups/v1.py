"""cgroup v1 executor: one directory per mounted hierarchy, writes from ``plan.plan_v1``.

Like runc, a container also joins the hierarchies that carry no resource controller (name=systemd
and, on a hybrid host, the cgroup2 mount), so that destroy() removes what the runtime made there.

Kernel quirks handled here: a new cpuset cgroup starts with empty cpus/mems and refuses tasks
until they are copied down from the parent; memory.memsw.limit_in_bytes must stay >= the memory
limit at every moment, so a limit is retried after the memsw write when the kernel says EINVAL.
"""

import os
import time

from dockyard import errdefs
from dockyard.runtime.cgroups import Cgroup, _makedirs, _read, _read_pids, _rmdir, _write
from dockyard.runtime.cgroups import plan


class CgroupV1(Cgroup):
    version = 1

    def __init__(self, mounts: dict[str, str], path: str, extra: list[str] = ()):
        self.path = path
        self.mounts = mounts  # controller -> mount point
        self.extra = list(extra)  # membership-only hierarchies (name=systemd, hybrid cgroup2)
        self._rel = path.lstrip("/")

    def dir(self, controller: str) -> str:
        return os.path.join(self.mounts[controller], self._rel)

    def _dirs(self) -> list[str]:
        # Co-mounted controllers (cpu,cpuacct) share one directory: visit it once.
        return sorted({self.dir(c) for c in self.mounts} | {os.path.join(m, self._rel) for m in self.extra})

    def _file(self, controller: str, name: str) -> str:
        if controller not in self.mounts:
            raise errdefs.Unavailable(f"cgroup v1 controller {controller!r} is not mounted")
        return os.path.join(self.dir(controller), name)

    def exists(self) -> bool:
        return any(os.path.isdir(d) for d in self._dirs())

    def create(self, resources: dict | None = None) -> None:
        writes = plan.plan_v1(resources or {}, memsw=self._has_memsw())  # validate before mkdir
        made = []
        try:
            for d in self._dirs():
                _makedirs(d, made)
            if "cpuset" in self.mounts:
                self._copy_cpuset_down()
            self._apply(writes)
        except BaseException:
            # Leave nothing behind: remove exactly the directories this call made, deepest first.
            for d in sorted(made, key=len, reverse=True):
                try:
                    os.rmdir(d)
                except OSError:
                    pass
            raise

    def update(self, resources: dict) -> None:
        if not self.exists():
            raise errdefs.NotFound(f"cgroup {self.path} does not exist")
        self._apply(plan.plan_v1(resources, memsw=self._has_memsw()))

    def _has_memsw(self) -> bool:
        m = self.mounts.get("memory")
        return bool(m) and os.path.exists(os.path.join(m, "memory.memsw.limit_in_bytes"))

    def _apply(self, writes) -> None:
        pending_limit = None
        for controller, name, value in writes:
            try:
                _write(self._file(controller, name), value)
            except errdefs.InvalidArgument:
                # Raising the memory limit above the current memsw limit is EINVAL; the memsw
                # write that follows in the plan makes room, then the limit goes in.
                if name != "memory.limit_in_bytes":
                    raise
                pending_limit = value
        if pending_limit is not None:
            _write(self._file("memory", "memory.limit_in_bytes"), pending_limit)

    def _copy_cpuset_down(self) -> None:
        root = self.mounts["cpuset"]
        cur = root
        for part in self._rel.split("/"):
            parent, cur = cur, os.path.join(cur, part)
            for name in ("cpuset.cpus", "cpuset.mems"):
                if not _read(os.path.join(cur, name)).strip():
                    _write(os.path.join(cur, name), _read(os.path.join(parent, name)).strip())

    def add_pid(self, pid: int) -> None:
        for d in self._dirs():
            _write(os.path.join(d, "cgroup.procs"), str(pid))

    def pids(self) -> list[int]:
        out = set()
        for d in self._dirs():
            out |= _read_pids(os.path.join(d, "cgroup.procs"))
        return sorted(out)

    def oom_killed(self) -> bool:
        try:
            return plan.parse_flat_keyed(_read(self._file("memory", "memory.oom_control"))).get("oom_kill", 0) > 0
        except (FileNotFoundError, errdefs.Unavailable):
            return False

    def _opt(self, controller: str, name: str) -> str | None:
        try:
            return _read(self._file(controller, name))
        except (OSError, errdefs.Unavailable):
            return None

    def stats(self) -> dict:
        usage = self._opt("cpuacct", "cpuacct.usage")
        percpu = self._opt("cpuacct", "cpuacct.usage_percpu") or ""
        cstat = plan.parse_flat_keyed(self._opt("cpuacct", "cpuacct.stat") or "")
        tick_ns = 1_000_000_000 // os.sysconf("SC_CLK_TCK")  # cpuacct.stat is in USER_HZ ticks
        throttle = plan.parse_flat_keyed(self._opt("cpu", "cpu.stat") or "")
        mstat = plan.parse_flat_keyed(self._opt("memory", "memory.stat") or "")
        read, write = plan.parse_blkio_v1(self._opt("blkio", "blkio.throttle.io_service_bytes_recursive") or "")
        mu, ml, mm = (self._opt("memory", f) for f in
                      ("memory.usage_in_bytes", "memory.limit_in_bytes", "memory.max_usage_in_bytes"))
        pc, pl = self._opt("pids", "pids.current"), self._opt("pids", "pids.max")
        return {
            "cpu": {"usage_ns": int(usage or 0), "user_ns": cstat.get("user", 0) * tick_ns,
                    "system_ns": cstat.get("system", 0) * tick_ns,
                    "percpu_ns": [int(x) for x in percpu.split()],
                    "throttled_periods": throttle.get("nr_throttled", 0),
                    "throttled_ns": throttle.get("throttled_time", 0)},
            "memory": {"usage": int(mu or 0), "limit": plan.parse_limit(ml or "max"),
                       "inactive_file": mstat.get("total_inactive_file", mstat.get("inactive_file", 0)),
                       "max_usage": int(mm) if mm else None},
            "pids": {"current": int(pc or 0), "limit": plan.parse_limit(pl or "max")},
            "io": {"read_bytes": read, "write_bytes": write},
        }

    def freeze(self) -> None:
        self._freezer("FROZEN")

    def thaw(self) -> None:
        self._freezer("THAWED")

    def frozen(self) -> bool:
        return (self._opt("freezer", "freezer.state") or "").strip() == "FROZEN"

    def _freezer(self, state: str) -> None:
        f = self._file("freezer", "freezer.state")
        if not os.path.isdir(os.path.dirname(f)):
            raise errdefs.NotFound(f"cgroup {self.path} does not exist")
        deadline = time.monotonic() + 5
        # Freezing can stay in FREEZING while tasks are in uninterruptible sleep; writing again
        # retries the tasks that were missed.
        while True:
            _write(f, state)
            if _read(f).strip() == state:
                return
            if time.monotonic() > deadline:
                raise errdefs.Internal(f"cgroup {self.path} did not reach {state} (stuck in {_read(f).strip()})")
            time.sleep(0.01)

    def destroy(self) -> None:
        # Deepest directory only: the parents (/dockyard) are shared with other containers.
        _rmdir(self._dirs(), self.pids)

