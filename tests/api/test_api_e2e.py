"""End to end: a real daemon (tests/conftest.py ``daemon``), real containers, driven by the real
docker CLI 28 and docker-py. These are the API tests that count."""

import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time

import docker
import pytest

from apihelpers import DOCKER, ping

pytestmark = pytest.mark.privileged


def test_cli_system_images_volumes(clean_daemon, busybox_tar):
    d = clean_daemon
    r = d.docker("version", check=True)
    assert "Dockyard Engine" in r.stdout and "1.44" in r.stdout
    assert "Server Version" in d.docker("info", check=True).stdout
    assert "busybox" in d.docker("images", check=True).stdout
    d.docker("import", busybox_tar, "imported:1", check=True)  # docker import = POST /images/create?fromSrc=-
    assert d.docker("image", "inspect", "-f", "{{.Os}}", "imported:1", check=True).stdout == "linux\n"
    d.docker("volume", "create", "--label", "a=b", "apivol", check=True)
    assert "apivol" in d.docker("volume", "ls", "-q", check=True).stdout
    assert d.docker("volume", "inspect", "-f", "{{.Labels.a}} {{.Driver}}", "apivol", check=True).stdout == "b local\n"
    d.docker("volume", "rm", "apivol", check=True)
    assert d.docker("ps", "-a", check=True).stdout.startswith("CONTAINER ID")


