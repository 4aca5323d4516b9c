"""dockyard-runtime as an OCI runtime CLI: real containers from a busybox bundle, driven the way
conmon drives it (create, then start), with this test process as the subreaper that inherits the
container's init. Pure parts (mount planning, specs, seccomp compile) are tested without root."""

import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import rootfs  # noqa: E402  (tests/rootfs.py)

from dockyard import errdefs  # noqa: E402
from dockyard.runtime import caps, linux, spec  # noqa: E402

BIN = os.path.dirname(os.path.realpath(sys.executable))
RUNTIME = os.path.join(BIN, "dockyard-runtime")
PR_SET_CHILD_SUBREAPER = 36
privileged = pytest.mark.privileged


def _host_bounding() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1], 16) for line in f if line.startswith("CapBnd:"))


def _mounts(rt) -> list[str]:
    """Host mount points under what this test made (other tests mount things concurrently)."""
    roots = (rt.base, rt.rootfs)
    with open("/proc/self/mountinfo") as f:
        return sorted(mp for mp in (line.split()[4] for line in f) if mp.startswith(roots))


def _cgroup_dirs(cid: str) -> list[str]:
    out = []
    for ctrl in os.listdir("/sys/fs/cgroup"):
        d = os.path.join("/sys/fs/cgroup", ctrl, "dockyard", cid)
        if os.path.isdir(d):
            out.append(d)
    return out


class Runtime:
    """Drives dockyard-runtime (or runc) on a private --root; forgets nothing it made."""

    def __init__(self, base: str, rootfs_dir: str, binary: str = RUNTIME):
        self.base, self.rootfs, self.binary = base, rootfs_dir, binary
        self.root = os.path.join(base, "state")
        self.ids: list[str] = []

    def cli(self, *args, **kw) -> subprocess.CompletedProcess:
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("timeout", 30)
        return subprocess.run([self.binary, "--root", self.root, *args], **kw)

    def spec(self, *args, **kw) -> dict:
        s = spec.default_spec(list(args), [], **kw)
        s["root"]["path"] = self.rootfs
        return s

    def create(self, config: dict, cid: str | None = None, console_socket: str | None = None):
        """create; returns (cid, pid or None, CompletedProcess, stdout file, stderr file)."""
        cid = cid or "dyt-oci-" + uuid.uuid4().hex[:12]
        self.ids.append(cid)
        config.setdefault("linux", {}).setdefault("cgroupsPath", f"/dockyard/{cid}")
        bundle = os.path.join(self.base, "bundles", cid)
        os.makedirs(bundle)
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(config, f)
        out = open(os.path.join(bundle, "out"), "w+")
        err = open(os.path.join(bundle, "err"), "w+")
        args = ["create", "--bundle", bundle, "--pid-file", os.path.join(bundle, "pid")]
        if console_socket:
            args += ["--console-socket", console_socket]
        r = subprocess.run([self.binary, "--root", self.root, *args, cid], stdin=subprocess.DEVNULL,
                           stdout=out, stderr=err, timeout=30)
        pid = None
        if r.returncode == 0:
            with open(os.path.join(bundle, "pid")) as f:
                pid = int(f.read())
        return cid, pid, r, out, err

    def run(self, config: dict, timeout=20.0) -> tuple[int, str, str]:
        """create + start + wait for the init (we are its subreaper); (exit code, stdout, stderr)."""
        cid, pid, r, out, err = self.create(config)
        if r.returncode != 0:
            err.seek(0)
            raise AssertionError(f"create failed: {err.read()}")
        s = self.cli("start", cid)
        assert s.returncode == 0, s.stderr
        code = wait_exit(pid, timeout)
        d = self.cli("delete", cid)
        assert d.returncode == 0, d.stderr
        out.seek(0)
        err.seek(0)
        return code, out.read(), err.read()

    def cleanup(self):
        for cid in self.ids:
            self.cli("delete", "--force", cid)
            for d in _cgroup_dirs(cid):
                try:
                    os.rmdir(d)
                except OSError:
                    pass
        # Reap whatever was reparented to us.
        while True:
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break


