"""The rest of issue 3's operations through the real clients: detach keys in the dockyard CLI and
for execs, --init and PID 1, top with ps arguments, block I/O stats, commit without the engine's
/etc placeholders, and testcontainers' log wait strategy."""

import contextlib
import io
import json
import os
import sysconfig
import tarfile

import pytest
from e2e_util import ok, poll
from test_ops3_e2e import _running, pty_client  # noqa: F401 - pty_client is a fixture

pytestmark = pytest.mark.privileged
DOCKYARD = os.path.join(sysconfig.get_path("scripts"), "dockyard")


def _prompt(t):
    """Keys typed before the client set raw mode are flushed by it (TCSAFLUSH): type only once a
    command came back through the attach. Its output "ok<n>" cannot be the line discipline's
    local echo (which shows the quotes), nor the shell's first prompt."""
    for n in range(30):
        t.write(b"echo ok''%d\r" % n)
        if t.read_until(b"ok%d\r\n" % n, 1.0):
            return
    raise AssertionError(f"no shell: {t.out!r}")


# ---- detach keys -------------------------------------------------------------------------------
def test_dockyard_run_it_ctrl_p_ctrl_q_leaves_it_running(clean_daemon, name, pty_client):
    d = clean_daemon
    t = pty_client([DOCKYARD, "-H", d.host, "run", "-it", "--name", name, "busybox", "sh"])
    _prompt(t)
    t.write(b"echo rea''dy\r")
    assert t.read_until(b"ready"), t.out
    t.write(b"\x10\x11")
    assert t.wait() == 0, t.out
    assert _running(d, name)
    assert name in ok(d.cli("ps", "--format", "{{.Names}} {{.Status}}")).split()
    assert "Up " in ok(d.cli("ps", "--filter", f"name={name}", "--format", "{{.Status}}"))
    # attach with other keys: ctrl-p ctrl-q now reach the shell, ctrl-x x detaches.
    t = pty_client([DOCKYARD, "-H", d.host, "attach", "--detach-keys", "ctrl-x,x", name])
    _prompt(t)
    t.write(b"echo ag''ain\r")
    assert t.read_until(b"again"), t.out
    t.write(b"\x10\x11")
    t.write(b"\x18x")
    assert t.wait() == 0, t.out
    assert _running(d, name)
    # start -ai with keys on a stopped container.
    ok(d.cli("stop", "-t", "0", name))
    t = pty_client([DOCKYARD, "-H", d.host, "start", "-ai", "--detach-keys", "a,b", name])
    _prompt(t)
    t.write(b"ab")
    assert t.wait() == 0, t.out
    assert _running(d, name)
    ok(d.cli("rm", "-f", name))


def test_exec_detach_keys_leave_the_exec_running(clean_daemon, name, pty_client):
    d = clean_daemon
    ok(d.cli("run", "-d", "--name", name, "busybox", "sleep", "300"))
    # dockyard exec: the keys go in the exec's create body, the daemon detaches on them.
    t = pty_client([DOCKYARD, "-H", d.host, "exec", "-it", "--detach-keys", "ctrl-x,x", name, "sh"])
    _prompt(t)
    t.write(b"exec sleep 201\r")
    t.write(b"\x18x")
    assert t.wait() == 0, t.out
    # the docker CLI with the default ctrl-p,ctrl-q
    t = pty_client([d.docker_bin, "-H", d.host, "exec", "-it", name, "sh"])
    _prompt(t)
    t.write(b"exec sleep 202\r")
    t.write(b"\x10\x11")
    t.wait()

    def cmds():
        return [p[-1] for p in d.api().containers.get(name).top()["Processes"]]
    assert poll(lambda: {"sleep 201", "sleep 202"} <= set(cmds()), timeout=30), cmds()
    # docker-py: an exec detached by its keys has no exit code yet.
    api = d.api().api
    eid = api.exec_create(name, "cat", stdin=True, detach_keys="ctrl-a,q")["Id"]
    assert api.exec_inspect(eid)["DetachKeys"] == "ctrl-a,q"
    sock = api.exec_start(eid, socket=True)
    raw = sock._sock
    raw.sendall(b"\x01q")
    raw.settimeout(30)
    while raw.recv(4096):
        pass
    sock.close()
    info = api.exec_inspect(eid)
    assert info["Running"] and info["ExitCode"] is None, info
    # bad keys: refused at exec create, with moby's message, and nothing runs.
    r = d.docker("exec", "--detach-keys", "ctrl-1", name, "true")
    assert r.returncode != 0 and "Invalid escape keys (ctrl-1) provided" in r.stderr, r
    ok(d.cli("rm", "-f", name))