def test_cli_run_attach_stdin_exit_codes(clean_daemon):
    d = clean_daemon
    r = d.docker("run", "--rm", "busybox", "echo", "hello")
    assert (r.returncode, r.stdout) == (0, "hello\n"), r.stderr
    r = d.docker("run", "-i", "--rm", "busybox", "cat", input="through stdin\n")
    assert (r.returncode, r.stdout) == (0, "through stdin\n"), r.stderr
    r = d.docker("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (r.returncode, r.stdout, r.stderr) == (3, "out\n", "err\n")
    r = d.docker("run", "busybox", "nosuchcmd")
    assert r.returncode == 127 and "executable file not found" in r.stderr
    r = d.docker("run", "--rm", "nosuchimage")
    assert r.returncode == 125 and "pull access denied for nosuchimage" in r.stderr
    assert len(d.docker("ps", "-aq").stdout.split()) == 1  # the --rm ones are gone


def test_cli_run_rm_start_failure_removes_the_container(clean_daemon):
    """moby removes an AutoRemove container whose start failed, which ends `wait?condition=removed`;
    the CLI waits for that before it exits."""
    r = clean_daemon.docker("run", "--rm", "busybox", "nosuchcmd", timeout=20)
    assert r.returncode == 127 and "executable file not found" in r.stderr
    assert clean_daemon.docker("ps", "-aq").stdout == ""


def test_cli_lifecycle_logs_top_rename(clean_daemon):
    d = clean_daemon
    cid = d.docker("run", "-d", "--name", "apilife", "busybox", "sh", "-c",
                   "echo started; exec sleep 60", check=True).stdout.strip()
    assert len(cid) == 64
    deadline = time.time() + 10
    while "started" not in d.docker("logs", "apilife").stdout:
        assert time.time() < deadline, "no log output"
        time.sleep(0.1)
    ps = d.docker("ps", "--format", "{{.Names}} {{.Status}}", check=True).stdout
    assert ps.startswith("apilife Up")
    top = d.docker("top", "apilife", check=True).stdout
    assert "sleep 60" in top
    d.docker("rename", "apilife", "apilife2", check=True)
    assert d.docker("inspect", "-f", "{{.Name}} {{.State.Running}}", cid, check=True).stdout == "/apilife2 true\n"
    r = d.docker("rm", "apilife2")
    assert r.returncode == 1 and "stop the container before removing" in r.stderr
    d.docker("stop", "-t", "1", "apilife2", check=True)
    assert d.docker("wait", "apilife2", check=True).stdout == "137\n"
    assert d.docker("ps", "-a", "--filter", "status=exited", "--format", "{{.Names}}", check=True).stdout \
        == "apilife2\n"
    out = d.docker("logs", "-t", "apilife2", check=True).stdout
    assert out.endswith(" started\n") and out[4] == "-" and out.index("Z ") == 29  # RFC3339NanoFixed
    d.docker("rm", "apilife2", check=True)


def test_docker_py_run_logs_stop_remove(clean_daemon):
    c = clean_daemon.api()
    assert c.version()["ApiVersion"] == "1.44"
    assert c.containers.run("busybox", "echo hello", remove=True) == b"hello\n"
    ctr = c.containers.run("busybox", ["sh", "-c", "echo one; echo two >&2; sleep 60"], detach=True)
    deadline = time.time() + 10
    while ctr.logs() != b"one\ntwo\n":
        assert time.time() < deadline, ctr.logs()
        time.sleep(0.1)
    assert ctr.logs(stderr=False) == b"one\n"
    ctr.reload()
    assert ctr.status == "running" and ctr.attrs["HostConfig"]["LogConfig"]["Type"] == "json-file"
    assert [x.id for x in c.containers.list(filters={"id": ctr.id})] == [ctr.id]
    ctr.stop(timeout=1)
    assert ctr.wait()["StatusCode"] == 137
    ctr.remove()
    with pytest.raises(docker.errors.NotFound):
        c.containers.get(ctr.id)
    with pytest.raises(docker.errors.ContainerError):
        c.containers.run("busybox", "false", remove=True)


def test_docker_py_attach_no_output_lost(clean_daemon):
    c = clean_daemon.api()
    ctr = c.containers.create("busybox", ["echo", "attached"])
    try:
        stream = c.api.attach(ctr.id, stream=True, logs=False)
        ctr.start()
        assert b"".join(stream) == b"attached\n"
        ctr.wait()
        assert ctr.attach(logs=True, stream=False) == b"attached\n"  # backlog only, then EOF
    finally:
        ctr.remove(force=True)


def test_containers_survive_daemon_restart(clean_daemon):
    d = clean_daemon
    cid = d.docker("run", "-d", "busybox", "sleep", "60", check=True).stdout.strip()
    d.restart()  # SIGTERM: graceful, containers keep running
    assert d.docker("inspect", "-f", "{{.State.Running}}", cid, check=True).stdout == "true\n"
    d.docker("rm", "-f", cid, check=True)


def test_daemon_refuses_a_locked_data_root(daemon):
    base = tempfile.mkdtemp(prefix="dya-", dir="/tmp")
    try:
        r = subprocess.run([sys.executable, "-m", "dockyard.api.daemon", "--data-root", daemon.data_root,
                            "--exec-root", os.path.join(base, "exec"), "--host", f"unix://{base}/sock"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 1
        assert r.stderr.strip().splitlines()[-1] == \
            f"dockyard daemon: another dockyard daemon is using the data root {daemon.data_root}"
        assert not os.path.exists(os.path.join(base, "sock"))
        # A socket in use is never taken over, even by a daemon with a data root of its own.
        r = subprocess.run([sys.executable, "-m", "dockyard.api.daemon", "--data-root", os.path.join(base, "d"),
                            "--exec-root", os.path.join(base, "e"), "--host", daemon.host],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 1
        assert r.stderr.strip().splitlines()[-1] == f"dockyard daemon: another daemon is listening on {daemon.socket}"
        assert ping(daemon.socket)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_daemon_stale_socket_mode_and_sigterm():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    base = tempfile.mkdtemp(prefix="dya-", dir="/tmp")
    sock = os.path.join(base, "sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(sock)  # bound, never listening: what a crashed daemon leaves
    stale.close()
    proc = subprocess.Popen([sys.executable, "-m", "dockyard.api.daemon", "--data-root", f"{base}/data",
                             "--exec-root", f"{base}/exec", "--host", f"unix://{sock}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.time() + 30
        while True:
            assert proc.poll() is None, proc.stderr.read()
            if ping(sock):
                break
            assert time.time() < deadline
            time.sleep(0.05)
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o660
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        assert not os.path.exists(sock)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stderr.close()
        shutil.rmtree(base, ignore_errors=True)


def test_tty_filters_prune(clean_daemon):
    d = clean_daemon
    r = d.docker("run", "-t", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2", text=False)
    assert r.returncode == 0 and r.stdout == b"out\r\nerr\r\n", r  # one pty stream, raw (no frames)
    a = d.docker("run", "-d", "--label", "tier=a", "busybox", "true", check=True).stdout.strip()
    b = d.docker("create", "--label", "tier=b", "busybox", "true", check=True).stdout.strip()
    d.docker("wait", a, check=True)

    def ps(*f):
        return d.docker("ps", "-aq", "--no-trunc", *f, check=True).stdout.split()

    assert ps("--filter", "label=tier=a") == [a]
    assert ps("--filter", "label=tier") == [b, a]
    assert ps("--filter", "status=created") == [b]
    assert ps("--filter", "exited=0") == [a]
    assert ps("--filter", "ancestor=busybox", "--filter", "label=tier") == [b, a]
    assert ps("--filter", "since=" + a) == [b] and ps("--filter", "before=" + b) == [a]
    r = d.docker("container", "prune", "-f", "--filter", "label=tier=a", check=True)
    assert a in r.stdout and b not in r.stdout
    d.docker("volume", "create", "prunable", check=True)
    r = d.docker("volume", "prune", "-af", check=True)
    assert "prunable" in r.stdout
    assert d.docker("system", "df", check=True).stdout.startswith("TYPE")


def test_concurrent_clients(clean_daemon):
    """Several runs at once, each with its own create/attach/wait/start connections."""
    from concurrent.futures import ThreadPoolExecutor

    c = clean_daemon.api()
    with ThreadPoolExecutor(6) as pool:
        outs = list(pool.map(lambda i: c.containers.run("busybox", ["echo", f"n{i}"], remove=True), range(6)))
    assert outs == [f"n{i}\n".encode() for i in range(6)]
    with ThreadPoolExecutor(4) as pool:
        res = list(pool.map(lambda i: clean_daemon.docker("run", "--rm", "busybox", "echo", str(i)).stdout, range(4)))
    assert res == [f"{i}\n" for i in range(4)]


def test_attach_half_close_is_not_a_disconnect(clean_daemon):
    d = clean_daemon
    cid = d.docker("run", "-d", "busybox", "sh", "-c", "sleep 1; echo late; sleep 60", check=True).stdout.strip()
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    try:
        s.connect(d.socket)
        s.sendall(f"POST /v1.44/containers/{cid}/attach?stdout=1&stderr=1&stream=1 HTTP/1.1\r\nHost: x\r\n"
                  "Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(1)  # byte by byte: the stream must not share a read with the header
        assert head.startswith(b"HTTP/1.1 101 UPGRADED\r\n")
        assert b"application/vnd.docker.multiplexed-stream" in head
        s.shutdown(socket.SHUT_WR)  # what the CLI does without -i
        data = b""
        while len(data) < 13:
            chunk = s.recv(64)
            assert chunk, "server hung up after a half-close"
            data += chunk
        assert data == b"\x01\x00\x00\x00\x00\x00\x00\x05late\n"
    finally:
        s.close()  # a full close detaches; the container keeps running
    time.sleep(0.6)
    assert d.docker("inspect", "-f", "{{.State.Running}}", cid, check=True).stdout == "true\n"
    # A follower that walks away leaves the daemon healthy.
    p = subprocess.Popen([DOCKER, "-H", d.host, "logs", "-f", cid],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(
                             os.environ, DOCKER_CONFIG=d.docker_config))
    time.sleep(0.5)
    p.kill()
    p.wait()
    assert d.docker("logs", cid, check=True).stdout == "late\n"
    d.docker("rm", "-f", cid, check=True)
