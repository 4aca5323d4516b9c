"""The client against our registry: push from one ImageStore, pull into another, auth, TLS, platforms."""

import base64
import datetime
import hashlib
import json
import os

import pytest
import requests

from dockyard.errdefs import Forbidden, NotFound
from dockyard.registry import client

from .conftest import store_is_empty


def _push_pull(reg, busybox_store, make_store, **kw):
    store, image = busybox_store
    ref = f"{reg.host}/test/busybox:1"
    store.tag("busybox:latest", ref)
    pushed_msgs = []
    digest = client.push(ref, store, progress=pushed_msgs.append, **kw)
    assert digest == image.manifest_digest
    assert pushed_msgs[0]["status"] == f"The push refers to repository [{reg.host}/test/busybox]"
    assert pushed_msgs[-1]["aux"]["Digest"] == digest

    other = make_store()
    msgs = []
    pulled = client.pull(ref, other, progress=msgs.append, **kw)
    assert pulled.id == image.id
    assert pulled.manifest_digest == image.manifest_digest
    assert other.resolve(ref).id == image.id
    statuses = [m["status"] for m in msgs]
    assert "Downloading" in statuses and "Pull complete" in statuses
    assert statuses[-1] == f"Status: Downloaded newer image for {ref}"
    layer_msgs = [m for m in msgs if m["status"] == "Downloading"]
    assert all(len(m["id"]) == 12 and m["progressDetail"]["total"] > 0 for m in layer_msgs)
    return other, ref, digest


def test_push_then_pull_gives_the_same_image(registry, busybox_store, make_store):
    reg = registry()
    other, ref, digest = _push_pull(reg, busybox_store, make_store)
    # Pulled again: nothing downloaded; by digest: no tag is added.
    msgs = []
    client.pull(ref, other, progress=msgs.append)
    assert msgs[-1]["status"] == f"Status: Image is up to date for {ref}"
    assert not any(m["status"] == "Downloading" for m in msgs)
    third = make_store()
    img = client.pull(f"{reg.host}/test/busybox@{digest}", third)
    assert img.id == busybox_store[1].id and img.repo_tags == []
    # Pushing again finds every layer present.
    msgs = []
    client.push(ref, busybox_store[0], progress=msgs.append)
    assert any(m["status"] == "Layer already exists" for m in msgs)
    assert not any(m["status"] == "Pushing" for m in msgs)


def test_pull_of_missing_tag_is_not_found_and_leaves_nothing(registry, make_store):
    reg = registry()
    store = make_store()
    with pytest.raises(NotFound, match="not found"):
        client.pull(f"{reg.host}/nope:1", store)
    assert store_is_empty(store)


def _htpasswd(tmp_path, user="alice", password="s3cret"):
    import bcrypt

    path = tmp_path / "htpasswd"
    h = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode().replace("$2b$", "$2y$", 1)
    path.write_text(f"{user}:{h}\n")
    return str(path)


def test_basic_auth(registry, busybox_store, make_store, tmp_path):
    reg = registry(htpasswd=_htpasswd(tmp_path))
    r = requests.get(f"{reg.url}/v2/")
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Basic ")
    assert r.json()["errors"][0]["code"] == "UNAUTHORIZED"
    assert requests.get(f"{reg.url}/v2/", auth=("alice", "wrong")).status_code == 401
    assert requests.get(f"{reg.url}/v2/", auth=("bob", "s3cret")).status_code == 401
    assert requests.get(f"{reg.url}/v2/", auth=("alice", "s3cret")).status_code == 200
    store, _ = busybox_store
    store.tag("busybox:latest", f"{reg.host}/x:1")
    with pytest.raises(Forbidden):
        client.push(f"{reg.host}/x:1", store)
    with pytest.raises(Forbidden):
        client.push(f"{reg.host}/x:1", store, auth={"username": "alice", "password": "nope"})
    _push_pull(reg, busybox_store, make_store, auth={"username": "alice", "password": "s3cret"})


