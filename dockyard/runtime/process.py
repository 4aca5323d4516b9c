"""The container process itself: finding its executable, limits, identity, and the exec.

Shared by ``create`` (the container's init) and ``exec`` (an extra process in a running
container). ``lookup`` runs before the runtime reports success, so a missing or non-executable
command fails ``create`` with the message Docker turns into exit code 127/126. ``become`` is the
irreversible part (uid, caps, no_new_privs, seccomp) and runs only after ``start``.
"""

import os
import resource
import stat

from dockyard import errdefs
from dockyard.runtime import caps, syscalls as sc

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ExecError(errdefs.InvalidArgument):
    """The process's executable cannot be run (Docker: 127 not found, 126 not executable)."""


def env_path(env) -> str:
    for e in env or ():
        if e.startswith("PATH="):
            return e[5:]
    return DEFAULT_PATH


def _can_exec(st: os.stat_result, uid: int, gids: set[int]) -> bool:
    if uid == 0:  # root may execute anything with at least one x bit
        return bool(st.st_mode & 0o111)
    if st.st_uid == uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid in gids:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def lookup(name: str, env, user: dict) -> str:
    """Resolve args[0] as Go's exec.LookPath does inside the container (runc's messages)."""
    uid = user.get("uid", 0)
    gids = {user.get("gid", 0), *(user.get("additionalGids") or ())}
    if not name:
        raise ExecError("exec: no command specified in process.args")
    if "/" in name:
        try:
            st = os.stat(name)
        except OSError as e:
            raise ExecError(f'exec: "{name}": stat {name}: {e.strerror.lower()}') from None
        if stat.S_ISDIR(st.st_mode):
            raise ExecError(f'exec: "{name}": is a directory')
        if not _can_exec(st, uid, gids):
            raise ExecError(f'exec: "{name}": permission denied')
        return name
    for d in env_path(env).split(":"):
        cand = os.path.join(d or ".", name)
        try:
            st = os.stat(cand)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and _can_exec(st, uid, gids):
            return cand
    raise ExecError(f'exec: "{name}": executable file not found in $PATH')


def home_of(uid: int) -> str:
    """The home directory of ``uid`` in the container's /etc/passwd, "/" if it has none."""
    try:
        with open("/etc/passwd") as f:
            for line in f:
                fields = line.rstrip("\n").split(":")
                if len(fields) >= 6 and fields[2] == str(uid):
                    return fields[5] or "/"
    except OSError:
        pass
    return "/"


def set_rlimits(rlimits) -> None:
    """Apply process.rlimits, never above the current hard limit: raising it needs
    CAP_SYS_RESOURCE, which this host's session does not have."""
    for r in rlimits or ():
        name = r.get("type", "")
        res = getattr(resource, name, None)
        if res is None or not name.startswith("RLIMIT_"):
            raise errdefs.InvalidArgument(f"unknown rlimit type {name!r}")
        _, cur_hard = resource.getrlimit(res)

        def clamp(v):
            v = resource.RLIM_INFINITY if v >= 2**63 - 1 or v < 0 else v
            if cur_hard == resource.RLIM_INFINITY:
                return v
            return cur_hard if v == resource.RLIM_INFINITY else min(v, cur_hard)

        hard = clamp(r.get("hard", 0))
        soft = clamp(r.get("soft", 0))
        if hard != resource.RLIM_INFINITY and (soft == resource.RLIM_INFINITY or soft > hard):
            soft = hard
        resource.setrlimit(res, (soft, hard))


def set_oom_score_adj(value) -> None:
    if value is None:
        return
    with open("/proc/self/oom_score_adj", "w") as f:
        f.write(str(value))


def enter_cwd(cwd: str) -> None:
    """chdir to process.cwd, creating it as runc does (images may name a WORKDIR they lack)."""
    if not cwd.startswith("/"):
        raise errdefs.InvalidArgument(f"process.cwd {cwd!r} is not an absolute path")
    try:
        os.makedirs(cwd, 0o755, exist_ok=True)
        os.chdir(cwd)
    except OSError as e:
        raise errdefs.InvalidArgument(f"chdir to cwd ({cwd!r}) set in config.json failed: {e.strerror.lower()}") from None


def become(proc: dict, seccomp_filter=None) -> None:
    """Drop to the configured identity. Irreversible; the next step is execve.

    Without no_new_privs, loading a seccomp filter needs CAP_SYS_ADMIN, so then the filter goes
    first (while still fully privileged; the calls below are all on any sane allowlist). With
    no_new_privs it goes last, so the filter need not allow setuid/capset at all.
    """
    nnp = bool(proc.get("noNewPrivileges"))
    if seccomp_filter is not None and not nnp:
        seccomp_filter.load()
    pcaps = proc.get("capabilities")
    if pcaps is not None:
        caps.drop_bounding(pcaps)  # needs CAP_SETPCAP: while still root
    user = proc.get("user") or {}
    uid, gid = user.get("uid", 0), user.get("gid", 0)
    # Keep the permitted set across the uid change; capset below sets the final sets.
    if pcaps is not None:
        sc.prctl(sc.PR_SET_KEEPCAPS, 1)
    os.setgroups(list(user.get("additionalGids") or []))
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if pcaps is not None:
        sc.prctl(sc.PR_SET_KEEPCAPS, 0)
    if pcaps is not None:
        caps.apply_sets(pcaps)
    if nnp:
        sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1)
        if seccomp_filter is not None:
            seccomp_filter.load()


def environ(env) -> dict:
    out = {}
    for e in env or ():
        k, sep, v = e.partition("=")
        if sep:
            out[k] = v
    return out
