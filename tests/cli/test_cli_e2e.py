"""The dockyard CLI end to end against a real daemon: real containers, compared with docker 28."""

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time

import pytest

DOCKYARD = os.path.join(os.path.dirname(os.path.realpath(sys.executable)), "dockyard")

pytestmark = pytest.mark.privileged

NO_DAEMON = ("Cannot connect to the dockyard daemon at unix:///nonexistent/dockyard.sock. "
             "Is the daemon running? Start it with: dockyard daemon &\n")


def poll(fn, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(0.05)


def ok(r):
    assert r.returncode == 0, f"exit {r.returncode}: {r.stderr.strip()}"
    return r.stdout


@pytest.mark.parametrize("args,code", [(["ps"], 1), (["run", "--rm", "busybox", "true"], 125),
                                       (["images"], 1)])
def test_no_daemon_is_one_line(args, code):
    r = subprocess.run([DOCKYARD, "-H", "unix:///nonexistent/dockyard.sock", *args],
                       capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=30)
    assert (r.returncode, r.stderr, r.stdout) == (code, NO_DAEMON, "")
    env = dict(os.environ, DOCKYARD_HOST="unix:///nonexistent/dockyard.sock")
    r = subprocess.run([DOCKYARD, *args], capture_output=True, text=True, env=env,
                       stdin=subprocess.DEVNULL, timeout=30)
    assert r.stderr == NO_DAEMON


def test_run_rm_echo(cli_daemon):
    before = set(ok(cli_daemon.cli("ps", "-aq")).split())
    r = cli_daemon.cli("run", "--rm", "busybox", "echo", "hello")
    assert (r.returncode, r.stdout, r.stderr) == (0, "hello\n", "")
    assert set(ok(cli_daemon.cli("ps", "-aq")).split()) == before


def test_stdout_and_stderr_stay_apart(cli_daemon):
    r = cli_daemon.cli("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2")
    assert (r.returncode, r.stdout, r.stderr) == (0, "out\n", "err\n")


@pytest.mark.parametrize("args,code", [
    (["busybox", "sh", "-c", "exit 3"], 3),
    (["busybox", "nosuchcmd"], 127),
    (["busybox", "/etc"], 126),
    (["--bogus-flag", "busybox", "true"], 125),
    (["-v", "a:relative", "busybox", "true"], 125),
    (["localhost:1/nosuchimage", "true"], 125),  # a pull, if tried, stays on loopback
])
def test_exit_codes(cli_daemon, args, code):
    before = set(ok(cli_daemon.cli("ps", "-aq")).split())
    r = cli_daemon.cli("run", "--rm", *args)
    assert r.returncode == code, r.stderr
    if code >= 125:
        assert r.stderr.strip(), "an error must say what is wrong"
        assert len([ln for ln in r.stderr.splitlines() if "Unable to find image" not in ln]) == 1, r.stderr
    assert set(ok(cli_daemon.cli("ps", "-aq")).split()) == before, "--rm left a container behind"


def test_env_workdir_user(cli_daemon):
    out = ok(cli_daemon.cli("run", "--rm", "-e", "GREETING=hi there", "-w", "/tmp", "-u", "33:33",
                            "busybox", "sh", "-c", 'echo "$GREETING"; pwd; id -u; id -g'))
    assert out == "hi there\n/tmp\n33\n33\n"


def test_stdin_pipe(cli_daemon):
    r = cli_daemon.cli("run", "-i", "--rm", "busybox", "cat", input="hi\nthere\n")
    assert (r.returncode, r.stdout) == (0, "hi\nthere\n")
    r = cli_daemon.cli("run", "-i", "--rm", "busybox", "wc", "-c", input=b"x" * 300000)
    assert r.stdout.strip() == b"300000"


def _run_in_pty(argv, keys=b"", timeout=20, size=None, resize_to=None):
    master, slave = pty.openpty()
    if size:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", *size, 0, 0))
    p = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    out, deadline = b"", time.monotonic() + timeout
    try:
        if keys or resize_to:
            time.sleep(1)
        if keys:
            os.write(master, keys)
        if resize_to:
            fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", *resize_to, 0, 0))
            p.send_signal(signal.SIGWINCH)  # what the kernel does for a foreground job
        while time.monotonic() < deadline:
            r, _, _ = select.select([master], [], [], 0.5)
            if r:
                try:
                    data = os.read(master, 4096)
                except OSError:  # EIO: the last writer closed the pty
                    break
                if not data:
                    break
                out += data
            elif p.poll() is not None:
                break
        return p.wait(timeout=10), out
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(master)


def test_tty_run(cli_daemon):
    code, out = _run_in_pty([DOCKYARD, "-H", cli_daemon.host, "run", "-t", "--rm", "busybox", "tty"])
    assert code == 0 and b"/dev/pts/0" in out, out


def test_interactive_tty_and_exit_code(cli_daemon):
    code, out = _run_in_pty([DOCKYARD, "-H", cli_daemon.host, "run", "-it", "--rm", "busybox", "sh"],
                            keys=b"echo $((6*7))\rexit 5\r")
    assert code == 5 and b"42" in out, out


def test_tty_size_follows_the_terminal(cli_daemon):
    code, out = _run_in_pty([DOCKYARD, "-H", cli_daemon.host, "run", "-it", "--rm", "busybox", "sh", "-c",
                             "sleep 0.5; stty size; sleep 1.5; stty size"], size=(30, 100), resize_to=(40, 120))
    assert code == 0 and out.split() == [b"30", b"100", b"40", b"120"], out


def test_detached_lifecycle(cli_daemon, name):
    cid = ok(cli_daemon.cli("run", "-d", "--name", name, "busybox", "sh", "-c",
                            "echo started; exec sleep 100")).strip()
    assert re.fullmatch(r"[0-9a-f]{64}", cid)
    assert poll(lambda: ok(cli_daemon.cli("logs", name)) == "started\n")
    lines = ok(cli_daemon.cli("ps")).splitlines()
    assert lines[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
    row = next(ln for ln in lines if ln.endswith(" " + name))
    # (the COMMAND text itself is the daemon's; test_tables_match_docker compares its rendering)
    assert row.startswith(cid[:12] + "   busybox   \"sh -c ") and "…\"   " in row
    assert ok(cli_daemon.cli("ps", "--format", "{{.Names}} {{.State}}", "--filter", f"name={name}")) == f"{name} running\n"
    assert ok(cli_daemon.cli("inspect", "-f", "{{.State.Status}} {{.Name}} {{json .Config.Cmd}}", name)) == \
        f'running /{name} ["sh","-c","echo started; exec sleep 100"]\n'
    assert ok(cli_daemon.cli("stop", "-t", "1", name)) == f"{name}\n"
    status = ok(cli_daemon.cli("ps", "-a", "--filter", f"name={name}", "--format", "{{.Status}}"))
    assert status.startswith("Exited (137)"), status
    assert ok(cli_daemon.cli("rm", name)) == f"{name}\n"
    r = cli_daemon.cli("rm", name)
    assert r.returncode == 1 and r.stderr.startswith("Error response from daemon: No such container")
    assert cli_daemon.cli("rm", "-f", name).returncode == 0


def test_create_start_attach(cli_daemon, name):
    cid = ok(cli_daemon.cli("create", "--name", name, "busybox", "sh", "-c", "echo from-c; exit 4")).strip()
    assert re.fullmatch(r"[0-9a-f]{64}", cid)
    r = cli_daemon.cli("start", "-a", name)
    assert (r.returncode, r.stdout) == (4, "from-c\n")
    assert ok(cli_daemon.cli("wait", name)) == "4\n"
    assert ok(cli_daemon.cli("logs", "--tail", "1", name)) == "from-c\n"


def test_attach_to_running_container(cli_daemon, name):
    ok(cli_daemon.cli("run", "-d", "--name", name, "busybox", "sh", "-c", "sleep 1; echo late; exit 9"))
    r = cli_daemon.cli("attach", name)
    assert (r.returncode, r.stdout) == (9, "late\n")
    r = cli_daemon.cli("attach", name)
    assert r.returncode == 1 and "start it first" in r.stderr


def test_signals_are_forwarded(cli_daemon):
    p = subprocess.Popen([DOCKYARD, "-H", cli_daemon.host, "run", "--rm", "busybox", "sh", "-c",
                          'trap "echo got-term; exit 7" TERM; echo ready; sleep 100 & wait'],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        assert p.stdout.readline() == b"ready\n"
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=20) == 7
        assert p.stdout.read() == b"got-term\n"
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_logs_options(cli_daemon, name):
    ok(cli_daemon.cli("run", "--name", name, "busybox", "sh", "-c", "for i in 1 2 3; do echo l$i; done"))
    assert ok(cli_daemon.cli("logs", "--tail", "2", name)) == "l2\nl3\n"
    stamped = ok(cli_daemon.cli("logs", "-t", name)).splitlines()
    assert all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z l\d$", ln) for ln in stamped), stamped
    assert ok(cli_daemon.cli("logs", "--since", "10m", name)) == "l1\nl2\nl3\n"
    assert ok(cli_daemon.cli("logs", "--until", "2000-01-01T00:00:00Z", name)) == ""
    r = cli_daemon.cli("logs", "--since", "yesterday", name)
    assert r.returncode == 1 and "yesterday" in r.stderr


def test_tables_match_docker(cli_daemon, name):
    """Same daemon, same objects: our tables are docker's byte for byte."""
    ok(cli_daemon.cli("create", "--name", name, "-l", "k=v", "busybox", "sh", "-c", "echo a long command line"))
    ok(cli_daemon.cli("volume", "create", name))
    for args in (["ps", "-a", "--format", "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.Ports}}\t{{.Names}}\t{{.Labels}}"],
                 ["ps", "-a", "--filter", f"name={name}", "--no-trunc", "--format", "{{json .Command}}"],
                 ["images", "--format", "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.Size}}"],
                 ["images", "-q"],
                 ["volume", "ls"],
                 ["inspect", "-f", "{{.Name}} {{.State.Status}} {{.Config.Labels}} {{index .Config.Labels \"k\"}}", name],
                 ["volume", "inspect", "-f", "{{.Name}} {{.Driver}}", name],
                 ["inspect", name, "busybox"], ["volume", "inspect", name]):
        ours, theirs = cli_daemon.cli(*args), cli_daemon.docker(*args)
        assert theirs.returncode == 0, theirs.stderr
        assert ours.stdout == theirs.stdout, args


def test_volumes(cli_daemon, name):
    assert ok(cli_daemon.cli("volume", "create", "--label", "a=b", name)) == f"{name}\n"
    assert ok(cli_daemon.cli("volume", "ls", "-q", "--filter", "label=a=b")).split() == [name]
    ok(cli_daemon.cli("run", "--rm", "-v", f"{name}:/data", "busybox", "sh", "-c", "echo hi > /data/f"))
    assert ok(cli_daemon.cli("run", "--rm", "-v", f"{name}:/data:ro", "busybox", "cat", "/data/f")) == "hi\n"
    assert ok(cli_daemon.cli("volume", "rm", name)) == f"{name}\n"
    r = cli_daemon.cli("volume", "rm", name)
    assert r.returncode == 1 and "no such volume" in r.stderr


def test_images_reference_filter_lists_only_matching_tags(cli_daemon, name):
    # docker sends filters={"reference":{NAME:true}}; moby lists only the tags that match.
    ok(cli_daemon.cli("tag", "busybox", f"{name}:1"))
    assert ok(cli_daemon.cli("images", "--format", "{{.Repository}}:{{.Tag}}", name)) == f"{name}:1\n"
    ok(cli_daemon.cli("rmi", f"{name}:1"))


def test_image_tag_save_load(cli_daemon, name, tmp_path):
    ok(cli_daemon.cli("tag", "busybox", f"{name}:1"))
    assert f"{name}:1\n" in ok(cli_daemon.cli("images", "--format", "{{.Repository}}:{{.Tag}}"))
    ok(cli_daemon.cli("save", "-o", str(tmp_path / "img.tar"), f"{name}:1"))
    assert os.listdir(tmp_path) == ["img.tar"]
    out = ok(cli_daemon.cli("rmi", f"{name}:1"))
    assert out.startswith(f"Untagged: {name}:1\n")
    assert "Loaded image" in ok(cli_daemon.cli("load", "-i", str(tmp_path / "img.tar")))
    assert ok(cli_daemon.cli("images", "-q", f"{name}:1")).strip()
    ok(cli_daemon.cli("rmi", f"{name}:1"))
    r = cli_daemon.cli("save", "-o", str(tmp_path / "bad.tar"), "no-such-image-here")
    assert r.returncode == 1 and os.listdir(tmp_path) == ["img.tar"]
