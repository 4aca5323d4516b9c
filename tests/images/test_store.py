"""ImageStore contract: resolve, tags, rmi semantics, prune, history, save/load, failure atomicity."""

import gzip
import hashlib
import io
import json
import os
import tarfile

import pytest

from dockyard.errdefs import Conflict, InvalidArgument, NotFound
from dockyard.images.store import ImageStore


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tar_of(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            if data is None:
                ti.type = tarfile.DIRTYPE
                tf.addfile(ti)
            elif isinstance(data, tuple):  # ("sym", target)
                ti.type, ti.linkname = tarfile.SYMTYPE, data[1]
                tf.addfile(ti)
            else:
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def config_for(layers: list[bytes], cmd=("sh",)) -> bytes:
    return json.dumps({"architecture": "amd64", "os": "linux", "created": "2024-01-02T03:04:05.123456789Z",
                       "config": {"Cmd": list(cmd)}, "rootfs": {"type": "layers", "diff_ids": [sha(l) for l in layers]},
                       "history": [{"created": "2024-01-02T03:04:05Z", "created_by": f"layer {i}"} for i in range(len(layers))]
                       + [{"created": "2024-01-02T03:04:06Z", "created_by": "CMD", "empty_layer": True}]}).encode()


def legacy_archive(layers: list[bytes], tags: list[str]) -> bytes:
    """The pre-25 `docker save` layout: <id>.json, <dir>/layer.tar, repositories; a symlinked duplicate."""
    cfg = config_for(layers)
    files = {}
    names = []
    for i, layer in enumerate(layers):
        d = hashlib.sha256(b"v1id%d" % i).hexdigest()
        files[f"{d}/VERSION"] = b"1.0"
        files[f"{d}/json"] = b"{}"
        files[f"{d}/layer.tar"] = layer
        names.append(f"{d}/layer.tar")
    dup = hashlib.sha256(b"dup").hexdigest()
    files[f"{dup}/layer.tar"] = ("sym", f"../{names[0]}")
    files[sha(cfg)[7:] + ".json"] = cfg
    files["manifest.json"] = json.dumps([{"Config": sha(cfg)[7:] + ".json", "RepoTags": tags,
                                          "Layers": [f"{dup}/layer.tar"] + names[1:]}]).encode()
    files["repositories"] = b"{}"
    return tar_of(files), cfg


def oci_layout(layers: list[bytes], ref_name: str, gz=True) -> tuple[bytes, bytes]:
    """A pure OCI image layout (no manifest.json), gzip layers, named by annotation."""
    blobs_l = [gzip.compress(l, mtime=0) if gz else l for l in layers]
    cfg = config_for(layers)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(cfg), "size": len(cfg)},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha(b), "size": len(b)}
                                      for b in blobs_l]}).encode()
    index = json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha(manifest), "size": len(manifest),
         "annotations": {"org.opencontainers.image.ref.name": ref_name}}]}).encode()
    files = {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}', "index.json": index}
    for b in [cfg, manifest, *blobs_l]:
        files[f"blobs/sha256/{sha(b)[7:]}"] = b
    return tar_of(files), cfg


def assert_empty(store: ImageStore):
    """No image, no snapshot, no blob, nothing in tmp."""
    assert store.list() == []
    assert sorted(os.listdir(store.snapshots)) == ["empty"]
    assert store.content.list() == []
    assert os.listdir(store.tmp) == []


LAYER1 = tar_of({"bin": None, "bin/hello": b"hello\n", "etc": None, "etc/os-release": b"ID=test\n"})
LAYER2 = tar_of({"etc": None, "etc/.wh.os-release": b"", "etc/motd": b"hi\n"})


# -- resolve and tags -----------------------------------------------------------------------------

