"""The registry server's /v2/ API driven with raw HTTP: uploads, ranges, manifests, listings, deletion,
referrers, GC and spec error codes."""

import concurrent.futures
import hashlib
import json
import os

import pytest
import requests

from dockyard.registry.storage import RegistryStorage

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"


def dg(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def code(r) -> str:
    return r.json()["errors"][0]["code"]


def put_blob(url, name, data) -> str:
    r = requests.post(f"{url}/v2/{name}/blobs/uploads/", params={"digest": dg(data)}, data=data)
    assert r.status_code == 201, r.text
    return dg(data)


def image_manifest(url, name, layers=(b"layer-a",), media_type=OCI_MANIFEST, push=True, **extra) -> bytes:
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    if push:
        put_blob(url, name, config)
        for l in layers:
            put_blob(url, name, l)
    m = {"schemaVersion": 2, "mediaType": media_type,
         "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": dg(config), "size": len(config)},
         "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": dg(l), "size": len(l)} for l in layers],
         **extra}
    return json.dumps(m).encode()


def put_manifest(url, name, ref, body, media_type=OCI_MANIFEST):
    return requests.put(f"{url}/v2/{name}/manifests/{ref}", data=body, headers={"Content-Type": media_type})


@pytest.fixture
def reg(registry):
    return registry()


def test_version_check(reg):
    r = requests.get(f"{reg.url}/v2/")
    assert r.status_code == 200 and r.json() == {}
    assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"


def test_monolithic_upload_head_get_and_range(reg):
    data = bytes(range(256)) * 40
    d = put_blob(reg.url, "a/b", data)
    h = requests.head(f"{reg.url}/v2/a/b/blobs/{d}")
    assert h.status_code == 200 and h.headers["Content-Length"] == str(len(data))
    assert h.headers["Docker-Content-Digest"] == d
    assert requests.get(f"{reg.url}/v2/a/b/blobs/{d}").content == data
    r = requests.get(f"{reg.url}/v2/a/b/blobs/{d}", headers={"Range": "bytes=100-199"})
    assert r.status_code == 206 and r.content == data[100:200]
    assert r.headers["Content-Range"] == f"bytes 100-199/{len(data)}"
    r = requests.get(f"{reg.url}/v2/a/b/blobs/{d}", headers={"Range": "bytes=-10"})
    assert r.status_code == 206 and r.content == data[-10:]
    assert requests.get(f"{reg.url}/v2/a/b/blobs/{d}", headers={"Range": f"bytes={len(data) + 5}-"}).status_code == 416
    # The blob belongs to a/b only; other repositories must mount it.
    r = requests.head(f"{reg.url}/v2/other/blobs/{d}")
    assert r.status_code == 404
    assert code(requests.get(f"{reg.url}/v2/other/blobs/{d}")) == "BLOB_UNKNOWN"


def test_post_then_put_upload(reg):
    r = requests.post(f"{reg.url}/v2/x/blobs/uploads/")
    assert r.status_code == 202 and r.headers["Location"].startswith("/v2/x/blobs/uploads/")
    r = requests.put(reg.url + r.headers["Location"], params={"digest": dg(b"whole")}, data=b"whole")
    assert r.status_code == 201 and r.headers["Docker-Content-Digest"] == dg(b"whole")
    assert requests.get(f"{reg.url}/v2/x/blobs/{dg(b'whole')}").content == b"whole"


def test_chunked_upload_with_content_range(reg):
    parts = [b"a" * 1000, b"b" * 1000, b"c" * 17]
    data = b"".join(parts)
    r = requests.post(f"{reg.url}/v2/chunky/blobs/uploads/")
    loc = reg.url + r.headers["Location"]
    uuid = r.headers["Docker-Upload-UUID"]
    assert loc.endswith(uuid)
    off = 0
    for p in parts[:2]:
        r = requests.patch(loc, data=p, headers={"Content-Range": f"{off}-{off + len(p) - 1}",
                                                 "Content-Type": "application/octet-stream"})
        assert r.status_code == 202, r.text
        off += len(p)
        assert r.headers["Range"] == f"0-{off - 1}"
    # Status, and a chunk that does not continue where the data ends.
    s = requests.get(loc)
    assert s.status_code == 204 and s.headers["Range"] == "0-1999"
    r = requests.patch(loc, data=b"zz", headers={"Content-Range": "5-6"})
    assert r.status_code == 416 and code(r) == "BLOB_UPLOAD_INVALID"
    r = requests.put(loc, params={"digest": dg(data)}, data=parts[2], headers={"Content-Range": "2000-2016"})
    assert r.status_code == 201, r.text
    assert requests.get(f"{reg.url}/v2/chunky/blobs/{dg(data)}").content == data
    # The finished upload is gone.
    assert code(requests.get(loc)) == "BLOB_UPLOAD_UNKNOWN"