_reaped: dict[int, int] = {}


def wait_exit(pid: int, timeout: float) -> int:
    """Exit code of a container process we inherited. Reaps every child meanwhile: an init whose
    namespace holds an exec'd process parented outside it (by us) cannot finish exiting until
    that process is reaped, as with conmon."""
    deadline = time.monotonic() + timeout
    while pid not in _reaped:
        try:
            wpid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if wpid:
            _reaped[wpid] = os.waitstatus_to_exitcode(status)
            continue
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            raise AssertionError(f"container process {pid} did not exit within {timeout}s")
        time.sleep(0.005)
    return _reaped.pop(pid)


@pytest.fixture(scope="module")
def busybox_dir(tmp_path_factory):
    d = rootfs.make_rootfs(str(tmp_path_factory.mktemp("oci-rootfs")))
    os.chmod(d, 0o755)  # mktemp makes it 0700: a non-root container user could not use "/"
    return d


@pytest.fixture(scope="module")
def subreaper():
    """Be what conmon is: the subreaper that inherits the init when the runtime exits."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    yield
    libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


@pytest.fixture
def rt(tmp_path, busybox_dir, subreaper):
    r = Runtime(str(tmp_path), busybox_dir)
    yield r
    r.cleanup()


# --- running things ------------------------------------------------------------------------------

@privileged
def test_echo_hello(rt):
    assert rt.run(rt.spec("echo", "hello")) == (0, "hello\n", "")


@privileged
def test_exit_code_passes_through(rt):
    assert rt.run(rt.spec("sh", "-c", "exit 7"))[0] == 7


@privileged
def test_command_is_pid_1(rt):
    assert rt.run(rt.spec("sh", "-c", "echo $$"))[1] == "1\n"


@privileged
def test_hostname(rt):
    assert rt.run(rt.spec("hostname", hostname="box1"))[1] == "box1\n"


@privileged
def test_proc_shows_only_container_pids(rt):
    code, out, _ = rt.run(rt.spec("sh", "-c", "cd /proc && echo [0-9]*"))
    pids = [int(p) for p in out.split()]
    assert code == 0 and pids[0] == 1 and max(pids) < 10, out


@privileged
def test_masked_paths_are_empty(rt):
    code, out, _ = rt.run(rt.spec("sh", "-c", "wc -c < /proc/interrupts; ls /sys/firmware | wc -l"))
    assert (code, out.split()) == (0, ["0", "0"])


@privileged
def test_sys_and_proc_sys_read_only(rt):
    code, out, _ = rt.run(rt.spec("sh", "-c", "grep -E ' /sys | /proc/sys ' /proc/mounts | cut -d' ' -f2,4"))
    lines = dict(line.split(" ", 1) for line in out.splitlines())
    assert lines["/sys"].startswith("ro,") and lines["/proc/sys"].startswith("ro,"), out


@privileged
def test_default_capabilities(rt):
    code, out, _ = rt.run(rt.spec("grep", "-E", "^Cap(Eff|Bnd)", "/proc/self/status"))
    want = caps.mask(spec.DEFAULT_CAPS)
    assert {int(line.split()[1], 16) for line in out.splitlines()} == {want}, out


@privileged
def test_privileged_gets_every_cap_the_host_has(rt):
    s = rt.spec("sh", "-c", "grep ^CapEff /proc/self/status; ls /dev/kmsg; grep ' /sys ' /proc/mounts; "
                "wc -c < /proc/interrupts")
    spec.with_capabilities(s, privileged=True, devices=linux.host_devices())
    code, out, err = rt.run(s)
    lines = out.splitlines()
    assert code == 0, err
    assert int(lines[0].split()[1], 16) == _host_bounding()
    assert lines[1] == "/dev/kmsg" and lines[2].split()[3].startswith("rw,") and int(lines[3]) > 0


@privileged
def test_seccomp_blocks_mount_even_with_sys_admin(rt):
    cmd = ("mount", "-t", "tmpfs", "none", "/tmp")
    s = rt.spec(*cmd)
    s["process"]["capabilities"] = {k: spec.DEFAULT_CAPS + ["CAP_SYS_ADMIN"] for k in ("bounding", "effective", "permitted")}
    assert s["linux"]["seccomp"] == spec.default_seccomp_profile(spec.DEFAULT_CAPS)
    code, _, err = rt.run(s)
    assert code != 0 and "permission denied" in err  # busybox words EPERM so
    del s["linux"]["seccomp"]  # --security-opt seccomp=unconfined
    assert rt.run(s)[0] == 0


@privileged
def test_seccomp_profile_follows_cap_add(rt):
    s = spec.with_capabilities(rt.spec("mount", "-t", "tmpfs", "none", "/tmp"), add=["SYS_ADMIN"])
    assert rt.run(s)[0] == 0


@privileged
def test_no_new_privileges(rt):
    s = rt.spec("grep", "^NoNewPrivs", "/proc/self/status")
    assert rt.run(s)[1].split() == ["NoNewPrivs:", "0"]
    s["process"]["noNewPrivileges"] = True
    assert rt.run(s)[1].split() == ["NoNewPrivs:", "1"]


@privileged
def test_user_and_groups(rt):
    s = rt.spec("sh", "-c", "id -u; id -G; grep ^CapEff /proc/self/status")
    s["process"]["user"] = {"uid": 65534, "gid": 65534, "additionalGids": [50]}
    code, out, _ = rt.run(s)
    lines = out.splitlines()
    assert lines[0] == "65534" and sorted(lines[1].split()) == ["50", "65534"], out
    assert int(lines[2].split()[1], 16) == 0  # caps do not survive exec as non-root (no ambient)


@privileged
def test_rlimits_cwd_env(rt):
    s = rt.spec("sh", "-c", "ulimit -n; pwd; echo $FOO", cwd="/var/www/new")
    s["process"]["env"].append("FOO=bar")
    s["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "hard": 512, "soft": 256}]
    assert rt.run(s)[1].split() == ["256", "/var/www/new", "bar"]


@privileged
def test_readonly_root_and_network_none(rt):
    s = rt.spec("sh", "-c", "touch /x 2>/dev/null && echo rw || echo ro; touch /tmp/x 2>&1 | wc -l; "
                "ls /sys/class/net; cat /sys/class/net/lo/operstate")
    s["root"]["readonly"] = True
    s["linux"]["namespaces"].append({"type": "network"})
    code, out, _ = rt.run(s)
    # /tmp is part of the read-only root too; lo is the only interface, and it is up.
    assert out.split()[:3] == ["ro", "1", "lo"] and out.split()[3] in ("unknown", "up"), out


@privileged
def test_bind_mount_read_only(rt, tmp_path):
    src = tmp_path / "vol"
    src.mkdir()
    (src / "f").write_text("data")
    s = rt.spec("sh", "-c", "cat /data/f; touch /data/g 2>/dev/null || echo denied")
    s["mounts"].append({"destination": "/data", "type": "bind", "source": str(src), "options": ["rbind", "ro"]})
    assert rt.run(s)[1] == "datadenied\n"


@privileged
def test_dev_nodes_and_shm(rt):
    s = rt.spec("sh", "-c", "echo x > /dev/null && head -c 4 /dev/zero | wc -c && ls /dev/shm && readlink /dev/ptmx")
    assert rt.run(s)[1].split() == ["4", "pts/ptmx"]


# --- failures ------------------------------------------------------------------------------------

@privileged
@pytest.mark.parametrize("cmd,msg", [
    ("nosuchcmd", 'exec: "nosuchcmd": executable file not found in $PATH'),
    ("/nope", 'exec: "/nope": stat /nope: no such file or directory'),
    ("/etc/passwd", 'exec: "/etc/passwd": permission denied'),
])
def test_missing_executable_fails_create_and_leaves_nothing(rt, cmd, msg):
    before = _mounts(rt)
    cid, pid, r, out, err = rt.create(rt.spec(cmd))
    err.seek(0)
    assert r.returncode == 1 and err.read() == msg + "\n"
    assert not os.path.exists(os.path.join(rt.root, cid))
    assert _cgroup_dirs(cid) == [] and _mounts(rt) == before
    assert rt.cli("state", cid).returncode == 1


@privileged
def test_bad_inputs_are_one_line(rt):
    for args in (["start", "nope"], ["state", "nope"], ["kill", "nope"], ["create", "--bundle", "/nonexistent", "x"]):
        r = rt.cli(*args)
        assert r.returncode == 1 and len(r.stderr.splitlines()) == 1, (args, r.stderr)
    cid, pid, r, _, _ = rt.create(rt.spec("sleep", "100"))
    r2 = rt.cli("create", "--bundle", os.path.join(rt.base, "bundles", cid), cid)
    assert r2.returncode == 1 and "already exists" in r2.stderr
    assert rt.cli("kill", cid, "SIGBOGUS").stderr == "invalid signal 'SIGBOGUS'\n"


@privileged
def test_lifecycle_state_kill_delete(rt):
    before = _mounts(rt)
    cid, pid, r, _, _ = rt.create(rt.spec("sh", "-c", "trap 'exit 3' TERM; while :; do sleep 0.05; done"))
    assert r.returncode == 0
    state = json.loads(rt.cli("state", cid).stdout)
    assert (state["status"], state["pid"], state["id"]) == ("created", pid, cid)
    assert _cgroup_dirs(cid), "init is not in its cgroup"
    assert rt.cli("start", cid).returncode == 0
    assert json.loads(rt.cli("state", cid).stdout)["status"] == "running"
    assert rt.cli("start", cid).returncode == 1
    r = rt.cli("delete", cid)
    assert r.returncode == 1 and "not stopped" in r.stderr
    assert rt.cli("kill", cid, "TERM").returncode == 0
    assert wait_exit(pid, 10) == 3
    assert json.loads(rt.cli("state", cid).stdout)["status"] == "stopped"
    assert rt.cli("kill", cid).returncode == 1
    assert rt.cli("delete", cid).returncode == 0
    assert not os.path.exists(os.path.join(rt.root, cid)) and _cgroup_dirs(cid) == []
    assert _mounts(rt) == before


@privileged
def test_delete_force_running_and_created(rt):
    for start in (True, False):
        cid, pid, r, _, _ = rt.create(rt.spec("sleep", "100"))
        if start:
            rt.cli("start", cid)
        # A created container goes without --force, as in runc.
        r = rt.cli("delete", "--force", cid) if start else rt.cli("delete", cid)
        assert r.returncode == 0, r.stderr
        assert wait_exit(pid, 5) == -signal.SIGKILL
        assert cid not in rt.cli("list", "-q").stdout.split()
        assert _cgroup_dirs(cid) == []


@privileged
def test_kill_all(rt):
    cid, pid, r, _, _ = rt.create(rt.spec("sh", "-c", "sleep 100 & sleep 100"))
    rt.cli("start", cid)
    time.sleep(0.2)
    assert rt.cli("kill", "--all", cid, "KILL").returncode == 0
    assert wait_exit(pid, 5) == -signal.SIGKILL
    rt.cli("delete", cid)


@privileged
def test_exec_joins_the_container(rt):
    cid, pid, r, _, _ = rt.create(rt.spec("sleep", "100", hostname="inner"))
    rt.cli("start", cid)
    r = rt.cli("exec", cid, "sh", "-c", "hostname; cat /proc/1/cmdline | tr '\\0' ' '; echo; grep ^CapEff /proc/self/status")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "inner" and lines[1].strip() == "sleep 100"
    assert int(lines[2].split()[1], 16) == caps.mask(spec.DEFAULT_CAPS)
    assert rt.cli("exec", cid, "sh", "-c", "exit 5").returncode == 5
    r = rt.cli("exec", cid, "nosuchcmd")
    assert r.returncode == 1 and 'exec: "nosuchcmd": executable file not found in $PATH' in r.stderr
    # --process file and --detach, as conmon calls it
    proc = dict(rt.spec("sh", "-c", "echo $$ > /tmp/execpid; sleep 100")["process"])
    pf = os.path.join(rt.base, "proc.json")
    with open(pf, "w") as f:
        json.dump(proc, f)
    # (a detached process keeps the stdio it was given: no pipes here, or we would wait on them)
    r = rt.cli("exec", "--process", pf, "--detach", "--pid-file", os.path.join(rt.base, "exec.pid"), cid,
               capture_output=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert r.returncode == 0
    with open(os.path.join(rt.base, "exec.pid")) as f:
        exec_pid = int(f.read())
    assert os.readlink(f"/proc/{exec_pid}/ns/pid") == os.readlink(f"/proc/{pid}/ns/pid")
    rt.cli("delete", "--force", cid)
    wait_exit(pid, 5)


class ConsoleSocket:
    """What conmon does with --console-socket: listen, receive the pty master, read it."""

    def __init__(self, path: str):
        self.path = path
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(path)
        self.srv.listen(1)

    def receive_master(self) -> int:
        conn, _ = self.srv.accept()
        _, fds, _, _ = socket.recv_fds(conn, 1024, 1)
        conn.close()
        return fds[0]

    @staticmethod
    def read_all(master: int) -> list[bytes]:
        data = b""
        try:
            while chunk := os.read(master, 4096):
                data += chunk
        except OSError:  # EIO once the slave side is closed
            pass
        os.close(master)
        return data.replace(b"\r", b"").split(b"\n")

    def close(self):
        self.srv.close()


@pytest.fixture
def console(tmp_path):
    c = ConsoleSocket(str(tmp_path / "console.sock"))
    yield c
    c.close()


@privileged
def test_console_socket(rt, console):
    s = rt.spec("sh", "-c", "tty; echo on-console > /dev/console; stty size", terminal=True)
    s["process"]["consoleSize"] = {"height": 30, "width": 100}
    cid, pid, r, _, err = rt.create(s, console_socket=console.path)
    err.seek(0)
    assert r.returncode == 0, err.read()
    master = console.receive_master()
    rt.cli("start", cid)
    assert wait_exit(pid, 10) == 0
    assert console.read_all(master)[:3] == [b"/dev/pts/0", b"on-console", b"30 100"]


@privileged
def test_exec_with_tty(rt, console):
    cid, pid, r, _, _ = rt.create(rt.spec("sleep", "100"))
    rt.cli("start", cid)
    r = subprocess.Popen([RUNTIME, "--root", rt.root, "exec", "--tty", "--console-socket", console.path, cid,
                          "sh", "-c", "tty; exit 4"], stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    master = console.receive_master()
    assert r.wait(10) == 4, r.stderr.read()
    assert console.read_all(master)[0] == b"/dev/pts/0"  # the container's own devpts
    rt.cli("delete", "--force", cid)
    wait_exit(pid, 5)


@privileged
def test_runc_runs_the_same_bundle(tmp_path, busybox_dir, subreaper):
    """Cross-check: our config is valid OCI (runc accepts it) and behaves the same."""
    if not shutil.which("runc"):
        pytest.skip("runc not installed")
    r = Runtime(str(tmp_path), busybox_dir, binary=shutil.which("runc"))
    try:
        s = r.spec("sh", "-c", "echo $$; hostname; grep ^CapEff /proc/self/status", hostname="box")
        code, out, err = r.run(s)
        assert code == 0, err
        assert out.split()[:2] == ["1", "box"] and int(out.split()[3], 16) == caps.mask(spec.DEFAULT_CAPS)
    finally:
        r.cleanup()


@privileged
def test_create_is_fast(rt):
    """create is on the container-start hot path."""
    times = []
    for _ in range(3):
        t = time.monotonic()
        cid, pid, r, _, _ = rt.create(rt.spec("true"))
        times.append(time.monotonic() - t)
        assert r.returncode == 0
        rt.cli("delete", "--force", cid)
        wait_exit(pid, 5)
    assert min(times) < 0.25, times  # generous for loaded CI; ~0.08 s on an idle machine


# --- pure parts ----------------------------------------------------------------------------------

def test_parse_options():
    flags, prop, data = linux.parse_options(["ro", "nosuid", "rprivate", "mode=755", "size=1k"])
    assert flags == linux.sc.MS_RDONLY | linux.sc.MS_NOSUID
    assert prop == linux.sc.MS_PRIVATE | linux.sc.MS_REC and data == "mode=755,size=1k"
    assert linux.parse_options(["ro", "rw"])[0] == 0


def test_plan_mounts_cgroup_v1_and_bind():
    hier = [("cpu", "cgroup", ["cpu"], "/sys/fs/cgroup/cpu", "/x"), ("unified", "cgroup2", [], "/sys/fs/cgroup/unified", "/")]
    mounts = [{"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["ro", "nosuid"]},
              {"destination": "/data", "type": "bind", "source": "/srv", "options": ["rbind", "ro"]}]
    plan = linux.plan_mounts(mounts, hier, cgroupns=True)
    assert [(m.target, m.fstype) for m in plan] == [
        ("/sys/fs/cgroup", "tmpfs"), ("/sys/fs/cgroup/cpu", "cgroup"), ("/sys/fs/cgroup/unified", "cgroup2"),
        ("/sys/fs/cgroup", None), ("/data", None)]
    assert plan[1].data == "cpu" and plan[1].flags & linux.sc.MS_RDONLY
    assert plan[4].bind and plan[4].flags & linux.sc.MS_REC
    no_ns = linux.plan_mounts(mounts[:1], hier, cgroupns=False)
    assert no_ns[1].source == "/sys/fs/cgroup/cpu/x" and no_ns[1].bind
    with pytest.raises(errdefs.InvalidArgument):
        linux.plan_mounts([{"destination": "relative", "type": "tmpfs"}])


def test_resolve_in_root_stays_inside(tmp_path):
    root = tmp_path / "r"
    (root / "etc").mkdir(parents=True)
    os.symlink("/etc", root / "abs")
    os.symlink("../../../..", root / "up")
    assert linux.resolve_in_root(str(root), "/abs/passwd") == str(root / "etc" / "passwd")
    assert linux.resolve_in_root(str(root), "/up/etc") == str(root / "etc")
    assert linux.resolve_in_root(str(root), "/../../x") == str(root / "x")


def test_with_capabilities_docker_semantics():
    s = spec.default_spec(["sh"], [])
    spec.with_capabilities(s, add=["net_admin"], drop=["CAP_MKNOD"])
    c = s["process"]["capabilities"]["effective"]
    assert "CAP_NET_ADMIN" in c and "CAP_MKNOD" not in c and "CAP_CHOWN" in c
    spec.with_capabilities(s, add=["SYS_ADMIN"], drop=["ALL"])
    assert s["process"]["capabilities"]["bounding"] == ["CAP_SYS_ADMIN"]
    assert "mount" in s["linux"]["seccomp"]["syscalls"][0]["names"]
    with pytest.raises(errdefs.InvalidArgument):
        spec.with_capabilities(s, add=["NOPE"])
    spec.with_capabilities(s, privileged=True)
    assert "seccomp" not in s["linux"] and s["linux"]["maskedPaths"] == []
    assert len(s["process"]["capabilities"]["bounding"]) == len(caps.ALL)
    sys_mount = next(m for m in s["mounts"] if m["destination"] == "/sys")
    assert "ro" not in sys_mount["options"]


def test_default_profile_compiles():
    from dockyard.runtime import seccomp

    seccomp.compile(spec.default_seccomp_profile())
    with pytest.raises(errdefs.InvalidArgument):
        seccomp.compile({"defaultAction": "SCMP_ACT_BOGUS"})


def test_parse_signal():
    from dockyard.runtime.oci import parse_signal

    assert parse_signal("TERM") == parse_signal("SIGTERM") == parse_signal("15") == signal.SIGTERM
    with pytest.raises(errdefs.InvalidArgument):
        parse_signal("NOPE")


@privileged
def test_hooks_and_pause(rt, tmp_path):
    """prestart sees the ready init (e.g. to wire its network namespace); pause freezes."""
    seen = tmp_path / "hook.json"
    s = rt.spec("sleep", "100")
    s["linux"]["namespaces"].append({"type": "network"})
    s["hooks"] = {"prestart": [{"path": "/bin/sh", "args": ["sh", "-c", f"cat > {seen}"]}],
                  "poststop": [{"path": "/bin/sh", "args": ["sh", "-c", f"rm {seen}"]}]}
    cid, pid, r, _, err = rt.create(s)
    assert r.returncode == 0
    state = json.loads(seen.read_text())
    assert (state["pid"], state["status"]) == (pid, "created")
    assert rt.cli("start", cid).returncode == 0
    assert rt.cli("pause", cid).returncode == 0
    assert json.loads(rt.cli("state", cid).stdout)["status"] == "paused"
    assert rt.cli("resume", cid).returncode == 0
    assert json.loads(rt.cli("state", cid).stdout)["status"] == "running"
    assert rt.cli("pause", cid).returncode == 0
    assert "not stopped: paused" in rt.cli("delete", cid).stderr
    assert rt.cli("delete", "--force", cid).returncode == 0
    assert wait_exit(pid, 5) == -signal.SIGKILL and not seen.exists()
    s["hooks"] = {"prestart": [{"path": "/bin/false"}]}
    cid, pid, r, _, err = rt.create(s)
    err.seek(0)
    assert r.returncode == 1 and err.read() == "prestart hook /bin/false failed: exit status 1\n"
    assert not os.path.exists(os.path.join(rt.root, cid)) and _cgroup_dirs(cid) == []


@privileged
def test_home_defaults_from_passwd(rt):
    s = rt.spec("sh", "-c", "echo $HOME")
    s["process"]["user"] = {"uid": 1, "gid": 1}
    assert rt.run(s)[1] == "/usr/sbin\n"


@privileged
def test_cgroup_limits_and_cgroup_namespace(rt):
    """linux.resources reach the cgroup; in its cgroup namespace the container sees that
    cgroup as the root of a read-only /sys/fs/cgroup."""
    s = rt.spec("sh", "-c", "cat /proc/self/cgroup | grep -c ':/$'; cat /sys/fs/cgroup/pids/pids.max "
                "|| cat /sys/fs/cgroup/pids.max; mkdir /sys/fs/cgroup/x 2>/dev/null || echo ro")
    s["linux"]["resources"]["pids"] = {"limit": 42}
    code, out, err = rt.run(s)
    lines = out.split()
    assert code == 0 and int(lines[0]) >= 1 and lines[1:] == ["42", "ro"], (out, err)


@privileged
def test_no_pivot(rt):
    cid, pid, r, out, err = rt.create(rt.spec("sh", "-c", "echo $$; ls /bin/busybox"))
    rt.cli("delete", cid)
    wait_exit(pid, 5)
    bundle = os.path.join(rt.base, "bundles", cid)
    r = subprocess.run([RUNTIME, "--root", rt.root, "create", "--no-pivot", "--bundle", bundle,
                        "--pid-file", os.path.join(bundle, "pid2"), cid], stdout=out, stderr=err)
    assert r.returncode == 0
    with open(os.path.join(bundle, "pid2")) as f:
        pid = int(f.read())
    rt.cli("start", cid)
    assert wait_exit(pid, 10) == 0
    rt.cli("delete", cid)
    out.seek(0)
    assert out.read().split() == ["1", "/bin/busybox"]


@privileged
def test_bad_seccomp_profile_fails_create_cleanly(rt):
    s = rt.spec("true")
    s["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_NOPE"}
    cid, pid, r, _, err = rt.create(s)
    err.seek(0)
    assert r.returncode == 1 and err.read() == "seccomp: unsupported action 'SCMP_ACT_NOPE'\n"
    assert not os.path.exists(os.path.join(rt.root, cid)) and _cgroup_dirs(cid) == []


@privileged
def test_cgroup_mount_without_cgroup_namespace(rt):
    """Without a cgroup namespace the container's own cgroup dirs are bind-mounted instead."""
    s = rt.spec("cat", "/sys/fs/cgroup/pids/pids.max")
    s["linux"]["namespaces"] = [n for n in s["linux"]["namespaces"] if n["type"] != "cgroup"]
    s["linux"]["resources"]["pids"] = {"limit": 43}
    assert rt.run(s)[:2] == (0, "43\n")


