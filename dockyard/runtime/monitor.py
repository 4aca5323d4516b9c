"""Runtime: one conmon per container, driving an OCI runtime CLI (the contract is in __init__).

Layout under ``state_root`` (all of it disposable at reboot)::

    oci/                      the OCI runtime's --root (its own state, shared by all containers)
    sockets/<cid> -> bundle   conmon's --socket-dir-path symlink: keeps the attach path short
    containers/<cid>/         ours: meta.json, pidfile, conmon.pid, exits/<cid>, status.json,
                              oom (conmon's marker; it is conmon's working directory)

conmon also creates ``attach`` (socket), ``ctl`` and ``winsz`` (fifos) in the bundle; delete()
removes them. The commit point of create() is conmon's sync-pipe answer: before it, any failure
removes everything this call made; after it, the container exists until delete().

conmon protocol used here (conmon 2.1, ``--api-version 1``): the fd named by ``_OCI_SYNCPIPE``
receives one JSON line once ``runtime create`` finished, ``{"data": <init pid>}`` or
``{"data": -1, "message": "<runtime stderr>"}``; the first conmon process exits at once after
forking the monitor (whose PID it writes to --conmon-pidfile). We do not pass ``_OCI_STARTPIPE``:
it only exists to let the caller move conmon into a cgroup before it forks, which we do not do.
The exit file ``exits/<cid>`` holds the exit code (128+N for signal N); its mtime is the finish time.
"""

import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time

from dockyard import errdefs
from dockyard.runtime import Created, ExitStatus, cgroups

CONMON = "/usr/bin/conmon"
_CID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_CREATE_TIMEOUT = 60.0  # runtime create of a big bundle on a loaded host; conmon kills it never


def default_runtime() -> str:
    # The console script next to this interpreter: the pyenv shim on PATH costs 150 ms per call.
    return os.path.join(os.path.dirname(sys.executable), "dockyard-runtime")


def _fast_launcher(state_root: str) -> str:
    """A ``dockyard-runtime`` launcher for conmon that starts the interpreter isolated and without
    ``site`` (``-I -S``): ``site`` processes every .pth file of the environment and costs ~10-20 ms
    per container create. The few import paths the runtime needs are written into the launcher.
    Falls back to the console script when the launcher cannot be written."""
    import pyseccomp

    import dockyard

    paths = []
    for d in (os.path.dirname(os.path.dirname(os.path.abspath(dockyard.__file__))),  # a package
              os.path.dirname(os.path.abspath(pyseccomp.__file__))):  # a single module
        if d not in paths:
            paths.append(d)
    text = (f"#!{sys.executable} -IS\n"
            "# Written by the dockyard daemon (runtime/monitor.py): conmon runs this.\n"
            f"import sys\nsys.path[:0] = {paths!r}\n"
            "from dockyard.runtime.oci import run\nrun()\n")
    path = os.path.join(state_root, "bin", "dockyard-runtime")
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        try:
            with open(path) as f:
                if f.read() == text:
                    return path
        except FileNotFoundError:
            pass
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)
        return path
    except OSError:
        return default_runtime()


