"""Bind mounts, named volumes and tmpfs, through the real docker CLI."""

import os
import shutil
import tempfile

import pytest
from e2e_util import ok

pytestmark = pytest.mark.privileged


@pytest.fixture
def host_dir():
    d = tempfile.mkdtemp(prefix="dyt-bind-")
    with open(os.path.join(d, "f"), "w") as f:
        f.write("from-host\n")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_bind_ro(clean_daemon, host_dir):
    d = clean_daemon
    assert ok(d.docker("run", "--rm", "-v", f"{host_dir}:/data:ro", "busybox", "cat", "/data/f")) == "from-host\n"
    r = d.docker("run", "--rm", "-v", f"{host_dir}:/data:ro", "busybox", "touch", "/data/g")
    assert r.returncode != 0 and "Read-only file system" in r.stderr, r.stderr
    assert not os.path.exists(os.path.join(host_dir, "g"))


def test_bind_rw(clean_daemon, host_dir):
    ok(clean_daemon.docker("run", "--rm", "-v", f"{host_dir}:/data", "busybox", "sh", "-c", "echo hi > /data/g"))
    with open(os.path.join(host_dir, "g")) as f:
        assert f.read() == "hi\n"


def test_named_volume_persists(clean_daemon, name):
    d = clean_daemon
    ok(d.docker("run", "--rm", "-v", f"{name}:/data", "busybox", "sh", "-c", "echo kept > /data/f"))
    assert name in ok(d.docker("volume", "ls", "-q")).split()  # created on first use
    assert ok(d.docker("run", "--rm", "-v", f"{name}:/data", "busybox", "cat", "/data/f")) == "kept\n"
    mountpoint = ok(d.docker("volume", "inspect", "-f", "{{.Mountpoint}}", name)).strip()
    assert mountpoint.startswith(d.data_root + "/") and os.path.isfile(os.path.join(mountpoint, "f"))
    ok(d.docker("volume", "rm", name))
    assert not os.path.exists(mountpoint)


def test_volume_in_use_cannot_be_removed(clean_daemon, name):
    d = clean_daemon
    ok(d.docker("create", "--name", name, "-v", f"{name}:/data", "busybox", "true"))
    r = d.docker("volume", "rm", name)
    assert r.returncode != 0 and "in use" in r.stderr, r.stderr
    ok(d.docker("rm", name))
    ok(d.docker("volume", "rm", name))


def test_tmpfs(clean_daemon):
    out = ok(clean_daemon.docker("run", "--rm", "--read-only", "--tmpfs", "/t", "busybox", "sh", "-c",
                                 "echo x > /t/f && cat /t/f && grep ' /t ' /proc/mounts"))
    first, mount = out.splitlines()
    assert first == "x" and mount.split()[2] == "tmpfs", out


def test_writable_layer_is_per_container(clean_daemon, name):
    d = clean_daemon
    script = "cat /etc/motd 2>/dev/null; echo changed > /etc/motd"
    ok(d.docker("run", "--name", name, "busybox", "sh", "-c", script))
    r = d.docker("run", "--rm", "busybox", "cat", "/etc/motd")
    assert r.returncode != 0  # the image itself did not change
    ok(d.docker("start", name))  # the container's own layer survives a restart
    assert ok(d.docker("wait", name)).strip() == "0"
    assert ok(d.docker("logs", name)) == "changed\n"
