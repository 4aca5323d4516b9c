"""``dockyard-runtime``: an OCI runtime CLI in the shape of runc, as conmon drives it.

create  forks the container's init into new namespaces (unshare(CLONE_NEWPID) first, so the fork
        is PID 1), puts it in its cgroup, lets it build the rootfs and check its executable, and
        exits once the init reports "ready". The init then blocks opening ``exec.fifo`` for
        writing; having no parent left, it is reparented to the caller's subreaper (conmon).
start   opens the fifo for reading: the init's open returns, it drops privileges and execs.
state, kill, delete, exec, list, pause, resume as in runc; hooks createRuntime/prestart (after
        the init is ready), poststart, poststop run in the runtime, with the OCI state on stdin.

State lives in ``<root>/<id>/``; writing ``state.json`` is create's commit point: before it a
failure removes the init, the cgroup and the directory; ``delete`` removes a directory without it.

The CLI is on the container-start hot path (~20 ms of which 7 are the interpreter's start), so
it imports little: os, json's C codec (``cjson``), argparse only for lines other than conmon's
create/exec and the daemon's start/kill/delete (``_fast_args``), the cgroup driver, seccomp and
tty code only when a command needs them; the seccomp BPF comes from a cache (``seccomp.prepare``).
Every failure is one line on stderr (and a JSON line in --log), exit status 1, and ``create``
leaves nothing behind.
"""

import _signal  # signal's C half: the Python module adds enums, and importing enum costs ~3 ms
import os
import sys
import time

from dockyard import errdefs
from dockyard.runtime import cjson  # json's C codec without json's imports (re, enum)

DEFAULT_ROOT = "/run/dockyard/runtime"
SECCOMP_CACHE = "~seccomp"  # in --root: compiled seccomp programs (not a valid container ID)
OCI_VERSION = "1.0.2"


# --- state ---------------------------------------------------------------------------------------

class Container:
    """A container's saved state plus what /proc says about its init right now."""

    def __init__(self, root: str, cid: str):
        # runc's rule, [\w+.-]+ (isalnum is what \w matches), without importing re for it.
        if not cid or not all(ch.isalnum() or ch in "_+.-" for ch in cid) or cid in (".", ".."):
            raise errdefs.InvalidArgument(f"invalid container id {cid!r}")
        self.id, self.dir = cid, os.path.join(root, cid)
        self.fifo = os.path.join(self.dir, "exec.fifo")
        self.state: dict = {}

    def load(self) -> "Container":
        try:
            with open(os.path.join(self.dir, "state.json")) as f:
                self.state = cjson.load(f)
        except FileNotFoundError:
            raise errdefs.NotFound(f"container {self.id} does not exist") from None
        return self

    def save(self) -> None:
        _write_atomic(os.path.join(self.dir, "state.json"), cjson.dumps(self.state))

    @property
    def pid(self) -> int:
        return self.state.get("pid", 0)

    def alive(self) -> bool:
        """The init still runs: same start time (no PID reuse) and not a zombie."""
        stat = _proc_stat(self.pid)
        return stat is not None and stat[0] != "Z" and stat[1] == self.state.get("starttime")

    def status(self) -> str:
        if not self.alive():
            return "stopped"
        if os.path.exists(self.fifo):
            return "created"
        cg = self.cgroup()
        return "paused" if cg is not None and cg.frozen() else "running"

    def oci_state(self) -> dict:
        st = self.status()
        s = self.state
        return {"ociVersion": OCI_VERSION, "id": self.id, "pid": 0 if st == "stopped" else self.pid,
                "status": st, "bundle": s.get("bundle", ""), "rootfs": s.get("rootfs", ""),
                "created": s.get("created", ""), "owner": "", "annotations": s.get("annotations") or {}}

    def config(self) -> dict:
        return _load_config(self.state["bundle"])

    def cgroup(self):
        return _open_cgroup(self.state.get("cgroupsPath"))


def _proc_stat(pid: int):
    """(state letter, start time) of a PID, or None if there is no such process."""
    if pid <= 0:
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    fields = raw[raw.rindex(b")") + 2:].split()  # comm may contain spaces and parentheses
    return fields[0].decode(), int(fields[19])


def _write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


def _load_config(bundle: str) -> dict:
    path = os.path.join(bundle, "config.json")
    try:
        with open(path) as f:
            cfg = cjson.load(f)
    except FileNotFoundError:
        raise errdefs.NotFound(f"no config.json in bundle {bundle}") from None
    except ValueError as e:
        raise errdefs.InvalidArgument(f"{path}: invalid JSON: {e}") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("process"), dict) or not cfg["process"].get("args"):
        raise errdefs.InvalidArgument(f"{path}: process.args must name the command to run")
    return cfg


def _open_cgroup(path):
    """The container's cgroup, or None while the cgroup driver is not installed."""
    if not path:
        return None
    try:
        from dockyard.runtime import cgroups
    except ImportError:
        return None
    return cgroups.open(path)


