"""OCI runtime-spec config builders with Docker's defaults. Pure: values in, dicts out, no I/O.

The engine builds a container's config.json with ``default_spec`` and then adjusts it (mounts,
namespaces, resources, user). The defaults are Docker's (facts from its documented behaviour):
its capability set, its mount table, masked and read-only paths, device cgroup rules and a seccomp
allowlist whose cap-dependent parts follow the container's capabilities, as Docker's do.
"""

import copy
import os

from dockyard import errdefs
from dockyard.runtime import caps as _caps

DEFAULT_CAPS = ["CAP_" + c for c in (
    "CHOWN DAC_OVERRIDE FSETID FOWNER MKNOD NET_RAW SETGID SETUID SETFCAP SETPCAP "
    "NET_BIND_SERVICE SYS_CHROOT KILL AUDIT_WRITE").split()]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

MASKED_PATHS = [
    "/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
    "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
    "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]

# Docker sets these when the container has a network namespace of its own (not --network host):
# any user may bind low ports and send ICMP echo. The caller adds them with the netns entry.
NETNS_SYSCTLS = {"net.ipv4.ip_unprivileged_port_start": "0", "net.ipv4.ping_group_range": "0 2147483647"}

_NOSUID_NOEXEC_NODEV = ["nosuid", "noexec", "nodev"]


def _default_mounts() -> list[dict]:
    def m(dst, fstype, src, opts):
        return {"destination": dst, "type": fstype, "source": src, "options": opts}

    return [
        m("/proc", "proc", "proc", list(_NOSUID_NOEXEC_NODEV)),
        m("/dev", "tmpfs", "tmpfs", ["nosuid", "strictatime", "mode=755", "size=65536k"]),
        m("/dev/pts", "devpts", "devpts", ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]),
        m("/sys", "sysfs", "sysfs", ["nosuid", "noexec", "nodev", "ro"]),
        m("/sys/fs/cgroup", "cgroup", "cgroup", ["ro", "nosuid", "noexec", "nodev"]),
        m("/dev/mqueue", "mqueue", "mqueue", list(_NOSUID_NOEXEC_NODEV)),
        m("/dev/shm", "tmpfs", "shm", ["nosuid", "noexec", "nodev", "mode=1777", "size=67108864"]),
    ]


def _default_device_rules() -> list[dict]:
    """Docker's device cgroup: deny all, allow mknod of anything, rw on the standard nodes."""
    rules = [{"allow": False, "access": "rwm"},
             {"allow": True, "type": "c", "access": "m"}, {"allow": True, "type": "b", "access": "m"}]
    for major, minor in ((1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 1), (5, 2), (136, None), (10, 200)):
        rule = {"allow": True, "type": "c", "major": major, "access": "rwm"}
        if minor is not None:
            rule["minor"] = minor
        rules.append(rule)
    return rules


def default_spec(args, env, cwd="/", terminal=False, hostname="", rootfs="rootfs") -> dict:
    """A complete config.json for ``args`` with Docker's defaults (network namespace: caller's)."""
    env = list(env or [])
    if not any(e.startswith("PATH=") for e in env):
        env.insert(0, "PATH=" + DEFAULT_PATH)
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": bool(terminal),
            "user": {"uid": 0, "gid": 0},
            "args": list(args),
            "env": env,
            "cwd": cwd or "/",
            "capabilities": {k: list(DEFAULT_CAPS) for k in ("bounding", "effective", "permitted")},
            "noNewPrivileges": False,
            # Explicit, as Docker does: otherwise the container inherits the monitor's score.
            "oomScoreAdj": 0,
        },
        "root": {"path": rootfs, "readonly": False},
        "hostname": hostname,
        "mounts": _default_mounts(),
        "linux": {
            "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount", "cgroup")],
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
            "resources": {"devices": _default_device_rules()},
            "seccomp": default_seccomp_profile(DEFAULT_CAPS),
        },
    }