def test_dockyard_bad_detach_keys_create_nothing(clean_daemon, name):
    d = clean_daemon
    before = d.container_ids()
    r = d.cli("run", "-i", "--detach-keys", "ctrl-1", "--name", name, "busybox", "true")
    assert r.returncode == 125 and r.stderr.strip() == "Invalid detach keys (ctrl-1) provided", r
    assert d.container_ids() == before


def test_detach_key_bytes():
    from dockyard.cli.containers import detach_key_bytes

    assert detach_key_bytes("ctrl-p,ctrl-q") == b"\x10\x11"
    assert detach_key_bytes("a,ctrl-@,ctrl-[") == b"a\x00\x1b"


# ---- --init and PID 1 --------------------------------------------------------------------------
_ORPHAN = "(sleep 0.1 &); exec sleep 300"  # the subshell exits: its child sleep is reparented to PID 1


def _states(d, ref) -> list[str]:
    """"STAT COMMAND" of the container's processes, seen by ps inside (a zombie has left the
    cgroup, so docker top, which lists the cgroup's PIDs as Docker does, cannot show it)."""
    rows = ok(d.docker("exec", ref, "ps", "-o", "pid,stat,comm")).splitlines()
    return [" ".join(r.split()[1:3]) for r in rows[1:] if r.split()[2:3] != ["ps"]]


def test_init_reaps_orphans_and_forwards_signals(clean_daemon, name):
    d = clean_daemon
    ok(d.docker("run", "-d", "--init", "--name", name, "busybox", "sh", "-c", _ORPHAN))
    ok(d.docker("run", "-d", "--name", name + "-bare", "busybox", "sh", "-c", _ORPHAN))
    # Without an init, PID 1 is `sleep`, which never waits: the orphan stays a zombie.
    assert poll(lambda: any(s.startswith("Z") for s in _states(d, name + "-bare")), timeout=30), \
        _states(d, name + "-bare")
    # With --init (tini, bind-mounted at /sbin/docker-init), the orphan is reaped once it exits.
    pid1 = ok(d.docker("exec", name, "cat", "/proc/1/cmdline")).split("\0")
    assert pid1[:2] == ["/sbin/docker-init", "--"] and pid1[2:4] == ["sh", "-c"], pid1
    assert poll(lambda: len(_states(d, name)) == 2, timeout=30), _states(d, name)
    assert not any(s.startswith("Z") for s in _states(d, name)), _states(d, name)
    pid = int(ok(d.docker("inspect", "-f", "{{.State.Pid}}", name)))
    with open(f"/proc/{pid}/stat") as f:
        assert f.read().rpartition(")")[2].split()[0] != "Z"
    # SIGTERM reaches sleep through tini: 143 (128+15), not the 137 of the timeout's SIGKILL.
    ok(d.docker("stop", "-t", "60", name))
    assert ok(d.docker("inspect", "-f", "{{.State.ExitCode}}", name)).strip() == "143"
    ok(d.docker("rm", "-f", name, name + "-bare"))