def _destroy_cgroup(cg, timeout=2.0) -> None:
    # The kernel drops a task from its cgroup a moment after it died; retry briefly.
    deadline = time.monotonic() + timeout
    while True:
        try:
            cg.destroy()
            return
        except errdefs.Conflict:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


# --- the child side: init of a new container, or a process joining one --------------------------

def _child_main(send, setup, seccomp_cfg, root: str) -> None:
    """Run ``setup(filter)`` in the forked child; any failure goes to the parent as one JSON message.
    ``setup`` waits for the parent's "go" (it put us in the cgroup) before anything that must
    happen inside the cgroup, and never reports ready or execs before it."""
    # Python ignores SIGPIPE and SIGXFSZ, and ignored signals survive execve: restore defaults.
    for sig in (_signal.SIGPIPE, _signal.SIGXFSZ, _signal.SIGINT):
        _signal.signal(sig, _signal.SIG_DFL)
    from dockyard.runtime import syscalls as sc

    # Until "ready", a runtime killed midway (conmon's timeout) must not leave a half-built
    # container behind: die with it. Cleared just before "ready" (the runtime then exits).
    sc.prctl(sc.PR_SET_PDEATHSIG, _signal.SIGKILL)
    try:
        # The filter needs nothing from the parent: make it while the parent sets up the cgroup.
        flt = None
        if seccomp_cfg:
            from dockyard.runtime import seccomp

            flt = seccomp.prepare(seccomp_cfg, os.path.join(root, SECCOMP_CACHE))
        setup(flt)
    except BaseException as e:  # noqa: BLE001 - everything must reach the parent as one line
        send({"error": _describe(e), "kind": type(e).__name__
              if isinstance(e, errdefs.DockyardError) else "Internal"})
        os._exit(1)
    os._exit(0)  # not reached: setup ends in execve


