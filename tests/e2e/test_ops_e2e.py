"""Everyday operations through the real clients: exec, pause/unpause."""

import os
import pty
import select
import subprocess
import time

import sysconfig

import pytest
from e2e_util import ok, poll

DOCKYARD = os.path.join(sysconfig.get_path("scripts"), "dockyard")

pytestmark = pytest.mark.privileged


@pytest.fixture
def web(clean_daemon, name):
    ok(clean_daemon.docker("run", "-d", "--name", name, "busybox", "sleep", "1000"))
    return name


def test_docker_exec(clean_daemon, web):
    d = clean_daemon
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