def test_import_and_resolve_forms(store, busybox):
    img = busybox
    assert img.id.startswith("sha256:") and img.repo_tags == ["busybox:latest"]
    assert img.config["config"]["Cmd"] == ["sh"] and img.config["os"] == "linux"
    assert img.config["config"]["Env"][0].startswith("PATH=")
    assert img.config["architecture"] in ("amd64", "arm64")
    assert img.size > 1_000_000 and img.manifest_digest.startswith("sha256:")
    for ref in ("busybox", "busybox:latest", "docker.io/library/busybox:latest", img.id, img.id[7:],
                img.id[7:19], f"busybox@{img.manifest_digest}", "sha256:" + img.id[7:15]):
        assert store.resolve(ref).id == img.id, ref
    with pytest.raises(NotFound, match="No such image: busybox:2"):
        store.resolve("busybox:2")
    with pytest.raises(NotFound, match="No such image: nothere:latest"):
        store.resolve("nothere")
    with pytest.raises(InvalidArgument):
        store.resolve("Bad Name")


def test_tag_untag(store, busybox):
    store.tag("busybox", "localhost:5000/me/app:1")
    assert store.resolve("localhost:5000/me/app:1").id == busybox.id
    assert sorted(store.resolve(busybox.id).repo_tags) == ["busybox:latest", "localhost:5000/me/app:1"]
    with pytest.raises(InvalidArgument):
        store.tag("busybox", "UPPER:1")
    with pytest.raises(NotFound):
        store.tag("nothere", "x:1")
    assert store.untag("localhost:5000/me/app:1") == [{"Untagged": "localhost:5000/me/app:1"}]
    with pytest.raises(NotFound):
        store.untag("localhost:5000/me/app:1")


