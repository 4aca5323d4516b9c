"""The client against a hostile registry (a tiny fake server in this process): every lie is a clear
error and leaves nothing in the store."""

import hashlib
import io
import json
import os
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from dockyard.errdefs import DockyardError, InvalidArgument
from dockyard.registry import client

from .conftest import store_is_empty


def dg(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in members.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def image(layer: bytes):
    """(manifest bytes, {digest: bytes}) of a one-layer image."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [dg(layer)]}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": client.MT_OCI_MANIFEST,
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": dg(config), "size": len(config)},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": dg(layer), "size": len(layer)}]}).encode()
    return manifest, {dg(config): config, dg(layer): layer}


class Fake:
    """Routes: path -> bytes, or a callable(handler) that writes the response itself."""

    def __init__(self):
        self.routes: dict = {}
        routes = self.routes

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                r = routes.get(self.path)
                try:
                    if callable(r):
                        return r(self)
                    if r is None:
                        self.send_response(404)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(r)))
                    self.end_headers()
                    self.wfile.write(r)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_HEAD = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def serve_image(self, repo, tag, manifest, blobs):
        self.routes[f"/v2/{repo}/manifests/{tag}"] = manifest
        self.routes[f"/v2/{repo}/manifests/{dg(manifest)}"] = manifest
        for d, data in blobs.items():
            self.routes[f"/v2/{repo}/blobs/{d}"] = data

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def fake():
    f = Fake()
    f.routes["/v2/"] = b"{}"
    yield f
    f.close()


def _pull_fails(fake, make_store, match, ref="evil:1"):
    store = make_store()
    with pytest.raises(DockyardError, match=match):
        client.pull(f"{fake.host}/{ref}", store)
    assert store_is_empty(store)
    return store


def test_sane_fake_works(fake, make_store):
    manifest, blobs = image(layer_tar({"hello": b"world"}))
    fake.serve_image("evil", "1", manifest, blobs)
    store = make_store()
    img = client.pull(f"{fake.host}/evil:1", store)
    assert img.manifest_digest == dg(manifest)


def test_blob_with_wrong_digest(fake, make_store):
    layer = layer_tar({"hello": b"world"})
    manifest, blobs = image(layer)
    blobs[dg(layer)] = layer[:-1] + b"X"  # same size, other bytes
    fake.serve_image("evil", "1", manifest, blobs)
    _pull_fails(fake, make_store, r"has digest sha256:[0-9a-f]+: refusing it")


def test_truncated_blob(fake, make_store):
    layer = layer_tar({"hello": b"world" * 1000})
    manifest, blobs = image(layer)
    blobs[dg(layer)] = layer[:1000]
    fake.serve_image("evil", "1", manifest, blobs)
    _pull_fails(fake, make_store, "truncated")


def test_manifest_that_does_not_match_its_digest(fake, make_store):
    manifest, blobs = image(layer_tar({"a": b"b"}))
    fake.serve_image("evil", "1", manifest, blobs)
    other, _ = image(layer_tar({"c": b"d"}))
    fake.routes[f"/v2/evil/manifests/{dg(manifest)}"] = other
    _pull_fails(fake, make_store, "refusing it", ref=f"evil@{dg(manifest)}")

    def lying_header(h):  # by tag, with a Docker-Content-Digest that the body does not match
        h.send_response(200)
        h.send_header("Docker-Content-Digest", dg(b"something else"))
        h.send_header("Content-Length", str(len(manifest)))
        h.end_headers()
        h.wfile.write(manifest)
    fake.routes["/v2/evil/manifests/1"] = lying_header
    _pull_fails(fake, make_store, "refusing it")


@pytest.mark.parametrize("with_length", [True, False])
def test_oversized_manifest(fake, make_store, with_length):
    big = b'{"schemaVersion": 2, "pad": "' + b"x" * (5 << 20) + b'"}'

    def send(h):
        h.send_response(200)
        if with_length:
            h.send_header("Content-Length", str(len(big)))
        h.end_headers()  # HTTP/1.0 without a length: the body ends when the connection does
        h.wfile.write(big)
    fake.routes["/v2/evil/manifests/1"] = send
    _pull_fails(fake, make_store, "more than the|larger than")


def test_endless_blob_stream(fake, make_store):
    layer = layer_tar({"hello": b"world"})
    manifest, blobs = image(layer)
    fake.serve_image("evil", "1", manifest, blobs)

    def endless(h):
        h.send_response(200)
        h.end_headers()
        chunk = b"\0" * 65536
        for _ in range(1 << 14):  # 1 GiB at most, so a broken client cannot hang the test forever
            h.wfile.write(chunk)
    fake.routes[f"/v2/evil/blobs/{dg(layer)}"] = endless
    _pull_fails(fake, make_store, "larger than its size")


def test_layer_with_path_traversal(fake, make_store, tmp_path):
    victim = f"dyreg-victim-{os.getpid()}"
    layer = layer_tar({"ok": b"fine", f"../../../../../../../tmp/{victim}": b"pwned"})
    manifest, blobs = image(layer)
    fake.serve_image("evil", "1", manifest, blobs)
    try:
        _pull_fails(fake, make_store, "outside")
        assert not os.path.exists(f"/tmp/{victim}")
    finally:
        if os.path.exists(f"/tmp/{victim}"):
            os.unlink(f"/tmp/{victim}")


def test_bad_descriptors(fake, make_store):
    manifest = json.dumps({"schemaVersion": 2, "mediaType": client.MT_OCI_MANIFEST,
                           "config": {"digest": "sha256:../../etc/passwd", "size": 10}, "layers": []}).encode()
    fake.routes["/v2/evil/manifests/1"] = manifest
    _pull_fails(fake, make_store, "invalid config descriptor")
    manifest = json.dumps({"schemaVersion": 2, "mediaType": client.MT_OCI_MANIFEST,
                           "config": {"digest": dg(b"x"), "size": 1 << 40}, "layers": []}).encode()
    fake.routes["/v2/evil/manifests/1"] = manifest
    _pull_fails(fake, make_store, "more than the")


def test_plain_http_only_for_loopback_or_insecure():
    r = client.Registry(client.reference.parse_docker_ref("registry.example.com/x:1"))
    assert not r.loose
    assert client.Registry(client.reference.parse_docker_ref("registry.example.com/x:1"),
                           insecure=["registry.example.com"]).loose
    assert client.Registry(client.reference.parse_docker_ref("localhost:5000/x")).loose
    with pytest.raises(InvalidArgument):
        client.pull("Not A Ref", None)


def test_interrupted_pull_leaves_nothing(fake, make_store):
    """A pull stopped mid-download (here: the progress consumer goes away) keeps no partial image."""
    layers = [layer_tar({f"f{i}": os.urandom(1 << 20)}) for i in range(3)]
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [dg(l) for l in layers]}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": client.MT_OCI_MANIFEST,
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": dg(config), "size": len(config)},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": dg(l), "size": len(l)}
                                      for l in layers]}).encode()
    fake.serve_image("evil", "1", manifest, {dg(config): config, **{dg(l): l for l in layers}})
    store = make_store()
    seen = []

    def progress(msg):
        seen.append(msg)
        if msg["status"] == "Download complete":
            raise KeyboardInterrupt  # what a client hanging up looks like to the engine

    with pytest.raises(KeyboardInterrupt):
        client.pull(f"{fake.host}/evil:1", store, progress=progress)
    assert store_is_empty(store)
    assert client.pull(f"{fake.host}/evil:1", store).manifest_digest == dg(manifest)  # and it can be retried


def test_download_resumes_after_a_dropped_connection(fake, make_store):
    layer = layer_tar({"big": os.urandom(300000)})
    manifest, blobs = image(layer)
    fake.serve_image("evil", "1", manifest, blobs)
    ranges = []

    def flaky(h):
        rng = h.headers.get("Range")
        ranges.append(rng)
        start = int(rng[len("bytes="):-1]) if rng else 0
        h.send_response(206 if rng else 200)
        if rng:
            h.send_header("Content-Range", f"bytes {start}-{len(layer) - 1}/{len(layer)}")
        h.send_header("Content-Length", str(len(layer) - start))
        h.end_headers()
        if len(ranges) == 1:
            h.wfile.write(layer[:100000])  # then hang up: the client sees a short body
            h.wfile.flush()
            h.close_connection = True
            return
        h.wfile.write(layer[start:])
    fake.routes[f"/v2/evil/blobs/{dg(layer)}"] = flaky
    store = make_store()
    assert client.pull(f"{fake.host}/evil:1", store).manifest_digest == dg(manifest)
    assert ranges[0] is None and ranges[1].startswith("bytes=") and ranges[1] != "bytes=0-"


def test_download_that_keeps_failing_gives_up(fake, make_store):
    layer = layer_tar({"big": os.urandom(300000)})
    manifest, blobs = image(layer)
    fake.serve_image("evil", "1", manifest, blobs)

    def always_short(h):
        h.send_response(200)
        h.send_header("Content-Length", str(len(layer)))
        h.end_headers()
        h.wfile.write(layer[:1000])
        h.close_connection = True
    fake.routes[f"/v2/evil/blobs/{dg(layer)}"] = always_short
    _pull_fails(fake, make_store, "truncated")