def runtime_message(text: str) -> str:
    """The one line that matters in a runtime's stderr (runc logs logfmt: msg="...")."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        m = re.search(r'(?:^|\s)msg="((?:[^"\\]|\\.)*)"', ln)
        if m:
            return m.group(1).encode().decode("unicode_escape")
        if ln.startswith("{"):  # JSON log lines (crun/runc --log-format json)
            try:
                return str(json.loads(ln).get("msg") or ln)
            except ValueError:
                pass
    return lines[-1] if lines else "the OCI runtime failed without a message"


def _error_for(msg: str) -> errdefs.DockyardError:
    """The errdefs kind for a runtime failure message (the user's mistake vs. ours)."""
    low = msg.lower()
    if "container does not exist" in low or "container not found" in low:
        return errdefs.NotFound(msg)
    if any(s in low for s in ("executable file not found", "no such file or directory", "permission denied",
                               "not a directory", "is a directory", "exec format error")):
        return errdefs.InvalidArgument(msg)
    if any(s in low for s in ("not running", "stopped", "already running", "is paused", "not in created state")):
        return errdefs.Conflict(msg)
    return errdefs.Internal(msg)


# Runtime commands that our own runtime runs in this process (see oci.INPROCESS).
_INPROCESS = frozenset({"start", "kill", "delete"})

class Runtime:
    def __init__(self, state_root: str, runtime: str | None = None, conmon: str = CONMON):
        self.state_root = os.path.abspath(state_root)
        self.runtime = runtime or os.environ.get("DOCKYARD_OCI_RUNTIME") or _fast_launcher(self.state_root)
        self.conmon = conmon
        self.oci_root = os.path.join(self.state_root, "oci")
        self.sockets = os.path.join(self.state_root, "sockets")
        self.containers = os.path.join(self.state_root, "containers")
        self._exec_sync: dict[str, int] = {}  # exec ID -> read end of its conmon's sync pipe

    # ---- paths and metadata ----

    def _dir(self, cid: str) -> str:
        if not isinstance(cid, str) or not _CID.match(cid):
            raise errdefs.InvalidArgument(f"invalid container ID {cid!r}")
        return os.path.join(self.containers, cid)

    def _meta(self, cid: str) -> dict:
        try:
            with open(os.path.join(self._dir(cid), "meta.json")) as f:
                return json.load(f)
        except FileNotFoundError:
            raise errdefs.NotFound(f"no runtime state for container {cid}") from None

    def _run(self, meta: dict, *args: str, timeout: float = 30) -> str:
        """Run the OCI runtime CLI; raise the errdefs kind its message implies."""
        if os.path.basename(meta["runtime"]) == "dockyard-runtime" and args[0] in _INPROCESS:
            # Our own runtime's start/kill/delete run here: no process start on the hot path.
            from dockyard.runtime import oci

            oci.call(self.oci_root, *args)  # raises errdefs kinds already
            return ""
        try:
            p = subprocess.run([meta["runtime"], "--root", self.oci_root, *args], capture_output=True,
                               text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except FileNotFoundError as e:
            raise errdefs.Unavailable(f"OCI runtime {meta['runtime']} not found") from e
        except subprocess.TimeoutExpired as e:
            raise errdefs.Internal(f"OCI runtime {args[0]} did not finish in {timeout} s") from e
        if p.returncode != 0:
            raise _error_for(runtime_message(p.stderr or p.stdout))
        return p.stdout

    # ---- the contract ----

    def create(self, cid: str, bundle: str, terminal: bool = False, stdin: bool = False,
               log_path: str | None = None, log_size_max: int | None = None,
               leave_stdin_open: bool = False) -> Created:
        cdir = self._dir(cid)
        bundle = os.path.abspath(bundle)
        try:
            with open(os.path.join(bundle, "config.json")) as f:
                config = json.load(f)
        except (OSError, ValueError) as e:
            raise errdefs.InvalidArgument(f"bundle {bundle} has no readable config.json: {e}") from e
        if not os.access(self.runtime, os.X_OK):
            raise errdefs.Unavailable(f"OCI runtime {self.runtime} is not an executable")
        if not os.access(self.conmon, os.X_OK):
            raise errdefs.Unavailable(f"conmon ({self.conmon}) is not installed")
        for d in (self.oci_root, self.sockets, self.containers):
            os.makedirs(d, mode=0o700, exist_ok=True)
        try:
            os.mkdir(cdir, 0o700)
        except FileExistsError:
            raise errdefs.AlreadyExists(f"container {cid} already has runtime state") from None
        meta = {"bundle": bundle, "runtime": self.runtime,
                # The same default as dockyard-runtime (oci.py) when the engine sets none.
                "cgroups_path": (config.get("linux") or {}).get("cgroupsPath") or "/dockyard/" + cid,
                "log_path": log_path}
        try:
            os.mkdir(os.path.join(cdir, "exits"))
            with open(os.path.join(cdir, "meta.json"), "w") as f:
                json.dump(meta, f)
            pid, monitor = self._spawn_conmon(cid, cdir, meta, terminal, stdin, log_path, log_size_max,
                                              leave_stdin_open)
        except BaseException:
            self._remove(cid, meta, force=True)
            raise
        return Created(pid=pid, monitor_pid=monitor)

    def _spawn_conmon(self, cid, cdir, meta, terminal, stdin, log_path, log_size_max, leave_stdin_open):
        argv = [self.conmon, "--api-version", "1", "-c", cid, "-u", cid, "-n", cid,
                "-r", meta["runtime"], "-b", meta["bundle"],
                "-p", os.path.join(cdir, "pidfile"), "-P", os.path.join(cdir, "conmon.pid"),
                "--exit-dir", os.path.join(cdir, "exits"), "--socket-dir-path", self.sockets,
                "--runtime-arg", "--root", "--runtime-arg", self.oci_root]
        if log_path == "":
            argv += ["-l", "none:"]  # no log at all (the none driver): conmon writes nothing
        else:
            argv += ["-l", "k8s-file:" + (log_path or os.path.join(cdir, "ctr.log"))]
        if log_size_max:
            argv += ["--log-size-max", str(int(log_size_max))]
        if terminal:
            argv.append("-t")
        if stdin:
            argv.append("-i")
        if leave_stdin_open:
            argv.append("--leave-stdin-open")
        r, w = os.pipe()
        try:
            env = dict(os.environ, _OCI_SYNCPIPE=str(w))
            # cwd: conmon drops an "oom" file into its working directory on an OOM event (v1).
            proc = subprocess.Popen(argv, env=env, cwd=cdir, pass_fds=(w,), close_fds=True, start_new_session=True,
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            os.close(w)
            w = -1
            # The first conmon exits right after forking the monitor; its stderr has argument errors.
            early_err = proc.communicate(timeout=_CREATE_TIMEOUT)[1].decode(errors="replace")
            answer = _read_line(r, _CREATE_TIMEOUT)
        finally:
            os.close(r)
            if w >= 0:
                os.close(w)
        if not answer:
            raise errdefs.Internal(f"conmon failed: {early_err.strip() or 'exited without an answer'}")
        try:
            msg = json.loads(answer)
            pid = int(msg["data"])
        except (ValueError, KeyError, TypeError) as e:
            raise errdefs.Internal(f"conmon sent an unexpected answer {answer[:200]!r}") from e
        if pid <= 0:
            raise _error_for(runtime_message(msg.get("message") or ""))
        monitor = self.monitor_pid(cid)
        if monitor is None:
            raise errdefs.Internal(f"conmon for {cid} reported pid {pid} but is not running")
        return pid, monitor

    def start(self, cid: str) -> None:
        self._run(self._meta(cid), "start", cid)

    def kill(self, cid: str, sig: int = signal.SIGTERM, all_processes: bool = False) -> None:
        meta = self._meta(cid)
        if self.exit_status(cid) is not None:
            raise errdefs.Conflict(f"container {cid} is not running")
        self._run(meta, "kill", *(["--all"] if all_processes else []), cid, str(int(sig)))

    def pause(self, cid: str) -> None:
        """Freeze every process of the container (cgroup freezer, through the runtime)."""
        self._run(self._meta(cid), "pause", cid)

    def resume(self, cid: str) -> None:
        self._run(self._meta(cid), "resume", cid)

    def exit_status(self, cid: str) -> ExitStatus | None:
        cdir = self._dir(cid)
        meta = self._meta(cid)
        cached = os.path.join(cdir, "status.json")
        try:
            with open(cached) as f:
                return ExitStatus(**json.load(f))
        except FileNotFoundError:
            pass
        exit_file = os.path.join(cdir, "exits", cid)
        code = _read_exit_file(exit_file)
        if code is None:
            if self.monitor_pid(cid) is not None:
                return None
            code = _read_exit_file(exit_file)  # conmon may have written it and exited just now
        if code is not None:
            finished = os.stat(exit_file).st_mtime_ns
        else:
            # conmon died without a record (killed): the exit code is lost. While the runtime
            # still sees the process the container runs unmonitored; once it is gone, report
            # 255 as Docker does when its shim vanished.
            if self._state(meta, cid) in ("created", "running", "paused"):
                return None
            code, finished = 255, time.time_ns()
        # The OOM counter lives in the cgroup, which the runtime removes on delete: read it now
        # and keep the answer.
        try:
            oom = cgroups.open(meta["cgroups_path"]).oom_killed()
        except errdefs.DockyardError:
            oom = False
        oom = oom or os.path.exists(os.path.join(cdir, "oom"))  # conmon's own OOM marker
        st = ExitStatus(code=code, oom_killed=oom, finished_at_ns=finished)
        tmp = cached + ".tmp"
        with open(tmp, "w") as f:
            json.dump(st.__dict__, f)
        os.replace(tmp, cached)
        return st

    def monitor_pid(self, cid: str) -> int | None:
        try:
            with open(os.path.join(self._dir(cid), "conmon.pid")) as f:
                pid = int(f.read().strip())
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except (OSError, ValueError):
            return None
        # PIDs are reused: only a conmon with our container's -c counts.
        if not argv or not argv[0].endswith(b"conmon"):
            return None
        for i, a in enumerate(argv[:-1]):
            if a in (b"-c", b"--cid") and argv[i + 1] == cid.encode():
                return pid
        return None

    def attach_socket(self, cid: str) -> str:
        self._meta(cid)
        return os.path.join(self.sockets, cid, "attach")

    def open_attach(self, cid: str) -> socket.socket:
        """A connected attach socket. Goes through an O_PATH fd of the socket's directory, as a
        full path may exceed sun_path's 108 bytes."""
        return self._connect(os.path.dirname(self.attach_socket(cid)), errdefs.Conflict,
                             f"cannot attach to container {cid}")

    def _ctl(self, cid: str, line: str) -> None:
        ctl = os.path.join(self._meta(cid)["bundle"], "ctl")
        try:
            # Non-blocking: with conmon gone there is no reader and open fails with ENXIO
            # instead of hanging.
            fd = os.open(ctl, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as e:
            raise errdefs.Conflict(f"container {cid} has no running monitor ({e.strerror})") from e
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    def resize(self, cid: str, height: int, width: int) -> None:
        # conmon rejects sizes outside 0..1000 (and logs it); say so here instead.
        if not (0 <= height <= 1000 and 0 <= width <= 1000):
            raise errdefs.InvalidArgument(f"terminal size {height}x{width} out of range 0..1000")
        self._ctl(cid, f"1 {int(height)} {int(width)}\n")

    def reopen_log(self, cid: str) -> None:
        self._ctl(cid, "2 0 0\n")

    def delete(self, cid: str, force: bool = False) -> None:
        meta = self._meta(cid)
        running = self.exit_status(cid) is None and self.monitor_pid(cid) is not None
        if running and not force:
            state = self._state(meta, cid)
            if state != "created":  # a created container was never started: deleting it is fine
                raise errdefs.Conflict(f"container {cid} is running; stop it first or force")
        self._remove(cid, meta, force=True)

    def _state(self, meta, cid) -> str | None:
        try:
            return json.loads(self._run(meta, "state", cid)).get("status")
        except (errdefs.DockyardError, ValueError):
            return None

    def _remove(self, cid: str, meta: dict, force: bool) -> None:
        """Undo everything create() may have made; each step tolerates its object being gone."""
        try:
            self._run(meta, "delete", *(["--force"] if force else []), cid)
        except errdefs.DockyardError:
            pass  # never created, or already deleted
        # conmon exits once the container is gone; give it a moment, then make sure.
        deadline = time.monotonic() + 2
        while (pid := self.monitor_pid(cid)) is not None and time.monotonic() < deadline:
            time.sleep(0.01)
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            cgroups.open(meta["cgroups_path"]).destroy()
        except errdefs.DockyardError:
            pass  # still draining or not ours to remove: the runtime's delete owns it
        for name in ("attach", "ctl", "winsz"):
            try:
                os.unlink(os.path.join(meta["bundle"], name))
            except FileNotFoundError:
                pass
        # Exec sessions' socket links too (conmon removes its own, unless it died first).
        try:
            eids = os.listdir(os.path.join(self._dir(cid), "execs"))
        except FileNotFoundError:
            eids = []
        for name in [cid] + eids:
            try:
                os.unlink(os.path.join(self.sockets, name))
            except FileNotFoundError:
                pass
        shutil.rmtree(self._dir(cid), ignore_errors=True)

    # ---- exec sessions ----
    # An exec gets its own conmon (``--exec``), which runs ``<runtime> exec --process FILE -d`` and
    # then monitors the new process like a container's init: stdio, attach socket, exit file. Its
    # files live in containers/<cid>/execs/<eid>/ (conmon's bundle for it: attach, ctl, winsz),
    # so deleting the container's runtime state takes its execs' along.

    def _exec_dir(self, cid: str, eid: str) -> str:
        if not _CID.match(eid or ""):
            raise errdefs.InvalidArgument(f"invalid exec ID {eid!r}")
        return os.path.join(self._dir(cid), "execs", eid)

    def exec(self, cid: str, eid: str, process: dict, terminal: bool = False, stdin: bool = False,
             attach: bool = True) -> tuple[int, int, socket.socket | None]:
        """Run ``process`` (an OCI process object) in the running container ``cid``.

        Returns (pid, conmon pid, attach socket or None). With ``attach`` the socket is connected
        before the process execs (conmon's start pipe holds the runtime back until then), so no
        output is lost. Failures raise the runtime's message and leave no exec state behind.
        """
        meta = self._meta(cid)
        if self.exit_status(cid) is not None:
            raise errdefs.Conflict(f"container {cid} is not running")
        edir = self._exec_dir(cid, eid)
        os.makedirs(os.path.join(edir, "exits"), mode=0o700)
        pipes = []
        try:
            spec = os.path.join(edir, "process.json")
            with open(spec, "w") as f:
                json.dump(process, f)
            argv = [self.conmon, "--api-version", "1", "-c", cid, "-u", eid, "-n", cid, "-r", meta["runtime"],
                    "-b", edir, "-p", os.path.join(edir, "pidfile"), "-P", os.path.join(edir, "conmon.pid"),
                    "--exit-dir", os.path.join(edir, "exits"), "--socket-dir-path", self.sockets,
                    "--runtime-arg", "--root", "--runtime-arg", self.oci_root,
                    # Docker keeps no exec output; the file only exists because conmon needs one.
                    "-l", "k8s-file:" + os.path.join(edir, "exec.log"), "--log-size-max", str(1 << 20),
                    "-e", "--exec-process-spec", spec]
            argv += ["-t"] if terminal else []
            argv += ["-i"] if stdin else []
            sync_r, sync_w = os.pipe()
            pipes += [sync_r, sync_w]
            env = dict(os.environ, _OCI_SYNCPIPE=str(sync_w))
            keep = [sync_w]
            if attach:
                argv.append("--exec-attach")
                att_r, att_w = os.pipe()
                start_r, start_w = os.pipe()
                pipes += [att_r, att_w, start_r, start_w]
                env.update(_OCI_ATTACHPIPE=str(att_w), _OCI_STARTPIPE=str(start_r))
                keep += [att_w, start_r]
                # conmon reads the start pipe once before it forks (a chance to move it into a
                # cgroup), and once more, in the runtime's child, before exec: the first now.
                os.write(start_w, b"0\n")
            proc = subprocess.Popen(argv, env=env, cwd=edir, pass_fds=keep, close_fds=True, start_new_session=True,
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            for fd in keep:
                pipes.remove(fd)
                os.close(fd)
            early_err = proc.communicate(timeout=_CREATE_TIMEOUT)[1].decode(errors="replace")
            sock = None
            if attach:
                if not _read_line(att_r, _CREATE_TIMEOUT):
                    raise errdefs.Internal(f"conmon failed: {early_err.strip() or 'no attach socket'}")
                sock = self._connect(os.path.join(self.sockets, eid))
                os.write(start_w, b"0\n")
            answer = _read_one_line(sync_r, _CREATE_TIMEOUT)
            try:
                pid = int(json.loads(answer)["data"])
            except (ValueError, KeyError, TypeError):
                raise errdefs.Internal(f"conmon failed: {early_err.strip() or answer[:200]!r}") from None
            if pid <= 0:
                if sock:
                    sock.close()
                raise _error_for(runtime_message(json.loads(answer).get("message") or ""))
            # The read end stays open until the exec is removed: conmon writes the exit code to
            # it too, and a closed pipe would kill it with SIGPIPE before it cleans up.
            pipes.remove(sync_r)
            self._exec_sync[eid] = sync_r
            with open(os.path.join(edir, "conmon.pid")) as f:
                monitor = int(f.read().strip())
            return pid, monitor, sock
        except BaseException:
            self.exec_remove(cid, eid)
            raise
        finally:
            for fd in pipes:
                os.close(fd)

    def _connect(self, sockdir: str, kind=errdefs.Internal, what: str = "cannot attach to exec") -> socket.socket:
        # Through an O_PATH fd of the directory: the full path may exceed sun_path's 108 bytes.
        dfd = os.open(sockdir, os.O_PATH)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            s.connect(f"/proc/self/fd/{dfd}/attach")
        except OSError as e:
            s.close()
            raise kind(f"{what}: {e.strerror}") from e
        finally:
            os.close(dfd)
        return s

    def exec_exit_code(self, cid: str, eid: str) -> int | None:
        """The exec's exit code once conmon recorded it (128+N for signal N), else None."""
        return _read_exit_file(os.path.join(self._exec_dir(cid, eid), "exits", cid))

    def exec_resize(self, cid: str, eid: str, height: int, width: int) -> None:
        if not (0 <= height <= 1000 and 0 <= width <= 1000):
            raise errdefs.InvalidArgument(f"terminal size {height}x{width} out of range 0..1000")
        try:
            fd = os.open(os.path.join(self._exec_dir(cid, eid), "ctl"), os.O_WRONLY | os.O_NONBLOCK)
        except OSError as e:
            raise errdefs.Conflict(f"exec {eid} is not running ({e.strerror})") from e
        try:
            os.write(fd, f"1 {int(height)} {int(width)}\n".encode())
        finally:
            os.close(fd)

    def exec_remove(self, cid: str, eid: str) -> None:
        """Forget an exec's files (its process is gone or goes with the container)."""
        fd = self._exec_sync.pop(eid, None)
        if fd is not None:
            os.close(fd)
        try:
            os.unlink(os.path.join(self.sockets, eid))
        except FileNotFoundError:
            pass
        shutil.rmtree(self._exec_dir(cid, eid), ignore_errors=True)

    def list(self) -> list[str]:
        try:
            return sorted(n for n in os.listdir(self.containers) if _CID.match(n))
        except FileNotFoundError:
            return []

    def cgroup(self, cid: str) -> cgroups.Cgroup:
        return cgroups.open(self._meta(cid)["cgroups_path"])


def _read_line(fd: int, timeout: float) -> str:
    """One line from a pipe, or what there is at EOF; Internal after ``timeout``."""
    buf = b""
    deadline = time.monotonic() + timeout
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise errdefs.Internal(f"no answer from conmon in {timeout:.0f} s")
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        buf += chunk
    return buf.decode(errors="replace").strip()


def _read_one_line(fd: int, timeout: float) -> str:
    """Like _read_line, but one line only: conmon may write the next message right behind it."""
    buf = b""
    deadline = time.monotonic() + timeout
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise errdefs.Internal(f"no answer from conmon in {timeout:.0f} s")
        chunk = os.read(fd, 1)  # byte by byte: what follows the line stays in the pipe
        if not chunk:
            break
        buf += chunk
    return buf.decode(errors="replace").strip()


def _read_exit_file(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (FileNotFoundError, ValueError):
        return None  # not yet (conmon writes it atomically, so ValueError is someone else's file)
