"""Compile an OCI ``linux.seccomp`` object into a libseccomp filter (through pyseccomp).

``compile(cfg)`` does all the work that can fail on a bad profile, so the runtime calls it before
reporting "created"; ``SyscallFilter.load()`` comes just before execve (``process.become``). Names
unknown to this libseccomp/arch are skipped (profiles list calls of other arches and newer
kernels), as runc does. The filter never sets no_new_privs by itself: that is the config's call
(process.noNewPrivileges), so libseccomp's default CTL_NNP=1 is turned off.
"""

import ctypes.util
import errno

from dockyard import errdefs


def _import_pyseccomp():
    # pyseccomp finds its libraries with ctypes.util.find_library, which runs `ldconfig -p` in a
    # subprocess: 10+ ms on the container-start path, and a fork that would take the PID 1 slot
    # of a fresh PID namespace. The sonames are stable ABI names; fall back to the search.
    known = {"c": "libc.so.6", "seccomp": "libseccomp.so.2"}
    orig = ctypes.util.find_library
    ctypes.util.find_library = lambda name: known.get(name) or orig(name)
    try:
        import pyseccomp
    finally:
        ctypes.util.find_library = orig
    return pyseccomp


ps = _import_pyseccomp()

_ACTIONS = {
    "SCMP_ACT_KILL": lambda n: ps.KILL_THREAD,
    "SCMP_ACT_KILL_THREAD": lambda n: ps.KILL_THREAD,
    "SCMP_ACT_KILL_PROCESS": lambda n: ps.KILL_PROCESS,
    "SCMP_ACT_TRAP": lambda n: ps.TRAP,
    "SCMP_ACT_ERRNO": lambda n: ps.ERRNO(errno.EPERM if n is None else n),
    "SCMP_ACT_TRACE": lambda n: ps.TRACE(errno.EPERM if n is None else n),
    "SCMP_ACT_ALLOW": lambda n: ps.ALLOW,
    "SCMP_ACT_LOG": lambda n: ps.LOG,
}
_OPS = {"SCMP_CMP_NE": ps.NE, "SCMP_CMP_LT": ps.LT, "SCMP_CMP_LE": ps.LE, "SCMP_CMP_EQ": ps.EQ,
        "SCMP_CMP_GE": ps.GE, "SCMP_CMP_GT": ps.GT, "SCMP_CMP_MASKED_EQ": ps.MASKED_EQ}
_NR_SCMP_ERROR = -1  # libseccomp: name not known at all (pseudo-numbers < -1 are fine)


def _action(name: str, errno_ret) -> int:
    try:
        return _ACTIONS[name](errno_ret)
    except KeyError:
        raise errdefs.InvalidArgument(f"seccomp: unsupported action {name!r}") from None


def _arch(name: str) -> int:
    attr = name.removeprefix("SCMP_ARCH_")
    if not hasattr(ps.Arch, attr):
        raise errdefs.InvalidArgument(f"seccomp: unknown architecture {name!r}")
    return getattr(ps.Arch, attr)


def compile(cfg: dict) -> ps.SyscallFilter:
    default = _action(cfg.get("defaultAction", "SCMP_ACT_ALLOW"), cfg.get("defaultErrnoRet"))
    flt = ps.SyscallFilter(default)
    flt.set_attr(ps.Attr.CTL_NNP, 0)
    for a in cfg.get("architectures") or ():
        arch = _arch(a)
        if not flt.exist_arch(arch):
            flt.add_arch(arch)
    for rule in cfg.get("syscalls") or ():
        action = _action(rule.get("action", ""), rule.get("errnoRet"))
        if action == default:
            continue  # libseccomp refuses rules that repeat the default
        try:
            args = [ps.Arg(a["index"], _OPS[a.get("op", "SCMP_CMP_EQ")], a.get("value", 0), a.get("valueTwo", 0))
                    for a in rule.get("args") or ()]
        except KeyError as e:
            raise errdefs.InvalidArgument(f"seccomp: bad argument condition {e}") from None
        # Conditions on distinct arguments are ANDed in one rule. Several on the same argument
        # cannot be (libseccomp rejects it), so they become one rule each: ORed, as in runc.
        indexes = [a["index"] for a in rule.get("args") or ()]
        groups = [args] if len(set(indexes)) == len(indexes) else [[a] for a in args]
        for name in rule.get("names") or ([rule["name"]] if rule.get("name") else []):
            nr = ps.resolve_syscall(ps.Arch.NATIVE, name)
            if nr == _NR_SCMP_ERROR:
                continue
            for g in groups:
                try:
                    flt.add_rule(action, nr, *g)
                except OSError as e:
                    raise errdefs.InvalidArgument(f"seccomp: cannot add rule for {name}: {e.strerror}") from e
    return flt
