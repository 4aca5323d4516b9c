"""The real Docker against our registry: dockerd (Debian's) driven by the docker CLI 28 pushes to and
pulls from it after ``docker login`` (token flow and Basic); our client reads what Docker pushed."""

import os
import shutil
import subprocess
import tempfile
import time

import pytest

from dockyard.registry import client

from .conftest import stop
from .test_client import _htpasswd

DOCKERD = shutil.which("dockerd")
DOCKER = next((c for c in ("/usr/local/bin/docker", shutil.which("docker")) if c and os.access(c, os.X_OK)), None)

pytestmark = [pytest.mark.skipif(not (DOCKERD and DOCKER and os.geteuid() == 0), reason="needs root, dockerd and docker"),
              pytest.mark.slow]


class Dockerd:
    def __init__(self):
        self.base = tempfile.mkdtemp(prefix="dyrd-", dir="/tmp")  # short: containerd's socket lives below
        self.sock = f"{self.base}/sock"
        self.config = f"{self.base}/cli"
        os.mkdir(self.config)
        self.proc = subprocess.Popen(
            [DOCKERD, "--data-root", f"{self.base}/data", "--exec-root", f"{self.base}/exec", "-H", f"unix://{self.sock}",
             "--pidfile", f"{self.base}/pid", "--iptables=false", "--ip6tables=false", "--bridge=none"],
            stdout=subprocess.DEVNULL, stderr=open(f"{self.base}/log", "w"))
        for _ in range(300):
            if os.path.exists(self.sock) and self.docker("version", check=False).returncode == 0:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.close()
        raise RuntimeError("dockerd did not start")

    def docker(self, *args, input=None, check=True):
        env = {**os.environ, "DOCKER_CONFIG": self.config}
        r = subprocess.run([DOCKER, "-H", f"unix://{self.sock}", *args], input=input, capture_output=True,
                           text=True, timeout=120, env=env)
        if check:
            assert r.returncode == 0, r.stderr
        return r

    def close(self):
        stop(self.proc)
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="module")
def dockerd():
    d = Dockerd()
    yield d
    d.close()


@pytest.mark.parametrize("token_auth", [True, False], ids=["token", "basic"])
def test_docker_pushes_and_pulls_through_our_registry(dockerd, registry, busybox_tar, busybox_store, make_store, tmp_path,
                                                      token_auth):
    reg = registry(htpasswd=_htpasswd(tmp_path), token_auth=token_auth)
    assert dockerd.docker("pull", f"{reg.host}/ours:1", check=False).returncode != 0  # not logged in
    dockerd.docker("login", reg.host, "-u", "alice", "--password-stdin", input="s3cret\n")
    try:
        # Docker pushes (gzip layers, Docker schema2 media types); our client pulls that.
        tar = tmp_path / "busybox.tar"
        tar.write_bytes(busybox_tar)
        ref = f"{reg.host}/fromdocker:1"
        dockerd.docker("import", str(tar), ref)
        dockerd.docker("push", ref)
        docker_id = dockerd.docker("image", "inspect", "-f", "{{.Id}}", ref).stdout.strip()
        store = make_store()
        img = client.pull(ref, store, auth={"username": "alice", "password": "s3cret"})
        assert img.id == docker_id

        # Our client pushes (OCI manifest, uncompressed layer); Docker pulls and sees the same image.
        ours, image = busybox_store
        ref = f"{reg.host}/ours:1"
        ours.tag("busybox:latest", ref)
        client.push(ref, ours, auth={"username": "alice", "password": "s3cret"})
        dockerd.docker("pull", ref)
        assert dockerd.docker("image", "inspect", "-f", "{{.Id}}", ref).stdout.strip() == image.id
        out = dockerd.docker("image", "inspect", "-f", "{{index .RepoDigests 0}}", ref).stdout.strip()
        assert out.endswith(image.manifest_digest)
    finally:
        for r in (f"{reg.host}/fromdocker:1", f"{reg.host}/ours:1"):
            dockerd.docker("rmi", "-f", r, check=False)
        dockerd.docker("logout", reg.host, check=False)
