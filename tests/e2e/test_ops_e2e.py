"""Everyday operations through the real clients: exec, pause/unpause, restart policies, events."""

import json
import os
import select
import subprocess
import sysconfig
import time

import pytest
from e2e_util import ok, poll

DOCKYARD = os.path.join(sysconfig.get_path("scripts"), "dockyard")

pytestmark = pytest.mark.privileged


@pytest.fixture
def web(clean_daemon, name):
    ok(clean_daemon.docker("run", "-d", "--name", name, "busybox", "sleep", "1000"))
    return name


def test_docker_exec(clean_daemon, name):
    d = clean_daemon
    before = d.snapshot()
    web = name
    cid = ok(d.docker("run", "-d", "--name", web, "busybox", "sleep", "1000")).strip()
    ok(d.docker("exec", "-d", web, "sleep", "1000"))  # still running when the container goes
    assert "bin" in ok(d.docker("exec", web, "ls", "/")).split()
    r = d.docker("exec", web, "sh", "-c", "echo err >&2; exit 5")
    assert (r.returncode, r.stderr) == (5, "err\n")
    out = ok(d.docker("exec", "-e", "X=1", "-u", "nobody", "-w", "/tmp", web, "sh", "-c", 'echo "$X $(id -u) $(pwd)"'))
    assert out == "1 65534 /tmp\n"
    assert ok(d.docker("exec", "-i", web, "cat", input="piped\n")) == "piped\n"
    ok(d.docker("exec", "-d", web, "sh", "-c", "echo hi > /tmp/d"))
    assert poll(lambda: d.docker("exec", web, "cat", "/tmp/d").stdout == "hi\n", timeout=20)
    r = d.docker("exec", web, "nosuchcmd")
    assert r.returncode == 127 and "nosuchcmd" in r.stdout + r.stderr, r
    ok(d.docker("stop", "-t", "0", web))
    r = d.docker("exec", web, "ls")
    assert r.returncode != 0 and "is not running" in r.stderr, r
    st, body = d.json("GET", "/exec/nope/json")
    assert st == 404 and body["message"] == "No such exec instance: nope"
    ok(d.docker("rm", web))
    # Cgroup dirs are host-wide (other daemons may be creating some right now): only ours count.
    assert [x for x in d.snapshot().leaks_since(before) if not x.startswith("cgroup ") or cid in x] == []
    sockets = os.path.join(d.exec_root, "runtime", "sockets")
    # No dangling attach-socket links of exec sessions (other tests' containers may have live ones).
    assert [n for n in os.listdir(sockets) if not os.path.exists(os.path.join(sockets, n))] == []


def _run_in_pty(argv, env, rows=30, cols=100, timeout=60):
    """Run argv with a pty as its stdio; return (exit code, everything written to the terminal)."""
    import fcntl
    import struct
    import termios

    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    p = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if select.select([master], [], [], 0.5)[0]:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: every slave fd is closed
                    break
                if not chunk:
                    break
                out += chunk
            elif p.poll() is not None:
                break
        return p.wait(timeout=max(1, deadline - time.monotonic())), out
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(master)


def test_docker_exec_it_pty(clean_daemon, web):
    """docker exec -it from a real terminal: a tty inside, our size, the exit code."""
    d = clean_daemon
    code, out = _run_in_pty([d.docker_bin, "-H", d.host, "exec", "-it", web, "sh", "-c", "tty; stty size; exit 3"],
                            d._docker_env())
    assert code == 3, out
    assert b"/dev/pts/" in out and b"30 100" in out, out


def test_dockerpy_exec_run(clean_daemon, web):
    c = clean_daemon.api().containers.get(web)
    assert c.exec_run("echo hello") == (0, b"hello\n")
    code, out = c.exec_run(["sh", "-c", "echo a; echo b >&2; exit 2"], demux=True)
    assert code == 2 and out == (b"a\n", b"b\n")
    code, out = c.exec_run("env", environment={"Y": "2"}, workdir="/tmp", user="nobody")
    assert code == 0 and b"Y=2" in out
    code, out = c.exec_run("true", detach=True)  # the code is whatever inspect says right after start
    assert code in (None, 0) and not out


