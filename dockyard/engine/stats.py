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


def blkio_v1_entries(text: str) -> list[dict]:
    """A v1 blkio file ("MAJ:MIN Op N" lines, then "Total N") -> moby's BlkioStatEntry list; the
    kernel's op names ("Read", "Write", "Sync", "Async", "Discard", "Total") are kept as moby does."""
    out = []
    for line in text.splitlines():
        f = line.split()
        if len(f) != 3 or ":" not in f[0]:
            continue  # the device-less "Total N" line
        major, _, minor = f[0].partition(":")
        try:
            out.append({"major": int(major), "minor": int(minor), "op": f[1], "value": int(f[2])})
        except ValueError:
            continue
    return out


def io_stat_v2_entries(text: str) -> list[dict]:
    """v2 io.stat ("MAJ:MIN rbytes=N wbytes=N rios=N ...") -> a "read" and a "write" entry per
    device, lower case: what moby reports for cgroup v2 (only the byte counts)."""
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        dev, *kvs = line.split()
        major, _, minor = dev.partition(":")
        vals = dict(kv.split("=", 1) for kv in kvs if "=" in kv)
        try:
            out += [{"major": int(major), "minor": int(minor), "op": op, "value": int(vals.get(key, 0))}
                    for op, key in (("read", "rbytes"), ("write", "wbytes"))]
        except ValueError:
            continue
    return out


def _read_opt(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def blkio_stats(cg) -> dict:
    """moby's blkio_stats for the cgroup: per device, null lists when there was no I/O.

    v1 prefers the CFQ files and falls back to the throttle ones (any scheduler), as containerd's
    v1 stats do. v1 charges page-cache writeback to the flusher, not the container, so what shows
    is direct I/O and reads; and on recent kernels (6.18 here) the throttle counters only run
    once some cgroup has a throttle rule on the device: Docker reads the same files and shows 0."""
    stats = {"io_service_bytes_recursive": None, "io_serviced_recursive": None}
    if cg.version == 2:
        stats["io_service_bytes_recursive"] = io_stat_v2_entries(_read_opt(os.path.join(cg.dir, "io.stat"))) or None
        stats.pop("io_serviced_recursive")  # moby fills only the bytes on v2
        return stats
    if "blkio" not in cg.mounts:
        return stats
    d = cg.dir("blkio")
    for key in stats:
        stats[key] = (blkio_v1_entries(_read_opt(os.path.join(d, "blkio." + key)))
                      or blkio_v1_entries(_read_opt(os.path.join(d, "blkio.throttle." + key))) or None)
    return stats


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
    cpu, mem = s["cpu"], s["memory"]
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
    return {"read": read, "cpu_stats": cpu_stats, "memory_stats": memory_stats, "pids_stats": pids,
            "blkio_stats": blkio_stats(cg), "networks": net_dev(pid)}


def _host_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def idle_sample() -> dict:
    """What moby sends for a container that is not running."""
    return {"read": ZERO_TIME, "cpu_stats": empty_cpu(), "memory_stats": {}, "pids_stats": {},
            "blkio_stats": {"io_service_bytes_recursive": None}}