# --- seccomp -------------------------------------------------------------------------------------
# Allowed for every container: the ordinary process, file, socket, IPC, timer and signal calls
# (32-bit and time64 variants included so x86/x32 programs work too). Absent, hence EPERM: keyrings
# (keyctl add_key request_key), kexec, module loading, swap, reboot, accounting, clock setting,
# userfaultfd, io_uring, obsolete calls (uselib ustat sysfs _sysctl vm86 nfsservctl ...).
_ALLOW_ALWAYS = """
accept accept4 access adjtimex alarm arch_prctl bind brk cachestat capget capset chdir chmod chown
chown32 clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime
clock_gettime64 clock_nanosleep clock_nanosleep_time64 close close_range connect copy_file_range
creat dup dup2 dup3 epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2
epoll_wait epoll_wait_old eventfd eventfd2 execve execveat exit exit_group faccessat faccessat2
fadvise64 fadvise64_64 fallocate fanotify_mark fchdir fchmod fchmodat fchmodat2 fchown fchown32
fchownat fcntl fcntl64 fdatasync fgetxattr flistxattr flock fork fremovexattr fsetxattr fstat
fstat64 fstatat64 fstatfs fstatfs64 fsync ftruncate ftruncate64 futex futex_requeue futex_time64
futex_wait futex_waitv futex_wake futimesat getcpu getcwd getdents getdents64 getegid getegid32
geteuid geteuid32 getgid getgid32 getgroups getgroups32 getitimer getpeername getpgid getpgrp
getpid getppid getpriority getrandom getresgid getresgid32 getresuid getresuid32 getrlimit
get_robust_list getrusage getsid getsockname getsockopt get_thread_area gettid gettimeofday getuid
getuid32 getxattr inotify_add_watch inotify_init inotify_init1 inotify_rm_watch io_cancel ioctl
io_destroy io_getevents io_pgetevents io_pgetevents_time64 ioprio_get ioprio_set io_setup
io_submit ipc kcmp kill landlock_add_rule landlock_create_ruleset landlock_restrict_self lchown
lchown32 lgetxattr link linkat listen listxattr llistxattr _llseek lremovexattr lseek lsetxattr
lstat lstat64 madvise map_shadow_stack membarrier memfd_create memfd_secret mincore mkdir mkdirat
mknod mknodat mlock mlock2 mlockall mmap mmap2 mprotect mq_getsetattr mq_notify mq_open
mq_timedreceive mq_timedreceive_time64 mq_timedsend mq_timedsend_time64 mq_unlink mremap msgctl
msgget msgrcv msgsnd msync munlock munlockall munmap name_to_handle_at nanosleep newfstatat
_newselect open openat openat2 pause pidfd_getfd pidfd_open pidfd_send_signal pipe pipe2
pkey_alloc pkey_free pkey_mprotect poll ppoll ppoll_time64 prctl pread64 preadv preadv2 prlimit64
process_mrelease process_vm_readv process_vm_writev pselect6 pselect6_time64 ptrace pwrite64
pwritev pwritev2 read readahead readlink readlinkat readv recv recvfrom recvmmsg recvmmsg_time64
recvmsg remap_file_pages removexattr rename renameat renameat2 restart_syscall rmdir rseq
rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend
rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity sched_getattr
sched_getparam sched_get_priority_max sched_get_priority_min sched_getscheduler
sched_rr_get_interval sched_rr_get_interval_time64 sched_setaffinity sched_setattr sched_setparam
sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop semtimedop_time64 send
sendfile sendfile64 sendmmsg sendmsg sendto setfsgid setfsgid32 setfsuid setfsuid32 setgid
setgid32 setgroups setgroups32 setitimer setpgid setpriority setregid setregid32 setresgid
setresgid32 setresuid setresuid32 setreuid setreuid32 setrlimit set_robust_list setsid setsockopt
set_thread_area set_tid_address setuid setuid32 setxattr shmat shmctl shmdt shmget shutdown
sigaltstack signalfd signalfd4 sigprocmask sigreturn socketcall socketpair splice stat stat64
statfs statfs64 statx symlink symlinkat sync sync_file_range syncfs sysinfo tee tgkill time
timer_create timer_delete timer_getoverrun timer_gettime timer_gettime64 timer_settime
timer_settime64 timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime
timerfd_settime64 times tkill truncate truncate64 ugetrlimit umask uname unlink unlinkat utime
utimensat utimensat_time64 utimes vfork vmsplice wait4 waitid waitpid write writev
"""

# Allowed only when the container holds the capability that already guards them in the kernel;
# without it the call is refused before it reaches kernel code with a history of bugs.
_ALLOW_WITH_CAP = {
    "CAP_SYS_ADMIN": "bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie mount "
                     "mount_setattr move_mount open_tree perf_event_open quotactl quotactl_fd setdomainname "
                     "sethostname setns syslog umount umount2 unshare",
    "CAP_SYS_BOOT": "reboot",
    "CAP_SYS_CHROOT": "chroot",
    "CAP_SYS_MODULE": "delete_module init_module finit_module",
    "CAP_SYS_PACCT": "acct",
    "CAP_SYS_PTRACE": "process_madvise",
    "CAP_SYS_RAWIO": "iopl ioperm",
    "CAP_SYS_TIME": "settimeofday stime clock_settime clock_settime64",
    "CAP_SYS_TTY_CONFIG": "vhangup",
    "CAP_SYS_NICE": "get_mempolicy mbind set_mempolicy set_mempolicy_home_node",
    "CAP_SYSLOG": "syslog",
    "CAP_BPF": "bpf",
    "CAP_PERFMON": "perf_event_open",
    "CAP_DAC_READ_SEARCH": "open_by_handle_at",
}