def test_token_auth(registry, busybox_store, make_store, tmp_path, monkeypatch):
    reg = registry(htpasswd=_htpasswd(tmp_path), token_auth=True)
    r = requests.get(f"{reg.url}/v2/test/busybox/tags/list")
    challenge = r.headers["WWW-Authenticate"]
    assert r.status_code == 401 and challenge.startswith("Bearer realm=")
    assert 'scope="repository:test/busybox:pull"' in challenge
    # A token for pull does not allow push.
    tok = requests.get(f"{reg.url}/token", params={"scope": "repository:a:pull", "service": "dockyard-registry"},
                       auth=("alice", "s3cret")).json()["token"]
    hdr = {"Authorization": f"Bearer {tok}"}
    assert requests.get(f"{reg.url}/v2/a/tags/list", headers=hdr).status_code == 404  # allowed, but no repo
    assert requests.post(f"{reg.url}/v2/a/blobs/uploads/", headers=hdr).status_code == 401
    assert requests.get(f"{reg.url}/token", params={"scope": "repository:a:pull"}, auth=("alice", "x")).status_code == 401
    # Docker-style config.json credentials are used when the caller gives none.
    cfg = tmp_path / "dockercfg"
    cfg.mkdir()
    (cfg / "config.json").write_text(json.dumps({"auths": {reg.host: {"auth": base64.b64encode(b"alice:s3cret").decode()}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(cfg))
    _push_pull(reg, busybox_store, make_store)


def _self_signed(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def test_tls(registry, busybox_store, make_store, tmp_path):
    cert, key = _self_signed(tmp_path)
    reg = registry(tls=(cert, key))
    assert reg.url.startswith("https://")
    assert requests.get(f"{reg.url}/v2/", verify=cert).status_code == 200
    with pytest.raises(requests.exceptions.ConnectionError):  # no plain HTTP on a TLS port
        requests.get(f"http://{reg.host}/v2/", timeout=5)
    _push_pull(reg, busybox_store, make_store)  # loopback: self-signed is accepted, like Docker


def test_platform_selection_from_an_index(registry, busybox_store, make_store):
    reg = registry()
    store, image = busybox_store
    ref = f"{reg.host}/multi:1"
    store.tag("busybox:latest", ref)
    client.push(ref, store)
    manifest = store.content.read(image.manifest_digest)
    desc = {"mediaType": client.MT_OCI_MANIFEST, "digest": image.manifest_digest, "size": len(manifest)}
    arch = client._host_platform()["architecture"]
    index = {"schemaVersion": 2, "mediaType": client.MT_OCI_INDEX, "manifests": [
        {**desc, "platform": {"os": "linux", "architecture": "s390x"}},
        {**desc, "platform": {"os": "linux", "architecture": arch}}]}
    body = json.dumps(index).encode()
    r = requests.put(f"{reg.url}/v2/multi/manifests/idx", data=body, headers={"Content-Type": client.MT_OCI_INDEX})
    assert r.status_code == 201, r.text
    other = make_store()
    img = client.pull(f"{reg.host}/multi:idx", other)
    assert img.id == image.id
    empty = make_store()
    with pytest.raises(NotFound, match="no matching manifest for linux/riscv64"):
        client.pull(f"{reg.host}/multi:idx", empty, platform="linux/riscv64")
    assert store_is_empty(empty)
    assert hashlib.sha256(body).hexdigest()  # the index itself is served as pushed
    assert requests.get(f"{reg.url}/v2/multi/manifests/idx").content == body


@pytest.mark.parametrize("token", [False, True])
def test_push_mounts_blobs_from_another_repository(registry, busybox_store, tmp_path, token):
    reg = registry(htpasswd=_htpasswd(tmp_path), token_auth=token)
    creds = {"username": "alice", "password": "s3cret"}
    store, image = busybox_store
    store.tag("busybox:latest", f"{reg.host}/first:1")
    client.push(f"{reg.host}/first:1", store, auth=creds)
    store.tag("busybox:latest", f"{reg.host}/second:1")
    msgs = []
    client.push(f"{reg.host}/second:1", store, progress=msgs.append, auth=creds)
    assert [m["status"] for m in msgs if m.get("id")] == ["Preparing", "Mounted from first"]
    r = requests.get(f"{reg.url}/v2/second/manifests/1", auth=None if token else ("alice", "s3cret"))
    assert r.status_code == (401 if token else 200)


def test_concurrent_pulls_into_one_store(registry, busybox_store, make_store):
    import concurrent.futures

    reg = registry()
    store, image = busybox_store
    ref = f"{reg.host}/conc:1"
    store.tag("busybox:latest", ref)
    client.push(ref, store)
    target = make_store()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        ids = list(pool.map(lambda _: client.pull(ref, target).id, range(4)))
    assert ids == [image.id] * 4
    assert [i.id for i in target.list()] == [image.id]
    assert sorted(target.content.list()) == sorted(store.content.list())
    assert target.content.list() and not os.listdir(target.tmp)
