"""Compile an OCI ``linux.seccomp`` object into a seccomp BPF program, with an on-disk cache.

``compile(cfg)`` builds a libseccomp filter (through pyseccomp) and does all the work that can fail
on a bad profile. Names unknown to this libseccomp/arch are skipped (profiles list calls of other
arches and newer kernels), as runc does. The filter never sets no_new_privs by itself: that is the
config's call (process.noNewPrivileges), so libseccomp's default CTL_NNP=1 is turned off.

``prepare(cfg, cache_dir)`` is what the runtime uses: it returns a ``Program`` (the exported BPF)
that ``load()`` installs with one prctl(2), just before execve (``process.become``). Loading
libseccomp and generating the BPF costs ~20 ms per container, and every container of a daemon
uses the same one or two profiles, so the BPF is kept in ``cache_dir`` (in the runtime's --root).
A cache file holds the exact profile it was made from (compared byte for byte, so a name
collision can only cost a rebuild), the libseccomp it was made with (size and mtime: a package
upgrade invalidates it) and a checksum; anything that does not match is ignored and rebuilt.
Without a usable cache dir the program is built in memory; if libseccomp cannot export BPF at
all, the libseccomp filter itself is returned (it has ``load()`` too).
"""

import errno
import os
import zlib

from dockyard import errdefs
from dockyard.runtime import cjson

CACHE_FORMAT = b"dockyard-seccomp-bpf 1\n"  # bump when compile() changes what it builds
_BPF_MAXINSNS = 4096  # the kernel's limit per program; each instruction is 8 bytes
_ps = None


def _pyseccomp():
    """pyseccomp, imported on first use: only a cache miss needs libseccomp."""
    global _ps
    if _ps is None:
        import ctypes.util

        # pyseccomp finds its libraries with ctypes.util.find_library, which runs `ldconfig -p` in
        # a subprocess: 10+ ms, and a fork that would take the PID 1 slot of a fresh PID namespace.
        # The sonames are stable ABI names; fall back to the search.
        known = {"c": "libc.so.6", "seccomp": "libseccomp.so.2"}
        orig = ctypes.util.find_library
        ctypes.util.find_library = lambda name: known.get(name) or orig(name)
        try:
            import pyseccomp
        finally:
            ctypes.util.find_library = orig
        _ps = pyseccomp
    return _ps


_NR_SCMP_ERROR = -1  # libseccomp: name not known at all (pseudo-numbers < -1 are fine)


def _action(name: str, errno_ret) -> int:
    ps = _pyseccomp()
    err = errno.EPERM if errno_ret is None else errno_ret
    actions = {
        "SCMP_ACT_KILL": lambda: ps.KILL_THREAD, "SCMP_ACT_KILL_THREAD": lambda: ps.KILL_THREAD,
        "SCMP_ACT_KILL_PROCESS": lambda: ps.KILL_PROCESS, "SCMP_ACT_TRAP": lambda: ps.TRAP,
        "SCMP_ACT_ERRNO": lambda: ps.ERRNO(err), "SCMP_ACT_TRACE": lambda: ps.TRACE(err),
        "SCMP_ACT_ALLOW": lambda: ps.ALLOW, "SCMP_ACT_LOG": lambda: ps.LOG,
    }
    if name not in actions:
        raise errdefs.InvalidArgument(f"seccomp: unsupported action {name!r}")
    return actions[name]()


def _arch(name: str) -> int:
    ps = _pyseccomp()
    attr = name.removeprefix("SCMP_ARCH_")
    if not hasattr(ps.Arch, attr):
        raise errdefs.InvalidArgument(f"seccomp: unknown architecture {name!r}")
    return getattr(ps.Arch, attr)