@privileged
def test_log_file_gets_the_error_as_json(rt):
    log = os.path.join(rt.base, "oci-log")
    r = rt.cli("--log", log, "--log-format", "json", "start", "nope")
    assert r.returncode == 1
    with open(log) as f:
        entry = json.loads(f.readline())
    assert (entry["level"], entry["msg"]) == ("error", "container nope does not exist")


@privileged
def test_driven_by_conmon(rt, tmp_path):
    """The real client: conmon runs create, relays the output to its log and records the exit code."""
    if not shutil.which("conmon"):
        pytest.skip("conmon not installed")
    cid = "dyt-oci-" + uuid.uuid4().hex[:12]
    rt.ids.append(cid)
    bundle = tmp_path / "cbundle"
    bundle.mkdir()
    s = rt.spec("sh", "-c", "echo out; echo err >&2; exit 3")
    s["linux"]["cgroupsPath"] = f"/dockyard/{cid}"
    (bundle / "config.json").write_text(json.dumps(s))
    for d in ("exit", "sock"):
        (tmp_path / d).mkdir()
    r = subprocess.run([shutil.which("conmon"), "--api-version", "1", "-c", cid, "-u", cid, "-n", cid,
                        "-r", RUNTIME, "-b", str(bundle), "-p", str(tmp_path / "ctr.pid"),
                        "-P", str(tmp_path / "conmon.pid"), "-l", f"k8s-file:{tmp_path / 'log'}",
                        "--exit-dir", str(tmp_path / "exit"), "--socket-dir-path", str(tmp_path / "sock"),
                        "--runtime-arg", "--root", "--runtime-arg", rt.root],
                       capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    # conmon daemonizes before it runs create; the pid file is the runtime's last write.
    deadline = time.monotonic() + 10
    while not (tmp_path / "ctr.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert json.loads(rt.cli("state", cid).stdout)["status"] == "created"
    assert rt.cli("start", cid).returncode == 0
    exit_file = tmp_path / "exit" / cid
    deadline = time.monotonic() + 10
    while not exit_file.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert exit_file.read_text() == "3"
    log = [line.split(" ", 3)[1:] for line in (tmp_path / "log").read_text().splitlines()]
    assert sorted(log) == [["stderr", "F", "err"], ["stdout", "F", "out"]]
    assert rt.cli("delete", cid).returncode == 0
    wait_exit(int((tmp_path / "conmon.pid").read_text()), 10)  # we are its subreaper too


@privileged
def test_non_root_with_ambient_caps(rt):
    """Docker gives a non-root user no effective caps unless set ambient; OCI ambient works."""
    s = rt.spec("grep", "-E", "^Cap(Eff|Amb)", "/proc/self/status")
    s["process"]["user"] = {"uid": 1000, "gid": 1000}
    c = s["process"]["capabilities"]
    c["inheritable"] = c["ambient"] = ["CAP_NET_BIND_SERVICE"]
    code, out, err = rt.run(s)
    assert code == 0, err
    out = out.split()
    want = caps.mask(["CAP_NET_BIND_SERVICE"])
    assert (int(out[1], 16), int(out[3], 16)) == (want, want), out


@privileged
def test_sysctl_in_own_network_namespace(rt):
    s = rt.spec("cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start")
    s["linux"]["namespaces"].append({"type": "network"})
    s["linux"]["sysctl"] = dict(spec.NETNS_SYSCTLS)
    assert rt.run(s)[1] == "0\n"