# ---- top with ps arguments ---------------------------------------------------------------------
def test_top_ps_args(clean_daemon, name):
    d = clean_daemon
    ok(d.docker("run", "-d", "--name", name, "busybox", "sleep", "300"))
    pid = ok(d.docker("inspect", "-f", "{{.State.Pid}}", name)).strip()
    out = ok(d.docker("top", name)).splitlines()
    assert out[0].split() == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    assert len(out) == 2 and out[1].split()[1] == pid and out[1].endswith("sleep 300"), out
    assert ok(d.docker("top", name, "-o", "pid,comm")).split() == ["PID", "COMMAND", pid, "sleep"]
    top = d.api().containers.get(name).top(ps_args="aux")
    assert top["Titles"][:2] == ["USER", "PID"] and top["Titles"][-1] == "COMMAND", top
    assert [p[1] for p in top["Processes"]] == [pid] and top["Processes"][0][-1] == "sleep 300", top
    # a forest listing cannot take -q: the rows are still only the container's
    status, body = d.json("GET", f"/containers/{name}/top?ps_args=axf")
    assert status == 200 and [p[0] for p in body["Processes"]] == [pid], body
    # errors as Docker: ps's own first line (500); a renamed PID column (400); no PID column (500)
    r = d.docker("top", name, "-o", "pid,bogus")
    assert r.returncode == 1 and 'error: unknown user-defined format specifier "bogus"' in r.stderr, r
    r = d.docker("top", name, "-o", "pid,user=PID")
    assert r.returncode == 1 and 'specifying "pid,user=PID" is not allowed' in r.stderr, r  # moby's regexp
    status, body = d.json("GET", f"/containers/{name}/top?ps_args=-o%20comm")
    assert status == 500 and body["message"] == "Couldn't find PID field in ps output", body
    ok(d.docker("stop", "-t", "0", name))
    r = d.docker("top", name)
    assert r.returncode == 1 and "is not running" in r.stderr, r
    ok(d.docker("rm", name))


def test_parse_ps_output_threads_and_long_commands():
    from dockyard.api.containers import parse_ps_output

    out = "USER  PID  TID CMD\nroot   5    - sh  -c  x\nroot   -    6 -\nroot   7    - other\nroot   -    8 -\n"
    assert parse_ps_output(out, [5]) == {"Titles": ["USER", "PID", "TID", "CMD"],
                                         "Processes": [["root", "5", "-", "sh -c x"], ["root", "-", "6", "-"]]}


# ---- block I/O stats ---------------------------------------------------------------------------
def test_stats_block_io_per_device(clean_daemon, name):
    from dockyard.runtime import cgroups

    if cgroups.version() != 1:
        pytest.skip("block I/O is measured for real on cgroup v1 (v2 is parsed in a unit test)")
    d = clean_daemon
    with _throttled_device(d.data_root):
        ok(d.docker("run", "-d", "--name", name, "busybox", "sh", "-c",
                    "dd if=/dev/zero of=/big bs=1M count=4 oflag=direct && sync && sleep 300"))
        _check_block_io(d, name)
    ok(d.docker("rm", "-f", name))


@contextlib.contextmanager
def _throttled_device(path):
    """On recent kernels (6.18 here) the v1 throttle counters, which Docker reads as we do, only
    count once some cgroup has a throttle rule on the device's queue: set a limit nobody reaches
    in a cgroup of the test's own, removed again (the queue keeps counting, harmlessly)."""
    st = os.stat(path)
    dev = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    cg = f"/sys/fs/cgroup/blkio/dyt-ops4-{os.getpid()}"
    os.mkdir(cg)
    try:
        try:
            with open(f"{cg}/blkio.throttle.write_bps_device", "w") as f:
                f.write(f"{dev} {1 << 50}")
        except OSError as e:
            pytest.skip(f"cannot set a throttle rule on {dev} ({e}): no block I/O accounting here")
        yield
    finally:
        os.rmdir(cg)


def _check_block_io(d, name):
    api = d.api().api

    def writes():
        s = api.stats(name, stream=False)
        return [e for e in s["blkio_stats"]["io_service_bytes_recursive"] or [] if e["op"] == "Write"]

    assert poll(lambda: sum(e["value"] for e in writes()) >= 4 << 20, timeout=30), writes()
    e = writes()[0]
    assert isinstance(e["major"], int) and isinstance(e["minor"], int) and e["major"] > 0, e
    for tool in (d.docker, d.cli):
        line = ok(tool("stats", "--no-stream", "--format", "{{.BlockIO}}", name)).strip()
        assert line.split(" / ")[1].endswith("MB"), line  # e.g. "0B / 4.19MB"