def _describe(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        # Go-style: lower case, the path last ("no such file or directory: /x" style of runc).
        msg = e.strerror[:1].lower() + e.strerror[1:]
        return f"{msg}: {e.filename}" if e.filename and str(e.filename) not in msg else msg
    return str(e) or type(e).__name__


def _await_go(wait_go) -> None:
    if not wait_go():
        os._exit(1)  # the parent failed to put us in the cgroup, or died: it reports why


def _init(cfg, bundle, fifo_dir_fd, console, no_pivot, send, wait_go, flt) -> None:
    """Build the container around this process (PID 1 of its new PID namespace), then wait for
    ``start`` on the exec fifo and exec the user's process.

    The first write to a v1 cgroup.procs waits for an RCU grace period (~15 ms), so the parent
    joins us to the cgroup while we build what does not depend on it: namespaces (all but the
    cgroup one) and the mounts before the first ``cgroup`` mount. The cgroup namespace and the
    cgroup mounts take the cgroup we are in as their root: those wait for "go"."""
    from dockyard.runtime import linux, syscalls as sc

    lin = cfg.get("linux") or {}
    proc = cfg["process"]
    nss = {n.get("type"): n.get("path") for n in lin.get("namespaces") or ()}
    if "mount" not in nss:
        raise errdefs.InvalidArgument("config.json must ask for a mount namespace")
    _join_namespaces({t: p for t, p in nss.items() if p and t != "pid"})
    flags = 0
    for t, p in nss.items():
        if not p and t not in ("pid", "user", "cgroup"):
            flags |= linux.NAMESPACES[t][0]
    sc.unshare(flags)
    os.setsid()  # a session of its own: the tty, if any, becomes its controlling terminal
    if "network" in nss and not nss["network"]:
        linux.loopback_up()
    if "uts" in nss:
        if cfg.get("hostname"):
            sc.sethostname(cfg["hostname"])
        if cfg.get("domainname"):
            sc.setdomainname(cfg["domainname"])

    # The mount tree. Order matters: private propagation before anything is mounted, the mounts
    # in config order (later ones may sit inside earlier ones: /dev then /dev/pts), devices once
    # /dev exists, pivot_root last since source paths of binds are host paths.
    rootfs = os.path.join(bundle, (cfg.get("root") or {}).get("path") or "rootfs")
    if not os.path.isdir(rootfs):
        raise errdefs.NotFound(f"rootfs {rootfs} does not exist")
    rootfs = os.path.realpath(rootfs)
    mounts = [_bundle_relative(m, bundle) for m in cfg.get("mounts") or ()]
    linux.prepare_root(rootfs, lin.get("rootfsPropagation"))
    # Each config mount plans independently, so the plan splits at the first cgroup mount.
    split = next((i for i, m in enumerate(mounts) if m.get("type") == "cgroup"), len(mounts))
    linux.apply_mounts(rootfs, linux.plan_mounts(mounts[:split]))
    _await_go(wait_go)
    if "cgroup" in nss and not nss["cgroup"]:
        sc.unshare(sc.CLONE_NEWCGROUP)  # now: the container's cgroup becomes the namespace's root
    hier = linux.cgroup_hierarchies() if split < len(mounts) else ()
    linux.apply_mounts(rootfs, linux.plan_mounts(mounts[split:], hier, cgroupns="cgroup" in nss))
    if any(m.get("destination") == "/dev" for m in mounts):
        linux.setup_dev(rootfs, lin.get("devices"))
    linux.pivot(rootfs, no_pivot)

    linux.write_sysctl(lin.get("sysctl"))  # before /proc/sys turns read-only
    if console is not None:
        _setup_tty(console, proc.get("consoleSize"), bind_console=True)
    for p in lin.get("readonlyPaths") or ():
        linux.readonly_path(p)
    for p in lin.get("maskedPaths") or ():
        linux.mask_path(p)
    if (cfg.get("root") or {}).get("readonly"):
        linux.remount_root_readonly()

    path = _prepare_process(proc)
    send({"ready": True})  # create succeeds now; the init waits for start
    fifo = os.open("exec.fifo", os.O_WRONLY | os.O_CLOEXEC, dir_fd=fifo_dir_fd)  # blocks until start
    os.write(fifo, b"0")
    os.close(fifo)
    os.close(fifo_dir_fd)
    _exec(proc, path, flt)


def _bundle_relative(m: dict, bundle: str) -> dict:
    """OCI: a relative bind source is relative to the bundle."""
    is_bind = m.get("type") == "bind" or {"bind", "rbind"} & set(m.get("options") or ())
    src = m.get("source") or ""
    return dict(m, source=os.path.join(bundle, src)) if is_bind and src and not src.startswith("/") else m


def _prepare_process(proc) -> str:
    """Everything about the process that can fail, done while failure still fails create/exec."""
    from dockyard.runtime import process

    process.set_rlimits(proc.get("rlimits"))
    process.set_oom_score_adj(proc.get("oomScoreAdj"))
    process.enter_cwd(proc.get("cwd") or "/")
    if not any(e.startswith("HOME=") for e in proc.get("env") or ()):
        # As runc: HOME from the image's /etc/passwd when the config does not set it.
        proc["env"] = list(proc.get("env") or ()) + ["HOME=" + process.home_of((proc.get("user") or {}).get("uid", 0))]
    return process.lookup(proc["args"][0], proc.get("env"), proc.get("user") or {})


def _exec(proc, path, flt) -> None:
    from dockyard.runtime import process

    os.closerange(3 + _PRESERVE_FDS, 1 << 20)  # nothing of ours leaks into the container
    try:
        process.become(proc, flt)
        os.execve(path, proc["args"], process.environ(proc.get("env")))
    except OSError as e:
        # After "ready" nobody listens on the pipe any more: stderr is the container's output.
        os.write(2, f"dockyard-runtime: exec {proc['args'][0]}: {_describe(e)}\n".encode())
        os._exit(126 if e.errno in (13, 21) else 127)


def _preload(terminal: bool, seccomp_cfg) -> None:
    """Import now what the child needs later: after pivot_root or setns(mnt) neither the
    package nor the stdlib is reachable by path any more."""
    from dockyard.runtime import linux, process, syscalls  # noqa: F401

    if seccomp_cfg:
        from dockyard.runtime import seccomp  # noqa: F401
    if terminal:
        import fcntl, socket, struct, termios  # noqa: F401,E401


def _join_namespaces(paths: dict) -> None:
    from dockyard.runtime import linux, syscalls as sc

    for t, p in paths.items():
        if t not in linux.NAMESPACES:
            raise errdefs.InvalidArgument(f"unknown namespace type {t!r}")
        try:
            fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise errdefs.NotFound(f"{t} namespace {p}: {e.strerror.lower()}") from None
        try:
            sc.setns(fd, linux.NAMESPACES[t][0])
        finally:
            os.close(fd)


def _setup_tty(sock, size, bind_console: bool) -> None:
    """A pty from the container's devpts: the slave becomes the controlling terminal and stdio,
    the master goes to the console socket (conmon) as SCM_RIGHTS, as runc does."""
    import fcntl
    import socket
    import struct
    import termios

    from dockyard.runtime import syscalls as sc

    master, slave = os.openpty()
    if bind_console:
        # /dev/console in the container is the pty, so programs writing to it reach the user.
        console = "/dev/console"
        if not os.path.lexists(console):
            open(console, "a").close()
        sc.mount(os.ttyname(slave), console, None, sc.MS_BIND)
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    if size:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", size.get("height", 0), size.get("width", 0), 0, 0))
    socket.send_fds(sock, [b"/dev/ptmx"], [master])
    sock.close()
    os.close(master)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)


# --- the parent side -----------------------------------------------------------------------------

_PRESERVE_FDS = 0


