"""prepare_rootfs for real: mount the overlay it describes, use it, unmount, remove_rootfs."""

import io
import json
import os
import subprocess

import pytest

from .test_store import LAYER1, LAYER2, legacy_archive, sha, tar_of

pytestmark = pytest.mark.privileged


@pytest.fixture
def mounter(tmpdir_clean):
    """mount(Mount) -> target dir; every mount is undone at teardown even if the test failed."""
    if os.geteuid() != 0:
        pytest.skip("needs root for mount(2)")
    mounted = []

    def mount(m):
        target = os.path.join(tmpdir_clean, f"mnt{len(mounted)}")
        os.mkdir(target)
        subprocess.run(["mount", "-t", m.type, m.source, "-o", ",".join(m.options), target], check=True)
        mounted.append(target)
        return target

    yield mount
    for target in reversed(mounted):
        if os.path.ismount(target):
            subprocess.run(["umount", target], check=False)
        if os.path.ismount(target):
            subprocess.run(["umount", "-l", target], check=False)


def umount(target):
    subprocess.run(["umount", target], check=True)


def test_busybox_rootfs_mounts_and_runs(store, busybox, mounter):
    (m,) = store.prepare_rootfs("ctr1", busybox.id)
    target = mounter(m)
    assert os.path.isfile(os.path.join(target, "bin", "busybox"))
    out = subprocess.run(["chroot", target, "/bin/sh", "-c", "echo hi > /tmp/x; cat /etc/passwd | head -1"],
                         capture_output=True, text=True, check=True).stdout
    assert out.startswith("root:x:0:0")
    upper = store.rootfs_upper("ctr1")
    assert open(os.path.join(upper, "tmp", "x")).read() == "hi\n"  # writes land in the upper dir
    umount(target)
    store.remove_rootfs("ctr1")
    assert not os.path.exists(os.path.join(store.active_dir, "ctr1"))


def test_whiteouts_hide_lower_files(store, mounter):
    store.load(io.BytesIO(legacy_archive([LAYER1, LAYER2], ["wh:1"])[0]))
    (m,) = store.prepare_rootfs("ctr2", store.resolve("wh:1").id)
    target = mounter(m)
    assert sorted(os.listdir(os.path.join(target, "etc"))) == ["motd"]  # os-release whited out
    assert open(os.path.join(target, "bin", "hello")).read() == "hello\n"
    umount(target)
    store.remove_rootfs("ctr2")


def test_zero_layer_image_mounts(store, mounter):
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    arc = tar_of({sha(cfg)[7:] + ".json": cfg,
                  "manifest.json": json.dumps([{"Config": sha(cfg)[7:] + ".json", "RepoTags": ["scratch:1"], "Layers": []}]).encode()})
    assert store.load(io.BytesIO(arc)) == ["scratch:1"]
    (m,) = store.prepare_rootfs("ctr3", sha(cfg))
    assert f"lowerdir={store.empty}" in m.options
    target = mounter(m)
    assert os.listdir(target) == []
    umount(target)
    store.remove_rootfs("ctr3")


def test_changes_and_commit(store, busybox, mounter):
    (m,) = store.prepare_rootfs("ctr4", busybox.id)
    target = mounter(m)
    subprocess.run(["chroot", target, "/bin/sh", "-c", "echo new > /tmp/added; rm /etc/group; echo x >> /etc/passwd"],
                   check=True)
    umount(target)
    assert store.changes("ctr4") == [{"Path": "/etc", "Kind": 0}, {"Path": "/etc/group", "Kind": 2},
                                     {"Path": "/etc/passwd", "Kind": 0}, {"Path": "/tmp", "Kind": 0},
                                     {"Path": "/tmp/added", "Kind": 1}]
    img = store.commit("ctr4", {"Cmd": ["sh"], "Env": ["A=1"]}, "committed:1", changes=["WORKDIR /tmp"],
                       comment="snap", author="me", created_by="sh -c ...")
    assert img.parent == busybox.id and img.repo_tags == ["committed:1"]
    assert img.config["config"] == {"Cmd": ["sh"], "Env": ["A=1"], "WorkingDir": "/tmp"}
    assert len(img.config["rootfs"]["diff_ids"]) == 2
    h = store.history("committed:1")
    assert [x["CreatedBy"] for x in h] == ["sh -c ...", ""] and h[0]["Comment"] == "snap"
    assert [(x["Id"], x["Tags"]) for x in h] == [(img.id, ["committed:1"]), (busybox.id, ["busybox:latest"])]
    store.remove_rootfs("ctr4")
    # the committed image runs with the container's changes
    (m2,) = store.prepare_rootfs("ctr5", img.id)
    target2 = mounter(m2)
    assert open(os.path.join(target2, "tmp", "added")).read() == "new\n"
    assert not os.path.exists(os.path.join(target2, "etc", "group"))
    umount(target2)
    store.remove_rootfs("ctr5")
    # the parent cannot go while its child exists; by name it is only untagged
    with pytest.raises(Exception, match="dependent child images"):
        store.delete(busybox.id)
    assert store.delete("busybox") == [{"Untagged": "busybox:latest"}]
    recs = store.delete("committed:1")
    assert recs == [{"Untagged": "committed:1"}, {"Deleted": img.id}, {"Deleted": busybox.id}]
    assert store.list() == [] and sorted(os.listdir(store.snapshots)) == ["empty"]


def test_commit_without_changes_adds_no_layer(store, busybox):
    store.prepare_rootfs("ctr6", busybox.id)
    img = store.commit("ctr6", None, "same:1")
    assert img.config["rootfs"] == busybox.config["rootfs"] and img.config["history"][-1]["empty_layer"]
    store.remove_rootfs("ctr6")


def test_many_layers(store, mounter):
    layers = [tar_of({f"l{i}": b"%d" % i}) for i in range(40)]
    store.load(io.BytesIO(legacy_archive(layers, ["many:1"])[0]))
    (m,) = store.prepare_rootfs("ctr7", store.resolve("many:1").id)
    target = mounter(m)
    assert sorted(os.listdir(target)) == sorted(f"l{i}" for i in range(40))
    umount(target)
    store.remove_rootfs("ctr7")
    too_many = [tar_of({f"m{i}": b"%d" % i}) for i in range(200)]
    store.load(io.BytesIO(legacy_archive(too_many, ["toomany:1"])[0]))
    with pytest.raises(Exception, match="too many layers"):
        store.prepare_rootfs("ctr8", "toomany:1")
    assert os.listdir(store.active_dir) == []