def test_streamed_upload_and_cancel(reg):
    r = requests.post(f"{reg.url}/v2/s/blobs/uploads/")
    loc = reg.url + r.headers["Location"]
    for chunk in (b"one", b"two"):
        assert requests.patch(loc, data=iter([chunk])).status_code == 202  # chunked encoding, no range
    assert requests.put(loc, params={"digest": dg(b"onetwo")}).status_code == 201
    # Cancel
    loc = reg.url + requests.post(f"{reg.url}/v2/s/blobs/uploads/").headers["Location"]
    requests.patch(loc, data=b"junk")
    assert requests.delete(loc).status_code == 204
    r = requests.get(loc)
    assert r.status_code == 404 and code(r) == "BLOB_UPLOAD_UNKNOWN"
    assert os.listdir(os.path.join(reg.root, "uploads")) == []


def test_upload_with_wrong_digest_is_refused_and_not_stored(reg):
    r = requests.post(f"{reg.url}/v2/x/blobs/uploads/", params={"digest": dg(b"other")}, data=b"content")
    assert r.status_code == 400 and code(r) == "DIGEST_INVALID"
    r = requests.post(f"{reg.url}/v2/x/blobs/uploads/", params={"digest": "sha256:xyz"}, data=b"content")
    assert r.status_code == 400 and code(r) == "DIGEST_INVALID"
    assert os.listdir(os.path.join(reg.root, "blobs", "sha256")) == []
    assert os.listdir(os.path.join(reg.root, "uploads")) == []


def test_cross_repo_mount(reg):
    d = put_blob(reg.url, "src", b"shared layer")
    r = requests.post(f"{reg.url}/v2/dst/blobs/uploads/", params={"mount": d, "from": "src"})
    assert r.status_code == 201 and r.headers["Location"] == f"/v2/dst/blobs/{d}"
    assert requests.get(f"{reg.url}/v2/dst/blobs/{d}").content == b"shared layer"
    # Not in the source: an ordinary upload session instead.
    r = requests.post(f"{reg.url}/v2/dst2/blobs/uploads/", params={"mount": dg(b"nope"), "from": "src"})
    assert r.status_code == 202 and "/blobs/uploads/" in r.headers["Location"]


@pytest.mark.parametrize("media_type", [OCI_MANIFEST, DOCKER_MANIFEST])
def test_manifest_by_tag_and_digest(reg, media_type):
    body = image_manifest(reg.url, "app", media_type=media_type)
    r = put_manifest(reg.url, "app", "v1", body, media_type)
    assert r.status_code == 201, r.text
    d = dg(body)
    assert r.headers["Docker-Content-Digest"] == d and r.headers["Location"] == f"/v2/app/manifests/{d}"
    for ref in ("v1", d):
        g = requests.get(f"{reg.url}/v2/app/manifests/{ref}", headers={"Accept": media_type})
        assert g.status_code == 200 and g.content == body
        assert g.headers["Content-Type"] == media_type and g.headers["Docker-Content-Digest"] == d
        h = requests.head(f"{reg.url}/v2/app/manifests/{ref}")
        assert h.status_code == 200 and h.headers["Content-Length"] == str(len(body)) and not h.content
    # By digest: the body must hash to it.
    r = put_manifest(reg.url, "app", dg(b"x"), body, media_type)
    assert r.status_code == 400 and code(r) == "DIGEST_INVALID"
    r = requests.get(f"{reg.url}/v2/app/manifests/v2")
    assert r.status_code == 404 and code(r) == "MANIFEST_UNKNOWN"
    assert code(requests.get(f"{reg.url}/v2/nothere/manifests/v1")) == "NAME_UNKNOWN"


def test_index_and_manifest_list(reg):
    child = image_manifest(reg.url, "multi")
    assert put_manifest(reg.url, "multi", dg(child), child).status_code == 201
    for mt in (OCI_INDEX, DOCKER_LIST):
        idx = json.dumps({"schemaVersion": 2, "mediaType": mt, "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": dg(child), "size": len(child),
             "platform": {"os": "linux", "architecture": "amd64"}}]}).encode()
        r = put_manifest(reg.url, "multi", "latest", idx, mt)
        assert r.status_code == 201, r.text
        assert requests.get(f"{reg.url}/v2/multi/manifests/latest").headers["Content-Type"] == mt
    missing = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": dg(b"absent"), "size": 6}]}).encode()
    r = put_manifest(reg.url, "multi", "broken", missing, OCI_INDEX)
    assert r.status_code == 400 and code(r) == "MANIFEST_BLOB_UNKNOWN"