class _Channel:
    """Two pipes between runtime and child: "go" (parent -> child) and messages (child -> parent)."""

    def __init__(self):
        self.go_r, self.go_w = os.pipe()
        self.msg_r, self.msg_w = os.pipe()

    def child_side(self):
        os.close(self.go_w)
        os.close(self.msg_r)

    def parent_side(self):
        os.close(self.go_r)
        os.close(self.msg_w)

    def send(self, msg: dict) -> None:  # child
        if msg.get("ready"):
            from dockyard.runtime import syscalls as sc

            sc.prctl(sc.PR_SET_PDEATHSIG, 0)
        os.write(self.msg_w, (cjson.dumps(msg) + "\n").encode())
        if msg.get("ready"):
            os.close(self.msg_w)

    def wait_go(self) -> bool:  # child
        ok = os.read(self.go_r, 1) == b"g"
        os.close(self.go_r)
        return ok

    def go(self, ok: bool = True) -> None:  # parent; without ok the child exits at wait_go
        try:
            if ok:
                os.write(self.go_w, b"g")
        except BrokenPipeError:
            pass  # the child failed early; result() has its message
        os.close(self.go_w)

    def result(self) -> dict:  # parent: the child's one message, {} if it died silently
        buf = b""
        while chunk := os.read(self.msg_r, 65536):
            buf += chunk
        os.close(self.msg_r)
        line = buf.split(b"\n", 1)[0]
        return cjson.loads(line.decode()) if line else {}


def _raise_child_error(msg: dict) -> None:
    if not msg.get("ready"):
        raise getattr(errdefs, msg.get("kind", ""), errdefs.Internal)(
            msg.get("error") or "container init exited before it was ready")


def _join_then_go(ch: _Channel, join) -> None:
    """Run ``join`` (puts the child in its cgroup) while the child sets up what it can, let the
    child go on only if that worked, and raise the child's own error first: a child that failed
    early (bad seccomp profile, missing mount source) also explains a failed join."""
    try:
        join()
    except BaseException:
        ch.go(False)
        msg = ch.result()
        if msg.get("error"):
            _raise_child_error(msg)
        raise
    ch.go()
    _raise_child_error(ch.result())


