"""Fixtures for the black-box end-to-end tests (helpers live in e2e_util.py).

Every e2e test takes ``clean_daemon`` (tests/conftest.py), so what it makes is removed even when it
fails, and names come from the ``name`` fixture, so tests never collide.
"""

import os
import re
import shutil
import signal
import subprocess
import time
import uuid

import pytest


@pytest.fixture
def name(request):
    """A container/volume/image name unique to this test invocation."""
    base = re.sub(r"[^a-z0-9_.-]+", "-", request.node.name.lower()).strip("-")[:30]
    return f"{base}-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def real_dockerd(daemon, tmp_path_factory):
    """Debian's dockerd in its own network and mount namespace, with private roots and socket.

    Yields a function running the real docker CLI against it. For interop tests (images saved by
    one daemon, loaded by the other); stopped by PID at teardown.
    """
    if not shutil.which("dockerd"):
        pytest.skip("dockerd not installed (apt-get install docker.io)")
    base = str(tmp_path_factory.mktemp("dockerd"))
    sock = f"{base}/sock"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")} | {"DOCKER_CONFIG": f"{base}/cfg"}
    had_cgroups = {c for c in os.listdir("/sys/fs/cgroup") if os.path.isdir(f"/sys/fs/cgroup/{c}/docker")}
    with open(f"{base}/log", "wb") as log:
        proc = subprocess.Popen(["unshare", "--net", "--mount", "--propagation", "private", "dockerd",
                                 "--data-root", f"{base}/data", "--exec-root", f"{base}/exec",
                                 "-H", f"unix://{sock}", "--pidfile", f"{base}/pid"],
                                stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)

    def docker(*args, timeout=120):
        return subprocess.run([daemon.docker_bin, "-H", f"unix://{sock}", *args], env=env, capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    try:
        for _ in range(300):
            if proc.poll() is not None or docker("version").returncode == 0:
                break
            time.sleep(0.1)
        if proc.poll() is not None:
            pytest.skip(f"dockerd exited {proc.returncode}")
        yield docker
    finally:
        ids = docker("ps", "-aq").stdout.split() if proc.poll() is None else []
        if ids:
            docker("rm", "-f", *ids)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for c in os.listdir("/sys/fs/cgroup"):  # the cgroup parent dockerd made, if it did
            if c not in had_cgroups and os.path.isdir(f"/sys/fs/cgroup/{c}/docker"):
                for dirpath, _, _ in sorted(os.walk(f"/sys/fs/cgroup/{c}/docker"), key=lambda w: -len(w[0])):
                    try:
                        os.rmdir(dirpath)
                    except OSError:
                        pass
