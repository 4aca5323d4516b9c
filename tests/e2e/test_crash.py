"""kill -9 of the daemon: containers outlive it, and every operation is consistent after a restart.

These tests restart the shared session daemon; each leaves it running on the same roots.
"""

import os
import time

import pytest
from e2e_util import make_docker_archive, ok, poll

pytestmark = [pytest.mark.privileged, pytest.mark.slow]


def _alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def test_container_outlives_daemon_kill9(clean_daemon, name):
    d = clean_daemon
    script = "trap 'exit 7' TERM; i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done"
    ok(d.docker("run", "-d", "--name", name, "busybox", "sh", "-c", script))
    pid = int(ok(d.docker("inspect", "-f", "{{.State.Pid}}", name)))
    assert poll(lambda: "tick 1" in d.docker("logs", name).stdout)

    d.stop(kill9=True)
    time.sleep(0.5)
    assert _alive(pid), "the container died with the daemon"
    d.start()

    assert name in ok(d.docker("ps", "--format", "{{.Names}}")).split()
    assert int(ok(d.docker("inspect", "-f", "{{.State.Pid}}", name))) == pid
    n1 = len(ok(d.docker("logs", name)).splitlines())
    assert poll(lambda: len(d.docker("logs", name).stdout.splitlines()) > n1 + 3), "logs stopped"
    ok(d.docker("stop", "-t", "10", name))
    assert ok(d.docker("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", name)).strip() == "exited 7"
    assert not _alive(pid)


def test_exit_while_daemon_down_is_recorded(clean_daemon, name):
    d = clean_daemon
    ok(d.docker("run", "-d", "--name", name, "busybox", "sh", "-c", "echo bye; sleep 1; exit 5"))
    pid = int(ok(d.docker("inspect", "-f", "{{.State.Pid}}", name)))
    d.stop(kill9=True)
    assert poll(lambda: not _alive(pid), timeout=10)
    d.start()
    assert ok(d.docker("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", name)).strip() == "exited 5"
    assert ok(d.docker("logs", name)) == "bye\n"
    assert ok(d.docker("wait", name)).strip() == "5"
    ok(d.docker("rm", name))


def _store_progress(d):
    """(bytes under images/tmp, blob count, snapshot count): the layout images/__init__.py fixes."""
    root = os.path.join(d.data_root, "images")
    tmp = sum(e.stat().st_size for e in _walk(os.path.join(root, "tmp")))
    count = lambda p: len(os.listdir(p)) if os.path.isdir(p) else 0  # noqa: E731
    return tmp, count(os.path.join(root, "blobs", "sha256")), count(os.path.join(root, "snapshots"))


def _walk(path):
    try:
        for e in os.scandir(path):
            if e.is_dir(follow_symlinks=False):
                yield from _walk(e.path)
            elif e.is_file(follow_symlinks=False):
                yield e
    except OSError:
        return


# Kill points along a load: while the archive streams in, while the layers unpack (blobs
# committed, snapshot not yet), and right after the new snapshot appeared (metadata not yet).
LOAD_PHASES = {
    "receiving": lambda p0, p: p[0] > 50 << 20 and p[1] == p0[1],
    "unpacking": lambda p0, p: p[1] >= p0[1] + 2 and p[0] > 50 << 20,
    "snapshotted": lambda p0, p: p[2] > p0[2],
}


@pytest.mark.parametrize("phase", list(LOAD_PHASES))
def test_kill9_during_load(clean_daemon, busybox_tar, name, tmp_path, phase):
    d = clean_daemon
    ref = f"{name}:big"
    path = str(tmp_path / "big.tar")
    make_docker_archive(path, busybox_tar, ref, extra_mib=200, cmd=("test", "-s", "/big"))
    p0 = _store_progress(d)
    load = d.popen("docker", "load", "-i", path)
    reached = poll(lambda: LOAD_PHASES[phase](p0, _store_progress(d)) or load.poll() is not None,
                   timeout=60, interval=0.005)
    interrupted = reached and load.poll() is None
    d.stop(kill9=True)
    load.communicate(timeout=60)
    d.start()
    if not interrupted:
        pytest.skip(f"load finished before the {phase} kill point")

    # Consistent: the image is either complete and runnable, or absent; a second load works.
    if d.docker("image", "inspect", ref).returncode == 0:
        ok(d.docker("run", "--rm", ref))
    else:
        assert ref not in ok(d.docker("images", "--format", "{{.Repository}}:{{.Tag}}")).split()
    ok(d.docker("load", "-i", path, timeout=120))
    ok(d.docker("run", "--rm", ref))
    ok(d.docker("rmi", ref))
    assert poll(lambda: _store_progress(d)[0] == 0, timeout=5), "images/tmp not cleaned after restart"


def _busy_container(d, name):
    return ok(d.docker("run", "-d", "--name", name, "-v", "/data", "--tmpfs", "/t", "busybox",
                       "sleep", "300")).strip()


@pytest.mark.parametrize("fraction", [0.1, 0.4, 0.7])
def test_kill9_during_rm(clean_daemon, name, fraction):
    d = clean_daemon
    # How long a `rm -f` of this kind of container takes here; the kill lands a fraction into it.
    _busy_container(d, name + "-probe")
    t0 = time.monotonic()
    ok(d.docker("rm", "-f", "-v", name + "-probe"))
    delay = (time.monotonic() - t0) * fraction

    cid = _busy_container(d, name)
    rm = d.popen("docker", "rm", "-f", "-v", name)
    time.sleep(delay)
    d.stop(kill9=True)
    rm.communicate(timeout=60)
    d.start()

    # Consistent: gone entirely, or still there and removable now.
    if d.docker("inspect", name).returncode == 0:
        ok(d.docker("rm", "-f", "-v", name))
    assert d.docker("inspect", name).returncode == 1
    bundle = os.path.join(d.data_root, "containers", cid)
    assert poll(lambda: not os.path.exists(bundle), timeout=5), f"{bundle} left behind"
    snap = d.snapshot()
    assert [m for m in snap.mounts if cid in m] == []
    assert [c for c in snap.cgroups if cid in c] == []
    assert not any(cid.encode() in _cmdline(p) for p in os.listdir("/proc") if p.isdigit()), "conmon left"


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""