def _reap(pid: int) -> None:
    try:
        os.kill(pid, _signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _connect_console(path):
    if not path:
        return None
    import socket

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError as e:
        s.close()
        raise errdefs.InvalidArgument(f"console socket {path}: {e.strerror.lower()}") from None
    return s


def _prime_cgroup_migration() -> None:
    """Start, in a thread, the wait the kernel puts on the first cgroup migration after a quiet
    spell, so that ours (``cg.add_pid`` of the init, some 10 ms later) finds it over or nearly.

    Kernel behaviour worked around: every cgroup.procs write takes cgroup_threadgroup_rwsem (one
    lock for all hierarchies, v1 and v2) for writing; that percpu rwsem, when its write side was
    idle, first waits a full RCU grace period (rcu_sync_enter, ~12 ms here) and stays fast for a
    grace period after the last writer. Writing our own PID into the cgroup we are in changes
    nothing but starts that wait now, while we import, parse and fork. Errors do not matter."""
    def write():
        try:
            with open("/proc/self/cgroup") as f:
                line = f.readline()  # any hierarchy will do: the lock is global
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            name = ctrls.split(",")[0].removeprefix("name=")
            for mount in ([f"/sys/fs/cgroup/{name}"] if name else ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]):
                try:
                    fd = os.open(f"{mount}{path.rstrip('/')}/cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)
                except OSError:
                    continue
                try:
                    os.write(fd, b"%d" % os.getpid())
                finally:
                    os.close(fd)
                return
        except (OSError, ValueError):
            pass

    import _thread

    _thread.start_new_thread(write, ())


def cmd_create(a) -> None:
    from dockyard.runtime import syscalls as sc

    c = Container(a.root, a.id)  # checks the ID first
    _prime_cgroup_migration()
    bundle = os.path.abspath(a.bundle)
    cfg = _load_config(bundle)
    proc = cfg["process"]
    lin = cfg.get("linux") or {}
    if proc.get("terminal") and not a.console_socket:
        raise errdefs.InvalidArgument("process.terminal is set but no --console-socket was given")
    from dockyard.runtime import linux

    for n in lin.get("namespaces") or ():
        if n.get("type") not in linux.NAMESPACES or n.get("type") == "user":
            raise errdefs.InvalidArgument(f"namespace type {n.get('type')!r} is not supported by dockyard-runtime")
    for kind in ("createContainer", "startContainer"):
        if (cfg.get("hooks") or {}).get(kind):
            raise errdefs.InvalidArgument(f"{kind} hooks are not supported by dockyard-runtime")
    os.makedirs(a.root, 0o711, exist_ok=True)
    try:
        os.mkdir(c.dir, 0o711)
    except FileExistsError:
        raise errdefs.AlreadyExists(f"container with id {a.id} already exists") from None
    cg = pid = None
    try:
        os.mkfifo(c.fifo, 0o622)
        fifo_dir = os.open(c.dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        console = _connect_console(a.console_socket) if proc.get("terminal") else None
        _preload(bool(proc.get("terminal")), lin.get("seccomp"))  # forks nothing after unshare
        pidns = next((n for n in lin.get("namespaces") or () if n.get("type") == "pid"), None)
        # The PID namespace applies to children only: enter or make it here, so the fork below
        # is born inside it (as PID 1 when it is new).
        if pidns is not None and pidns.get("path"):
            _join_namespaces({"pid": pidns["path"]})
        elif pidns is not None:
            sc.unshare(sc.CLONE_NEWPID)
        ch = _Channel()
        pid = os.fork()
        if pid == 0:
            ch.child_side()
            _child_main(ch.send,
                        lambda flt: _init(cfg, bundle, fifo_dir, console, a.no_pivot, ch.send, ch.wait_go, flt),
                        lin.get("seccomp"), a.root)
        ch.parent_side()
        os.close(fifo_dir)
        if console is not None:
            console.close()
        cg = _open_cgroup(lin.get("cgroupsPath") or f"/dockyard/{a.id}")

        def join():
            if cg is not None:
                cg.create(lin.get("resources") or {})
                cg.add_pid(pid)

        _join_then_go(ch, join)
        c.state = {"id": a.id, "pid": pid, "starttime": _proc_stat(pid)[1], "bundle": bundle,
                   "rootfs": os.path.join(bundle, (cfg.get("root") or {}).get("path") or "rootfs"),
                   "created": _now_rfc3339(), "annotations": cfg.get("annotations") or {},
                   "cgroupsPath": cg.path if cg is not None else None}
        c.save()
        for kind in ("createRuntime", "prestart"):
            _run_hooks(cfg, kind, c.oci_state)
        if a.pid_file:
            _write_atomic(os.path.abspath(a.pid_file), str(pid))
    except BaseException:
        if pid:
            _reap(pid)
        if cg is not None:
            try:
                _destroy_cgroup(cg)
            except errdefs.DockyardError:
                pass
        _rmtree(c.dir)
        raise


def _run_hooks(cfg: dict, kind: str, oci_state, fatal: bool = True) -> None:
    """OCI hooks run by the runtime itself, in the host's namespaces, with the state on stdin.
    createRuntime/prestart run once the init is ready (its namespaces exist, e.g. a network
    namespace to wire up); a failure there fails create. poststart/poststop only warn.
    ``oci_state`` is called only when there are hooks: it reads /proc and the cgroup."""
    hooks = (cfg.get("hooks") or {}).get(kind) or ()
    if not hooks:
        return
    import subprocess

    state = oci_state()

    for h in hooks:
        path = h.get("path", "")
        try:
            r = subprocess.run(h.get("args") or [path], executable=path, input=cjson.dumps(state).encode(),
                               env=dict(e.split("=", 1) for e in h.get("env") or () if "=" in e),
                               capture_output=True, timeout=h.get("timeout"))
            out = r.stderr.decode(errors="replace").strip().splitlines()
            err = f"exit status {r.returncode}" + (f": {out[-1]}" if out else "") if r.returncode else ""
        except (OSError, subprocess.TimeoutExpired) as e:
            err = _describe(e)
        if err:
            msg = f"{kind} hook {path} failed: {err}"
            if fatal:
                raise errdefs.FailedPrecondition(msg)
            print(f"warning: {msg}", file=sys.stderr)


def _rmtree(path: str) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _now_rfc3339() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


def cmd_start(a) -> None:
    import select

    c = Container(a.root, a.id).load()
    st = c.status()
    if st != "created":
        raise errdefs.Conflict(f"cannot start a container that is {st}" if st == "stopped"
                               else f"cannot start an already {st} container")
    # Non-blocking open: it succeeds even if the init died meanwhile; poll then tells the two
    # apart (data = the init went on, hang-up without data = it is gone).
    fd = os.open(c.fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while True:
            if poller.poll(100) and os.read(fd, 1):
                break
            if not c.alive():
                raise errdefs.Conflict("cannot start container: its init process exited")
    finally:
        os.close(fd)
    os.unlink(c.fifo)
    try:
        _run_hooks(c.config(), "poststart", c.oci_state, fatal=False)
    except errdefs.DockyardError:
        pass  # started is started: a vanished bundle only costs the poststart hooks


def cmd_state(a) -> None:
    import json

    print(json.dumps(Container(a.root, a.id).load().oci_state(), indent=2))


def parse_signal(s: str) -> int:
    s = s.strip().upper()
    if s.isdigit():
        return int(s)
    import signal

    sig = signal.Signals.__members__.get(s if s.startswith("SIG") else "SIG" + s)
    if sig is None:
        raise errdefs.InvalidArgument(f"invalid signal {s!r}")
    return int(sig)


def cmd_kill(a) -> None:
    c = Container(a.root, a.id).load()
    sig = parse_signal(a.signal)
    if not c.alive():
        raise errdefs.Conflict(f"container {a.id} is not running")
    pids = [c.pid]
    if a.all and (cg := c.cgroup()) is not None:
        pids = cg.pids() or pids
    for p in pids:
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass


def cmd_delete(a) -> None:
    c = Container(a.root, a.id)
    try:
        c.load()
    except errdefs.NotFound:
        if os.path.isdir(c.dir):  # a create killed before its commit point (state.json)
            _rmtree(c.dir)
            return
        if a.force:
            return
        raise
    st = c.status()
    if st in ("running", "paused") and not a.force:
        raise errdefs.Conflict(f"cannot delete container {a.id} that is not stopped: {st}")
    cg = c.cgroup()
    # A created container goes without --force, as in runc. Once the init is dead, whatever is
    # left in the cgroup (possible when the PID namespace is the host's) goes with it.
    victims = (cg.pids() if cg is not None and cg.exists() else []) + ([c.pid] if st != "stopped" else [])
    for p in victims:
        try:
            os.kill(p, _signal.SIGKILL)
        except ProcessLookupError:
            pass
    if st == "paused":
        cg.thaw()  # frozen tasks act on the SIGKILL only once thawed
    deadline = time.monotonic() + 5
    while c.alive() and time.monotonic() < deadline:
        time.sleep(0.005)
    if cg is not None:
        _destroy_cgroup(cg)
    try:
        _run_hooks(c.config(), "poststop", c.oci_state, fatal=False)
    except errdefs.DockyardError:
        pass  # the bundle may be gone already; the container still has to go
    _rmtree(c.dir)


def cmd_pause(a) -> None:
    c = Container(a.root, a.id).load()
    if c.status() != "running":
        raise errdefs.Conflict(f"container {a.id} is not running")
    _require_cgroup(c).freeze()


def cmd_resume(a) -> None:
    c = Container(a.root, a.id).load()
    if c.status() != "paused":
        raise errdefs.Conflict(f"container {a.id} is not paused")
    _require_cgroup(c).thaw()


def _require_cgroup(c: Container):
    cg = c.cgroup()
    if cg is None:
        raise errdefs.Unavailable("the cgroup driver is not available")
    return cg


def cmd_list(a) -> None:
    rows = []
    if os.path.isdir(a.root):
        for cid in sorted(os.listdir(a.root)):
            try:
                rows.append(Container(a.root, cid).load().oci_state())
            except errdefs.DockyardError:
                continue
    if a.quiet:
        print("\n".join(r["id"] for r in rows))
    elif a.format == "json":
        print(cjson.dumps(rows))
    else:
        print(f"{'ID':<20} {'PID':<8} {'STATUS':<10} {'BUNDLE':<40} CREATED")
        for r in rows:
            print(f"{r['id']:<20} {r['pid']:<8} {r['status']:<10} {r['bundle']:<40} {r['created']}")


def cmd_exec(a) -> None:
    from dockyard.runtime import linux, syscalls as sc

    c = Container(a.root, a.id).load()
    _prime_cgroup_migration()  # the new process joins the container's cgroup too
    st = c.status()
    if st in ("stopped", "paused"):  # a paused one would freeze the new process too
        raise errdefs.Conflict(f"cannot exec in a {st} container {a.id}")
    cfg = c.config()
    if a.process:
        try:
            with open(a.process) as f:
                proc = cjson.load(f)
        except (OSError, ValueError) as e:
            raise errdefs.InvalidArgument(f"--process {a.process}: {e}") from None
    else:
        proc = dict(cfg["process"], args=a.command, terminal=a.tty)
        if a.cwd:
            proc["cwd"] = a.cwd
    if not proc.get("args"):
        raise errdefs.InvalidArgument("exec: no command given (--process FILE or arguments)")
    if a.tty:
        proc["terminal"] = True
    if proc.get("terminal") and not a.console_socket:
        raise errdefs.InvalidArgument("a terminal needs --console-socket")
    # Join each of the init's namespaces that differs from ours (host network shares ours).
    ns = {}
    for t, (_, name) in linux.NAMESPACES.items():
        theirs = f"/proc/{c.pid}/ns/{name}"
        try:
            if os.stat(theirs).st_ino != os.stat(f"/proc/self/ns/{name}").st_ino:
                ns[t] = theirs
        except FileNotFoundError:
            continue
    ns.pop("user", None)
    console = _connect_console(a.console_socket) if proc.get("terminal") else None
    if "pid" in ns:
        _join_namespaces({"pid": ns.pop("pid")})
    ch = _Channel()
    # Namespace files are opened before the mount namespace changes under us.
    ns_fds = {t: os.open(p, os.O_RDONLY | os.O_CLOEXEC) for t, p in ns.items()}
    seccomp_cfg = (cfg.get("linux") or {}).get("seccomp")

    def setup(flt):
        # The mount namespace last: the others are joined through fds, which is fine either way,
        # but nothing after it may need a host path.
        for t in sorted(ns_fds, key=lambda t: t == "mount"):
            sc.setns(ns_fds[t], linux.NAMESPACES[t][0])
            os.close(ns_fds[t])
        os.setsid()
        if console is not None:
            _setup_tty(console, proc.get("consoleSize"), bind_console=False)
        path = _prepare_process(proc)
        _await_go(ch.wait_go)  # in the cgroup before it can run anything
        ch.send({"ready": True})
        _exec(proc, path, flt)

    _preload(bool(proc.get("terminal")), seccomp_cfg)
    pid = os.fork()
    if pid == 0:
        ch.child_side()
        _child_main(ch.send, setup, seccomp_cfg, a.root)
    ch.parent_side()
    for fd in ns_fds.values():
        os.close(fd)
    if console is not None:
        console.close()
    try:
        cg = c.cgroup()
        _join_then_go(ch, lambda: cg is not None and cg.add_pid(pid))
    except BaseException:
        _reap(pid)
        raise
    if a.pid_file:
        _write_atomic(os.path.abspath(a.pid_file), str(pid))
    if a.detach:
        return
    for sig in (_signal.SIGTERM, _signal.SIGINT, _signal.SIGHUP, _signal.SIGQUIT, _signal.SIGUSR1, _signal.SIGUSR2):
        _signal.signal(sig, lambda s, _f: os.kill(pid, s))
    _, status = os.waitpid(pid, 0)
    sys.exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))


# --- CLI -----------------------------------------------------------------------------------------

def _parser():
    import argparse  # here: conmon's create/exec lines never need it (see _fast_args)

    class _Parser(argparse.ArgumentParser):
        def error(self, message):
            # One line and status 1, like every other failure (conmon relays stderr verbatim).
            print(f"{self.prog}: {message}", file=sys.stderr)
            sys.exit(1)

    p = _Parser(prog="dockyard-runtime", description="OCI runtime (runc-compatible CLI)")
    p.add_argument("--root", default=DEFAULT_ROOT, help="state directory")
    p.add_argument("--log", help="also write errors to this file")
    p.add_argument("--log-format", default="text", choices=("text", "json"))
    p.add_argument("--systemd-cgroup", action="store_true", help="accepted and ignored")
    p.add_argument("--debug", action="store_true", help="accepted and ignored")
    p.add_argument("--rootless", help="accepted and ignored")
    p.add_argument("--version", "-v", action="store_true")
    sub = p.add_subparsers(dest="cmd")

    s = sub.add_parser("create")
    s.add_argument("--bundle", "-b", default=".")
    s.add_argument("--pid-file")
    s.add_argument("--console-socket")
    s.add_argument("--no-pivot", action="store_true")
    s.add_argument("--no-new-keyring", action="store_true", help="accepted; no keyring is ever made")
    s.add_argument("--preserve-fds", type=int, default=0)
    s.add_argument("id")
    for name in ("start", "state", "pause", "resume"):
        sub.add_parser(name).add_argument("id")
    s = sub.add_parser("kill")
    s.add_argument("--all", "-a", action="store_true")
    s.add_argument("id")
    s.add_argument("signal", nargs="?", default="TERM")
    s = sub.add_parser("delete")
    s.add_argument("--force", "-f", action="store_true")
    s.add_argument("id")
    s = sub.add_parser("list")
    s.add_argument("--format", "-f", default="table", choices=("table", "json"))
    s.add_argument("--quiet", "-q", action="store_true")
    s = sub.add_parser("exec")
    s.add_argument("--process", "-p")
    s.add_argument("--pid-file")
    s.add_argument("--console-socket")
    s.add_argument("--detach", "-d", action="store_true")
    s.add_argument("--tty", "-t", action="store_true")
    s.add_argument("--cwd")
    s.add_argument("--preserve-fds", type=int, default=0)
    s.add_argument("id")
    s.add_argument("command", nargs=argparse.REMAINDER)
    return p


_COMMANDS = {"create": cmd_create, "start": cmd_start, "state": cmd_state, "kill": cmd_kill,
             "delete": cmd_delete, "list": cmd_list, "exec": cmd_exec,
             "pause": cmd_pause, "resume": cmd_resume}


def _log_error(a, msg: str) -> None:
    if not getattr(a, "log", None):
        return
    try:
        with open(a.log, "a") as f:
            if a.log_format == "json":
                f.write(cjson.dumps({"level": "error", "msg": msg, "time": _now_rfc3339()}, separators=(",", ":")) + "\n")
            else:
                f.write(f'time="{_now_rfc3339()}" level=error msg={cjson.dumps(msg)}\n')
    except OSError:
        pass


# Commands that print nothing and never fork, so a caller in the same package (the daemon's
# monitor) may run them in its own process: each saves a ~50 ms interpreter start.
INPROCESS = frozenset({"start", "kill", "delete"})


def call(root: str, *args: str) -> None:
    """Run ``dockyard-runtime --root ROOT ARGS`` in this process; errors raise errdefs kinds."""
    argv = ["--root", root, *args]
    a = _fast_args(argv) or _parser().parse_args(argv)
    if a.cmd not in INPROCESS:
        raise errdefs.InvalidArgument(f"{a.cmd} cannot run in-process")
    try:
        _COMMANDS[a.cmd](a)
    except OSError as e:
        raise errdefs.Internal(f"{a.cmd}: {_describe(e)}") from e


class _Args:
    """What argparse's Namespace would hold, built by ``_fast_args``."""

    def __init__(self, **kw):
        self.__dict__.update(kw)


# The options conmon passes on the container-start path: name -> (attribute, takes a value).
_FAST_GLOBAL = {"--root": ("root", True), "--log": ("log", True), "--log-format": ("log_format", True),
                "--systemd-cgroup": ("systemd_cgroup", False), "--debug": ("debug", False),
                "--rootless": ("rootless", True)}
_FAST_CMD = {
    "create": {"--bundle": ("bundle", True), "-b": ("bundle", True), "--pid-file": ("pid_file", True),
               "--console-socket": ("console_socket", True), "--no-pivot": ("no_pivot", False),
               "--no-new-keyring": ("no_new_keyring", False), "--preserve-fds": ("preserve_fds", True)},
    "exec": {"--process": ("process", True), "-p": ("process", True), "--pid-file": ("pid_file", True),
             "--console-socket": ("console_socket", True), "--detach": ("detach", False),
             "-d": ("detach", False), "--tty": ("tty", False), "-t": ("tty", False), "--cwd": ("cwd", True),
             "--preserve-fds": ("preserve_fds", True)},
    "start": {},
    "delete": {"--force": ("force", False), "-f": ("force", False)},
    "kill": {"--all": ("all", False), "-a": ("all", False)},
}
# Positional arguments each command takes here (exec with a command line goes to argparse).
_FAST_POSITIONALS = {"create": ("id",), "exec": ("id",), "start": ("id",), "delete": ("id",),
                     "kill": ("id", "signal")}
_FAST_DEFAULTS = {"root": DEFAULT_ROOT, "log": None, "log_format": "text", "systemd_cgroup": False,
                  "debug": False, "rootless": None, "version": False, "bundle": ".", "pid_file": None,
                  "console_socket": None, "no_pivot": False, "no_new_keyring": False, "preserve_fds": 0,
                  "process": None, "detach": False, "tty": False, "cwd": None, "command": [],
                  "force": False, "all": False, "signal": "TERM"}


def _fast_args(argv: list[str]):
    """Parse the exact forms conmon uses for ``create`` and ``exec``, and the daemon for the
    in-process ``start``/``kill``/``delete``, without argparse (importing it costs ~8 ms of every
    container start, building the parser ~3 ms per call). Anything else, including every
    malformed line, returns None and goes to argparse, so errors and --help stay its own."""
    vals, table, i = dict(_FAST_DEFAULTS), _FAST_GLOBAL, 0
    cmd, positionals = None, []
    while i < len(argv):
        arg = argv[i]
        name, eq, inline = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if cmd is None and name in _FAST_CMD:
            cmd, table = name, _FAST_CMD[name]
        elif name in table:
            attr, takes_value = table[name]
            if not takes_value:
                if eq:
                    return None
                vals[attr] = True
            elif eq:
                vals[attr] = inline
            elif i + 1 < len(argv) and not argv[i + 1].startswith("-"):
                i += 1
                vals[attr] = argv[i]
            else:
                return None
        elif cmd is not None and arg and not arg.startswith("-"):
            positionals.append(arg)
        else:
            return None
        i += 1
    names = _FAST_POSITIONALS.get(cmd, ())
    if not 1 <= len(positionals) <= len(names) or vals["log_format"] not in ("text", "json"):
        return None
    vals.update(zip(names, positionals))
    try:
        vals["preserve_fds"] = int(vals["preserve_fds"])
    except ValueError:
        return None
    return _Args(cmd=cmd, **vals)


def run() -> None:
    """Entry point of the launcher conmon runs: ``main``, then exit without the interpreter's
    teardown (freeing every module costs 5-10 ms, and conmon waits for our exit)."""
    rc = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)


def main(argv=None) -> int:
    global _PRESERVE_FDS
    argv = sys.argv[1:] if argv is None else list(argv)
    a = _fast_args(argv) or _parser().parse_args(argv)
    if a.version:
        from importlib.metadata import version

        print(f"dockyard-runtime version {version('dockyard')}\nspec: {OCI_VERSION}")
        return 0
    if not a.cmd:
        print(f"dockyard-runtime: no command given ({', '.join(_COMMANDS)}; --help for more)", file=sys.stderr)
        return 1
    _PRESERVE_FDS = getattr(a, "preserve_fds", 0) or 0
    try:
        _COMMANDS[a.cmd](a)
    except errdefs.DockyardError as e:
        _log_error(a, str(e))
        print(str(e), file=sys.stderr)
        return 1
    except OSError as e:
        msg = f"{a.cmd}: {_describe(e)}"
        _log_error(a, msg)
        print(msg, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
