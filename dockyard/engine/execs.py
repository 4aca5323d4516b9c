"""Exec sessions: extra processes in a running container (``docker exec``).

An exec is created (a record, nothing runs), then started once. Starting builds an OCI process
object from the container's own config.json with args, env, cwd and user replaced, so the new
process gets exactly the container's capabilities, seccomp filter, no_new_privs and rlimits; the
runtime's conmon joins it to the container's namespaces and cgroup. Like Docker, exec records live
in memory only: a restarted daemon forgets them (the processes themselves run on under conmon).

The exit code is recorded before the session's output ends: the CLI inspects the exec right after
EOF and would read a stale ExitCode otherwise.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from dataclasses import dataclass, field

from dockyard import errdefs
from dockyard.engine import PAUSED, ocispec, sysmount
from dockyard.engine.attach import Session
from dockyard.engine.config import merge_env


@dataclass
class Exec:
    id: str  # 64 hex
    container_id: str
    cmd: list
    env: list = field(default_factory=list)
    user: str = ""
    working_dir: str = ""
    tty: bool = False
    open_stdin: bool = False
    open_stdout: bool = True
    open_stderr: bool = True
    privileged: bool = False
    detach_keys: str = ""
    console_size: list | None = None
    running: bool = False
    started: bool = False
    exit_code: int | None = None  # None until it ran and exited
    pid: int = 0


def exec_exit_code(msg: str) -> int:
    """Docker's exit code for an exec that could not start (the CLI's 126/127 rule)."""
    low = msg.lower()
    if "executable file not found" in low or "no such file or directory" in low:
        return 127
    return 126


class ExecOps:
    """Mixed into Engine: uses its ``get``, ``runtime`` and event loop."""

    def _init_execs(self):
        self._execs: dict[str, Exec] = {}
        self._exec_done: dict[str, asyncio.Event] = {}
        self._exec_watches: dict[str, int] = {}

    def get_exec(self, eid: str) -> Exec:
        ex = self._execs.get(eid)
        if ex is None:
            raise errdefs.NotFound(f"No such exec instance: {eid}")
        return ex

    inspect_exec = get_exec

    def _check_exec_target(self, c):
        if not c.state.running or not c.state.pid:
            raise errdefs.Conflict(f"container {c.id} is not running")
        if c.state.status == PAUSED:
            raise errdefs.Conflict(f"container {c.id} is paused, unpause the container before exec")

    async def create_exec(self, ref: str, cmd, env=None, user: str = "", workdir: str = "", tty: bool = False,
                          stdin: bool = False, stdout: bool = True, stderr: bool = True, privileged: bool = False,
                          detach_keys: str = "", console_size=None) -> str:
        c = self.get(ref)
        self._check_exec_target(c)
        if isinstance(cmd, str):
            cmd = [cmd]
        if not cmd or not all(isinstance(a, str) for a in cmd):
            raise errdefs.InvalidArgument("No exec command specified")
        if env is not None and not all(isinstance(e, str) for e in env):
            raise errdefs.InvalidArgument("exec Env must be a list of strings")
        if workdir and not workdir.startswith("/"):
            raise errdefs.InvalidArgument(f"the working directory '{workdir}' is invalid, it needs to be an "
                                          f"absolute path")
        eid = secrets.token_hex(32)
        self._execs[eid] = Exec(eid, c.id, list(cmd), list(env or ()), user or "", workdir or "", bool(tty),
                                bool(stdin), bool(stdout), bool(stderr), bool(privileged), detach_keys or "",
                                list(console_size) if console_size else None)
        self._cev(c, "exec_create: " + " ".join(cmd), execID=eid)  # moby puts the command in the action
        return eid

    def _exec_process(self, c, ex: Exec) -> dict:
        """The OCI process for the exec (thread: reads the container's config and passwd)."""
        with open(os.path.join(c.bundle, "config.json")) as f:
            proc = json.load(f)["process"]
        proc = dict(proc, args=list(ex.cmd), terminal=ex.tty)
        proc.pop("consoleSize", None)
        env = merge_env(proc.get("env") or [], ex.env)
        if ex.tty and not any(e.startswith("TERM=") for e in env):
            env.append("TERM=xterm")
        proc["env"] = env
        if ex.working_dir:
            proc["cwd"] = ex.working_dir
        if ex.user:
            passwd = sysmount.read_in_root(c.rootfs, "/etc/passwd")
            group = sysmount.read_in_root(c.rootfs, "/etc/group")
            u = ocispec.resolve_user(ex.user, passwd and passwd.decode(errors="replace"),
                                     group and group.decode(errors="replace"), c.host_config.get("GroupAdd"))
            proc["user"] = {"uid": u["uid"], "gid": u["gid"], "additionalGids": u["additionalGids"]}
            # HOME follows the exec's user unless the exec set it.
            if not any(e.startswith("HOME=") for e in ex.env):
                proc["env"] = [e for e in env if not e.startswith("HOME=")] + ["HOME=" + u["home"]]
        if ex.privileged:
            # `exec --privileged`: every capability the kernel knows (seccomp stays the container's).
            from dockyard.runtime import caps

            every = [c for c in caps.ALL if caps.NUMBERS[c] <= caps.last_cap()]
            proc["capabilities"] = {k: list(every) for k in ("bounding", "effective", "permitted")}
        if ex.tty and ex.console_size and len(ex.console_size) == 2 and all(ex.console_size):
            proc["consoleSize"] = {"height": int(ex.console_size[0]), "width": int(ex.console_size[1])}
        return proc

    async def start_exec(self, eid: str, detach: bool = False, tty: bool | None = None,
                         console_size=None) -> Session | None:
        """Run the exec. Attached: returns its session (output ends after the exit code is
        recorded). A process that cannot start raises InvalidArgument, with ExitCode set."""
        ex = self.get_exec(eid)
        if ex.started:
            raise errdefs.Conflict(f"Exec {eid} has already been started")
        c = self.get(ex.container_id)
        self._check_exec_target(c)
        if console_size:
            ex.console_size = list(console_size)
        ex.started = ex.running = True
        done = self._exec_done[eid] = asyncio.Event()
        try:
            proc = await asyncio.to_thread(self._exec_process, c, ex)
            pid, monitor, sock = await asyncio.to_thread(self.runtime.exec, c.id, eid, proc, ex.tty, ex.open_stdin,
                                                         not detach)
        except BaseException as e:
            ex.running = False
            msg = str(e) if isinstance(e, errdefs.DockyardError) else f"{type(e).__name__}: {e}"
            ex.exit_code = exec_exit_code(msg)
            done.set()
            if isinstance(e, errdefs.Conflict):
                raise
            if isinstance(e, errdefs.DockyardError):
                raise errdefs.InvalidArgument(f"OCI runtime exec failed: {msg}") from e
            raise errdefs.Internal(msg) from e
        ex.pid = pid
        self._cev(c, "exec_start: " + " ".join(ex.cmd), execID=eid)
        sess = None
        if sock is not None:
            sess = Session(ex.open_stdin, ex.open_stdout, ex.open_stderr)
            sess.connect(sock, done)
        try:
            fd = os.pidfd_open(monitor)
        except ProcessLookupError:
            self._spawn(self._exec_exited(eid))
        else:
            self._exec_watches[eid] = fd
            asyncio.get_running_loop().add_reader(fd, self._on_exec_monitor_exit, eid)
        return sess

    def _on_exec_monitor_exit(self, eid: str):
        fd = self._exec_watches.pop(eid, None)
        if fd is not None:
            asyncio.get_running_loop().remove_reader(fd)
            os.close(fd)
        self._spawn(self._exec_exited(eid))

    async def _exec_exited(self, eid: str):
        ex = self._execs.get(eid)
        if ex is None:
            return
        code = None
        try:
            code = await asyncio.to_thread(self.runtime.exec_exit_code, ex.container_id, eid)
            await asyncio.to_thread(self.runtime.exec_remove, ex.container_id, eid)
        except errdefs.DockyardError:
            pass  # the container's runtime state went first (it exited): the exec died with it
        ex.exit_code = 137 if code is None else code  # killed along with the container's init
        ex.running, ex.pid = False, 0
        c = self._containers.get(ex.container_id)
        if c is not None:
            self._cev(c, "exec_die", execID=eid, exitCode=ex.exit_code)
        ev = self._exec_done.pop(eid, None)
        if ev:
            ev.set()

    async def resize_exec(self, eid: str, height: int, width: int):
        ex = self.get_exec(eid)
        if not ex.running:
            raise errdefs.Conflict(f"exec {eid} is not running")
        await asyncio.to_thread(self.runtime.exec_resize, ex.container_id, eid, int(height), int(width))

    def _drop_execs(self, cid: str):
        """Forget the execs of a removed container."""
        for eid in [e.id for e in self._execs.values() if e.container_id == cid]:
            fd = self._exec_watches.pop(eid, None)
            if fd is not None:
                asyncio.get_running_loop().remove_reader(fd)
                os.close(fd)
            self._execs.pop(eid, None)
            try:
                self.runtime.exec_remove(cid, eid)  # closes its pipe; the files went with the container
            except errdefs.DockyardError:
                pass
            ev = self._exec_done.pop(eid, None)
            if ev:
                ev.set()

    def _close_execs(self):
        loop = asyncio.get_running_loop()
        for fd in self._exec_watches.values():
            loop.remove_reader(fd)
            os.close(fd)
        self._exec_watches.clear()