def compile(cfg: dict):  # noqa: A001 - the verb of the field
    """The libseccomp filter (pyseccomp.SyscallFilter) for ``cfg``; InvalidArgument if it is bad."""
    ps = _pyseccomp()
    ops = {"SCMP_CMP_NE": ps.NE, "SCMP_CMP_LT": ps.LT, "SCMP_CMP_LE": ps.LE, "SCMP_CMP_EQ": ps.EQ,
           "SCMP_CMP_GE": ps.GE, "SCMP_CMP_GT": ps.GT, "SCMP_CMP_MASKED_EQ": ps.MASKED_EQ}
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
            args = [ps.Arg(a["index"], ops[a.get("op", "SCMP_CMP_EQ")], a.get("value", 0), a.get("valueTwo", 0))
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


class Program:
    """A seccomp BPF program (struct sock_filter[]), installed on the calling thread by ``load``."""

    def __init__(self, bpf: bytes):
        self.bpf = bpf

    def load(self) -> None:
        from dockyard.runtime import syscalls as sc

        sc.seccomp_set_filter(self.bpf)


def prepare(cfg: dict, cache_dir: str | None = None):
    """What ``process.become`` loads for ``cfg``: a cached or freshly exported ``Program``."""
    profile = cjson.dumps(cfg, sort_keys=True, separators=(",", ":")).encode()
    path = None
    if cache_dir:
        path = os.path.join(cache_dir, f"{os.uname().machine}-{zlib.crc32(profile):08x}-{len(profile)}.bpf")
        bpf = read_cache(path, profile)
        if bpf is not None:
            return Program(bpf)
    flt = compile(cfg)
    try:
        bpf = _export(flt)
    except OSError:
        return flt  # libseccomp cannot export: it loads the filter itself
    if path:
        _write_cache(path, profile, bpf)
    return Program(bpf)


def _export(flt) -> bytes:
    fd = os.memfd_create("seccomp-bpf", os.MFD_CLOEXEC)
    try:
        with os.fdopen(os.dup(fd), "wb") as f:
            flt.export_bpf(f)
        bpf = os.pread(fd, (_BPF_MAXINSNS + 1) * 8, 0)
    finally:
        os.close(fd)
    if not _plausible(bpf):
        raise OSError(errno.EINVAL, "libseccomp exported no usable BPF program")
    return bpf


def _plausible(bpf: bytes) -> bool:
    return 0 < len(bpf) <= _BPF_MAXINSNS * 8 and len(bpf) % 8 == 0


def _libseccomp_id() -> str:
    """The libseccomp this process loaded, as 'path size mtime_ns' ('' if unknown)."""
    try:
        with open("/proc/self/maps") as f:
            path = next((ln.split(None, 5)[5].strip() for ln in f if "libseccomp.so" in ln), "")
        st = os.stat(path)
    except (OSError, IndexError):
        return ""
    return f"{path} {st.st_size} {st.st_mtime_ns}"


def read_cache(path: str, profile: bytes) -> bytes | None:
    """The cached BPF for ``profile``, or None when the file is missing, stale or damaged.

    Layout: format line, libseccomp id line, crc32 of the rest line, profile line, BPF bytes."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError:
        return None
    try:
        fmt, lib, crc, rest = raw.split(b"\n", 3)
        cached_profile, bpf = rest.split(b"\n", 1)
        lib_path, size, mtime = lib.decode().rsplit(" ", 2)
        st = os.stat(lib_path)
        ok = (fmt + b"\n" == CACHE_FORMAT and int(crc, 16) == zlib.crc32(rest)
              and cached_profile == profile and (st.st_size, st.st_mtime_ns) == (int(size), int(mtime)))
    except (ValueError, OSError):
        return None
    return bpf if ok and _plausible(bpf) else None


def _write_cache(path: str, profile: bytes, bpf: bytes) -> None:
    """Best effort: a cache that cannot be written only costs the next container a rebuild."""
    lib = _libseccomp_id()
    if not lib:
        return
    rest = profile + b"\n" + bpf
    data = CACHE_FORMAT + lib.encode() + b"\n" + b"%08x\n" % zlib.crc32(rest) + rest
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), 0o700, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)  # readers see the old file or the whole new one
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