def test_manifest_naming_missing_blobs_is_refused(reg):
    body = image_manifest(reg.url, "m", layers=(b"never uploaded",), push=False)
    r = put_manifest(reg.url, "m", "v1", body)
    assert r.status_code == 400 and code(r) == "MANIFEST_BLOB_UNKNOWN"
    assert r.json()["errors"][0]["detail"]["digest"].startswith("sha256:")
    assert requests.get(f"{reg.url}/v2/m/manifests/v1").status_code == 404
    # Blobs pushed to another repository do not count either.
    other = image_manifest(reg.url, "elsewhere")
    assert put_manifest(reg.url, "m", "v1", other).status_code == 400


def test_bad_input_gets_spec_errors(reg):
    r = requests.put(f"{reg.url}/v2/x/manifests/v1", data=b"{not json", headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 400 and code(r) == "MANIFEST_INVALID"
    r = requests.put(f"{reg.url}/v2/x/manifests/v1", data=b"{" + b" " * (5 << 20) + b"}",
                     headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 413 and code(r) == "SIZE_INVALID"
    r = requests.get(f"{reg.url}/v2/UPPER/manifests/v1")
    assert r.status_code == 400 and code(r) == "NAME_INVALID"
    r = requests.get(f"{reg.url}/v2/x/blobs/md5:abc")
    assert r.status_code == 400 and code(r) == "DIGEST_INVALID"
    r = requests.get(f"{reg.url}/v2/x/tags/list", params={"n": "-1"})
    assert code(r) in ("PAGINATION_NUMBER_INVALID", "NAME_UNKNOWN")
    r = requests.get(f"{reg.url}/v2/x/blobs/uploads/../../../../etc")
    assert r.status_code in (400, 404)


def _follow(url, first):
    pages, nxt = [], first
    while nxt:
        r = requests.get(url + nxt)
        assert r.status_code == 200
        pages.append(r.json())
        link = r.headers.get("Link")
        nxt = link[1:link.index(">")] if link else None
    return pages


def test_tags_and_catalog_pagination(reg):
    body = image_manifest(reg.url, "p")
    tags = ["a", "b", "c", "d", "e"]
    for t in tags:
        assert put_manifest(reg.url, "p", t, body).status_code == 201
    assert requests.get(f"{reg.url}/v2/p/tags/list").json() == {"name": "p", "tags": tags}
    pages = _follow(reg.url, "/v2/p/tags/list?n=2")
    assert [p["tags"] for p in pages] == [["a", "b"], ["c", "d"], ["e"]]
    assert requests.get(f"{reg.url}/v2/p/tags/list", params={"n": 2, "last": "b"}).json()["tags"] == ["c", "d"]
    assert requests.get(f"{reg.url}/v2/p/tags/list", params={"n": 0}).json()["tags"] == []
    for name in ("q/one", "q/two", "r"):
        assert put_manifest(reg.url, name, "1", image_manifest(reg.url, name)).status_code == 201
    pages = _follow(reg.url, "/v2/_catalog?n=3")
    assert [p["repositories"] for p in pages] == [["p", "q/one", "q/two"], ["r"]]


def test_delete_manifest_tag_and_blob_then_gc(reg):
    body = image_manifest(reg.url, "del", layers=(b"layer-del",))
    for t in ("t1", "t2"):
        put_manifest(reg.url, "del", t, body)
    keep = image_manifest(reg.url, "keep", layers=(b"layer-keep",))
    put_manifest(reg.url, "keep", "1", keep)
    # Deleting a tag removes only the tag.
    assert requests.delete(f"{reg.url}/v2/del/manifests/t2").status_code == 202
    assert requests.get(f"{reg.url}/v2/del/tags/list").json()["tags"] == ["t1"]
    # By digest: the manifest and every tag on it.
    assert requests.delete(f"{reg.url}/v2/del/manifests/{dg(body)}").status_code == 202
    assert code(requests.get(f"{reg.url}/v2/del/manifests/t1")) == "MANIFEST_UNKNOWN"
    assert code(requests.get(f"{reg.url}/v2/del/manifests/{dg(body)}")) == "MANIFEST_UNKNOWN"
    assert requests.delete(f"{reg.url}/v2/del/manifests/{dg(body)}").status_code == 404
    # A blob: unlinked from the repository.
    assert requests.delete(f"{reg.url}/v2/del/blobs/{dg(b'layer-del')}").status_code == 202
    assert requests.head(f"{reg.url}/v2/del/blobs/{dg(b'layer-del')}").status_code == 404
    # GC within the grace period keeps everything (an upload may be about to be referenced) ...
    storage = RegistryStorage(reg.root)
    assert storage.gc() == []
    # ... after it, only what no manifest names goes; the kept image is whole.
    dead = RegistryStorage(reg.root, grace=0).gc()
    assert set(dead) == {dg(b"layer-del"), dg(body)}
    assert requests.get(f"{reg.url}/v2/keep/manifests/1").content == keep
    for layer in (b"layer-keep",):
        assert requests.get(f"{reg.url}/v2/keep/blobs/{dg(layer)}").content == layer


def test_gc_spares_blobs_of_an_in_flight_push(reg):
    """A blob uploaded (or HEADed) moments ago, whose manifest is not pushed yet, survives GC."""
    d = put_blob(reg.url, "inflight", b"fresh layer")
    assert RegistryStorage(reg.root, grace=60).gc() == []
    body = image_manifest(reg.url, "inflight", layers=(b"fresh layer",))
    assert put_manifest(reg.url, "inflight", "1", body).status_code == 201
    assert RegistryStorage(reg.root, grace=0).gc() == []  # referenced now
    assert requests.get(f"{reg.url}/v2/inflight/blobs/{d}").content == b"fresh layer"
    # An unfinished upload's data is never a blob, whatever GC does.
    loc = reg.url + requests.post(f"{reg.url}/v2/inflight/blobs/uploads/").headers["Location"]
    requests.patch(loc, data=b"part")
    RegistryStorage(reg.root, grace=0).gc()
    assert requests.put(loc, params={"digest": dg(b"partrest")}, data=b"rest").status_code == 201


def test_concurrent_pushes_of_the_same_blob_and_tag(reg):
    data = os.urandom(1 << 20)
    body = image_manifest(reg.url, "race", layers=(data,), push=False)

    def push(i):
        put_blob(reg.url, "race", data)
        cfg = json.loads(body)["config"]
        cfg_bytes = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
        assert dg(cfg_bytes) == cfg["digest"]
        put_blob(reg.url, "race", cfg_bytes)
        r = put_manifest(reg.url, "race", "latest", body)
        return r.status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert list(pool.map(push, range(16))) == [201] * 16
    assert requests.get(f"{reg.url}/v2/race/manifests/latest").content == body
    assert requests.get(f"{reg.url}/v2/race/blobs/{dg(data)}").content == data
    blobs = os.listdir(os.path.join(reg.root, "blobs", "sha256"))
    assert len(blobs) == 3  # layer, config, manifest: once each
    assert os.listdir(os.path.join(reg.root, "uploads")) == []
    assert os.listdir(os.path.join(reg.root, "tmp")) == []


def test_referrers(reg):
    subject = image_manifest(reg.url, "ref")
    put_manifest(reg.url, "ref", "1", subject)
    empty = b"{}"
    put_blob(reg.url, "ref", empty)
    sig = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.example.sig",
                      "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": dg(empty), "size": 2},
                      "layers": [], "subject": {"mediaType": OCI_MANIFEST, "digest": dg(subject), "size": len(subject)},
                      "annotations": {"who": "me"}}).encode()
    r = put_manifest(reg.url, "ref", dg(sig), sig)
    assert r.status_code == 201 and r.headers["OCI-Subject"] == dg(subject)
    r = requests.get(f"{reg.url}/v2/ref/referrers/{dg(subject)}")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith(OCI_INDEX)
    assert r.json()["manifests"] == [{"mediaType": OCI_MANIFEST, "digest": dg(sig), "size": len(sig),
                                      "artifactType": "application/vnd.example.sig", "annotations": {"who": "me"}}]
    r = requests.get(f"{reg.url}/v2/ref/referrers/{dg(subject)}", params={"artifactType": "application/other"})
    assert r.json()["manifests"] == [] and r.headers["OCI-Filters-Applied"] == "artifactType"
    assert requests.get(f"{reg.url}/v2/ref/referrers/{dg(b'none')}").json()["manifests"] == []


