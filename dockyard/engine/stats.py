"""Container resource stats in the shape of Docker's ``GET /containers/{id}/stats``.

The cgroup driver already normalises v1/v2 (``Cgroup.stats()``); this module only adds what lives
outside the cgroup (host CPU time from /proc/stat, the container's interfaces from its netns via
/proc/<pid>/net/dev) and lays it out as moby's ``StatsResponse``. Everything here reads files and
is called in a worker thread; a container that is not running yields moby's all-zero sample.
"""

from __future__ import annotations

import os

from dockyard import errdefs

ZERO_TIME = "0001-01-01T00:00:00Z"
_USER_HZ = os.sysconf("SC_CLK_TCK")


def system_cpu_ns() -> int:
    """Host CPU time (all CPUs, all states) in ns: the denominator the docker CLI uses for CPU %."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:8]  # user nice system idle iowait irq softirq (as moby)
    return sum(int(x) for x in fields) * 1_000_000_000 // _USER_HZ


def net_dev(pid: int) -> dict:
    """Interfaces of pid's network namespace (loopback left out, as moby does)."""
    out = {}
    try:
        with open(f"/proc/{pid}/net/dev") as f:
            lines = f.readlines()[2:]
    except OSError:
        return out
    for line in lines:
        name, _, rest = line.partition(":")
        name, v = name.strip(), [int(x) for x in rest.split()]
        if name == "lo" or len(v) < 16:
            continue
        out[name] = {"rx_bytes": v[0], "rx_packets": v[1], "rx_errors": v[2], "rx_dropped": v[3],
                     "tx_bytes": v[8], "tx_packets": v[9], "tx_errors": v[10], "tx_dropped": v[11]}
    return out


def empty_cpu() -> dict:
    return {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}


def sample(cg, pid: int, read: str) -> dict:
    """One sample (without name/id/preread/precpu_stats, which the caller adds)."""
    try:
        s = cg.stats()
    except (OSError, errdefs.DockyardError):
        s = None
    if s is None:
        return {"read": read, "cpu_stats": empty_cpu(), "memory_stats": {}, "pids_stats": {},
                "blkio_stats": {"io_service_bytes_recursive": None}, "networks": net_dev(pid)}
    cpu, mem, io = s["cpu"], s["memory"], s["io"]
    cpu_stats = {"cpu_usage": {"total_usage": cpu["usage_ns"], "usage_in_kernelmode": cpu["system_ns"],
                               "usage_in_usermode": cpu["user_ns"]},
                 "system_cpu_usage": system_cpu_ns(), "online_cpus": os.cpu_count() or 1,
                 "throttling_data": {"periods": 0, "throttled_periods": cpu["throttled_periods"],
                                     "throttled_time": cpu["throttled_ns"]}}
    if cpu["percpu_ns"]:
        cpu_stats["cpu_usage"]["percpu_usage"] = cpu["percpu_ns"]
    # moby reports the host's memory as the limit when the cgroup has none (the CLI divides by it).
    limit = mem["limit"] if mem["limit"] is not None else _host_memory()
    key = "total_inactive_file" if cg.version == 1 else "inactive_file"
    memory_stats = {"usage": mem["usage"], "limit": limit, "stats": {key: mem["inactive_file"]}}
    if mem.get("max_usage") is not None:
        memory_stats["max_usage"] = mem["max_usage"]
    pids = {"current": s["pids"]["current"]}
    if s["pids"]["limit"] is not None:
        pids["limit"] = s["pids"]["limit"]
    # The cgroup gives totals; the CLI only sums read/write entries, so one device entry suffices.
    blk = [{"major": 0, "minor": 0, "op": "read", "value": io["read_bytes"]},
           {"major": 0, "minor": 0, "op": "write", "value": io["write_bytes"]}]
    return {"read": read, "cpu_stats": cpu_stats, "memory_stats": memory_stats, "pids_stats": pids,
            "blkio_stats": {"io_service_bytes_recursive": blk}, "networks": net_dev(pid)}


def _host_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def idle_sample() -> dict:
    """What moby sends for a container that is not running."""
    return {"read": ZERO_TIME, "cpu_stats": empty_cpu(), "memory_stats": {}, "pids_stats": {},
            "blkio_stats": {"io_service_bytes_recursive": None}}
