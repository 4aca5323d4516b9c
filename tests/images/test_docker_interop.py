"""Interop with the real Docker: our save loads into dockerd, dockerd's save loads into our store.

Starts a private dockerd (no network, own data/exec roots, own mount namespace) for this module only;
stops it by its PID and removes everything at teardown. Skipped if dockerd or docker is missing.
"""

import io
import os
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from dockyard.images.store import ImageStore

from .test_store import LAYER1, LAYER2, legacy_archive

pytestmark = [pytest.mark.slow, pytest.mark.privileged]


@pytest.fixture(scope="module")
def dockerd():
    if os.geteuid() != 0 or not shutil.which("dockerd") or not shutil.which("docker"):
        pytest.skip("needs root, dockerd and the docker CLI")
    tmp = tempfile.mkdtemp(prefix="dockyard-dd-")
    sock = os.path.join(tmp, "d.sock")
    log = open(os.path.join(tmp, "log"), "wb")
    proc = subprocess.Popen(
        ["unshare", "--net", "--mount", "--propagation", "private", "dockerd", "--data-root", f"{tmp}/dd",
         "--exec-root", f"{tmp}/de", "--pidfile", f"{tmp}/dd.pid", "-H", f"unix://{sock}", "--bridge", "none",
         "--iptables=false"], stdout=log, stderr=log)
    try:
        for _ in range(60):
            if os.path.exists(sock) and subprocess.run(["docker", "-H", f"unix://{sock}", "version"],
                                                       capture_output=True).returncode == 0:
                break
            if proc.poll() is not None:
                pytest.skip("dockerd did not start: " + open(os.path.join(tmp, "log")).read()[-500:])
            time.sleep(0.5)
        else:
            pytest.skip("dockerd did not come up in 30 s")
        yield lambda *args, **kw: subprocess.run(["docker", "-H", f"unix://{sock}", *args], capture_output=True,
                                                 check=True, **kw)
    finally:
        proc.send_signal(signal.SIGTERM)  # unshare exec'd dockerd: this PID is dockerd's
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


def test_our_save_loads_into_docker(store, busybox, dockerd, tmpdir_clean):
    path = os.path.join(tmpdir_clean, "ours.tar")
    store.tag("busybox", "dyinterop/busybox:1")
    with open(path, "wb") as f:
        store.save(["dyinterop/busybox:1"], f)
    assert b"Loaded image: dyinterop/busybox:1" in dockerd("load", "-i", path).stdout
    ids = dockerd("image", "inspect", "-f", "{{.Id}}", "dyinterop/busybox:1").stdout.decode().strip()
    assert ids == busybox.id
    out = dockerd("run", "--rm", "--network", "none", "dyinterop/busybox:1", "sh", "-c", "echo from-docker").stdout
    assert out == b"from-docker\n"


def test_docker_save_loads_into_our_store(dockerd, tmpdir_clean):
    src = ImageStore(os.path.join(tmpdir_clean, "src"))
    dst = ImageStore(os.path.join(tmpdir_clean, "dst"))
    try:
        data, _ = legacy_archive([LAYER1, LAYER2], ["dyinterop/two:2"])
        src.load(io.BytesIO(data))
        path = os.path.join(tmpdir_clean, "ours.tar")
        with open(path, "wb") as f:
            src.save(["dyinterop/two:2"], f)
        dockerd("load", "-i", path)
        theirs = os.path.join(tmpdir_clean, "theirs.tar")
        dockerd("save", "-o", theirs, "dyinterop/two:2")
        with open(theirs, "rb") as f:
            assert dst.load(f) == ["dyinterop/two:2"]
        img = dst.resolve("dyinterop/two:2")
        assert img.id == src.resolve("dyinterop/two:2").id
        assert [h["CreatedBy"] for h in dst.history("dyinterop/two:2")] == ["CMD", "layer 1", "layer 0"]
    finally:
        src.close()
        dst.close()
