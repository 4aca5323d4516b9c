"""Interop with other implementations: skopeo against our registry, our client against the reference
registry (Debian's docker-registry, distribution 2.8)."""

import json
import shutil
import socket
import subprocess
import tempfile
import time

import pytest
import requests

from dockyard.registry import client

from .conftest import stop

SKOPEO = shutil.which("skopeo")
DISTRIBUTION = shutil.which("docker-registry")


def skopeo(*args):
    r = subprocess.run([SKOPEO, "--insecure-policy", *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.fixture
def scratch():
    d = tempfile.mkdtemp(prefix="dyreg-skopeo-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.skipif(not SKOPEO, reason="skopeo is not installed (apt-get install skopeo)")
def test_skopeo_copies_out_of_and_into_our_registry(registry, busybox_store, make_store, scratch):
    reg = registry()
    store, image = busybox_store
    store.tag("busybox:latest", f"{reg.host}/x:1")
    client.push(f"{reg.host}/x:1", store)

    info = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{reg.host}/x:1"))
    assert info["Digest"] == image.manifest_digest and len(info["Layers"]) == 1
    raw = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{reg.host}/x:1")
    assert raw.encode() == store.content.read(image.manifest_digest)

    skopeo("copy", "--src-tls-verify=false", f"docker://{reg.host}/x:1", f"dir:{scratch}/out")
    skopeo("copy", "--dest-tls-verify=false", f"dir:{scratch}/out", f"docker://{reg.host}/y:2")
    skopeo("copy", "--src-tls-verify=false", "--dest-tls-verify=false",  # registry to registry: may mount
           f"docker://{reg.host}/x:1", f"docker://{reg.host}/z/deep:3")
    tags = requests.get(f"{reg.url}/v2/y/tags/list").json()["tags"]
    assert tags == ["2"]
    for ref in ("y:2", "z/deep:3"):
        other = make_store()
        assert client.pull(f"{reg.host}/{ref}", other).id == image.id
    assert json.loads(skopeo("list-tags", "--tls-verify=false", f"docker://{reg.host}/x"))["Tags"] == ["1"]
    skopeo("delete", "--tls-verify=false", f"docker://{reg.host}/y:2")
    assert requests.get(f"{reg.url}/v2/y/manifests/2").status_code == 404


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def distribution():
    """The reference registry on a loopback port, with a temp root; stopped by PID."""
    root = tempfile.mkdtemp(prefix="dyreg-distribution-")
    port = _free_port()
    config = f"""version: 0.1
log: {{level: error}}
storage:
  filesystem: {{rootdirectory: {root}/data}}
  delete: {{enabled: true}}
http:
  addr: 127.0.0.1:{port}
"""
    with open(f"{root}/config.yml", "w") as f:
        f.write(config)
    proc = subprocess.Popen([DISTRIBUTION, "serve", f"{root}/config.yml"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(100):
            try:
                if requests.get(f"http://127.0.0.1:{port}/v2/", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.1)
        else:
            raise RuntimeError("docker-registry did not start")
        yield f"127.0.0.1:{port}"
    finally:
        stop(proc)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.skipif(not DISTRIBUTION, reason="docker-registry is not installed (apt-get install docker-registry)")
def test_our_client_against_the_reference_registry(distribution, busybox_store, make_store):
    store, image = busybox_store
    ref = f"{distribution}/lib/busybox:v1"
    store.tag("busybox:latest", ref)
    assert client.push(ref, store) == image.manifest_digest
    other = make_store()
    pulled = client.pull(ref, other)
    assert pulled.id == image.id and pulled.manifest_digest == image.manifest_digest
    # And a second push finds everything there.
    msgs = []
    client.push(ref, store, progress=msgs.append)
    assert [m["status"] for m in msgs if m.get("id")] == ["Layer already exists"]