_NS_CLONE_FLAGS = 0x7E020000  # CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET
_AF_VSOCK = 40
_ENOSYS = 38
_ARCHES = {
    "x86_64": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "aarch64": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
}


def default_seccomp_profile(capabilities=DEFAULT_CAPS, machine: str | None = None) -> dict:
    """Docker-like default profile (OCI linux.seccomp) for a container holding ``capabilities``."""
    have = {_caps.normalize(c) for c in capabilities}
    allow = _ALLOW_ALWAYS.split()
    for cap, names in _ALLOW_WITH_CAP.items():
        if cap in have:
            allow += [n for n in names.split() if n not in allow]
    rules = [{"names": allow, "action": "SCMP_ACT_ALLOW"},
             # Old personalities only: PER_LINUX, PER_LINUX32, UNAME26 variants, and the query.
             {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
              "args": [{"index": 0, "value": v, "op": "SCMP_CMP_EQ"} for v in (0, 8, 0x20000, 0x20008, 0xFFFFFFFF)]},
             {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
              "args": [{"index": 0, "value": _AF_VSOCK, "op": "SCMP_CMP_NE"}]}]
    if "CAP_SYS_ADMIN" not in have:
        # Threads and fork are clone() without namespace flags; new namespaces need CAP_SYS_ADMIN.
        rules.append({"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                      "args": [{"index": 0, "value": _NS_CLONE_FLAGS, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]})
        # clone3 passes flags in memory seccomp cannot read: ENOSYS makes libc fall back to clone.
        rules.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": _ENOSYS})
    machine = machine or os.uname().machine
    return {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
            "architectures": _ARCHES.get(machine, []), "syscalls": rules}


# --- capabilities and privileged -----------------------------------------------------------------

def _cap_list(names, what) -> list[str]:
    out = []
    for n in names or ():
        c = _caps.normalize(n)
        if c != "CAP_ALL" and c not in _caps.NUMBERS:
            raise errdefs.InvalidArgument(f"unknown capability {what}: {n!r}")
        out.append(c)
    return out


def with_capabilities(spec: dict, add=(), drop=(), privileged=False, devices=()) -> dict:
    """Apply Docker's --cap-add/--cap-drop/--privileged to ``spec`` (in place; also returned).

    ``ALL`` works as in Docker: drop ALL starts from nothing, add ALL starts from everything.
    When the spec carries the default seccomp profile it is regenerated for the new cap set.
    ``devices``: the host's device nodes (OCI linux.devices entries) for a privileged container.
    """
    add, drop = _cap_list(add, "to add"), _cap_list(drop, "to drop")
    proc = spec.setdefault("process", {})
    old = proc.get("capabilities", {}).get("bounding", DEFAULT_CAPS)
    add_all, drop_all = "CAP_ALL" in add, "CAP_ALL" in drop
    add, drop = set(add) - {"CAP_ALL"}, set(drop) - {"CAP_ALL"}
    if privileged or (add_all and not drop_all):
        base = set(_caps.ALL) - (set() if privileged else drop)
    elif drop_all:
        base = set(_caps.ALL) if add_all else add  # drop ALL keeps exactly what is added
    else:
        base = (set(DEFAULT_CAPS) | add) - drop
    ordered = [c for c in _caps.ALL if c in base]
    proc["capabilities"] = {k: list(ordered) for k in ("bounding", "effective", "permitted")}
    lin = spec.setdefault("linux", {})
    if lin.get("seccomp") == default_seccomp_profile(old):
        lin["seccomp"] = default_seccomp_profile(ordered)
    if privileged:
        make_privileged(spec, devices)
    return spec


def make_privileged(spec: dict, devices=()) -> dict:
    """Docker's --privileged: all caps, no seccomp, nothing masked or read-only, /sys and the
    cgroup tree writable, every host device (``devices``, OCI entries) present and allowed."""
    proc = spec.setdefault("process", {})
    proc["capabilities"] = {k: list(_caps.ALL) for k in ("bounding", "effective", "permitted")}
    lin = spec.setdefault("linux", {})
    lin.pop("seccomp", None)
    lin["maskedPaths"], lin["readonlyPaths"] = [], []
    for m in spec.get("mounts", []):
        if m.get("type") in ("sysfs", "cgroup", "cgroup2"):
            m["options"] = [o for o in m.get("options", []) if o != "ro"] + ["rw"]
    lin.setdefault("resources", {})["devices"] = [{"allow": True, "access": "rwm"}]
    if devices:
        lin["devices"] = copy.deepcopy(list(devices))
    return spec
