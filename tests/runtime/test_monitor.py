"""Runtime (conmon + an OCI runtime CLI) with real containers.

Every test runs with runc and, when ``dockyard-runtime`` can run a trivial container on this
host, with it as well. Bundles use a small hand-written config.json over a shared, read-only
busybox rootfs. The fixture deletes every container, cgroup and directory the test made.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid

import pytest

from dockyard import errdefs
from dockyard.runtime import cgroups, logfile
from dockyard.runtime.monitor import Runtime, default_runtime, runtime_message

import rootfs  # tests/rootfs.py (tests/conftest.py puts tests/ on sys.path)

pytestmark = pytest.mark.privileged
RUNC = "/usr/bin/runc"


def oci_config(rootfs_dir, args, cgroups_path, terminal=False, resources=None):
    caps = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_KILL", "CAP_SETGID", "CAP_SETUID",
            "CAP_NET_BIND_SERVICE"]
    return {
        "ociVersion": "1.0.2",
        "process": {"terminal": terminal, "user": {"uid": 0, "gid": 0}, "args": args, "cwd": "/",
                    "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"],
                    "capabilities": {k: caps for k in ("bounding", "effective", "permitted")},
                    "noNewPrivileges": True},
        "root": {"path": rootfs_dir, "readonly": True},
        "hostname": "monitor-test",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"]},
        ],
        "linux": {"namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount", "network")],
                  "cgroupsPath": cgroups_path, "resources": resources or {}},
    }


@pytest.fixture(scope="module")
def shared_rootfs(tmp_path_factory):
    return rootfs.make_rootfs(str(tmp_path_factory.mktemp("rootfs")))


_probe_cache = {}


def _own_runtime_works(tmp_path_factory, shared_rootfs) -> str | None:
    """None if dockyard-runtime runs `true` under conmon here, else why not."""
    if "r" not in _probe_cache:
        path = default_runtime()
        if not os.access(path, os.X_OK):
            _probe_cache["r"] = f"{path} is not installed"
        else:
            env = Env(tmp_path_factory.mktemp("probe"), path, shared_rootfs)
            try:
                env.run(["true"])
                _probe_cache["r"] = None
            except Exception as e:  # whatever it is, the runtime is not ready
                _probe_cache["r"] = f"dockyard-runtime cannot run a container yet: {e}"
            finally:
                env.cleanup()
    return _probe_cache["r"]


class Env:
    """A Runtime over a temp state root, plus bundles; cleanup() removes all of it."""

    def __init__(self, tmp, runtime_path, rootfs_dir):
        self.tmp = str(tmp)
        self.rt = Runtime(os.path.join(self.tmp, "state"), runtime=runtime_path)
        self.rootfs = rootfs_dir
        self.parent = f"/dockyard-test-{uuid.uuid4().hex[:12]}"
        self.cids = []

    def bundle(self, cid, args, resources=None, terminal=False):
        b = os.path.join(self.tmp, "bundles", cid)
        os.makedirs(b)
        with open(os.path.join(b, "config.json"), "w") as f:
            json.dump(oci_config(self.rootfs, args, f"{self.parent}/{cid}", terminal, resources), f)
        return b

    def create(self, args, stdin=False, resources=None, terminal=False, **kw):
        cid = "t" + uuid.uuid4().hex[:12]
        self.cids.append(cid)
        log = os.path.join(self.tmp, cid + ".log")
        c = self.rt.create(cid, self.bundle(cid, args, resources, terminal), stdin=stdin, terminal=terminal,
                           log_path=log, **kw)
        return cid, log, c

    def run(self, args, **kw):
        cid, log, _ = self.create(args, **kw)
        self.rt.start(cid)
        return cid, log, self.wait(cid)

    def wait(self, cid, timeout=15):
        deadline = time.monotonic() + timeout
        while (st := self.rt.exit_status(cid)) is None:
            assert time.monotonic() < deadline, f"{cid} did not exit"
            time.sleep(0.02)
        return st

    def cleanup(self):
        for cid in self.cids:
            if cid in self.rt.list():
                self.rt.delete(cid, force=True)
        parent = cgroups.open(self.parent)
        parent.destroy()
        assert not parent.exists()
        assert self.rt.list() == []


@pytest.fixture(params=["runc", "dockyard-runtime"])
def env(request, tmp_path, tmp_path_factory, shared_rootfs):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    if request.param == "runc":
        path = RUNC
    else:
        why = _own_runtime_works(tmp_path_factory, shared_rootfs)
        if why:
            pytest.skip(why[:300])
        path = default_runtime()
    e = Env(tmp_path, path, shared_rootfs)
    request.addfinalizer(e.cleanup)
    return e


def _conmons_for(cid):
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv[0].endswith(b"conmon") and cid.encode() in argv:
            out.append(int(pid))
    return out


def test_echo_hello_is_logged(env):
    t0 = time.time_ns()
    cid, log, st = env.run(["echo", "hello"])
    assert st.code == 0 and not st.oom_killed
    assert t0 <= st.finished_at_ns <= time.time_ns()
    entries = list(logfile.read_entries(log))
    assert [(s, line) for s, line, _ in entries] == [("stdout", b"hello\n")]
    # The exit file's mtime comes from the kernel's coarse clock (a few ms behind).
    assert t0 <= entries[0][2] <= st.finished_at_ns + 20_000_000


def test_exit_code_is_recorded(env):
    cid, _, st = env.run(["sh", "-c", "exit 3"])
    assert st.code == 3
    assert env.rt.exit_status(cid) == st  # stable once known
    assert env.rt.monitor_pid(cid) is None  # conmon exits with the container


def test_stdout_and_stderr_are_distinguished(env):
    _, log, st = env.run(["sh", "-c", "echo out; echo err >&2; printf 'par'; sleep 0.1; echo tial"])
    assert st.code == 0
    got = sorted((s, line) for s, line, _ in logfile.read_entries(log))
    assert got == [("stderr", b"err\n"), ("stdout", b"out\n"), ("stdout", b"partial\n")]


def test_container_survives_its_creator(env):
    cid = "t" + uuid.uuid4().hex[:12]
    env.cids.append(cid)
    bundle = env.bundle(cid, ["sleep", "100"])
    script = (
        "import sys; from dockyard.runtime.monitor import Runtime\n"
        "rt = Runtime(sys.argv[1], runtime=sys.argv[2])\n"
        "c = rt.create(sys.argv[3], sys.argv[4], log_path=sys.argv[5]); rt.start(sys.argv[3])\n"
        "print(c.pid, c.monitor_pid)\n")
    out = subprocess.run([sys.executable, "-c", script, env.rt.state_root, env.rt.runtime, cid, bundle,
                          os.path.join(env.tmp, "survivor.log")], check=True, capture_output=True, text=True,
                         timeout=60).stdout
    pid, monitor = map(int, out.split())
    # The creator is gone; the container and its monitor are not.
    assert os.path.exists(f"/proc/{pid}") and env.rt.monitor_pid(cid) == monitor
    assert env.rt.exit_status(cid) is None
    assert cid in env.rt.list()
    with pytest.raises(errdefs.Conflict):
        env.rt.delete(cid)
    env.rt.kill(cid, signal.SIGKILL)
    st = env.wait(cid)
    assert st.code == 128 + signal.SIGKILL
    with pytest.raises(errdefs.Conflict):
        env.rt.kill(cid, signal.SIGKILL)
    env.rt.delete(cid)
    assert cid not in env.rt.list() and not _conmons_for(cid)


def test_monitor_killed_reports_255_once_the_container_is_gone(env):
    cid, _, c = env.create(["sleep", "100"])
    env.rt.start(cid)
    os.kill(c.monitor_pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while env.rt.monitor_pid(cid) is not None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert env.rt.exit_status(cid) is None  # still running, unmonitored
    env.rt.kill(cid, signal.SIGKILL)
    assert env.wait(cid).code == 255


def test_attach_delivers_output_and_takes_stdin(env):
    cid, log, _ = env.create(["sh", "-c", "cat; echo done >&2"], stdin=True)
    env.rt.start(cid)
    s = env.rt.open_attach(cid)
    try:
        s.sendall(b"ping\n")
        s.settimeout(10)
        got = []
        while True:
            msg = s.recv(65536)
            got.append(msg)
            if msg == b"\x03done\n":
                break
            if len(got) == 1:
                # Closing our write side closes the container's stdin (no --leave-stdin-open).
                s.shutdown(socket.SHUT_WR)
    finally:
        s.close()
    assert got == [b"\x02ping\n", b"\x03done\n"]
    assert env.wait(cid).code == 0
    assert [line for _, line, _ in logfile.read_entries(log)] == [b"ping\n", b"done\n"]


def test_log_rotation_by_rename_and_reopen(env):
    cid, log, _ = env.create(["sh", "-c", "echo one; read x; echo two"], stdin=True)
    env.rt.start(cid)
    deadline = time.monotonic() + 10
    while not list(logfile.read_entries(log)):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.rename(log, log + ".1")
    env.rt.reopen_log(cid)
    env.rt.resize(cid, 24, 80)  # no terminal: conmon ignores it, but the fifo must accept it
    time.sleep(0.1)  # conmon handles the ctl fifo asynchronously
    with env.rt.open_attach(cid) as s:
        s.sendall(b"go\n")
    assert env.wait(cid).code == 0
    assert [line for _, line, _ in logfile.read_entries(log)] == [b"one\n", b"two\n"]
    assert [line for _, line, _ in logfile.read_entries(log + ".1")] == [b"one\n"]


def test_terminal_and_resize(env):
    cid, log, _ = env.create(["sh", "-c", "stty size; echo tty"], terminal=True)
    env.rt.resize(cid, 30, 100)
    time.sleep(0.1)  # conmon applies the size from its event loop
    env.rt.start(cid)
    assert env.wait(cid).code == 0
    # One pty: everything is "stdout", with the terminal's CRLF line ends.
    assert [(s, line) for s, line, _ in logfile.read_entries(log)] == [
        ("stdout", b"30 100\r\n"), ("stdout", b"tty\r\n")]


def test_oom_kill_is_reported(env):
    cid, _, st = env.run(["tail", "/dev/zero"], resources={"memory": {"limit": 32 << 20}})
    assert st.code == 128 + signal.SIGKILL
    assert st.oom_killed


@pytest.mark.parametrize("args, message", [
    (["nonexistent-cmd"], 'exec: "nonexistent-cmd": executable file not found'),
    (["/etc/passwd"], "permission denied"),
])
def test_failure_leaves_nothing_behind(env, args, message):
    cid = "t" + uuid.uuid4().hex[:12]
    bundle = env.bundle(cid, args)
    before = set(os.listdir(bundle))
    with pytest.raises(errdefs.InvalidArgument, match=message):
        env.rt.create(cid, bundle, log_path=os.path.join(env.tmp, "x.log"))
    assert cid not in env.rt.list()
    assert not os.path.exists(os.path.join(env.rt.containers, cid))
    assert not os.path.lexists(os.path.join(env.rt.sockets, cid))
    assert set(os.listdir(bundle)) == before
    assert not cgroups.open(f"{env.parent}/{cid}").exists()
    assert not _conmons_for(cid)
    with pytest.raises(errdefs.NotFound):
        env.rt.exit_status(cid)


def test_bad_input(env, tmp_path):
    with pytest.raises(errdefs.InvalidArgument, match="container ID"):
        env.rt.create("../x", str(tmp_path))
    with pytest.raises(errdefs.InvalidArgument, match="config.json"):
        env.rt.create("nobundle", str(tmp_path))
    assert env.rt.list() == []
    cid, _, _ = env.create(["true"])
    with pytest.raises(errdefs.AlreadyExists):
        env.rt.create(cid, os.path.join(env.tmp, "bundles", cid))
    with pytest.raises(errdefs.InvalidArgument, match="out of range"):
        env.rt.resize(cid, 5000, 80)
    with pytest.raises(errdefs.NotFound):
        env.rt.start("missing")


def test_delete_created_container(env):
    cid, _, c = env.create(["true"])
    assert os.path.exists(f"/proc/{c.pid}") and env.rt.monitor_pid(cid) == c.monitor_pid
    env.rt.delete(cid)  # never started: no force needed
    assert cid not in env.rt.list() and not _conmons_for(cid)


@pytest.mark.parametrize("text, msg", [
    ('time="2026-01-01T00:00:00Z" level=error '
     'msg="runc create failed: exec: \\"foo\\": executable file not found in $PATH"\n',
     'runc create failed: exec: "foo": executable file not found in $PATH'),
    ('{"level":"error","msg":"container does not exist","time":"x"}\n', "container does not exist"),
    ("dockyard-runtime: permission denied\n", "dockyard-runtime: permission denied"),
    ("", "the OCI runtime failed without a message"),
])
def test_runtime_message(text, msg):
    assert runtime_message(text) == msg
