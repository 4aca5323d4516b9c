"""Linux capabilities: OCI names to numbers, and applying process.capabilities.

The five sets are applied the way the kernel allows: the bounding set is cut while the process is
still fully privileged root, the uid change keeps the permitted set (PR_SET_KEEPCAPS), then capset
writes effective/permitted/inheritable and ambient caps are raised one by one (they must already be
permitted and inheritable).

Caps the runtime does not hold itself (this host's session lacks CAP_SYS_RESOURCE, for example) are
left out instead of failing: capset may never grant more than the caller has, and a "privileged"
container gets every cap the host can give.
"""

from dockyard.runtime import syscalls as sc

NAMES = (
    "CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP LINUX_IMMUTABLE "
    "NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER SYS_MODULE SYS_RAWIO "
    "SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE SYS_RESOURCE SYS_TIME "
    "SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP MAC_OVERRIDE MAC_ADMIN SYSLOG "
    "WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF CHECKPOINT_RESTORE"
).split()
NUMBERS = {"CAP_" + n: i for i, n in enumerate(NAMES)}  # the kernel's numbering is this order
ALL = ["CAP_" + n for n in NAMES]


def normalize(name: str) -> str:
    """'net_admin' / 'CAP_NET_ADMIN' -> 'CAP_NET_ADMIN' (Docker accepts both spellings)."""
    n = name.strip().upper()
    return n if n.startswith("CAP_") else "CAP_" + n


def mask(names) -> int:
    """Bit mask of the named caps; names this kernel table does not know are skipped (as runc)."""
    m = 0
    for n in names or ():
        num = NUMBERS.get(normalize(n))
        if num is not None:
            m |= 1 << num
    return m


def names(m: int) -> list[str]:
    return [ALL[i] for i in range(len(ALL)) if m >> i & 1]


def last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return len(NAMES) - 1


def drop_bounding(caps: dict) -> None:
    """Cut the bounding set to caps['bounding']. Needs CAP_SETPCAP: call before the uid change."""
    keep = mask(caps.get("bounding"))
    for i in range(last_cap() + 1):
        if not keep >> i & 1 and sc.prctl(sc.PR_CAPBSET_READ, i) == 1:
            sc.prctl(sc.PR_CAPBSET_DROP, i)


def apply_sets(caps: dict) -> None:
    """Set effective/permitted/inheritable, then raise ambient. Call after the uid change."""
    _, held, _ = sc.capget()
    # Only what we still hold can be kept (see module docstring).
    eff, prm, inh = (mask(caps.get(k)) & held for k in ("effective", "permitted", "inheritable"))
    # The kernel refuses effective beyond permitted and inheritable beyond the bounding set.
    eff &= prm
    if "bounding" in caps:
        inh &= mask(caps["bounding"])
    sc.capset(eff, prm, inh)
    sc.prctl(sc.PR_CAP_AMBIENT, sc.PR_CAP_AMBIENT_CLEAR_ALL)
    ambient = mask(caps.get("ambient")) & prm & inh
    for i in range(len(NAMES)):
        if ambient >> i & 1:
            sc.prctl(sc.PR_CAP_AMBIENT, sc.PR_CAP_AMBIENT_RAISE, i)
