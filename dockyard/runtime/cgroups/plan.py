"""Pure translation between OCI ``linux.resources`` and cgroup files, for both versions.

Everything here is text in, values out: no file system access, so it is table-tested without root.
``v1.py`` and ``v2.py`` are the thin executors that write what these functions return and feed
what they read back into the stat parsers below.

A plan is an ordered list of writes. v1 writes are ``(controller, file, value)``; v2 writes are
``(file, value)`` because the unified hierarchy has one directory. Order matters where the kernel
checks invariants (v1 memsw must stay >= the memory limit; see ``V1Executor`` for the retry).
"""

from dockyard import errdefs

# Values at or above this in a v1 limit file mean "no limit" (the kernel rounds LLONG_MAX down
# to a page multiple, so the exact number differs by page size).
_V1_UNLIMITED = 1 << 62


def _int(section: dict, key: str, where: str) -> int | None:
    v = section.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise errdefs.InvalidArgument(f"linux.resources.{where}.{key} must be an integer, not {v!r}")
    return v


def _section(resources: dict, key: str) -> dict:
    v = resources.get(key)
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise errdefs.InvalidArgument(f"linux.resources.{key} must be an object")
    return v


def _check_memory(limit, swap, reservation):
    # Negative values other than -1 ("unlimited") are nonsense in every version.
    for name, v in (("limit", limit), ("swap", swap), ("reservation", reservation)):
        if v is not None and v < -1:
            raise errdefs.InvalidArgument(f"linux.resources.memory.{name} must be -1 or >= 0, not {v}")
    if swap not in (None, 0, -1) and limit not in (None, 0, -1) and swap < limit:
        raise errdefs.InvalidArgument(
            f"memory+swap limit ({swap}) must be >= the memory limit ({limit})")


def device_rules(devices: list) -> list[tuple[str, str]]:
    """OCI ``linux.resources.devices`` -> v1 ``(devices.allow|devices.deny, "t M:m acc")`` in order."""
    out = []
    for i, d in enumerate(devices or []):
        if not isinstance(d, dict) or not isinstance(d.get("allow"), bool):
            raise errdefs.InvalidArgument(f"linux.resources.devices[{i}] needs a boolean 'allow'")
        typ = d.get("type") or "a"
        if typ not in ("a", "b", "c"):
            raise errdefs.InvalidArgument(f"linux.resources.devices[{i}].type must be a, b or c, not {typ!r}")
        access = d.get("access") or "rwm"
        if not access or set(access) - set("rwm"):
            raise errdefs.InvalidArgument(f"linux.resources.devices[{i}].access must use r, w, m: {access!r}")
        major = "*" if d.get("major") in (None, -1) else str(int(d["major"]))
        minor = "*" if d.get("minor") in (None, -1) else str(int(d["minor"]))
        out.append(("devices.allow" if d["allow"] else "devices.deny", f"{typ} {major}:{minor} {access}"))
    return out


def plan_v1(resources: dict, memsw: bool = True) -> list[tuple[str, str, str]]:
    """Writes for cgroup v1. ``memsw`` says whether memory.memsw.* exists (swap accounting on)."""
    resources = resources or {}
    w = []
    mem = _section(resources, "memory")
    limit = _int(mem, "limit", "memory")
    swap = _int(mem, "swap", "memory")
    reservation = _int(mem, "reservation", "memory")
    _check_memory(limit, swap, reservation)
    if limit:
        w.append(("memory", "memory.limit_in_bytes", str(limit)))
    if swap:
        if not memsw:
            raise errdefs.Unavailable(
                "memory+swap limit needs swap accounting (memory.memsw.*), which this kernel lacks")
        w.append(("memory", "memory.memsw.limit_in_bytes", str(swap)))
    if reservation:
        w.append(("memory", "memory.soft_limit_in_bytes", str(reservation)))
    swappiness = _int(mem, "swappiness", "memory")
    if swappiness is not None and swappiness != -1:
        if not 0 <= swappiness <= 100:
            raise errdefs.InvalidArgument(f"linux.resources.memory.swappiness must be 0..100, not {swappiness}")
        w.append(("memory", "memory.swappiness", str(swappiness)))
    if mem.get("disableOOMKiller"):
        w.append(("memory", "memory.oom_control", "1"))

    cpu = _section(resources, "cpu")
    shares = _int(cpu, "shares", "cpu")
    if shares:
        w.append(("cpu", "cpu.shares", str(shares)))
    period = _int(cpu, "period", "cpu")
    quota = _int(cpu, "quota", "cpu")
    # The period goes first: the kernel checks quota against the current period.
    if period:
        w.append(("cpu", "cpu.cfs_period_us", str(period)))
    if quota:
        w.append(("cpu", "cpu.cfs_quota_us", str(quota if quota > 0 else -1)))
    if cpu.get("cpus"):
        w.append(("cpuset", "cpuset.cpus", str(cpu["cpus"])))
    if cpu.get("mems"):
        w.append(("cpuset", "cpuset.mems", str(cpu["mems"])))

    pids = _section(resources, "pids")
    plimit = _int(pids, "limit", "pids")
    if plimit:
        w.append(("pids", "pids.max", str(plimit) if plimit > 0 else "max"))

    bio = _section(resources, "blockIO")
    weight = _int(bio, "weight", "blockIO")
    if weight:
        w.append(("blkio", "blkio.weight", str(weight)))

    for f, v in device_rules(resources.get("devices")):
        w.append(("devices", f, v))
    return w


