"""cgroup v2 executor: one directory in the unified hierarchy, writes from ``plan.plan_v2``.

A controller's files appear in a cgroup only when every ancestor lists it in
cgroup.subtree_control, so create() enables the controllers it needs (and the ones stats read)
from the root down. Controllers the hierarchy does not offer make a limit fail with Unavailable;
stats simply report zeros for them. Devices (eBPF on v2) are not handled.
"""

import os
import time

from dockyard import errdefs
from dockyard.runtime.cgroups import Cgroup, _makedirs, _read, _read_pids, _rmdir, _write
from dockyard.runtime.cgroups import plan

# Enabled when offered, so that stats() has something to read even without limits.
_STATS_CONTROLLERS = {"cpu", "memory", "pids", "io"}


class CgroupV2(Cgroup):
    version = 2

    def __init__(self, mount: str, path: str):
        self.path = path
        self.mount = mount
        self.dir = os.path.join(mount, path.lstrip("/"))

    def exists(self) -> bool:
        return os.path.isdir(self.dir)

    def _ancestors(self) -> list[str]:
        """Root first, the leaf's parent last."""
        out, cur = [self.mount], self.mount
        for part in self.path.strip("/").split("/")[:-1]:
            cur = os.path.join(cur, part)
            out.append(cur)
        return out

    def create(self, resources: dict | None = None) -> None:
        writes = plan.plan_v2(resources or {})
        needed = plan.v2_controllers(writes) - {"cgroup"}
        offered = set(_read(os.path.join(self.mount, "cgroup.controllers")).split())
        missing = needed - offered
        if missing:
            raise errdefs.Unavailable(
                f"cgroup v2 controller(s) {', '.join(sorted(missing))} not available at {self.mount}")
        made = []
        try:
            _makedirs(os.path.dirname(self.dir), made)
            self._enable(needed | (_STATS_CONTROLLERS & offered))
            _makedirs(self.dir, made)
            self._apply(writes)
        except BaseException:
            for d in sorted(made, key=len, reverse=True):
                try:
                    os.rmdir(d)
                except OSError:
                    pass
            raise

    def _enable(self, controllers: set[str]) -> None:
        for d in self._ancestors():
            have = set(_read(os.path.join(d, "cgroup.subtree_control")).split())
            todo = sorted(controllers - have)
            if todo:
                _write(os.path.join(d, "cgroup.subtree_control"), " ".join("+" + c for c in todo))

    def update(self, resources: dict) -> None:
        if not self.exists():
            raise errdefs.NotFound(f"cgroup {self.path} does not exist")
        self._apply(plan.plan_v2(resources))

    def _apply(self, writes) -> None:
        for name, value in writes:
            _write(os.path.join(self.dir, name), value)

    def add_pid(self, pid: int) -> None:
        _write(os.path.join(self.dir, "cgroup.procs"), str(pid))

    def pids(self) -> list[int]:
        return sorted(_read_pids(os.path.join(self.dir, "cgroup.procs")))

    def _opt(self, name: str) -> str | None:
        try:
            return _read(os.path.join(self.dir, name))
        except OSError:
            return None

    def oom_killed(self) -> bool:
        return plan.parse_flat_keyed(self._opt("memory.events") or "").get("oom_kill", 0) > 0

    def stats(self) -> dict:
        cpu = plan.parse_flat_keyed(self._opt("cpu.stat") or "")
        mstat = plan.parse_flat_keyed(self._opt("memory.stat") or "")
        read, write = plan.parse_io_stat_v2(self._opt("io.stat") or "")
        return {
            "cpu": {"usage_ns": cpu.get("usage_usec", 0) * 1000, "user_ns": cpu.get("user_usec", 0) * 1000,
                    "system_ns": cpu.get("system_usec", 0) * 1000, "percpu_ns": [],
                    "throttled_periods": cpu.get("nr_throttled", 0),
                    "throttled_ns": cpu.get("throttled_usec", 0) * 1000},
            "memory": {"usage": int(self._opt("memory.current") or 0),
                       "limit": plan.parse_limit(self._opt("memory.max") or "max"),
                       "inactive_file": mstat.get("inactive_file", 0), "max_usage": None},
            "pids": {"current": int(self._opt("pids.current") or 0),
                     "limit": plan.parse_limit(self._opt("pids.max") or "max")},
            "io": {"read_bytes": read, "write_bytes": write},
        }

    def freeze(self) -> None:
        self._freeze("1")

    def thaw(self) -> None:
        self._freeze("0")

    def frozen(self) -> bool:
        return plan.parse_flat_keyed(self._opt("cgroup.events") or "").get("frozen") == 1

    def _freeze(self, value: str) -> None:
        if not self.exists():
            raise errdefs.NotFound(f"cgroup {self.path} does not exist")
        _write(os.path.join(self.dir, "cgroup.freeze"), value)
        # The write only requests the state; cgroup.events reports when every task got there.
        deadline = time.monotonic() + 5
        while self.frozen() != (value == "1"):
            if time.monotonic() > deadline:
                raise errdefs.Internal(f"cgroup {self.path} did not {'freeze' if value == '1' else 'thaw'} in 5 s")
            time.sleep(0.01)

    def destroy(self) -> None:
        _rmdir([self.dir], self.pids)