def test_gc_command_and_bad_arguments(reg, tmp_path):
    import subprocess
    import sys

    put_blob(reg.url, "g", b"orphan")
    run = lambda *a: subprocess.run([sys.executable, "-m", "dockyard.registry.server", *a],
                                    capture_output=True, text=True, timeout=60)
    r = run("gc", "--root", reg.root, "--grace", "0", "--dry-run")
    assert r.returncode == 0 and r.stdout.split() == [dg(b"orphan")]
    assert requests.head(f"{reg.url}/v2/g/blobs/{dg(b'orphan')}").status_code == 200
    r = run("gc", "--root", reg.root, "--grace", "0")
    assert r.stdout.split() == [dg(b"orphan")]
    assert requests.head(f"{reg.url}/v2/g/blobs/{dg(b'orphan')}").status_code == 404
    bad = tmp_path / "htpasswd"
    bad.write_text("alice:plaintext\n")
    r = run("--addr", "127.0.0.1:0", "--root", str(tmp_path / "r"), "--htpasswd", str(bad))
    assert r.returncode == 1 and "htpasswd -B" in r.stderr and len(r.stderr.splitlines()) == 1
    r = run("--addr", "nonsense", "--root", str(tmp_path / "r"))
    assert r.returncode != 0 and "invalid --addr" in r.stderr