def test_import_changes_and_message(store, busybox_tar):
    img = store.import_rootfs(io.BytesIO(gzip.compress(busybox_tar)), "x/y:z", message="from test",
                              changes=["ENV A=b C=\"d e\"", "WORKDIR /w", "ENTRYPOINT /bin/sh -c", "EXPOSE 80 53/udp",
                                       "LABEL k=v", "USER nobody"])
    c = img.config["config"]
    assert "A=b" in c["Env"] and "C=d e" in c["Env"] and c["WorkingDir"] == "/w"
    assert c["Entrypoint"] == ["/bin/sh", "-c", "/bin/sh -c"] and c["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}
    assert c["Labels"] == {"k": "v"} and c["User"] == "nobody"
    assert store.history("x/y:z")[0]["Comment"] == "from test"


def test_import_bad_input_leaves_nothing(store):
    with pytest.raises(InvalidArgument):
        store.import_rootfs(io.BytesIO(b"not a tar at all" * 100), "x")
    with pytest.raises(InvalidArgument, match="not a valid change"):
        store.import_rootfs(io.BytesIO(LAYER1), "x", changes=["FROM scratch"])
    with pytest.raises(InvalidArgument):
        store.import_rootfs(io.BytesIO(LAYER1), "Bad:Ref:x")
    assert_empty(store)


# -- rmi / prune ------------------------------------------------------------------------------------

def test_delete_semantics(store, busybox):
    store.tag("busybox", "other:1")
    assert store.delete("other:1") == [{"Untagged": "other:1"}]  # still tagged busybox: only untag
    store.tag("busybox", "other:1")
    with pytest.raises(Conflict, match="must be forced"):
        store.delete(busybox.id[7:19])
    recs = store.delete(busybox.id, force=True)
    assert recs == [{"Untagged": "busybox:latest"}, {"Untagged": "other:1"}, {"Deleted": busybox.id}]
    assert_empty(store)
    with pytest.raises(NotFound):
        store.delete("busybox")


def test_delete_last_tag_deletes_image(store, busybox):
    assert store.delete("busybox") == [{"Untagged": "busybox:latest"}, {"Deleted": busybox.id}]
    assert_empty(store)


def test_prune(store, busybox, busybox_tar):
    other = store.import_rootfs(io.BytesIO(LAYER1), None)
    assert other.repo_tags == []
    deleted, reclaimed = store.prune(dangling_only=True)
    assert deleted == [{"Deleted": other.id}] and reclaimed == other.size > 0
    assert [i.id for i in store.list()] == [busybox.id]
    assert store.prune(dangling_only=False, in_use={busybox.id}) == ([], 0)
    deleted, reclaimed = store.prune(dangling_only=False)
    assert deleted == [{"Untagged": "busybox:latest"}, {"Deleted": busybox.id}] and reclaimed == busybox.size
    assert_empty(store)


def test_history(store):
    data, cfg = legacy_archive([LAYER1, LAYER2], ["hist:1"])
    store.load(io.BytesIO(data))
    h = store.history("hist:1")
    assert [x["CreatedBy"] for x in h] == ["CMD", "layer 1", "layer 0"]
    assert h[0]["Id"] == sha(cfg) and h[0]["Tags"] == ["hist:1"] and h[1]["Id"] == "<missing>"
    assert h[0]["Size"] == 0 and h[-1]["Size"] > 0 and h[0]["Created"] == 1704164646
    assert set(h[0]) == {"Id", "Created", "CreatedBy", "Tags", "Size", "Comment"}


# -- save / load ------------------------------------------------------------------------------------

def test_save_load_roundtrip(store, busybox, tmpdir_clean):
    store.tag("busybox", "busybox:2")
    buf = io.BytesIO()
    store.save(["busybox"], buf)  # bare repository: every tag
    names = tarfile.open(fileobj=io.BytesIO(buf.getvalue())).getnames()
    assert {"manifest.json", "index.json", "oci-layout", f"blobs/sha256/{busybox.id[7:]}"} <= set(names)
    manifest = json.load(tarfile.open(fileobj=io.BytesIO(buf.getvalue())).extractfile("manifest.json"))
    assert manifest[0]["RepoTags"] == ["busybox:2", "busybox:latest"]
    other = ImageStore(os.path.join(tmpdir_clean, "other"))
    try:
        assert other.load(io.BytesIO(buf.getvalue())) == ["busybox:2", "busybox:latest"]
        img = other.resolve("busybox:2")
        assert img.id == busybox.id and img.manifest_digest == busybox.manifest_digest and img.size == busybox.size
        # loading again is idempotent
        assert other.load(io.BytesIO(buf.getvalue())) == ["busybox:2", "busybox:latest"]
        assert len(other.list()) == 1
    finally:
        other.close()


def test_save_by_id_and_oci_format(store, busybox, tmpdir_clean):
    buf = io.BytesIO()
    store.save([busybox.id], buf, fmt="oci")
    names = tarfile.open(fileobj=io.BytesIO(buf.getvalue())).getnames()
    assert "manifest.json" not in names and "index.json" in names
    store.delete(busybox.id)
    assert store.load(io.BytesIO(buf.getvalue())) == [busybox.id]
    assert store.resolve(busybox.id).repo_tags == []


def test_load_legacy_docker_archive(store):
    data, cfg = legacy_archive([LAYER1, LAYER2], ["legacy:1", "localhost:5000/legacy"])
    assert store.load(io.BytesIO(data)) == ["legacy:1", "localhost:5000/legacy:latest"]
    img = store.resolve("legacy:1")
    assert img.id == sha(cfg) and len(img.config["rootfs"]["diff_ids"]) == 2


def test_load_oci_layout_gzip(store, tmpdir_clean):
    data, cfg = oci_layout([LAYER1, LAYER2], "docker.io/library/ocitest:3")
    assert store.load(io.BytesIO(data)) == ["ocitest:3"]
    img = store.resolve("ocitest:3")
    assert img.id == sha(cfg)
    # the gzip blobs are kept as they came (save can ship them again)
    assert all(mt.endswith("+gzip") for (_, _, mt) in store._layers(img.id))
    data2, _ = oci_layout([LAYER1], "latest")  # a bare tag names no repository: untagged image
    (loaded,) = store.load(io.BytesIO(data2))
    assert loaded.startswith("sha256:")


def test_layers_are_shared_between_images(store):
    store.load(io.BytesIO(legacy_archive([LAYER1], ["one:1"])[0]))
    store.load(io.BytesIO(legacy_archive([LAYER1, LAYER2], ["two:1"])[0]))
    assert len([d for d in os.listdir(store.snapshots) if d != "empty"]) == 2
    store.delete("two:1")
    assert len([d for d in os.listdir(store.snapshots) if d != "empty"]) == 1
    store.delete("one:1")
    assert_empty(store)


def _rewrite(data: bytes, mutate) -> bytes:
    src = tarfile.open(fileobj=io.BytesIO(data))
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tf:
        for m in src.getmembers():
            content = src.extractfile(m).read() if m.isreg() else None
            name, content = mutate(m.name, content)
            m.name = name
            if content is not None:
                m.size = len(content)
            tf.addfile(m, io.BytesIO(content) if content is not None else None)
    return out.getvalue()


def _flip_blob(target):
    def mutate(name, content):
        if name == target:
            content = bytes([content[0] ^ 1]) + content[1:]
        return name, content
    return mutate


def test_load_bad_layer_digest_leaves_nothing(store, busybox, tmpdir_clean):
    buf = io.BytesIO()
    store.save(["busybox"], buf)
    diff_id = busybox.config["rootfs"]["diff_ids"][0]
    bad = _rewrite(buf.getvalue(), _flip_blob(f"blobs/sha256/{diff_id[7:]}"))
    other = ImageStore(os.path.join(tmpdir_clean, "other"))
    try:
        with pytest.raises(InvalidArgument, match="digest"):
            other.load(io.BytesIO(bad))
        assert_empty(other)
    finally:
        other.close()


def test_load_bad_config_or_diff_id_leaves_nothing(store):
    data, cfg = legacy_archive([LAYER1, LAYER2], ["bad:1"])
    with pytest.raises(InvalidArgument, match="digest"):  # config no longer matches its <id>.json name
        store.load(io.BytesIO(_rewrite(data, _flip_blob(sha(cfg)[7:] + ".json"))))
    assert_empty(store)
    # A layer that differs from the config's diff_id (legacy names carry no digest): caught at unpack.
    layer_name = [n for n in tarfile.open(fileobj=io.BytesIO(data)).getnames() if n.endswith("layer.tar")][1]
    with pytest.raises(InvalidArgument, match="config says"):
        store.load(io.BytesIO(_rewrite(data, lambda n, c: (n, LAYER1 if n == layer_name else c))))
    assert_empty(store)


def test_load_hostile_archive_members(store, tmpdir_clean):
    data, _ = legacy_archive([LAYER1], ["evil:1"])
    for evil in ("../escaped", "/abs/escaped"):
        bad = _rewrite(data, lambda n, c: (evil if n == "repositories" else n, c))
        with pytest.raises(InvalidArgument, match="outside the archive"):
            store.load(io.BytesIO(bad))
    assert not os.path.exists(os.path.join(store.root, "escaped"))
    assert not os.path.exists(os.path.join(os.path.dirname(store.root), "escaped"))
    assert_empty(store)


def test_load_garbage(store):
    for data in (b"", b"junk" * 1000, gzip.compress(b"junk" * 1000), tar_of({"hello": b"x"})):
        with pytest.raises(InvalidArgument):
            store.load(io.BytesIO(data))
    assert_empty(store)


def test_multi_image_load_is_all_or_nothing(store, busybox):
    buf = io.BytesIO()
    store.save(["busybox"], buf)
    good, _ = legacy_archive([LAYER1], ["good:1"])
    # a manifest.json with a valid image and one whose layer is missing
    m = json.loads(tarfile.open(fileobj=io.BytesIO(good)).extractfile("manifest.json").read())
    m.append({"Config": m[0]["Config"], "RepoTags": ["broken:1"], "Layers": ["missing/layer.tar"]})
    bad = _rewrite(good, lambda n, c: (n, json.dumps(m).encode() if n == "manifest.json" else c))
    with pytest.raises(InvalidArgument, match="missing"):
        store.load(io.BytesIO(bad))
    assert [i.repo_tags for i in store.list()] == [["busybox:latest"]]


def test_reopen_keeps_state(store, busybox):
    again = ImageStore(store.root)
    try:
        assert again.resolve("busybox").id == busybox.id
    finally:
        again.close()


def test_prepare_rootfs_describes_overlay(store, busybox):
    (m,) = store.prepare_rootfs("c1", busybox.id)
    assert m.type == "overlay" and m.source == "overlay"
    opts = dict(o.split("=", 1) for o in m.options)
    assert os.path.isfile(os.path.join(opts["lowerdir"], "bin", "busybox"))
    assert opts["upperdir"] == store.rootfs_upper("c1") and os.path.isdir(opts["workdir"])
    assert store.prepare_rootfs("c1", busybox.id) == [m]  # idempotent
    # the image cannot vanish from under a rootfs: rmi -f keeps the snapshots until remove_rootfs
    store.delete("busybox", force=True)
    assert os.path.isfile(os.path.join(opts["lowerdir"], "bin", "busybox"))
    store.remove_rootfs("c1")
    store.remove_rootfs("c1")
    assert not os.path.exists(os.path.join(store.active_dir, "c1"))
    with pytest.raises(NotFound):
        store.rootfs_upper("c1")
    assert_empty(store)


def test_prepare_rootfs_bad_key_or_image(store, busybox):
    with pytest.raises(InvalidArgument):
        store.prepare_rootfs("../x", busybox.id)
    with pytest.raises(NotFound):
        store.prepare_rootfs("c2", "sha256:" + "0" * 64)
    assert os.listdir(store.active_dir) == []


def test_snapshot_rebuilt_from_blob_after_loss(store, busybox):
    import shutil
    for d in os.listdir(store.snapshots):
        if d != "empty":
            shutil.rmtree(os.path.join(store.snapshots, d))
    store.close()
    again = ImageStore(store.root)
    try:
        (m,) = again.prepare_rootfs("c3", busybox.id)
        lower = dict(o.split("=", 1) for o in m.options)["lowerdir"]
        assert os.path.isfile(os.path.join(lower, "bin", "busybox"))
        again.remove_rootfs("c3")
    finally:
        again.close()
        store._db = again._db  # the fixture's close() must not fail
        store._lock_fd = os.open(os.devnull, os.O_RDONLY)


def test_concurrent_loads_and_reads(store, busybox):
    import threading
    archives = [legacy_archive([LAYER1, tar_of({f"f{i}": b"%d" % i})], [f"conc:{i}"])[0] for i in range(6)]
    errors = []

    def work(i):
        try:
            store.load(io.BytesIO(archives[i]))
            store.prepare_rootfs(f"k{i}", f"conc:{i}")
            store.list()
            store.delete(f"conc:{i}", force=True)  # the rootfs keeps its snapshots alive
            store.remove_rootfs(f"k{i}")
        except Exception as e:  # pragma: no cover - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [i.repo_tags for i in store.list()] == [["busybox:latest"]]
    store.delete("busybox")
    assert_empty(store)


def test_untag_last_tag_deletes_unless_in_use(store, busybox):
    store.prepare_rootfs("user", busybox.id)
    assert store.untag("busybox") == [{"Untagged": "busybox:latest"}]  # a rootfs uses it: it stays
    assert store.resolve(busybox.id).repo_tags == []
    store.remove_rootfs("user")
    store.tag(busybox.id, "again:1")
    assert store.untag("again:1") == [{"Untagged": "again:1"}, {"Deleted": busybox.id}]
    assert_empty(store)