def test_blkio_parsers():
    from dockyard.engine.stats import blkio_v1_entries, io_stat_v2_entries

    v1 = "254:0 Read 4096\n254:0 Write 8192\n254:0 Sync 0\n254:0 Async 12288\n254:0 Total 12288\nTotal 12288\n"
    assert blkio_v1_entries(v1)[:2] == [{"major": 254, "minor": 0, "op": "Read", "value": 4096},
                                        {"major": 254, "minor": 0, "op": "Write", "value": 8192}]
    assert len(blkio_v1_entries(v1)) == 5
    v2 = "8:16 rbytes=1024 wbytes=4096 rios=1 wios=2 dbytes=0 dios=0\n254:0 rbytes=0 wbytes=512\n"
    assert io_stat_v2_entries(v2) == [
        {"major": 8, "minor": 16, "op": "read", "value": 1024}, {"major": 8, "minor": 16, "op": "write", "value": 4096},
        {"major": 254, "minor": 0, "op": "read", "value": 0}, {"major": 254, "minor": 0, "op": "write", "value": 512}]
    assert io_stat_v2_entries("") == []


# ---- commit without the engine's placeholders --------------------------------------------------
def _last_layer_names(d, image: str) -> set[str]:
    data = b"".join(d.api().images.get(image).save())
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        manifest = json.load(tf.extractfile("manifest.json"))
        layer = tf.extractfile(manifest[0]["Layers"][-1]).read()
    with tarfile.open(fileobj=io.BytesIO(layer)) as lt:
        return {m.name.rstrip("/") for m in lt.getmembers()}


def test_commit_leaves_out_the_etc_placeholders(clean_daemon, name):
    d = clean_daemon
    ok(d.docker("run", "-d", "--name", name, "busybox", "sh", "-c", "echo x > /hello; sleep 300"))
    assert poll(lambda: "A /hello" in ok(d.docker("diff", name)).splitlines(), timeout=30)
    assert ok(d.docker("diff", name)).splitlines() == ["A /hello"]
    for state in ("running", "stopped"):
        tag = f"ops4-commit-{name[-6:]}:{state}"
        ok(d.docker("commit", name, tag))
        names = _last_layer_names(d, tag)
        assert names == {"hello"}, (state, names)
        out = ok(d.docker("run", "--rm", "-h", "other", tag, "sh", "-c", "cat /hello /etc/hostname"))
        assert out == "x\nother\n"
        ok(d.docker("stop", "-t", "0", name))
    ok(d.docker("rm", name))
    # A committed /etc change is kept, with its directory.
    ok(d.docker("run", "--name", name, "busybox", "sh", "-c", "echo y > /etc/mine"))
    tag = f"ops4-commit-{name[-6:]}:etc"
    ok(d.docker("commit", name, tag))
    assert _last_layer_names(d, tag) == {"etc", "etc/mine"}
    ok(d.docker("rm", name))


# ---- testcontainers ----------------------------------------------------------------------------
def test_testcontainers_log_wait_logs_exec_stop(clean_daemon, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", clean_daemon.host)
    monkeypatch.setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import LogMessageWaitStrategy
    from testcontainers.core.waiting_utils import wait_for_logs

    ctr = (DockerContainer("busybox")
           .with_command(["sh", "-c", "echo starting; sleep 1; echo ready >&2; sleep 300"])
           .waiting_for(LogMessageWaitStrategy("ready")))
    with ctr:
        out, err = ctr.get_logs()
        assert (out, err) == (b"starting\n", b"ready\n")
        r = ctr.exec(["sh", "-c", "echo hi; echo later >&2"])
        assert r.exit_code == 0 and b"hi" in r.output
        wait_for_logs(ctr, LogMessageWaitStrategy("starting"), timeout=30)
        assert ctr.status == "running"
        cid = ctr.get_container_id()
    assert cid not in clean_daemon.container_ids()  # stop removed it