def shares_to_weight(shares: int) -> int:
    """cgroup v1 cpu.shares (2..262144) -> v2 cpu.weight (1..10000), the conversion runc and crun use."""
    if shares <= 0:
        return 0
    shares = min(max(shares, 2), 262144)
    return 1 + ((shares - 2) * 9999) // 262142


def swap_v2(swap: int | None, limit: int | None) -> str | None:
    """OCI memory.swap is memory+swap (the v1 meaning); v2's memory.swap.max is swap alone."""
    if not swap:
        # An unlimited memory limit with swap unset means both unlimited, as on v1.
        return "max" if limit == -1 else None
    if swap == -1:
        return "max"
    if not limit or limit == -1:
        raise errdefs.InvalidArgument("a memory+swap limit needs a memory limit")
    return str(swap - limit)


def plan_v2(resources: dict) -> list[tuple[str, str]]:
    """Writes for cgroup v2 (devices are eBPF on v2 and not handled here)."""
    resources = resources or {}
    w = []
    mem = _section(resources, "memory")
    limit = _int(mem, "limit", "memory")
    swap = _int(mem, "swap", "memory")
    reservation = _int(mem, "reservation", "memory")
    _check_memory(limit, swap, reservation)
    if limit:
        w.append(("memory.max", "max" if limit == -1 else str(limit)))
    sw = swap_v2(swap, limit)
    if sw is not None:
        w.append(("memory.swap.max", sw))
    if reservation:
        w.append(("memory.low", "max" if reservation == -1 else str(reservation)))

    cpu = _section(resources, "cpu")
    shares = _int(cpu, "shares", "cpu")
    if shares:
        w.append(("cpu.weight", str(shares_to_weight(shares))))
    quota = _int(cpu, "quota", "cpu")
    period = _int(cpu, "period", "cpu")
    if quota or period:
        # cpu.max takes both at once; a period alone keeps the quota unlimited.
        q = str(quota) if quota and quota > 0 else "max"
        w.append(("cpu.max", f"{q} {period or 100000}"))
    if cpu.get("cpus"):
        w.append(("cpuset.cpus", str(cpu["cpus"])))
    if cpu.get("mems"):
        w.append(("cpuset.mems", str(cpu["mems"])))

    pids = _section(resources, "pids")
    plimit = _int(pids, "limit", "pids")
    if plimit:
        w.append(("pids.max", str(plimit) if plimit > 0 else "max"))

    bio = _section(resources, "blockIO")
    weight = _int(bio, "weight", "blockIO")
    if weight:
        # blkio.weight 10..1000 -> io.weight 1..10000, linear (the crun conversion).
        w.append(("io.weight", str(1 + (weight - 10) * 9999 // 990)))

    for k, v in (resources.get("unified") or {}).items():
        if "/" in k or k.startswith("."):
            raise errdefs.InvalidArgument(f"linux.resources.unified key {k!r} is not a cgroup file name")
        w.append((k, str(v)))
    return w


def v2_controllers(writes: list[tuple[str, str]]) -> set[str]:
    """Controllers the writes need enabled in the parent's cgroup.subtree_control."""
    return {f.split(".", 1)[0] for f, _ in writes}


# ---- stat parsers: file text -> numbers ----

def parse_flat_keyed(text: str) -> dict[str, int]:
    """'key value' lines (memory.stat, cpu.stat, memory.events, memory.oom_control)."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                pass
    return out


def parse_limit(text: str) -> int | None:
    """A limit file ('max', '-1' or a huge v1 number mean unlimited) -> bytes/count or None."""
    t = text.strip()
    if t in ("max", "-1", ""):
        return None
    n = int(t)
    return None if n >= _V1_UNLIMITED else n


def parse_blkio_v1(text: str) -> tuple[int, int]:
    """blkio.throttle.io_service_bytes_recursive: 'MAJ:MIN Read N' lines -> (read, write) bytes."""
    r = wr = 0
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3:
            if parts[1] == "Read":
                r += int(parts[2])
            elif parts[1] == "Write":
                wr += int(parts[2])
    return r, wr


def parse_io_stat_v2(text: str) -> tuple[int, int]:
    """io.stat: 'MAJ:MIN rbytes=N wbytes=N ...' lines -> (read, write) bytes."""
    r = wr = 0
    for line in text.splitlines():
        for field in line.split()[1:]:
            k, _, v = field.partition("=")
            if k == "rbytes":
                r += int(v)
            elif k == "wbytes":
                wr += int(v)
    return r, wr


def parse_cpuset_list(text: str) -> set[int]:
    """'0-2,5' -> {0, 1, 2, 5} (cpuset.cpus, Cpus_allowed_list)."""
    out = set()
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out