def test_testcontainers_exec(clean_daemon, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", clean_daemon.host)
    monkeypatch.setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
    from testcontainers.core.container import DockerContainer

    with DockerContainer("busybox").with_command("sleep 1000") as ctr:
        r = ctr.exec(["sh", "-c", "echo tc; exit 4"])
        assert (r.exit_code, r.output) == (4, b"tc\n")


def test_dockyard_exec(clean_daemon, web):
    d = clean_daemon
    assert "bin" in ok(d.cli("exec", web, "ls", "/")).split()
    r = d.cli("exec", "-e", "X=1", "-u", "nobody", "-w", "/tmp", web, "sh", "-c", 'echo "$X $(id -u) $(pwd)"; exit 5')
    assert (r.returncode, r.stdout) == (5, "1 65534 /tmp\n"), r
    assert ok(d.cli("exec", "-i", web, "cat", input="piped\n")) == "piped\n"
    ok(d.cli("exec", "-d", web, "touch", "/tmp/x"))
    assert poll(lambda: d.cli("exec", web, "test", "-f", "/tmp/x").returncode == 0, timeout=20)
    code, out = _run_in_pty([DOCKYARD, "-H", d.host, "exec", "-it", web,
                             "sh", "-c", "tty; stty size; exit 3"], None)
    assert code == 3 and b"/dev/pts/" in out and b"30 100" in out, out


def test_docker_pause_unpause(clean_daemon, web):
    d = clean_daemon
    assert ok(d.docker("pause", web)) == web + "\n"
    assert "(Paused)" in ok(d.docker("ps", "--filter", f"name={web}", "--format", "{{.Status}}"))
    st = ok(d.docker("inspect", "-f", "{{.State.Status}} {{.State.Paused}} {{.State.Running}}", web))
    assert st == "paused true true\n"
    r = d.docker("pause", web)
    assert r.returncode == 1 and "already paused" in r.stderr
    r = d.docker("exec", web, "true")
    assert r.returncode != 0 and "paused" in r.stderr
    ok(d.docker("unpause", web))
    assert ok(d.docker("inspect", "-f", "{{.State.Status}}", web)) == "running\n"
    r = d.docker("unpause", web)
    assert r.returncode == 1 and "is not paused" in r.stderr
    # stop, kill and rm -f all work on a paused container.
    ok(d.docker("pause", web))
    ok(d.docker("stop", "-t", "1", web))
    assert ok(d.docker("inspect", "-f", "{{.State.Status}}", web)) == "exited\n"
    ok(d.docker("start", web))
    ok(d.docker("pause", web))
    ok(d.docker("kill", web))
    assert ok(d.docker("inspect", "-f", "{{.State.Status}}", web)) == "exited\n"
    ok(d.docker("start", web))
    ok(d.cli("pause", web))
    assert "(Paused)" in ok(d.cli("ps", "--format", "{{.Status}}", "--filter", f"name={web}"))
    ok(d.docker("rm", "-f", web))
    assert d.docker("inspect", web).returncode == 1


def _state(d, ref, fmt="{{.State.Status}} {{.RestartCount}}"):
    return ok(d.docker("inspect", "-f", fmt, ref)).strip()


def test_docker_restart_policies(clean_daemon, name):
    d = clean_daemon
    ok(d.docker("run", "-d", "--name", name + "-f", "--restart", "on-failure:2", "busybox", "sh", "-c", "exit 3"))
    assert poll(lambda: _state(d, name + "-f") == "exited 2", timeout=30), _state(d, name + "-f")
    assert _state(d, name + "-f", "{{.State.ExitCode}} {{.HostConfig.RestartPolicy.Name}}") == "3 on-failure"
    # A container that keeps failing is "restarting" between runs; docker stop ends it for good.
    ok(d.docker("run", "-d", "--name", name + "-a", "--restart", "always", "busybox", "sh", "-c", "exit 1"))
    assert poll(lambda: int(_state(d, name + "-a").split()[1]) >= 3, timeout=30)
    assert poll(lambda: "Restarting" in d.docker("ps", "-a", "--filter", f"name={name}-a",
                                                 "--format", "{{.Status}}").stdout, timeout=30)
    ok(d.docker("stop", name + "-a"))
    first = _state(d, name + "-a")
    assert first.startswith("exited ")
    time.sleep(1)
    assert _state(d, name + "-a") == first
    ok(d.docker("rm", name + "-f", name + "-a"))


def test_restart_policies_across_daemon_restart(clean_daemon, name):
    d = clean_daemon
    if os.environ.get("DYT_EXTERNAL_HOST"):
        pytest.skip("restarts the daemon")
    for policy in ("always", "unless-stopped"):
        ok(d.docker("run", "-d", "--name", f"{name}-{policy}", "--restart", policy, "busybox", "sleep", "1000"))
        ok(d.docker("stop", "-t", "0", f"{name}-{policy}"))
    ok(d.docker("run", "-d", "--name", name + "-crash", "--restart", "always", "busybox", "sleep", "1000"))
    pid = int(_state(d, name + "-crash", "{{.State.Pid}}"))
    d.stop(kill9=True)
    try:
        os.kill(pid, 9)  # it dies while the daemon is down
    finally:
        d.start()
    assert poll(lambda: _state(d, f"{name}-always").startswith("running"), timeout=30)
    assert poll(lambda: _state(d, name + "-crash") == "running 1", timeout=30), _state(d, name + "-crash")
    assert int(_state(d, name + "-crash", "{{.State.Pid}}")) != pid
    assert _state(d, f"{name}-unless-stopped").startswith("exited")
    ok(d.docker("rm", "-f", f"{name}-always", f"{name}-unless-stopped", name + "-crash"))


def _events(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_docker_events(clean_daemon, name):
    d = clean_daemon
    since = f"{time.time() - 1:.3f}"
    assert d.docker("run", "--name", name, "busybox", "sh", "-c", "exit 3").returncode == 3
    ok(d.docker("rm", name))
    ok(d.docker("volume", "create", name + "-v"))
    ok(d.docker("volume", "rm", name + "-v"))
    until = f"{time.time() + 1:.3f}"
    r = ok(d.docker("events", "--since", since, "--until", until, "--filter", "type=container",
                    "--format", "{{json .}}"))
    evs = [e for e in _events(r) if e["Actor"]["Attributes"].get("name") == name]
    actions = [e["Action"] for e in evs]
    for a in ("create", "attach", "start", "die", "destroy"):
        assert a in actions, actions
    assert actions.index("create") < actions.index("start") < actions.index("die") < actions.index("destroy")
    die = evs[actions.index("die")]
    assert die["Actor"]["Attributes"]["exitCode"] == "3" and die["status"] == "die" and die["from"] == "busybox"
    assert die["Type"] == "container" and die["scope"] == "local" and die["timeNano"] // 10**9 == die["time"]
    # The line format, and filters by event and by volume type.
    r = ok(d.docker("events", "--since", since, "--until", until, "--filter", f"container={name}",
                    "--filter", "event=die"))
    lines = r.splitlines()
    assert len(lines) == 1 and f" container die {die['id']} (" in lines[0] and "exitCode=3" in lines[0], r
    assert f"name={name})" in lines[0] or f"name={name}," in lines[0]
    r = ok(d.docker("events", "--since", since, "--until", until, "--filter", "type=volume", "--format",
                    "{{.Action}} {{.Actor.ID}}"))
    assert f"create {name}-v" in r and f"destroy {name}-v" in r, r
    # Our CLI prints the same lines.
    mine = ok(d.cli("events", "--since", since, "--until", until, "--filter", f"container={name}",
                    "--filter", "event=die"))
    assert mine.splitlines() == lines  # timestamp included


def test_events_streamed_live(clean_daemon, web):
    """A live subscription (no window) sees what happens after it; docker-py decodes it."""
    d = clean_daemon
    client = d.api()
    stream = client.events(decode=True, filters={"container": web})
    try:
        ok(d.docker("pause", web))
        ok(d.docker("unpause", web))
        ok(d.docker("exec", web, "true"))
        seen = []
        for ev in stream:
            seen.append(ev["Action"].split(":")[0])
            if ev["Action"] == "exec_die":
                break
        assert seen[:2] == ["pause", "unpause"] and "exec_create" in seen and "exec_start" in seen, seen
    finally:
        stream.close()
    evs = list(client.events(since=int(time.time()) - 60, until=int(time.time()) + 1, decode=True,
                             filters={"container": web, "event": "exec_die"}))
    assert evs and evs[-1]["Actor"]["Attributes"]["exitCode"] == "0"


def test_image_events(clean_daemon, name):
    d = clean_daemon
    since = f"{time.time() - 1:.3f}"
    ok(d.docker("tag", "busybox", f"{name}:1"))
    archive = f"/tmp/{name}.tar"
    try:
        ok(d.docker("save", "-o", archive, f"{name}:1"))
        ok(d.docker("rmi", f"{name}:1"))
        ok(d.docker("load", "-i", archive))
        ok(d.docker("rmi", f"{name}:1"))
    finally:
        os.unlink(archive)
    r = ok(d.docker("events", "--since", since, "--until", f"{time.time() + 1:.3f}", "--filter", "type=image",
                    "--format", "{{.Action}} {{.Actor.Attributes.name}}"))
    for line in (f"tag {name}:1", f"save {name}:1", f"untag {name}:1", "load "):
        assert line in r, r
